#pragma once

#include <stdexcept>
#include <string>

namespace edgetrace {

// A configuration problem. The message names the offending key path (e.g.
// "tail_sampling.policies[2].latency.threshold_ms") and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace edgetrace
