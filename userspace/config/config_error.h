#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace edgetrace {

// A configuration problem. The message names the offending key path (e.g.
// "tail_sampling.policies[2].latency.threshold_ms") and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// parse(text), its ConfigError prefixed with `name` (a config key or a command-line flag).
template <typename Parse>
auto parse_named(std::string_view name, const std::string& text, Parse parse) {
  try {
    return parse(text);
  } catch (const ConfigError& error) {
    throw ConfigError(std::string(name) + ": " + error.what());
  }
}

}  // namespace edgetrace
