#include "cli/tracing_session.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "output/span_writers.h"
#include "sampling/head_sampler_config.h"

namespace edgetrace {

AgentConfig resolve_config(const std::optional<std::string>& config_file, const SessionOverrides& overrides) {
  AgentConfig config = config_file ? load_config_file(*config_file) : AgentConfig{};
  if (overrides.service_name) config.service_name = overrides.service_name;
  if (overrides.output) config.output = overrides.output;
  if (overrides.log_level) config.log_level = *overrides.log_level;
  if (overrides.queue_dir) config.queue["dir"] = *overrides.queue_dir;
  if (overrides.no_inject) config.inject = false;
  return config;
}

void configure_logging(const std::string& level) {
  // Spans own stdout; the agent's own words go to stderr.
  auto logger = spdlog::stderr_color_mt("edgetrace");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

TracingSession::TracingSession(const AgentConfig& config) {
  const auto output = config.output.value_or(OutputKind::Console);
  switch (output) {
    case OutputKind::Console: sinks_.push_back(std::make_unique<ConsoleSpanWriter>()); break;
    case OutputKind::Json: sinks_.push_back(std::make_unique<JsonSpanWriter>()); break;
    case OutputKind::Otlp: throw ConfigError("output: otlp is not available in this build");
  }
  head_ = sinks_.front().get();

  resources_ = std::make_unique<ProcessResources>(ResourceOptions{.service_name = config.service_name});
  const auto sampler = parse_head_sampler_config(config.sampler, [](std::string_view name) -> std::optional<std::string> {
    const auto* value = std::getenv(std::string(name).c_str());
    return value ? std::optional<std::string>(value) : std::nullopt;
  });
  spdlog::info("head sampler: {} (ratio {})", sampler.name, sampler.ratio);
  probes_ = std::make_unique<HttpCaptureProbes>(CaptureOptions{
      .capture_bytes = config.capture.capture_bytes,
      .max_connections = config.capture.max_connections,
      .ring_buffer_bytes = config.capture.ring_buffer_bytes,
      .sampler_mode = sampler.mode,
      .sampler_threshold = sampler.rejection_threshold,
      .plan_injection = config.inject,
  });
  stitcher_ = std::make_unique<ExchangeStitcher>(*resources_, MonotonicToUnix{}, http::RouteMatcher(config.routes), *head_);
  pipeline_ = std::make_unique<CapturePipeline>(
      *probes_, *stitcher_, *head_,
      PipelineOptions{.status_interval = std::chrono::seconds(config.status_interval_seconds)});
}

TracingSession::~TracingSession() { stop(); }

void TracingSession::stop() {
  if (pipeline_) pipeline_->stop();
}

}  // namespace edgetrace
