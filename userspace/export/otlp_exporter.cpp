#include "export/otlp_exporter.h"

#include <spdlog/spdlog.h>

#include "export/memory_batch_queue.h"

namespace edgetrace {
namespace {
OtlpEncoder make_encoder(const ExporterConfig& config) {
  return OtlpEncoder(std::string(kScopeName), std::string(edgetrace_version()), config.resource_attributes);
}
}  // namespace

OtlpExporter::OtlpExporter(const ExporterConfig& config, std::unique_ptr<BatchQueue> queue,
                           std::chrono::milliseconds status_interval,
                           std::function<void(const std::string&)> on_export_error)
    : queue_(queue ? std::move(queue) : std::make_unique<MemoryBatchQueue>(config.memory_queue)),
      sender_(make_sender(config)),
      deliverer_(std::make_unique<Deliverer>(*queue_, *sender_, counters_, config.retry, config.drain_timeout)),
      batcher_(std::make_unique<Batcher>(*queue_, counters_, config.batch, make_encoder(config))) {
  if (on_export_error) deliverer_->set_error_observer(std::move(on_export_error));
  deliverer_->start();
  if (status_interval > std::chrono::milliseconds::zero())
    status_logger_ = std::make_unique<PeriodicStatusLogger>(counters_, *queue_, status_interval);
  spdlog::info("otlp export to {} (compression {}, batches of up to {} spans)", sender_->describe(),
               to_string(config.compression), config.batch.max_spans);
}

OtlpExporter::~OtlpExporter() { shutdown(); }

void OtlpExporter::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  batcher_->flush();
  deliverer_->stop();
  status_logger_.reset();
  spdlog::info("{}", status_line());
}

}  // namespace edgetrace
