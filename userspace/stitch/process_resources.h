// The OpenTelemetry resource of each traced process, built once per pid from /proc.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "span/span.h"

namespace edgetrace {

struct ResourceOptions {
  std::optional<std::string> service_name;  // --service-name / config; wins over everything
  Attributes extra;                          // OTEL_RESOURCE_ATTRIBUTES of the agent
  std::string host_name;                     // empty: gethostname()
};

class ProcessResources {
 public:
  explicit ProcessResources(ResourceOptions options);

  // service.name: the configured name, else the process' own OTEL_SERVICE_NAME, else its
  // executable's name. Also process.pid, process.executable.name/path, host.name.
  std::shared_ptr<const Resource> for_process(std::uint32_t pid);
  void forget(std::uint32_t pid) { by_pid_.erase(pid); }

 private:
  ResourceOptions options_;
  std::unordered_map<std::uint32_t, std::shared_ptr<const Resource>> by_pid_;
};

}  // namespace edgetrace
