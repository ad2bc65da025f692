// The whole export stage behind one SpanSink: Batcher → BatchQueue → Deliverer → sender.
// For the CLI/pipeline:
//   auto cfg = parse_exporter_config(root["exporter"], process_getenv);
//   OtlpExporter exporter(cfg);                       // memory queue; or pass a DiskBatchQueue
//   pipeline sink = exporter; every exporter.flush_interval(): exporter.flush();
//   at exit: exporter.shutdown();                      // flush + drain (also done by the destructor)
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "export/batcher.h"
#include "export/deliverer.h"
#include "export/export_counters.h"
#include "export/exporter_config.h"
#include "export/otlp_sender.h"
#include "queue/batch_queue.h"

namespace edgetrace {

class OtlpExporter final : public SpanSink {
 public:
  // `queue` null → a MemoryBatchQueue bounded by config.memory_queue. `status_interval` > 0
  // logs format_status_line() at that period. Throws ConfigError (unreadable TLS files).
  // `on_export_error` sees each failed attempt's message on the delivery thread (e.g.
  // DiskBatchQueue::set_last_export_error).
  explicit OtlpExporter(const ExporterConfig& config, std::unique_ptr<BatchQueue> queue = nullptr,
                        std::chrono::milliseconds status_interval = std::chrono::milliseconds::zero(),
                        std::function<void(const std::string&)> on_export_error = {});
  ~OtlpExporter() override;
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void consume(SpanBatch spans) override { batcher_->consume(std::move(spans)); }
  void flush() override { batcher_->flush(); }
  [[nodiscard]] std::chrono::milliseconds flush_interval() const { return batcher_->max_delay(); }

  // Flushes the partial batch and lets the deliverer drain for config.drain_timeout; what
  // is left stays in the queue. Idempotent.
  void shutdown();

  [[nodiscard]] const ExportCounters& counters() const { return counters_; }
  [[nodiscard]] BatchQueue& queue() { return *queue_; }
  [[nodiscard]] std::string status_line() const { return format_status_line(counters_.snapshot(), queue_->stats()); }
  [[nodiscard]] std::string describe() const { return sender_->describe(); }

 private:
  ExportCounters counters_;
  std::unique_ptr<BatchQueue> queue_;
  std::unique_ptr<OtlpSender> sender_;
  std::unique_ptr<Deliverer> deliverer_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<PeriodicStatusLogger> status_logger_;
  bool shut_down_ = false;
};

}  // namespace edgetrace
