#include "cli/tracing_session.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "output/span_writers.h"
#include "socket_probes.h"
#include "queue/disk_batch_queue.h"
#include "queue/queue_config.h"
#include "sampling/head_sampler_config.h"
#include "sampling/tail_sampling_config.h"

namespace edgetrace {

AgentConfig resolve_config(const std::optional<std::string>& config_file, const SessionOverrides& overrides) {
  AgentConfig config = config_file ? load_config_file(*config_file) : AgentConfig{};
  if (overrides.service_name) config.service_name = overrides.service_name;
  if (overrides.output) config.output = overrides.output;
  if (overrides.log_level) config.log_level = *overrides.log_level;
  if (overrides.queue_dir) config.queue["dir"] = *overrides.queue_dir;
  if (overrides.no_inject) config.inject = false;
  if (overrides.capture_path) config.capture.path = *overrides.capture_path;
  if (overrides.syscall_hooks) config.capture.syscall_hooks = *overrides.syscall_hooks;
  return config;
}

void configure_logging(const std::string& level) {
  // Spans own stdout; the agent's own words go to stderr.
  auto logger = spdlog::stderr_color_mt("edgetrace");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

OutputKind effective_output(const AgentConfig& config) {
  if (config.output) return *config.output;
  return otlp_endpoint_configured(config.exporter, process_getenv) ? OutputKind::Otlp : OutputKind::Console;
}

CapturePath effective_capture_path(const AgentConfig& config) {
  if (config.capture.path != CapturePath::Auto) return config.capture.path;
  // The socket programs see only sockets created inside the cgroup: that is every socket of
  // a command `run` starts there, but not necessarily of processes an operator moved into a
  // cgroup, and a bare pid has no cgroup to attach to. Injection and per-thread context need
  // the syscall hooks (see docs/architecture.md).
  if (config.is_run_command && config.targets.pids.empty() && !config.inject) return CapturePath::Sockets;
  return CapturePath::Syscalls;
}

namespace {

SyscallHooks to_syscall_hooks(SyscallHooksChoice choice) {
  switch (choice) {
    case SyscallHooksChoice::SocketTracepoints: return SyscallHooks::SocketTracepoints;
    case SyscallHooksChoice::Fentry: return SyscallHooks::Fentry;
    case SyscallHooksChoice::BtfTracepoints: return SyscallHooks::BtfTracepoints;
    case SyscallHooksChoice::Tracepoints: return SyscallHooks::SyscallTracepoints;
    case SyscallHooksChoice::Auto: break;
  }
  return SyscallHooks::Auto;
}

QueueConfig queue_config_for(const AgentConfig& config, bool run_command) {
  auto queue = parse_queue_config(config.queue);
  // Several `run` sessions can live side by side: each gets its own default directory,
  // stable per service so a restarted one finds its backlog.
  if (run_command && !(config.queue && config.queue["dir"])) {
    const auto name = config.service_name.value_or(config.run_command_name.empty() ? "run" : config.run_command_name);
    queue.dir = std::filesystem::path("/var/lib/edgetrace/run-queues") / name;
  }
  return queue;
}

}  // namespace

TracingSession::TracingSession(const AgentConfig& config) {
  const auto output = effective_output(config);
  switch (output) {
    case OutputKind::Console: writer_ = std::make_unique<ConsoleSpanWriter>(); break;
    case OutputKind::Json: writer_ = std::make_unique<JsonSpanWriter>(); break;
    case OutputKind::Otlp: {
      const auto exporter_config = parse_exporter_config(config.exporter, process_getenv);
      auto queue = std::make_unique<DiskBatchQueue>(queue_config_for(config, config.is_run_command));
      auto* disk = queue.get();
      spdlog::info("spill queue: {}", disk->config().dir.string());
      exporter_ = std::make_unique<OtlpExporter>(exporter_config, std::move(queue), std::chrono::milliseconds::zero(),
                                                 [disk](const std::string& error) { disk->set_last_export_error(error); });
      spdlog::info("exporting OTLP to {}", exporter_->describe());
      break;
    }
  }
  SpanSink& tail = exporter_ ? static_cast<SpanSink&>(*exporter_) : *writer_;
  head_ = &tail;
  if (config.tail_sampling && !config.tail_sampling.IsNull()) {
    tail_sampler_ = std::make_unique<TailSampler>(parse_tail_sampling_config(config.tail_sampling), tail);
    head_ = tail_sampler_.get();
    spdlog::info("tail sampling on");
  }

  resources_ = std::make_unique<ProcessResources>(ResourceOptions{.service_name = config.service_name});
  const auto sampler = parse_head_sampler_config(config.sampler, process_getenv);
  spdlog::info("head sampler: {} (ratio {})", sampler.name, sampler.ratio);
  const CaptureOptions capture_options{
      .capture_bytes = config.capture.capture_bytes,
      .max_connections = config.capture.max_connections,
      .ring_buffer_bytes = config.capture.ring_buffer_bytes,
      .sampler_mode = sampler.mode,
      .sampler_threshold = sampler.rejection_threshold,
      .plan_injection = config.inject,
      .syscall_hooks = to_syscall_hooks(config.capture.syscall_hooks),
  };
  if (effective_capture_path(config) == CapturePath::Sockets) {
    probes_ = std::make_unique<SocketCaptureProbes>(capture_options);
    if (config.inject)
      spdlog::warn("capture.path sockets: traceparent injection needs the syscall path and is off");
  } else {
    auto syscall_probes = std::make_unique<HttpCaptureProbes>(capture_options);
    if (config.inject) {
      injector_ = std::make_unique<TraceContextInjector>(*syscall_probes);
      spdlog::info("traceparent injection on (sockops + sk_msg)");
    }
    probes_ = std::move(syscall_probes);
  }
  stitcher_ = std::make_unique<ExchangeStitcher>(*resources_, MonotonicToUnix{}, http::RouteMatcher(config.routes), *head_);
  pipeline_ = std::make_unique<CapturePipeline>(
      *probes_, *stitcher_, *head_,
      PipelineOptions{
          .flush_interval = exporter_ ? exporter_->flush_interval() : std::chrono::milliseconds(1000),
          .status_interval = std::chrono::seconds(config.status_interval_seconds),
          .extra_status = [this] { return status_line(); },
      });
}

TracingSession::~TracingSession() { stop(); }

void TracingSession::trace_cgroup(const std::filesystem::path& cgroup_dir) {
  probes_->add_cgroup(cgroup_dir);
  if (injector_) injector_->attach_cgroup(cgroup_dir);
}

void TracingSession::trace_pid(std::uint32_t pid) { probes_->add_pid(pid); }

std::string TracingSession::status_line() const {
  std::string line;
  if (injector_) {
    const auto injected = injector_->counters();
    line += fmt::format("injected={} inject_skipped={} ", injected.injected, injected.skipped_plans());
  }
  if (tail_sampler_) line += format_counters(tail_sampler_->counters());
  if (exporter_) line += (line.empty() ? "" : " ") + exporter_->status_line();
  return line;
}

void TracingSession::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (pipeline_) pipeline_->stop();
  if (tail_sampler_) tail_sampler_->flush_all();
  if (exporter_) {
    exporter_->shutdown();
    spdlog::info("{}", exporter_->status_line());
  }
  if (writer_) writer_->flush();
}

}  // namespace edgetrace
