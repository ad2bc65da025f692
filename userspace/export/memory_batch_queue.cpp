#include "export/memory_batch_queue.h"

#include <spdlog/spdlog.h>

namespace edgetrace {
namespace {
std::uint64_t unix_nanos_now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}
}  // namespace

MemoryBatchQueue::MemoryBatchQueue(MemoryQueueConfig bounds) : bounds_(bounds) {}

bool MemoryBatchQueue::push(std::string payload, std::uint32_t span_count) {
  {
    std::lock_guard lock(mutex_);
    const bool over_bytes = bounds_.max_bytes != 0 && bytes_ + payload.size() > bounds_.max_bytes;
    const bool over_count = bounds_.max_batches != 0 && batches_.size() >= bounds_.max_batches;
    if (over_bytes || over_count) {
      ++dropped_batches_;
      dropped_spans_ += span_count;
      // A stalled collector makes every push fail: say so once per interval, with totals.
      const auto now = std::chrono::steady_clock::now();
      if (dropped_batches_ == 1 || now - last_drop_log_ >= kDropLogInterval) {
        last_drop_log_ = now;
        spdlog::warn("otlp memory queue full ({} batches, {} bytes): dropping new batches ({} spans dropped so far)",
                     batches_.size(), bytes_, dropped_spans_);
      }
      return false;
    }
    bytes_ += payload.size();
    spans_ += span_count;
    batches_.push_back(QueuedBatch{next_sequence_++, std::move(payload), span_count, unix_nanos_now()});
  }
  not_empty_.notify_one();
  return true;
}

std::optional<QueuedBatch> MemoryBatchQueue::peek(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  not_empty_.wait_for(lock, wait, [this] { return !batches_.empty() || closed_; });
  if (batches_.empty()) return std::nullopt;
  return batches_.front();
}

void MemoryBatchQueue::acknowledge(std::uint64_t sequence) {
  std::lock_guard lock(mutex_);
  if (batches_.empty() || batches_.front().sequence != sequence) {
    spdlog::error("otlp memory queue: acknowledge({}) does not match the oldest batch", sequence);
    return;
  }
  bytes_ -= batches_.front().payload.size();
  spans_ -= batches_.front().span_count;
  batches_.pop_front();
}

QueueStats MemoryBatchQueue::stats() const {
  std::lock_guard lock(mutex_);
  QueueStats s;
  s.depth_batches = batches_.size();
  s.depth_spans = spans_;
  s.depth_bytes = bytes_;
  if (!batches_.empty()) {
    const auto now = unix_nanos_now();
    const auto t = batches_.front().enqueued_unix_nanos;
    s.oldest_age_nanos = now > t ? now - t : 0;
  }
  s.dropped_batches = dropped_batches_;
  s.dropped_spans = dropped_spans_;
  return s;
}

void MemoryBatchQueue::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  not_empty_.notify_all();
}

}  // namespace edgetrace
