#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "config/config_error.h"
#include "sampling/tail_sampling_config.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;

TailSamplingConfig parse(const std::string& yaml) { return parse_tail_sampling_config(YAML::Load(yaml)); }

// The full message of the ConfigError the YAML raises ("" when it parses).
std::string error_of(const std::string& yaml) {
  try {
    (void)parse(yaml);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(TailSamplingConfig, MissingSectionGivesDefaultsAndProductionPolicies) {
  const auto config = parse_tail_sampling_config(YAML::Node());
  EXPECT_EQ(config.decision_wait, 10s);
  EXPECT_EQ(config.early_decision_grace, 200ms);
  ASSERT_EQ(config.policies.size(), 3u);
  EXPECT_EQ(config.policies[0].type, PolicyType::StatusCode);
  EXPECT_EQ(config.policies[0].status_codes, std::vector<StatusCode>{StatusCode::Error});
  EXPECT_EQ(config.policies[1].type, PolicyType::Latency);
  EXPECT_EQ(config.policies[1].threshold_ms, 200);
  EXPECT_EQ(config.policies[2].type, PolicyType::Probabilistic);
  EXPECT_DOUBLE_EQ(config.policies[2].sampling_percentage, 5.0);
}

TEST(TailSamplingConfig, SectionWithoutPoliciesGetsDefaultPolicies) {
  const auto config = parse("enabled: true\ndecision_wait: 5s\n");
  EXPECT_EQ(config.decision_wait, 5s);
  ASSERT_EQ(config.policies.size(), 3u);
  EXPECT_EQ(config.policies[1].name, "slow");
}

TEST(TailSamplingConfig, ParsesTopLevelKeys) {
  const auto config = parse(R"(
decision_wait: 1m30s
num_traces: 100_000
max_bytes: 64MiB
early_decision_grace: 250ms
max_spans_per_trace: 777
expected_new_traces_per_sec: 10
decision_cache: {sampled_cache_size: 1000, non_sampled_cache_size: 2000}
policies: [{name: all, type: always_sample}]
)");
  EXPECT_EQ(config.decision_wait, 90s);
  EXPECT_EQ(config.num_traces, 100'000u);
  EXPECT_EQ(config.max_bytes, std::size_t{64} << 20);
  EXPECT_EQ(config.early_decision_grace, 250ms);
  EXPECT_EQ(config.max_spans_per_trace, 777u);
  EXPECT_EQ(config.decision_cache.sampled_cache_size, 1000u);
  EXPECT_EQ(config.decision_cache.non_sampled_cache_size, 2000u);
  ASSERT_EQ(config.policies.size(), 1u);
  EXPECT_EQ(config.policies[0].type, PolicyType::AlwaysSample);
}

// The collector README's example, minus the policy types edgetrace does not implement.
TEST(TailSamplingConfig, ParsesTheCollectorExamplePolicies) {
  const auto config = parse(R"(
decision_wait: 10s
num_traces: 100
expected_new_traces_per_sec: 10
decision_cache:
  sampled_cache_size: 100_000
  non_sampled_cache_size: 100_000
policies:
  [
    {name: test-policy-1, type: always_sample},
    {name: test-policy-2, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000}},
    {name: test-policy-3, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50, max_value: 100}},
    {name: test-policy-4, type: probabilistic, probabilistic: {sampling_percentage: 10}},
    {name: test-policy-5, type: status_code, status_code: {status_codes: [ERROR, UNSET]}},
    {name: test-policy-6, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]}},
    {name: test-policy-7, type: string_attribute,
     string_attribute: {key: key2, values: [value1, val*], enabled_regex_matching: true, cache_max_size: 10}},
    {name: test-policy-8, type: rate_limiting, rate_limiting: {spans_per_second: 35}},
    {name: test-policy-10, type: span_count, span_count: {min_spans: 2, max_spans: 20}},
    {name: and-policy-1, type: and, and: {and_sub_policy: [
        {name: test-and-policy-1, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50, max_value: 100}},
        {name: test-and-policy-2, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]}}]}},
    {name: drop-policy-1, type: drop, drop: {drop_sub_policy: [
        {name: test-drop-policy-1, type: string_attribute,
         string_attribute: {key: url.path, values: [\/health, \/metrics], enabled_regex_matching: true}}]}},
    {name: composite-policy-1, type: composite, composite: {
        max_total_spans_per_second: 1000,
        policy_order: [test-composite-policy-1, test-composite-policy-2, test-composite-policy-3],
        composite_sub_policy: [
          {name: test-composite-policy-1, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50}},
          {name: test-composite-policy-2, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]}},
          {name: test-composite-policy-3, type: always_sample}],
        rate_allocation: [{policy: test-composite-policy-1, percent: 50}, {policy: test-composite-policy-2, percent: 25}]}}
  ]
)");
  ASSERT_EQ(config.policies.size(), 12u);
  EXPECT_EQ(config.policies[1].threshold_ms, 5000);
  EXPECT_EQ(config.policies[1].upper_threshold_ms, 10000);
  EXPECT_EQ(config.policies[2].min_value, 50);
  EXPECT_EQ(config.policies[2].max_value, 100);
  EXPECT_DOUBLE_EQ(config.policies[3].sampling_percentage, 10.0);
  EXPECT_EQ(config.policies[4].status_codes, (std::vector<StatusCode>{StatusCode::Error, StatusCode::Unset}));
  EXPECT_EQ(config.policies[5].values, (std::vector<std::string>{"value1", "value2"}));
  EXPECT_TRUE(config.policies[6].enabled_regex_matching);
  EXPECT_EQ(config.policies[6].cache_max_size, 10u);
  EXPECT_EQ(config.policies[7].spans_per_second, 35);
  EXPECT_EQ(config.policies[8].min_spans, 2);
  EXPECT_EQ(config.policies[8].max_spans, 20);
  EXPECT_EQ(config.policies[9].type, PolicyType::And);
  EXPECT_EQ(config.policies[9].sub_policies.size(), 2u);
  EXPECT_EQ(config.policies[10].type, PolicyType::Drop);
  EXPECT_EQ(config.policies[10].sub_policies[0].values[0], "\\/health");
  const auto& composite = config.policies[11];
  EXPECT_EQ(composite.max_total_spans_per_second, 1000);
  EXPECT_EQ(composite.policy_order.size(), 3u);
  EXPECT_EQ(composite.sub_policies.size(), 3u);
  ASSERT_EQ(composite.rate_allocation.size(), 2u);
  EXPECT_EQ(composite.rate_allocation[1].percent, 25);
  EXPECT_EQ(config.decision_cache.sampled_cache_size, 100'000u);
}

