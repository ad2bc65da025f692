#include "sampling/policy.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <memory>
#include <random>

#include "sampling/consistent_probability.h"
#include "sampling_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using testing::make_span;
using testing::random_trace_id;

constexpr auto S = SamplingDecision::Sampled;
constexpr auto N = SamplingDecision::NotSampled;
constexpr auto D = SamplingDecision::Dropped;

// Builds one policy from its YAML, through the real parser.
std::unique_ptr<SamplingPolicy> policy_from(const std::string& yaml) {
  const auto config = parse_tail_sampling_config(YAML::Load("policies: [" + yaml + "]"));
  return make_sampling_policy(config.policies.at(0));
}

class PolicyTest : public ::testing::Test {
 protected:
  SamplingDecision run(SamplingPolicy& policy, const std::vector<Span>& spans) {
    return policy.evaluate(spans.empty() ? trace_ : spans.front().trace_id, spans, now_);
  }
  std::vector<Span> trace_of(std::initializer_list<Span> spans) { return spans; }
  Span span(std::uint64_t id, std::uint64_t parent = 0, StatusCode status = StatusCode::Unset,
            std::uint64_t start_ms = 0, std::uint64_t end_ms = 1) {
    return make_span(trace_, id, parent, parent == 0 ? SpanKind::Server : SpanKind::Client, start_ms, end_ms, status);
  }
  static Span with_attribute(Span span, std::string key, AttributeValue value) {
    span.attributes.push_back(Attribute{std::move(key), std::move(value)});
    return span;
  }

  TraceId trace_ = testing::trace_id_with_randomness(0x42);
  std::chrono::steady_clock::time_point now_{std::chrono::hours(10)};
};

TEST_F(PolicyTest, AlwaysSample) {
  auto policy = policy_from("{name: p, type: always_sample}");
  EXPECT_EQ(run(*policy, {span(1)}), S);
}

TEST_F(PolicyTest, StatusCodeMatchesAnySpan) {
  auto errors = policy_from("{name: p, type: status_code, status_code: {status_codes: [ERROR]}}");
  EXPECT_EQ(run(*errors, {span(1), span(2, 1, StatusCode::Error)}), S);
  EXPECT_EQ(run(*errors, {span(1, 0, StatusCode::Ok), span(2, 1)}), N);
  auto ok_or_unset = policy_from("{name: p, type: status_code, status_code: {status_codes: [OK, UNSET]}}");
  EXPECT_EQ(run(*ok_or_unset, {span(1, 0, StatusCode::Error)}), N);
  EXPECT_EQ(run(*ok_or_unset, {span(1, 0, StatusCode::Error), span(2, 1, StatusCode::Ok)}), S);
}

TEST_F(PolicyTest, LatencyUsesEarliestStartToLatestEnd) {
  auto slow = policy_from("{name: p, type: latency, latency: {threshold_ms: 200}}");
  // No single span lasts 200 ms, but the trace spans 0..250 ms.
  EXPECT_EQ(run(*slow, {span(1, 0, StatusCode::Unset, 0, 50), span(2, 1, StatusCode::Unset, 150, 250)}), S);
  EXPECT_EQ(run(*slow, {span(1, 0, StatusCode::Unset, 0, 199)}), N);
  EXPECT_EQ(run(*slow, {span(1, 0, StatusCode::Unset, 0, 200)}), S);

  auto band = policy_from("{name: p, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 300}}");
  EXPECT_EQ(run(*band, {span(1, 0, StatusCode::Unset, 0, 100)}), N);  // lower bound exclusive
  EXPECT_EQ(run(*band, {span(1, 0, StatusCode::Unset, 0, 101)}), S);
  EXPECT_EQ(run(*band, {span(1, 0, StatusCode::Unset, 0, 300)}), S);  // upper bound inclusive
  EXPECT_EQ(run(*band, {span(1, 0, StatusCode::Unset, 0, 301)}), N);
}

TEST_F(PolicyTest, ProbabilisticAgreesWithTheConsistentHeadSampler) {
  auto ten_percent = policy_from("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}");
  const auto threshold = rejection_threshold_for_probability(0.10);
  std::mt19937_64 rng(7);
  int sampled = 0;
  for (int i = 0; i < 20'000; ++i) {
    const auto id = random_trace_id(rng);
    auto one = make_span(id, 1, 0, SpanKind::Server);
    const auto decision = ten_percent->evaluate(id, std::span<const Span>(&one, 1), now_);
    ASSERT_EQ(decision == S, consistent_sampled(id, threshold));
    sampled += decision == S ? 1 : 0;
  }
  EXPECT_NEAR(sampled, 2'000, 5 * std::sqrt(20'000 * 0.1 * 0.9));

  auto none = policy_from("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}");
  auto all = policy_from("{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}");
  const auto top = testing::trace_id_with_randomness(kRandomnessSpace - 1);
  const auto bottom = testing::trace_id_with_randomness(0);
  EXPECT_EQ(none->evaluate(top, {}, now_), N);
  EXPECT_EQ(all->evaluate(bottom, {}, now_), S);
}

