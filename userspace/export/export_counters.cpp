#include "export/export_counters.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace edgetrace {

ExportCounters::Snapshot ExportCounters::snapshot() const {
  return Snapshot{exported_spans.load(), exported_batches.load(), failed_spans.load(), failed_batches.load(),
                  retries.load(),        dropped_spans.load(),    rejected_spans.load(), encoded_spans.load(),
                  encoded_bytes.load()};
}

void ExportCounters::reset() {
  for (auto* c : {&exported_spans, &exported_batches, &failed_spans, &failed_batches, &retries, &dropped_spans,
                  &rejected_spans, &encoded_spans, &encoded_bytes})
    c->store(0);
}

std::string format_status_line(const ExportCounters::Snapshot& c, const QueueStats& q) {
  return fmt::format(
      "otlp: exported={} spans/{} batches failed={} spans/{} batches retried={} dropped={} rejected={} "
      "queue={} batches/{} spans/{} B oldest={} ms queue_dropped={} spans",
      c.exported_spans, c.exported_batches, c.failed_spans, c.failed_batches, c.retries, c.dropped_spans,
      c.rejected_spans, q.depth_batches, q.depth_spans, q.depth_bytes, q.oldest_age_nanos / 1'000'000, q.dropped_spans);
}

PeriodicStatusLogger::PeriodicStatusLogger(const ExportCounters& counters, const BatchQueue& queue,
                                           std::chrono::milliseconds interval) {
  thread_ = std::thread([this, &counters, &queue, interval] {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, interval, [this] { return stop_; }))
      spdlog::info("{}", format_status_line(counters.snapshot(), queue.stats()));
  });
}

PeriodicStatusLogger::~PeriodicStatusLogger() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

}  // namespace edgetrace
