// An in-memory BatchQueue bounded by bytes and/or batch count. A push that would exceed a
// bound is refused and counted, so the newest data is lost rather than blocking tracing.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>

#include "export/exporter_config.h"
#include "queue/batch_queue.h"

namespace edgetrace {

class MemoryBatchQueue final : public BatchQueue {
 public:
  explicit MemoryBatchQueue(MemoryQueueConfig bounds);

  bool push(std::string payload, std::uint32_t span_count) override;
  std::optional<QueuedBatch> peek(std::chrono::milliseconds wait) override;
  void acknowledge(std::uint64_t sequence) override;
  [[nodiscard]] QueueStats stats() const override;
  void close() override;

 private:
  const MemoryQueueConfig bounds_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::deque<QueuedBatch> batches_;
  std::uint64_t next_sequence_ = 1;
  std::uint64_t bytes_ = 0;
  std::uint64_t spans_ = 0;
  std::uint64_t dropped_batches_ = 0;
  std::uint64_t dropped_spans_ = 0;
  bool closed_ = false;
  static constexpr std::chrono::seconds kDropLogInterval{10};
  std::chrono::steady_clock::time_point last_drop_log_{};
};

}  // namespace edgetrace