TEST_F(PolicyTest, RateLimitingIsATokenBucketOfSpans) {
  auto limit = policy_from("{name: p, type: rate_limiting, rate_limiting: {spans_per_second: 10}}");
  std::vector<Span> ten;
  for (std::uint64_t i = 1; i <= 10; ++i) ten.push_back(span(i, i == 1 ? 0 : 1));
  // Burst capacity is two seconds' worth.
  EXPECT_EQ(run(*limit, ten), S);
  EXPECT_EQ(run(*limit, ten), S);
  EXPECT_EQ(run(*limit, ten), N);
  now_ += 500ms;  // five spans back: not enough for ten
  EXPECT_EQ(run(*limit, ten), N);
  now_ += 500ms;
  EXPECT_EQ(run(*limit, ten), S);
  EXPECT_EQ(run(*limit, {span(1)}), N);
  now_ += 10s;  // refill stops at the burst capacity
  EXPECT_EQ(run(*limit, ten), S);
  EXPECT_EQ(run(*limit, ten), S);
  EXPECT_EQ(run(*limit, ten), N);
}

TEST_F(PolicyTest, StringAttributeExactOnSpansAndResources) {
  auto policy = policy_from("{name: p, type: string_attribute, string_attribute: {key: http.route, values: [/a, /b]}}");
  EXPECT_EQ(run(*policy, {with_attribute(span(1), "http.route", std::string("/b"))}), S);
  EXPECT_EQ(run(*policy, {with_attribute(span(1), "http.route", std::string("/c"))}), N);
  EXPECT_EQ(run(*policy, {with_attribute(span(1), "http.route", std::int64_t{7})}), N);
  EXPECT_EQ(run(*policy, {span(1)}), N);

  auto service = policy_from("{name: p, type: string_attribute, string_attribute: {key: service.name, values: [api]}}");
  auto resource = std::make_shared<Resource>();
  resource->attributes.push_back(Attribute{"service.name", std::string("api")});
  auto in_api = span(1);
  in_api.resource = resource;
  EXPECT_EQ(run(*service, {in_api}), S);
}

TEST_F(PolicyTest, StringAttributeRegexAndInvert) {
  auto regex = policy_from(
      "{name: p, type: string_attribute, string_attribute: {key: url.path, values: ['^/health', 'metr.cs$'], "
      "enabled_regex_matching: true, cache_max_size: 2}}");
  // More distinct values than the cache holds: answers must not depend on the cache.
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(run(*regex, {with_attribute(span(1), "url.path", std::string("/healthz"))}), S);
    EXPECT_EQ(run(*regex, {with_attribute(span(1), "url.path", std::string("/x/metrics"))}), S);
    EXPECT_EQ(run(*regex, {with_attribute(span(1), "url.path", std::string("/api/health"))}), N);
    EXPECT_EQ(run(*regex, {with_attribute(span(1), "url.path", std::string("/users"))}), N);
  }

  auto invert = policy_from(
      "{name: p, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}");
  EXPECT_EQ(run(*invert, {with_attribute(span(1), "env", std::string("prod"))}), S);
  EXPECT_EQ(run(*invert, {span(1)}), S);  // key absent: nothing matched, so sampled
  EXPECT_EQ(run(*invert, {with_attribute(span(1), "env", std::string("prod")),
                          with_attribute(span(2, 1), "env", std::string("test"))}),
            N);
}

TEST_F(PolicyTest, NumericAttributeRanges) {
  auto range = policy_from(
      "{name: p, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}");
  EXPECT_EQ(run(*range, {with_attribute(span(1), "http.status_code", std::int64_t{503})}), S);
  EXPECT_EQ(run(*range, {with_attribute(span(1), "http.status_code", std::int64_t{404})}), N);
  EXPECT_EQ(run(*range, {with_attribute(span(1), "http.status_code", 550.5)}), S);
  EXPECT_EQ(run(*range, {with_attribute(span(1), "http.status_code", std::string("503"))}), N);

  auto at_least = policy_from("{name: p, type: numeric_attribute, numeric_attribute: {key: n, min_value: 10}}");
  EXPECT_EQ(run(*at_least, {with_attribute(span(1), "n", std::int64_t{1'000'000})}), S);
  EXPECT_EQ(run(*at_least, {with_attribute(span(1), "n", std::int64_t{9})}), N);
  auto at_most = policy_from("{name: p, type: numeric_attribute, numeric_attribute: {key: n, max_value: -1}}");
  EXPECT_EQ(run(*at_most, {with_attribute(span(1), "n", std::int64_t{-5})}), S);
  EXPECT_EQ(run(*at_most, {with_attribute(span(1), "n", std::int64_t{0})}), N);

  auto invert = policy_from(
      "{name: p, type: numeric_attribute, numeric_attribute: {key: n, min_value: 1, max_value: 2, invert_match: true}}");
  EXPECT_EQ(run(*invert, {with_attribute(span(1), "n", std::int64_t{3})}), S);
  EXPECT_EQ(run(*invert, {with_attribute(span(1), "n", std::int64_t{2})}), N);
}

