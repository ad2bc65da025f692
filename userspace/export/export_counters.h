// What the exporter did, for the periodic status line and for tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "queue/batch_queue.h"

namespace edgetrace {

struct ExportCounters {
  std::atomic<std::uint64_t> exported_spans{0};    // accepted by the receiver (minus partial rejections)
  std::atomic<std::uint64_t> exported_batches{0};
  std::atomic<std::uint64_t> failed_spans{0};      // permanently rejected batches
  std::atomic<std::uint64_t> failed_batches{0};
  std::atomic<std::uint64_t> retries{0};           // send attempts that were retried
  std::atomic<std::uint64_t> dropped_spans{0};     // queue refused them, or retry budget ran out
  std::atomic<std::uint64_t> rejected_spans{0};    // partial_success.rejected_spans
  std::atomic<std::uint64_t> encoded_spans{0};
  std::atomic<std::uint64_t> encoded_bytes{0};

  struct Snapshot {
    std::uint64_t exported_spans, exported_batches, failed_spans, failed_batches, retries, dropped_spans,
        rejected_spans, encoded_spans, encoded_bytes;
  };
  [[nodiscard]] Snapshot snapshot() const;
  void reset();
};

// "otlp: exported=… failed=… retried=… dropped=… rejected=… queue=…b/…spans/…B oldest=…ms"
std::string format_status_line(const ExportCounters::Snapshot& counters, const QueueStats& queue);

// Logs the status line through spdlog every `interval` until destroyed.
class PeriodicStatusLogger {
 public:
  PeriodicStatusLogger(const ExportCounters& counters, const BatchQueue& queue, std::chrono::milliseconds interval);
  ~PeriodicStatusLogger();
  PeriodicStatusLogger(const PeriodicStatusLogger&) = delete;
  PeriodicStatusLogger& operator=(const PeriodicStatusLogger&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace edgetrace
