// The single consumer thread: ring buffer -> stitcher -> span sinks, with periodic flushes
// and counter reports. Nothing on this path takes a lock per span.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "pipeline/drain_pacer.h"
#include "ring_buffer_reader.h"
#include "span/span.h"
#include "stitch/exchange_stitcher.h"
#include "trace_probes.h"

namespace edgetrace {

struct PipelineOptions {
  std::chrono::milliseconds flush_interval{1000};
  std::chrono::seconds status_interval{60};
  // Extra status text from later stages (exporter, queue, sampler), logged with the counters.
  std::function<std::string()> extra_status;
};

class CapturePipeline {
 public:
  CapturePipeline(CaptureProbes& probes, ExchangeStitcher& stitcher, SpanSink& sink, PipelineOptions options);
  ~CapturePipeline();
  CapturePipeline(const CapturePipeline&) = delete;
  CapturePipeline& operator=(const CapturePipeline&) = delete;

  void start();
  // Drains what the kernel already produced, flushes every stage and joins the thread.
  void stop();
  [[nodiscard]] std::string status_line() const;

 private:
  void run(std::stop_token stop);

  CaptureProbes& probes_;
  ExchangeStitcher& stitcher_;
  SpanSink& sink_;
  PipelineOptions options_;
  RingBufferReader reader_;
  DrainPacer pacer_;
  std::jthread thread_;
};

}  // namespace edgetrace
