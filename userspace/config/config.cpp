#include "config/config.h"

#include <fmt/format.h>

#include <set>

namespace edgetrace {
namespace {

template <typename T>
T scalar(const YAML::Node& node, const std::string& key, const char* expected) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw ConfigError(fmt::format("{}: expected {}", key, expected));
  }
}

std::uint32_t power_of_two(const YAML::Node& node, const std::string& key, std::uint32_t min, std::uint32_t max) {
  const auto value = scalar<std::uint64_t>(node, key, "a whole number");
  if (value < min || value > max || (value & (value - 1)) != 0)
    throw ConfigError(fmt::format("{}: expected a power of two from {} to {}, got {}", key, min, max, value));
  return static_cast<std::uint32_t>(value);
}

void reject_unknown_keys(const YAML::Node& map, const std::string& where, const std::set<std::string>& known) {
  for (const auto& entry : map) {
    const auto key = entry.first.as<std::string>();
    if (!known.contains(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw ConfigError(fmt::format("{}{}: unknown key (known: {})", where.empty() ? "" : where + ".", key, list));
    }
  }
}

void require_map(const YAML::Node& node, const std::string& key) {
  if (node && !node.IsNull() && !node.IsMap()) throw ConfigError(key + ": expected a mapping");
}

}  // namespace

OutputKind parse_output_kind(const std::string& text) {
  if (text == "console") return OutputKind::Console;
  if (text == "json") return OutputKind::Json;
  if (text == "otlp") return OutputKind::Otlp;
  throw ConfigError("expected console, json or otlp, got '" + text + "'");
}

CapturePath parse_capture_path(const std::string& text) {
  if (text == "auto") return CapturePath::Auto;
  if (text == "syscalls") return CapturePath::Syscalls;
  if (text == "sockets") return CapturePath::Sockets;
  throw ConfigError("expected auto, syscalls or sockets, got '" + text + "'");
}

SyscallHooksChoice parse_syscall_hooks(const std::string& text) {
  if (text == "auto") return SyscallHooksChoice::Auto;
  if (text == "socket_tracepoints") return SyscallHooksChoice::SocketTracepoints;
  if (text == "fentry") return SyscallHooksChoice::Fentry;
  if (text == "btf_tracepoints") return SyscallHooksChoice::BtfTracepoints;
  if (text == "tracepoints") return SyscallHooksChoice::Tracepoints;
  throw ConfigError("expected auto, socket_tracepoints, fentry, btf_tracepoints or tracepoints, got '" + text + "'");
}

AgentConfig parse_config(const YAML::Node& root) {
  AgentConfig config;
  if (!root || root.IsNull()) return config;
  if (!root.IsMap()) throw ConfigError("the configuration must be a YAML mapping at the top level");
  reject_unknown_keys(root, "", {"service_name", "output", "log_level", "capture", "targets", "routes",
                                 "status_interval_seconds", "inject", "exporter", "queue", "tail_sampling", "sampler"});

  if (root["service_name"]) config.service_name = scalar<std::string>(root["service_name"], "service_name", "a string");
  if (root["output"])
    config.output = parse_named("output", scalar<std::string>(root["output"], "output", "a string"), parse_output_kind);
  if (root["log_level"]) {
    config.log_level = scalar<std::string>(root["log_level"], "log_level", "a string");
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!levels.contains(config.log_level))
      throw ConfigError("log_level: expected trace, debug, info, warn, error, critical or off");
  }
  if (root["status_interval_seconds"])
    config.status_interval_seconds = scalar<std::uint32_t>(root["status_interval_seconds"], "status_interval_seconds", "a whole number of seconds");

  if (root["inject"]) config.inject = scalar<bool>(root["inject"], "inject", "true or false");

  if (const auto capture = root["capture"]) {
    require_map(capture, "capture");
    reject_unknown_keys(capture, "capture", {"path", "syscall_hooks", "bytes", "max_connections", "ring_buffer_bytes"});
    if (capture["path"]) {
      config.capture.path =
          parse_named("capture.path", scalar<std::string>(capture["path"], "capture.path", "a string"), parse_capture_path);
    }
    if (capture["syscall_hooks"]) {
      config.capture.syscall_hooks = parse_named(
          "capture.syscall_hooks", scalar<std::string>(capture["syscall_hooks"], "capture.syscall_hooks", "a string"),
          parse_syscall_hooks);
    }
    if (capture["bytes"]) config.capture.capture_bytes = power_of_two(capture["bytes"], "capture.bytes", 64, 1024);
    if (capture["max_connections"]) {
      config.capture.max_connections = scalar<std::uint32_t>(capture["max_connections"], "capture.max_connections", "a whole number");
      if (config.capture.max_connections < 16) throw ConfigError("capture.max_connections: expected at least 16");
    }
    if (capture["ring_buffer_bytes"])
      config.capture.ring_buffer_bytes = power_of_two(capture["ring_buffer_bytes"], "capture.ring_buffer_bytes", 4096, 1u << 30);
  }

  if (const auto targets = root["targets"]) {
    require_map(targets, "targets");
    reject_unknown_keys(targets, "targets", {"cgroups", "pids"});
    if (const auto cgroups = targets["cgroups"]) {
      if (!cgroups.IsSequence()) throw ConfigError("targets.cgroups: expected a list of cgroup v2 directories");
      for (std::size_t i = 0; i < cgroups.size(); ++i)
        config.targets.cgroups.emplace_back(scalar<std::string>(cgroups[i], fmt::format("targets.cgroups[{}]", i), "a path"));
    }
    if (const auto pids = targets["pids"]) {
      if (!pids.IsSequence()) throw ConfigError("targets.pids: expected a list of process ids");
      for (std::size_t i = 0; i < pids.size(); ++i) {
        const auto pid = scalar<std::uint32_t>(pids[i], fmt::format("targets.pids[{}]", i), "a process id");
        if (pid == 0) throw ConfigError(fmt::format("targets.pids[{}]: expected a process id above 0", i));
        config.targets.pids.push_back(pid);
      }
    }
  }

  if (const auto routes = root["routes"]) {
    if (!routes.IsSequence()) throw ConfigError("routes: expected a list of route patterns like /users/{id}");
    for (std::size_t i = 0; i < routes.size(); ++i)
      config.routes.push_back(scalar<std::string>(routes[i], fmt::format("routes[{}]", i), "a route pattern"));
  }

  for (const char* section : {"exporter", "queue", "tail_sampling", "sampler"}) require_map(root[section], section);
  // Copy only sections that exist: assigning yaml-cpp's placeholder for a missing key throws.
  auto section = [&](const char* key) { return root[key] ? YAML::Clone(root[key]) : YAML::Node(); };  // Null: section absent
  config.exporter = section("exporter");
  config.queue = section("queue");
  config.tail_sampling = section("tail_sampling");
  config.sampler = section("sampler");
  return config;
}

AgentConfig load_config_file(const std::filesystem::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError(fmt::format("{}: cannot read the configuration file", path.string()));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: invalid YAML: {}", path.string(), e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  try {
    return parse_config(root);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", path.string(), e.what()));
  }
}

}  // namespace edgetrace
