// The `tail_sampling` section of the edgetrace YAML. Key names follow the OpenTelemetry
// Collector's tail_sampling processor so policies can be carried over; edgetrace-only keys
// (max_bytes, early_decision_grace, max_spans_per_trace) are documented in
// docs/tail-sampling.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "span/span.h"

namespace YAML {
class Node;
}

namespace edgetrace {

enum class PolicyType : std::uint8_t {
  AlwaysSample,
  StatusCode,
  Latency,
  Probabilistic,
  RateLimiting,
  StringAttribute,
  NumericAttribute,
  SpanCount,
  And,
  Drop,
  Composite,
};

[[nodiscard]] std::string_view policy_type_name(PolicyType type);

struct RateAllocation {
  std::string policy;
  std::int64_t percent = 0;
};

// One policy. Like the collector's config, every type's settings live side by side; only the
// ones of `type` are meaningful (the parser refuses settings of another type).
struct PolicyConfig {
  std::string name;
  PolicyType type = PolicyType::AlwaysSample;

  // status_code
  std::vector<StatusCode> status_codes;

  // latency (milliseconds; upper 0 = no upper bound)
  std::int64_t threshold_ms = 0;
  std::int64_t upper_threshold_ms = 0;

  // probabilistic
  double sampling_percentage = 0.0;

  // rate_limiting
  std::int64_t spans_per_second = 0;

  // string_attribute and numeric_attribute
  std::string key;
  std::vector<std::string> values;
  bool enabled_regex_matching = false;
  std::size_t cache_max_size = 128;
  bool invert_match = false;
  std::optional<std::int64_t> min_value;
  std::optional<std::int64_t> max_value;

  // span_count (max 0 = no upper bound)
  std::int64_t min_spans = 0;
  std::int64_t max_spans = 0;

  // and / drop / composite sub-policies
  std::vector<PolicyConfig> sub_policies;

  // composite
  std::int64_t max_total_spans_per_second = 0;
  std::vector<std::string> policy_order;
  std::vector<RateAllocation> rate_allocation;
};

struct DecisionCacheConfig {
  std::size_t sampled_cache_size = 100'000;
  std::size_t non_sampled_cache_size = 100'000;
};

struct TailSamplingConfig {
  std::chrono::nanoseconds decision_wait = std::chrono::seconds(10);
  std::size_t num_traces = 50'000;
  std::size_t max_bytes = std::size_t{128} << 20;
  std::chrono::nanoseconds early_decision_grace = std::chrono::milliseconds(200);
  // A trace reaching this many spans (or max_bytes / 8 bytes) is decided at once so one huge
  // trace cannot crowd the others out of the buffer.
  std::size_t max_spans_per_trace = 5'000;
  std::size_t expected_new_traces_per_sec = 0;
  DecisionCacheConfig decision_cache;
  std::vector<PolicyConfig> policies = {};
};

// The production pattern applied when tail sampling is enabled without policies: every trace
// with an error, every trace slower than 200 ms, and 5 % of the rest.
[[nodiscard]] std::vector<PolicyConfig> default_tail_sampling_policies();

// A config with all defaults, including default_tail_sampling_policies().
[[nodiscard]] TailSamplingConfig default_tail_sampling_config();

// Parses the `tail_sampling` mapping (an undefined or null node yields the defaults). Throws
// edgetrace::ConfigError naming the key path, e.g.
// "tail_sampling.policies[1].latency.threshold_ms: expected a non-negative integer".
[[nodiscard]] TailSamplingConfig parse_tail_sampling_config(const YAML::Node& tail_sampling_section);

// "10s", "500ms", "1m30s" (Go duration syntax, as the collector accepts). Throws
// std::invalid_argument on anything else.
[[nodiscard]] std::chrono::nanoseconds parse_duration(std::string_view text);

}  // namespace edgetrace
