// Everything `run` and `agent` share: logging, the span sink chain chosen by the config, the
// capture probes and the consumer thread. Built once, torn down in reverse order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "export/otlp_exporter.h"
#include "sampling/tail_sampler.h"
#include "pipeline/capture_pipeline.h"
#include "stitch/exchange_stitcher.h"
#include "stitch/process_resources.h"
#include "injection.h"
#include "trace_probes.h"

namespace edgetrace {

struct SessionOverrides {
  std::optional<std::string> service_name;
  std::optional<OutputKind> output;
  std::optional<std::string> queue_dir;
  std::optional<std::string> log_level;
  bool no_inject = false;
  std::optional<CapturePath> capture_path;
  std::optional<SyscallHooksChoice> syscall_hooks;
};

// Applies flags over the file's values. Throws ConfigError.
AgentConfig resolve_config(const std::optional<std::string>& config_file, const SessionOverrides& overrides);
// The output the configuration asks for: explicit, else OTLP when an endpoint is configured
// (YAML or OTEL_EXPORTER_OTLP_*ENDPOINT), else the console.
OutputKind effective_output(const AgentConfig& config);
// The capture path `auto` resolves to for this configuration (docs/configuration.md).
CapturePath effective_capture_path(const AgentConfig& config);
void configure_logging(const std::string& level);

class TracingSession {
 public:
  // Loads the probes and builds the sink chain; throws on any failure with a clear message.
  explicit TracingSession(const AgentConfig& config);
  ~TracingSession();

  // Opts a cgroup in: capture, and traceparent injection into its new outgoing connections.
  void trace_cgroup(const std::filesystem::path& cgroup_dir);
  // Opts a process in (capture only: injection attaches per cgroup).
  void trace_pid(std::uint32_t pid);
  void start() { pipeline_->start(); }
  // Drains the kernel, decides every buffered trace, flushes and drains the export stage.
  // Safe to call twice.
  void stop();
  [[nodiscard]] std::string status_line() const;

 private:
  // Declared in the order they are built; destroyed tail first.
  std::unique_ptr<SpanSink> writer_;          // console or JSON lines
  std::unique_ptr<OtlpExporter> exporter_;    // batcher -> disk queue -> deliverer
  std::unique_ptr<TailSampler> tail_sampler_;
  SpanSink* head_ = nullptr;
  bool stopped_ = false;
  std::unique_ptr<ProcessResources> resources_;
  std::unique_ptr<CaptureProbes> probes_;
  std::unique_ptr<TraceContextInjector> injector_;  // null with --no-inject
  std::unique_ptr<ExchangeStitcher> stitcher_;
  std::unique_ptr<CapturePipeline> pipeline_;
};

}  // namespace edgetrace
