// Policy evaluators: one per configured policy, asked once per trace when the trace is
// decided. They run on the sampler's consumer thread, so stateful ones (rate limits, regex
// caches) need no locks.
#pragma once

#include <chrono>
#include <memory>
#include <span>

#include "sampling/tail_sampling_config.h"
#include "span/span.h"

namespace edgetrace {

enum class SamplingDecision : std::uint8_t { NotSampled, Sampled, Dropped };

[[nodiscard]] std::string_view sampling_decision_name(SamplingDecision decision);

class SamplingPolicy {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~SamplingPolicy() = default;
  // `now` comes from the sampler's (injectable) clock; only rate-based policies use it.
  virtual SamplingDecision evaluate(const TraceId& trace_id, std::span<const Span> spans, TimePoint now) = 0;
};

// Builds the evaluator for a parsed policy (sub-policies included). The config is assumed to
// have come through parse_tail_sampling_config or default_tail_sampling_policies.
[[nodiscard]] std::unique_ptr<SamplingPolicy> make_sampling_policy(const PolicyConfig& config);

}  // namespace edgetrace