TEST(TailSamplingConfig, DurationSyntax) {
  EXPECT_EQ(parse_duration("10s"), 10s);
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("2m"), 120s);
  EXPECT_EQ(parse_duration("1h1m"), 3660s);
  EXPECT_EQ(parse_duration("250us"), 250us);
  EXPECT_EQ(parse_duration("0"), 0ns);
  EXPECT_THROW((void)parse_duration("10"), std::invalid_argument);
  EXPECT_THROW((void)parse_duration("ten seconds"), std::invalid_argument);
  EXPECT_THROW((void)parse_duration("5d"), std::invalid_argument);
  EXPECT_THROW((void)parse_duration(""), std::invalid_argument);
}

TEST(TailSamplingConfig, ErrorsNameTheKeyPath) {
  EXPECT_EQ(error_of(R"(
policies:
  - {name: a, type: always_sample}
  - {name: b, type: latency, latency: {threshold_ms: -5}}
)"),
            "tail_sampling.policies[1].latency.threshold_ms: expected a non-negative integer");
  EXPECT_EQ(error_of("decision_wait: 10\n"),
            "tail_sampling.decision_wait: expected a duration such as 10s or 500ms");
  EXPECT_EQ(error_of("decision_wait: 0s\n"), "tail_sampling.decision_wait: expected a duration greater than zero");
  EXPECT_EQ(error_of("num_traces: 0\n"), "tail_sampling.num_traces: expected a positive integer");
  EXPECT_EQ(error_of("num_traces: many\n"), "tail_sampling.num_traces: expected a positive integer");
  EXPECT_EQ(error_of("max_bytes: 12 parsecs\n"),
            "tail_sampling.max_bytes: expected a positive byte size such as 67108864 or 64MiB");
  EXPECT_EQ(error_of("decision_cache: {sampled_cache_size: -1}\n"),
            "tail_sampling.decision_cache.sampled_cache_size: expected a non-negative integer");
  EXPECT_EQ(error_of("policies: {name: a}\n"), "tail_sampling.policies: expected a list");
  EXPECT_EQ(error_of("policies: []\n"),
            "tail_sampling.policies: expected at least one policy (omit the key for the default policies)");
  EXPECT_EQ(error_of("- just a list\n"), "tail_sampling: expected a mapping");
}

TEST(TailSamplingConfig, UnknownKeysAreNamed) {
  EXPECT_EQ(error_of("decision_wiat: 10s\n").rfind("tail_sampling.decision_wiat: unknown key", 0), 0u);
  EXPECT_EQ(error_of("policies: [{name: a, type: latency, latency: {threshold: 5}}]\n")
                .rfind("tail_sampling.policies[0].latency.threshold: unknown key", 0),
            0u);
  // Settings of another type are refused rather than silently ignored.
  EXPECT_EQ(error_of("policies: [{name: a, type: latency, latency: {threshold_ms: 5}, probabilistic: {}}]\n")
                .rfind("tail_sampling.policies[0].probabilistic: unknown key", 0),
            0u);
}

TEST(TailSamplingConfig, UnknownPolicyTypeIsNamed) {
  const auto message = error_of("policies: [{name: a, type: ottl_condition}]\n");
  EXPECT_EQ(message.rfind("tail_sampling.policies[0].type: unknown policy type 'ottl_condition'", 0), 0u) << message;
}