TEST_F(PolicyTest, SpanCountIsInclusive) {
  auto policy = policy_from("{name: p, type: span_count, span_count: {min_spans: 2, max_spans: 3}}");
  EXPECT_EQ(run(*policy, {span(1)}), N);
  EXPECT_EQ(run(*policy, {span(1), span(2, 1)}), S);
  EXPECT_EQ(run(*policy, {span(1), span(2, 1), span(3, 1)}), S);
  EXPECT_EQ(run(*policy, {span(1), span(2, 1), span(3, 1), span(4, 1)}), N);
  auto unbounded = policy_from("{name: p, type: span_count, span_count: {min_spans: 2}}");
  EXPECT_EQ(run(*unbounded, {span(1), span(2, 1), span(3, 1), span(4, 1)}), S);
}

TEST_F(PolicyTest, AndNeedsEverySubPolicyAndShortCircuits) {
  auto policy = policy_from(R"({name: p, type: and, and: {and_sub_policy: [
      {name: err, type: status_code, status_code: {status_codes: [ERROR]}},
      {name: limit, type: rate_limiting, rate_limiting: {spans_per_second: 1}}]}})");
  // Non-error traces fail the first sub-policy and must not spend the limiter's two tokens.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run(*policy, {span(1)}), N);
  EXPECT_EQ(run(*policy, {span(1, 0, StatusCode::Error)}), S);
  EXPECT_EQ(run(*policy, {span(1, 0, StatusCode::Error)}), S);
  EXPECT_EQ(run(*policy, {span(1, 0, StatusCode::Error)}), N);  // limiter exhausted
}

TEST_F(PolicyTest, DropVetoesWhenEverySubPolicyMatches) {
  auto policy = policy_from(R"({name: p, type: drop, drop: {drop_sub_policy: [
      {name: health, type: string_attribute, string_attribute: {key: url.path, values: [/health]}},
      {name: ok, type: status_code, status_code: {status_codes: [OK, UNSET]}}]}})");
  EXPECT_EQ(run(*policy, {with_attribute(span(1), "url.path", std::string("/health"))}), D);
  EXPECT_EQ(run(*policy, {with_attribute(span(1, 0, StatusCode::Error), "url.path", std::string("/health"))}), N);
  EXPECT_EQ(run(*policy, {with_attribute(span(1), "url.path", std::string("/orders"))}), N);
}

TEST_F(PolicyTest, CompositeAllocatesSpansPerSecondInPolicyOrder) {
  auto policy = policy_from(R"({name: c, type: composite, composite: {
      max_total_spans_per_second: 10,
      policy_order: [errors, everything],
      composite_sub_policy: [
        {name: everything, type: always_sample},
        {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}],
      rate_allocation: [{policy: errors, percent: 60}, {policy: everything, percent: 40}]}})");
  std::vector<Span> two_ok = {span(1), span(2, 1)};
  std::vector<Span> two_errors = {span(1, 0, StatusCode::Error), span(2, 1)};
  // errors comes first by policy_order and owns 6 spans/s; everything owns 4.
  EXPECT_EQ(run(*policy, two_errors), S);
  EXPECT_EQ(run(*policy, two_errors), S);
  EXPECT_EQ(run(*policy, two_errors), S);
  EXPECT_EQ(run(*policy, two_errors), N);  // errors budget spent; errors decided, everything not asked
  EXPECT_EQ(run(*policy, two_ok), S);
  EXPECT_EQ(run(*policy, two_ok), S);
  EXPECT_EQ(run(*policy, two_ok), N);
  now_ += 1s;  // a new second resets every budget
  EXPECT_EQ(run(*policy, two_ok), S);
  EXPECT_EQ(run(*policy, two_errors), S);
}

TEST_F(PolicyTest, CompositeUnallocatedSubPoliciesShareTheRemainder) {
  auto policy = policy_from(R"({name: c, type: composite, composite: {
      max_total_spans_per_second: 10,
      composite_sub_policy: [
        {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
        {name: rest, type: always_sample}],
      rate_allocation: [{policy: errors, percent: 80}]}})");
  std::vector<Span> two_ok = {span(1), span(2, 1)};
  EXPECT_EQ(run(*policy, two_ok), S);  // rest has 20 % of 10 = 2 spans
  EXPECT_EQ(run(*policy, two_ok), N);
}

}  // namespace
}  // namespace edgetrace
