// SpanSink that cuts spans into batches of at most batch.max_spans, encodes each as one
// ExportTraceServiceRequest and pushes it into a BatchQueue. consume() cuts full batches;
// a partial batch leaves on flush() (the pipeline's timer) or on the next consume() once
// its oldest span waited batch.max_delay. Safe to call consume() and flush() from
// different threads.
#pragma once

#include <chrono>
#include <mutex>

#include "export/export_counters.h"
#include "export/exporter_config.h"
#include "export/otlp_encoder.h"
#include "queue/batch_queue.h"
#include "span/span.h"

namespace edgetrace {

class Batcher final : public SpanSink {
 public:
  Batcher(BatchQueue& queue, ExportCounters& counters, OtlpBatchConfig config, OtlpEncoder encoder = OtlpEncoder{});

  void consume(SpanBatch spans) override;
  void flush() override;
  // How often the pipeline should call flush().
  [[nodiscard]] std::chrono::milliseconds max_delay() const { return config_.max_delay; }

 private:
  void emit_locked(std::span<const Span> spans);

  BatchQueue& queue_;
  ExportCounters& counters_;
  const OtlpBatchConfig config_;
  OtlpEncoder encoder_;
  std::mutex mutex_;
  SpanBatch pending_;
  std::chrono::steady_clock::time_point oldest_pending_{};
};

}  // namespace edgetrace
