// The contract between the batcher, the persistent queue and the OTLP deliverer.
// A batch is one serialized ExportTraceServiceRequest. The batcher pushes; a single
// deliverer thread peeks the oldest batch, sends it, and acknowledges it once the receiver
// accepted it or it failed permanently. That gives in-order, at-least-once delivery.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace edgetrace {

struct QueuedBatch {
  std::uint64_t sequence = 0;
  std::string payload;  // serialized ExportTraceServiceRequest
  std::uint32_t span_count = 0;
  std::uint64_t enqueued_unix_nanos = 0;
};

struct QueueStats {
  std::uint64_t depth_batches = 0;
  std::uint64_t depth_spans = 0;
  std::uint64_t depth_bytes = 0;
  std::uint64_t oldest_age_nanos = 0;
  std::uint64_t dropped_batches = 0;
  std::uint64_t dropped_spans = 0;
  std::uint64_t corrupted_records = 0;
  std::uint64_t write_errors = 0;
};

class BatchQueue {
 public:
  virtual ~BatchQueue() = default;
  // Returns false when the batch was not kept (bound hit or write error); the loss is counted.
  virtual bool push(std::string payload, std::uint32_t span_count) = 0;
  // The oldest unacknowledged batch, waiting up to `wait` for one; nullopt on timeout or close.
  virtual std::optional<QueuedBatch> peek(std::chrono::milliseconds wait) = 0;
  // The batch with this sequence is done (delivered, or permanently rejected and counted).
  virtual void acknowledge(std::uint64_t sequence) = 0;
  [[nodiscard]] virtual QueueStats stats() const = 0;
  // Wakes a blocked peek(); later pushes are still accepted so shutdown loses nothing.
  virtual void close() = 0;
};

}  // namespace edgetrace
