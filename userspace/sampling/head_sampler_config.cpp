#include "sampling/head_sampler_config.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <utility>

#include "config/config_error.h"
#include "edgetrace.h"
#include "sampling/consistent_probability.h"

namespace edgetrace {
namespace {

constexpr std::array<std::pair<std::string_view, std::uint32_t>, 6> samplers{{
    {"always_on", ET_SAMPLER_ALWAYS_ON},
    {"always_off", ET_SAMPLER_ALWAYS_OFF},
    {"traceidratio", ET_SAMPLER_TRACEIDRATIO},
    {"parentbased_always_on", ET_SAMPLER_PARENTBASED_ALWAYS_ON},
    {"parentbased_always_off", ET_SAMPLER_PARENTBASED_ALWAYS_OFF},
    {"parentbased_traceidratio", ET_SAMPLER_PARENTBASED_TRACEIDRATIO},
}};

std::uint32_t sampler_mode(const std::string& name, const std::string& where) {
  for (const auto& [known, mode] : samplers)
    if (known == name) return mode;
  throw ConfigError(fmt::format("{}: unknown sampler '{}' (expected always_on, always_off, traceidratio, "
                                "parentbased_always_on, parentbased_always_off or parentbased_traceidratio)",
                                where, name));
}

std::optional<double> parse_probability(std::string_view text) {
  double value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !(value >= 0.0 && value <= 1.0)) return std::nullopt;
  return value;
}

}  // namespace

HeadSamplerConfig parse_head_sampler_config(const YAML::Node& section, const EnvironmentLookup& getenv) {
  HeadSamplerConfig config;
  if (section && section.IsMap()) {
    for (const auto& entry : section) {
      const auto key = entry.first.as<std::string>();
      if (key != "type" && key != "ratio") throw ConfigError("sampler." + key + ": unknown key (known: ratio, type)");
    }
    if (section["type"]) {
      config.name = section["type"].as<std::string>();
      config.mode = sampler_mode(config.name, "sampler.type");
    }
    if (section["ratio"]) {
      const auto ratio = parse_probability(section["ratio"].as<std::string>());
      if (!ratio) throw ConfigError("sampler.ratio: expected a probability from 0 to 1");
      config.ratio = *ratio;
    }
  }
  if (const auto name = getenv("OTEL_TRACES_SAMPLER"); name && !name->empty()) {
    config.name = *name;
    config.mode = sampler_mode(config.name, "OTEL_TRACES_SAMPLER");
  }
  if (const auto arg = getenv("OTEL_TRACES_SAMPLER_ARG"); arg && !arg->empty()) {
    // The specification asks for a warning and the default when the argument is invalid.
    if (const auto ratio = parse_probability(*arg))
      config.ratio = *ratio;
    else
      spdlog::warn("OTEL_TRACES_SAMPLER_ARG={} is not a probability from 0 to 1; using 1.0", *arg);
  }
  const bool uses_ratio = config.mode == ET_SAMPLER_TRACEIDRATIO || config.mode == ET_SAMPLER_PARENTBASED_TRACEIDRATIO;
  config.rejection_threshold = uses_ratio ? rejection_threshold_for_probability(config.ratio) : 0;
  return config;
}

}  // namespace edgetrace
