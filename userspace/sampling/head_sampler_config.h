// The kernel head sampler's configuration: the `sampler:` YAML section and the standard
// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG variables (which override YAML).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace edgetrace {

struct HeadSamplerConfig {
  std::uint32_t mode = 3;  // enum et_sampler, default parentbased_always_on
  std::string name = "parentbased_always_on";
  double ratio = 1.0;                      // for the traceidratio samplers
  std::uint64_t rejection_threshold = 0;   // what the kernel compares the trace id against
};

using EnvironmentLookup = std::function<std::optional<std::string>(std::string_view)>;

// Throws ConfigError naming the key or variable.
HeadSamplerConfig parse_head_sampler_config(const YAML::Node& sampler_section, const EnvironmentLookup& getenv);

}  // namespace edgetrace
