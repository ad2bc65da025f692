// Everything `run` and `agent` share: logging, the span sink chain chosen by the config, the
// capture probes and the consumer thread. Built once, torn down in reverse order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "pipeline/capture_pipeline.h"
#include "stitch/exchange_stitcher.h"
#include "stitch/process_resources.h"
#include "trace_probes.h"

namespace edgetrace {

struct SessionOverrides {
  std::optional<std::string> service_name;
  std::optional<OutputKind> output;
  std::optional<std::string> queue_dir;
  std::optional<std::string> log_level;
  bool no_inject = false;
};

// Applies flags over the file's values. Throws ConfigError.
AgentConfig resolve_config(const std::optional<std::string>& config_file, const SessionOverrides& overrides);
void configure_logging(const std::string& level);

class TracingSession {
 public:
  // Loads the probes and builds the sink chain; throws on any failure with a clear message.
  explicit TracingSession(const AgentConfig& config);
  ~TracingSession();

  HttpCaptureProbes& probes() { return *probes_; }
  void start() { pipeline_->start(); }
  // Drains the kernel, flushes every stage. Safe to call twice.
  void stop();

 private:
  std::vector<std::unique_ptr<SpanSink>> sinks_;  // owned stages, head first
  SpanSink* head_ = nullptr;
  std::unique_ptr<ProcessResources> resources_;
  std::unique_ptr<HttpCaptureProbes> probes_;
  std::unique_ptr<ExchangeStitcher> stitcher_;
  std::unique_ptr<CapturePipeline> pipeline_;
};

}  // namespace edgetrace