TEST(TailSamplingConfig, MissingPieces) {
  EXPECT_EQ(error_of("policies: [{type: always_sample}]\n"), "tail_sampling.policies[0].name: missing key");
  EXPECT_EQ(error_of("policies: [{name: a}]\n"), "tail_sampling.policies[0].type: missing key");
  EXPECT_EQ(error_of("policies: [{name: a, type: latency}]\n"),
            "tail_sampling.policies[0].latency: missing key (required for type latency)");
  EXPECT_EQ(error_of("policies: [{name: a, type: rate_limiting, rate_limiting: {}}]\n"),
            "tail_sampling.policies[0].rate_limiting.spans_per_second: missing key");
  EXPECT_EQ(error_of("policies: [{name: a, type: always_sample}, {name: a, type: always_sample}]\n"),
            "tail_sampling.policies[1].name: duplicate policy name 'a'");
}

TEST(TailSamplingConfig, PolicySpecificValidation) {
  EXPECT_EQ(error_of("policies: [{name: a, type: status_code, status_code: {status_codes: [ERROR, FAILED]}}]\n"),
            "tail_sampling.policies[0].status_code.status_codes[1]: unknown status code 'FAILED' (expected ERROR, "
            "OK or UNSET)");
  EXPECT_EQ(error_of("policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: 150}}]\n"),
            "tail_sampling.policies[0].probabilistic.sampling_percentage: expected a percentage between 0 and 100");
  EXPECT_EQ(error_of("policies: [{name: a, type: probabilistic, probabilistic: {sampling_percentage: 5, "
                     "hash_salt: pepper}}]\n")
                .rfind("tail_sampling.policies[0].probabilistic.hash_salt: not supported", 0),
            0u);
  EXPECT_EQ(error_of("policies: [{name: a, type: latency, latency: {threshold_ms: 500, upper_threshold_ms: 100}}]\n"),
            "tail_sampling.policies[0].latency.upper_threshold_ms: must be greater than threshold_ms (or 0 for no "
            "upper bound)");
  EXPECT_EQ(error_of("policies: [{name: a, type: numeric_attribute, numeric_attribute: {key: k, min_value: 9, "
                     "max_value: 1}}]\n"),
            "tail_sampling.policies[0].numeric_attribute.max_value: must not be less than min_value");
  EXPECT_EQ(error_of("policies: [{name: a, type: numeric_attribute, numeric_attribute: {key: k}}]\n"),
            "tail_sampling.policies[0].numeric_attribute: expected min_value, max_value or both");
  EXPECT_EQ(error_of("policies: [{name: a, type: string_attribute, string_attribute: {key: k, values: ['(unclosed'], "
                     "enabled_regex_matching: true}}]\n")
                .rfind("tail_sampling.policies[0].string_attribute.values[0]: invalid regular expression", 0),
            0u);
  EXPECT_EQ(error_of("policies: [{name: a, type: string_attribute, string_attribute: {key: k, values: [x], "
                     "invert_match: maybe}}]\n"),
            "tail_sampling.policies[0].string_attribute.invert_match: expected true or false");
  EXPECT_EQ(error_of("policies: [{name: a, type: span_count, span_count: {min_spans: 5, max_spans: 2}}]\n"),
            "tail_sampling.policies[0].span_count.max_spans: must not be less than min_spans (or 0 for no upper "
            "bound)");
}

TEST(TailSamplingConfig, NestedErrorsCarryTheFullPath) {
  EXPECT_EQ(error_of(R"(
policies:
  - name: both
    type: and
    and:
      and_sub_policy:
        - {name: x, type: always_sample}
        - {name: y, type: latency, latency: {threshold_ms: fast}}
)"),
            "tail_sampling.policies[0].and.and_sub_policy[1].latency.threshold_ms: expected a non-negative integer");
  EXPECT_EQ(error_of("policies: [{name: d, type: drop, drop: {drop_sub_policy: []}}]\n"),
            "tail_sampling.policies[0].drop.drop_sub_policy: expected at least one policy");
}

TEST(TailSamplingConfig, CompositeValidation) {
  const std::string head = R"(
policies:
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 100
      composite_sub_policy:
        - {name: one, type: always_sample}
        - {name: two, type: always_sample}
)";
  EXPECT_EQ(error_of(head + "      rate_allocation: [{policy: three, percent: 10}]\n"),
            "tail_sampling.policies[0].composite.rate_allocation[0].policy: 'three' is not a composite_sub_policy "
            "name");
  EXPECT_EQ(error_of(head + "      rate_allocation: [{policy: one, percent: 60}, {policy: two, percent: 60}]\n"),
            "tail_sampling.policies[0].composite.rate_allocation: percentages add up to 120 (at most 100)");
  EXPECT_EQ(error_of(head + "      policy_order: [one, nine]\n"),
            "tail_sampling.policies[0].composite.policy_order[1]: 'nine' is not a composite_sub_policy name");
  EXPECT_EQ(error_of(head), "");
}

}  // namespace
}  // namespace edgetrace
