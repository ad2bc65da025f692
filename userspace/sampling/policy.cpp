#include "sampling/policy.h"

#include <algorithm>
#include <limits>
#include <regex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sampling/consistent_probability.h"

namespace edgetrace {

std::string_view sampling_decision_name(SamplingDecision decision) {
  switch (decision) {
    case SamplingDecision::NotSampled: return "not_sampled";
    case SamplingDecision::Sampled: return "sampled";
    case SamplingDecision::Dropped: return "dropped";
  }
  return "unknown";
}

namespace {

SamplingDecision sampled_if(bool condition) {
  return condition ? SamplingDecision::Sampled : SamplingDecision::NotSampled;
}

// True when any span attribute, or any attribute of a span's resource, satisfies `matches`.
// Resources are shared between the spans of a process, so each is looked at once in a row.
template <typename Matches>
bool any_attribute(std::span<const Span> spans, const std::string& key, Matches&& matches) {
  const Resource* last_resource = nullptr;
  for (const auto& span : spans) {
    for (const auto& attribute : span.attributes)
      if (attribute.key == key && matches(attribute.value)) return true;
    const Resource* resource = span.resource.get();
    if (resource != nullptr && resource != last_resource) {
      last_resource = resource;
      for (const auto& attribute : resource->attributes)
        if (attribute.key == key && matches(attribute.value)) return true;
    }
  }
  return false;
}

class AlwaysSamplePolicy final : public SamplingPolicy {
 public:
  SamplingDecision evaluate(const TraceId&, std::span<const Span>, TimePoint) override {
    return SamplingDecision::Sampled;
  }
};

class StatusCodePolicy final : public SamplingPolicy {
 public:
  explicit StatusCodePolicy(const std::vector<StatusCode>& codes) {
    for (const auto code : codes) mask_ |= 1u << static_cast<unsigned>(code);
  }
  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint) override {
    return sampled_if(std::any_of(spans.begin(), spans.end(), [this](const Span& span) {
      return (mask_ & (1u << static_cast<unsigned>(span.status))) != 0;
    }));
  }

 private:
  unsigned mask_ = 0;
};

// Duration of the whole trace: earliest start to latest end, whatever happened in between.
class LatencyPolicy final : public SamplingPolicy {
 public:
  LatencyPolicy(std::int64_t threshold_ms, std::int64_t upper_threshold_ms)
      : threshold_ms_(threshold_ms), upper_threshold_ms_(upper_threshold_ms) {}
  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint) override {
    if (spans.empty()) return SamplingDecision::NotSampled;
    std::uint64_t earliest_start = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t latest_end = 0;
    for (const auto& span : spans) {
      earliest_start = std::min(earliest_start, span.start_unix_nanos);
      latest_end = std::max(latest_end, std::max(span.end_unix_nanos, span.start_unix_nanos));
    }
    // Whole milliseconds, truncated, as the collector compares them.
    const auto duration_ms = static_cast<std::int64_t>((latest_end - earliest_start) / 1'000'000);
    if (upper_threshold_ms_ == 0) return sampled_if(duration_ms >= threshold_ms_);
    return sampled_if(threshold_ms_ < duration_ms && duration_ms <= upper_threshold_ms_);
  }

 private:
  std::int64_t threshold_ms_;
  std::int64_t upper_threshold_ms_;
};

class ProbabilisticPolicy final : public SamplingPolicy {
 public:
  explicit ProbabilisticPolicy(double percentage)
      : threshold_(rejection_threshold_for_probability(percentage / 100.0)) {}
  SamplingDecision evaluate(const TraceId& trace_id, std::span<const Span>, TimePoint) override {
    return sampled_if(consistent_sampled(trace_id, threshold_));
  }

 private:
  std::uint64_t threshold_;
};

// Token bucket of spans: refills at spans_per_second up to twice that (the collector's burst
// capacity); a trace passes when the bucket holds all its spans. Starts full.
class RateLimitingPolicy final : public SamplingPolicy {
 public:
  explicit RateLimitingPolicy(std::int64_t spans_per_second)
      : rate_(static_cast<double>(spans_per_second)), capacity_(2.0 * rate_), tokens_(capacity_) {}
  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint now) override {
    if (last_refill_) {
      const std::chrono::duration<double> elapsed = now - *last_refill_;
      if (elapsed.count() > 0) tokens_ = std::min(capacity_, tokens_ + elapsed.count() * rate_);
    }
    last_refill_ = now;
    const auto needed = static_cast<double>(spans.size());
    if (needed > tokens_) return SamplingDecision::NotSampled;
    tokens_ -= needed;
    return SamplingDecision::Sampled;
  }

 private:
  double rate_;
  double capacity_;
  double tokens_;
  std::optional<TimePoint> last_refill_;
};

