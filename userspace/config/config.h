// The YAML schema shared by `edgetrace run` and `edgetrace agent` (docs/configuration.md).
// Sections owned by a stage (exporter, queue, tail_sampling) are kept as YAML nodes here and
// parsed by that stage's own parser, so each stage's keys are defined in one place.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config_error.h"

namespace edgetrace {

enum class OutputKind { Console, Json, Otlp };

// Which kernel hooks capture exchanges (docs/configuration.md, docs/architecture.md).
enum class CapturePath {
  Auto,      // sockets when everything configured can be served by them, else syscalls
  Syscalls,  // syscall tracepoints: complete, but every process on the host pays a little
  Sockets,   // cgroup socket programs: only the opted-in cgroups' sockets pay anything
};

// Which hooks the syscall path uses (mirrors SyscallHooks in probes/trace_probes.h, which the
// config library does not link).
enum class SyscallHooksChoice { Auto, SocketTracepoints, Fentry, BtfTracepoints, Tracepoints };

struct CaptureConfig {
  CapturePath path = CapturePath::Auto;
  SyscallHooksChoice syscall_hooks = SyscallHooksChoice::Auto;
  std::uint32_t capture_bytes = 512;
  std::uint32_t max_connections = 4096;
  std::uint32_t ring_buffer_bytes = 8u << 20;
};

struct TargetsConfig {
  std::vector<std::filesystem::path> cgroups;
  std::vector<std::uint32_t> pids;
};

struct AgentConfig {
  std::optional<std::string> service_name;
  std::optional<OutputKind> output;  // unset: OTLP when an endpoint is configured, else console
  std::string log_level = "info";
  CaptureConfig capture;
  TargetsConfig targets;
  std::vector<std::string> routes;
  std::uint32_t status_interval_seconds = 60;
  bool inject = true;  // insert traceparent into outgoing HTTP/1 requests

  // Set by the CLI, not the file: which command runs, and for `run` the command's name.
  bool is_run_command = false;
  std::string run_command_name;

  YAML::Node exporter;       // `exporter:`      -> parse_exporter_config
  YAML::Node queue;          // `queue:`         -> parse_queue_config
  YAML::Node tail_sampling;  // `tail_sampling:` -> parse_tail_sampling_config
  YAML::Node sampler;        // `sampler:`       -> head sampling
};

// Throws ConfigError naming the file, and the key where there is one.
AgentConfig load_config_file(const std::filesystem::path& path);
AgentConfig parse_config(const YAML::Node& root);

OutputKind parse_output_kind(const std::string& text);  // "console", "json", "otlp"
CapturePath parse_capture_path(const std::string& text);  // "auto", "syscalls", "sockets"
SyscallHooksChoice parse_syscall_hooks(const std::string& text);  // "auto", "socket_tracepoints", "fentry", "btf_tracepoints", "tracepoints"

}  // namespace edgetrace
