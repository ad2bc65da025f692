#include "stitch/process_resources.h"

#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace edgetrace {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::optional<std::string> environ_value(std::uint32_t pid, std::string_view name) {
  const auto environ = read_file("/proc/" + std::to_string(pid) + "/environ");
  std::size_t start = 0;
  while (start < environ.size()) {
    auto end = environ.find('\0', start);
    if (end == std::string::npos) end = environ.size();
    std::string_view entry(environ.data() + start, end - start);
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=')
      return std::string(entry.substr(name.size() + 1));
    start = end + 1;
  }
  return std::nullopt;
}

std::string local_host_name() {
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "unknown";
  return name.data();
}

}  // namespace

ProcessResources::ProcessResources(ResourceOptions options) : options_(std::move(options)) {
  if (options_.host_name.empty()) options_.host_name = local_host_name();
}

std::shared_ptr<const Resource> ProcessResources::for_process(std::uint32_t pid) {
  if (auto found = by_pid_.find(pid); found != by_pid_.end()) return found->second;

  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  std::string executable_name = ec ? std::string() : exe.filename().string();
  if (executable_name.empty()) {
    executable_name = read_file("/proc/" + std::to_string(pid) + "/comm");
    while (!executable_name.empty() && executable_name.back() == '\n') executable_name.pop_back();
  }
  if (executable_name.empty()) executable_name = "unknown";

  std::string service_name;
  if (options_.service_name)
    service_name = *options_.service_name;
  else if (auto from_env = environ_value(pid, "OTEL_SERVICE_NAME"); from_env && !from_env->empty())
    service_name = *from_env;
  else
    service_name = executable_name;

  auto resource = std::make_shared<Resource>();
  resource->pid = pid;
  resource->attributes = options_.extra;
  auto set = [&](std::string key, AttributeValue value) {
    for (auto& a : resource->attributes)
      if (a.key == key) {
        a.value = std::move(value);
        return;
      }
    resource->attributes.push_back({std::move(key), std::move(value)});
  };
  set("service.name", service_name);
  set("process.pid", static_cast<std::int64_t>(pid));
  set("process.executable.name", executable_name);
  if (!ec) set("process.executable.path", exe.string());
  set("host.name", options_.host_name);
  set("telemetry.sdk.name", std::string("edgetrace"));
  set("telemetry.sdk.language", std::string("cpp"));

  auto shared = std::shared_ptr<const Resource>(std::move(resource));
  by_pid_.emplace(pid, shared);
  return shared;
}

}  // namespace edgetrace