class StringAttributePolicy final : public SamplingPolicy {
 public:
  explicit StringAttributePolicy(const PolicyConfig& config)
      : key_(config.key), invert_(config.invert_match), cache_capacity_(config.cache_max_size) {
    if (config.enabled_regex_matching) {
      for (const auto& pattern : config.values) patterns_.emplace_back(pattern, std::regex::ECMAScript);
    } else {
      for (const auto& value : config.values)
        if (!value.empty()) exact_.insert(value);
    }
  }

  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint) override {
    const bool found = any_attribute(spans, key_, [this](const AttributeValue& value) {
      const auto* text = std::get_if<std::string>(&value);
      return text != nullptr && !text->empty() && matches(*text);
    });
    return sampled_if(found != invert_);
  }

 private:
  bool matches(const std::string& text) {
    if (patterns_.empty()) return exact_.contains(text);
    if (const auto cached = cache_.find(text); cached != cache_.end()) return cached->second;
    const bool matched = std::any_of(patterns_.begin(), patterns_.end(),
                                     [&](const std::regex& pattern) { return std::regex_search(text, pattern); });
    // Bounded: when full, forget an arbitrary entry (regex results are cheap to recompute).
    if (cache_.size() >= cache_capacity_) cache_.erase(cache_.begin());
    cache_.emplace(text, matched);
    return matched;
  }

  std::string key_;
  bool invert_;
  std::unordered_set<std::string> exact_;
  std::vector<std::regex> patterns_;
  std::size_t cache_capacity_;
  std::unordered_map<std::string, bool> cache_;
};

class NumericAttributePolicy final : public SamplingPolicy {
 public:
  explicit NumericAttributePolicy(const PolicyConfig& config)
      : key_(config.key),
        min_(config.min_value.value_or(std::numeric_limits<std::int64_t>::min())),
        max_(config.max_value.value_or(std::numeric_limits<std::int64_t>::max())),
        invert_(config.invert_match) {}

  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint) override {
    const bool found = any_attribute(spans, key_, [this](const AttributeValue& value) {
      if (const auto* integer = std::get_if<std::int64_t>(&value)) return *integer >= min_ && *integer <= max_;
      if (const auto* real = std::get_if<double>(&value))
        return *real >= static_cast<double>(min_) && *real <= static_cast<double>(max_);
      return false;
    });
    return sampled_if(found != invert_);
  }

 private:
  std::string key_;
  std::int64_t min_;
  std::int64_t max_;
  bool invert_;
};

class SpanCountPolicy final : public SamplingPolicy {
 public:
  SpanCountPolicy(std::int64_t min_spans, std::int64_t max_spans) : min_(min_spans), max_(max_spans) {}
  SamplingDecision evaluate(const TraceId&, std::span<const Span> spans, TimePoint) override {
    const auto count = static_cast<std::int64_t>(spans.size());
    return sampled_if(count >= min_ && (max_ == 0 || count <= max_));
  }

 private:
  std::int64_t min_;
  std::int64_t max_;
};

std::vector<std::unique_ptr<SamplingPolicy>> make_all(const std::vector<PolicyConfig>& configs) {
  std::vector<std::unique_ptr<SamplingPolicy>> policies;
  policies.reserve(configs.size());
  for (const auto& config : configs) policies.push_back(make_sampling_policy(config));
  return policies;
}

// Sampled when every sub-policy samples; stops at the first that does not, so a rate limit
// placed last only spends budget on traces the filters before it selected.
class AndPolicy final : public SamplingPolicy {
 public:
  explicit AndPolicy(const std::vector<PolicyConfig>& subs) : subs_(make_all(subs)) {}
  SamplingDecision evaluate(const TraceId& trace_id, std::span<const Span> spans, TimePoint now) override {
    for (const auto& sub : subs_)
      if (sub->evaluate(trace_id, spans, now) != SamplingDecision::Sampled) return SamplingDecision::NotSampled;
    return SamplingDecision::Sampled;
  }

 private:
  std::vector<std::unique_ptr<SamplingPolicy>> subs_;
};

// Dropped (a veto over every other policy) when every sub-policy matches.
class DropPolicy final : public SamplingPolicy {
 public:
  explicit DropPolicy(const std::vector<PolicyConfig>& subs) : subs_(make_all(subs)) {}
  SamplingDecision evaluate(const TraceId& trace_id, std::span<const Span> spans, TimePoint now) override {
    for (const auto& sub : subs_)
      if (sub->evaluate(trace_id, spans, now) != SamplingDecision::Sampled) return SamplingDecision::NotSampled;
    return SamplingDecision::Dropped;
  }

 private:
  std::vector<std::unique_ptr<SamplingPolicy>> subs_;
};

// Sub-policies in policy_order (then the unlisted ones in config order), each with a budget of
// spans per wall-clock second. The first sub-policy that samples decides: sampled if its
// budget and the total budget still hold the trace's spans, otherwise not sampled.
class CompositePolicy final : public SamplingPolicy {
 public:
  explicit CompositePolicy(const PolicyConfig& config) : max_total_(config.max_total_spans_per_second) {
    std::vector<const PolicyConfig*> ordered;
    for (const auto& name : config.policy_order)
      for (const auto& sub : config.sub_policies)
        if (sub.name == name) ordered.push_back(&sub);
    for (const auto& sub : config.sub_policies)
      if (std::find(ordered.begin(), ordered.end(), &sub) == ordered.end()) ordered.push_back(&sub);

    std::int64_t allocated_percent = 0;
    std::size_t unallocated = 0;
    for (const auto* sub : ordered) {
      const auto allocation = find_allocation(config, sub->name);
      if (allocation) allocated_percent += *allocation;
      else ++unallocated;
    }
    // Sub-policies without a rate_allocation share what the listed ones leave over.
    const double leftover_share =
        unallocated == 0 ? 0.0
                         : static_cast<double>(max_total_) * static_cast<double>(100 - allocated_percent) / 100.0 /
                               static_cast<double>(unallocated);
    for (const auto* sub : ordered) {
      const auto allocation = find_allocation(config, sub->name);
      const double budget = allocation ? static_cast<double>(max_total_) * static_cast<double>(*allocation) / 100.0
                                       : leftover_share;
      subs_.push_back(Sub{make_sampling_policy(*sub), static_cast<std::int64_t>(budget), 0});
    }
  }

  SamplingDecision evaluate(const TraceId& trace_id, std::span<const Span> spans, TimePoint now) override {
    const auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (second != current_second_) {
      current_second_ = second;
      total_used_ = 0;
      for (auto& sub : subs_) sub.used = 0;
    }
    const auto count = static_cast<std::int64_t>(spans.size());
    for (auto& sub : subs_) {
      if (sub.policy->evaluate(trace_id, spans, now) != SamplingDecision::Sampled) continue;
      if (sub.used + count <= sub.budget && total_used_ + count <= max_total_) {
        sub.used += count;
        total_used_ += count;
        return SamplingDecision::Sampled;
      }
      return SamplingDecision::NotSampled;
    }
    return SamplingDecision::NotSampled;
  }

 private:
  struct Sub {
    std::unique_ptr<SamplingPolicy> policy;
    std::int64_t budget;
    std::int64_t used;
  };

  static std::optional<std::int64_t> find_allocation(const PolicyConfig& config, const std::string& name) {
    for (const auto& allocation : config.rate_allocation)
      if (allocation.policy == name) return allocation.percent;
    return std::nullopt;
  }

  std::int64_t max_total_;
  std::vector<Sub> subs_;
  std::int64_t current_second_ = std::numeric_limits<std::int64_t>::min();
  std::int64_t total_used_ = 0;
};

}  // namespace

std::unique_ptr<SamplingPolicy> make_sampling_policy(const PolicyConfig& config) {
  switch (config.type) {
    case PolicyType::AlwaysSample: return std::make_unique<AlwaysSamplePolicy>();
    case PolicyType::StatusCode: return std::make_unique<StatusCodePolicy>(config.status_codes);
    case PolicyType::Latency: return std::make_unique<LatencyPolicy>(config.threshold_ms, config.upper_threshold_ms);
    case PolicyType::Probabilistic: return std::make_unique<ProbabilisticPolicy>(config.sampling_percentage);
    case PolicyType::RateLimiting: return std::make_unique<RateLimitingPolicy>(config.spans_per_second);
    case PolicyType::StringAttribute: return std::make_unique<StringAttributePolicy>(config);
    case PolicyType::NumericAttribute: return std::make_unique<NumericAttributePolicy>(config);
    case PolicyType::SpanCount: return std::make_unique<SpanCountPolicy>(config.min_spans, config.max_spans);
    case PolicyType::And: return std::make_unique<AndPolicy>(config.sub_policies);
    case PolicyType::Drop: return std::make_unique<DropPolicy>(config.sub_policies);
    case PolicyType::Composite: return std::make_unique<CompositePolicy>(config);
  }
  throw std::invalid_argument("make_sampling_policy: unknown policy type");
}

}  // namespace edgetrace
