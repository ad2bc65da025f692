#include "sampling/tail_sampling_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <regex>
#include <set>
#include <stdexcept>
#include <unordered_set>

#include "config/config_error.h"

namespace edgetrace {

std::string_view policy_type_name(PolicyType type) {
  switch (type) {
    case PolicyType::AlwaysSample: return "always_sample";
    case PolicyType::StatusCode: return "status_code";
    case PolicyType::Latency: return "latency";
    case PolicyType::Probabilistic: return "probabilistic";
    case PolicyType::RateLimiting: return "rate_limiting";
    case PolicyType::StringAttribute: return "string_attribute";
    case PolicyType::NumericAttribute: return "numeric_attribute";
    case PolicyType::SpanCount: return "span_count";
    case PolicyType::And: return "and";
    case PolicyType::Drop: return "drop";
    case PolicyType::Composite: return "composite";
  }
  return "unknown";
}

std::vector<PolicyConfig> default_tail_sampling_policies() {
  std::vector<PolicyConfig> policies(3);
  policies[0].name = "errors";
  policies[0].type = PolicyType::StatusCode;
  policies[0].status_codes = {StatusCode::Error};
  policies[1].name = "slow";
  policies[1].type = PolicyType::Latency;
  policies[1].threshold_ms = 200;
  policies[2].name = "baseline";
  policies[2].type = PolicyType::Probabilistic;
  policies[2].sampling_percentage = 5.0;
  return policies;
}

TailSamplingConfig default_tail_sampling_config() {
  TailSamplingConfig config;
  config.policies = default_tail_sampling_policies();
  return config;
}

std::chrono::nanoseconds parse_duration(std::string_view text) {
  if (text.empty()) throw std::invalid_argument("empty duration");
  if (text == "0") return std::chrono::nanoseconds{0};
  struct Unit {
    std::string_view suffix;
    double nanos;
  };
  // Longest suffixes first so "ms" is not read as "m" followed by garbage.
  static constexpr Unit units[] = {{"ns", 1.0}, {"us", 1e3}, {"\xC2\xB5s", 1e3}, {"ms", 1e6},
                                   {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};
  double total = 0.0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t number_start = pos;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
    if (pos == number_start) throw std::invalid_argument("expected a number");
    double number = 0.0;
    const auto [end, ec] = std::from_chars(text.data() + number_start, text.data() + pos, number);
    if (ec != std::errc{} || end != text.data() + pos) throw std::invalid_argument("bad number");
    const Unit* matched = nullptr;
    for (const auto& unit : units) {
      if (text.substr(pos, unit.suffix.size()) == unit.suffix) {
        // "m" must not swallow the "m" of "ms".
        if (unit.suffix == "m" && text.substr(pos, 2) == "ms") continue;
        matched = &unit;
        break;
      }
    }
    if (matched == nullptr) throw std::invalid_argument("missing unit");
    pos += matched->suffix.size();
    total += number * matched->nanos;
  }
  if (total > static_cast<double>(std::numeric_limits<std::int64_t>::max()))
    throw std::invalid_argument("duration too long");
  return std::chrono::nanoseconds{static_cast<std::int64_t>(std::llround(total))};
}

namespace {

using Path = std::string;

[[noreturn]] void fail(const Path& path, std::string_view what) {
  throw ConfigError(fmt::format("{}: {}", path, what));
}

Path child(const Path& path, std::string_view key) { return fmt::format("{}.{}", path, key); }
Path element(const Path& path, std::size_t index) { return fmt::format("{}[{}]", path, index); }

void require_map(const YAML::Node& node, const Path& path) {
  if (!node.IsMap()) fail(path, "expected a mapping");
}

void require_sequence(const YAML::Node& node, const Path& path) {
  if (!node.IsSequence()) fail(path, "expected a list");
}

void reject_unknown_keys(const YAML::Node& map, const Path& path,
                         std::initializer_list<std::string_view> allowed) {
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string expected;
    for (const auto candidate : allowed) {
      if (!expected.empty()) expected += ", ";
      expected += candidate;
    }
    fail(child(path, key), fmt::format("unknown key (expected one of: {})", expected));
  }
}

const std::string& scalar(const YAML::Node& node, const Path& path, std::string_view expected) {
  if (!node.IsScalar()) fail(path, fmt::format("expected {}", expected));
  return node.Scalar();
}

std::int64_t parse_integer(const YAML::Node& node, const Path& path, std::int64_t minimum) {
  const std::string_view expected = minimum == 0   ? "a non-negative integer"
                                    : minimum == 1 ? "a positive integer"
                                                   : "an integer";
  std::string text = scalar(node, path, expected);
  // YAML 1.1 (and the collector's examples) allow digit separators: 100_000.
  std::erase(text, '_');
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < minimum)
    fail(path, fmt::format("expected {}", expected));
  return value;
}

double parse_number(const YAML::Node& node, const Path& path, std::string_view expected) {
  std::string text = scalar(node, path, expected);
  std::erase(text, '_');
  double value = 0.0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value))
    fail(path, fmt::format("expected {}", expected));
  return value;
}

bool parse_bool(const YAML::Node& node, const Path& path) {
  std::string text = scalar(node, path, "true or false");
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text == "true" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "no" || text == "off") return false;
  fail(path, "expected true or false");
}

std::string parse_string(const YAML::Node& node, const Path& path) {
  return scalar(node, path, "a string");
}

std::string parse_nonempty_string(const YAML::Node& node, const Path& path) {
  std::string value = parse_string(node, path);
  if (value.empty()) fail(path, "expected a non-empty string");
  return value;
}

std::vector<std::string> parse_string_list(const YAML::Node& node, const Path& path) {
  require_sequence(node, path);
  std::vector<std::string> values;
  for (std::size_t i = 0; i < node.size(); ++i) values.push_back(parse_string(node[i], element(path, i)));
  return values;
}

std::chrono::nanoseconds parse_duration_node(const YAML::Node& node, const Path& path) {
  const std::string& text = scalar(node, path, "a duration such as 10s or 500ms");
  try {
    return parse_duration(text);
  } catch (const std::invalid_argument&) {
    fail(path, "expected a duration such as 10s or 500ms");
  }
}

std::size_t parse_byte_size(const YAML::Node& node, const Path& path) {
  static constexpr std::string_view expected = "a positive byte size such as 67108864 or 64MiB";
  std::string text = scalar(node, path, expected);
  std::erase(text, '_');
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::uint64_t number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  const auto reject = [&] { fail(path, fmt::format("expected {}", expected)); };
  if (digits == 0 || ec != std::errc{} || end != text.data() + digits) reject();
  std::string suffix = text.substr(digits);
  std::erase(suffix, ' ');
  std::uint64_t multiplier = 0;
  if (suffix.empty() || suffix == "B") multiplier = 1;
  else if (suffix == "KiB") multiplier = 1ULL << 10;
  else if (suffix == "MiB") multiplier = 1ULL << 20;
  else if (suffix == "GiB") multiplier = 1ULL << 30;
  else if (suffix == "kB" || suffix == "KB") multiplier = 1'000;
  else if (suffix == "MB") multiplier = 1'000'000;
  else if (suffix == "GB") multiplier = 1'000'000'000;
  else reject();
  if (number == 0 || number > std::numeric_limits<std::uint64_t>::max() / multiplier) reject();
  return static_cast<std::size_t>(number * multiplier);
}

std::optional<PolicyType> policy_type_from_name(std::string_view name) {
  static constexpr PolicyType all[] = {
      PolicyType::AlwaysSample,    PolicyType::StatusCode,       PolicyType::Latency,
      PolicyType::Probabilistic,   PolicyType::RateLimiting,     PolicyType::StringAttribute,
      PolicyType::NumericAttribute, PolicyType::SpanCount,       PolicyType::And,
      PolicyType::Drop,            PolicyType::Composite};
  for (const auto type : all)
    if (policy_type_name(type) == name) return type;
  return std::nullopt;
}

constexpr int kMaxPolicyNesting = 4;

std::vector<PolicyConfig> parse_policy_list(const YAML::Node& node, const Path& path, int depth);

// The mapping holding a type's settings, e.g. `latency: {threshold_ms: 100}`.
YAML::Node settings_of(const YAML::Node& policy, const Path& path, std::string_view type_key) {
  const YAML::Node settings = policy[std::string(type_key)];
  if (!settings) fail(child(path, type_key), fmt::format("missing key (required for type {})", type_key));
  require_map(settings, child(path, type_key));
  return settings;
}

void parse_status_code(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"status_codes"});
  const Path codes_path = child(path, "status_codes");
  if (!settings["status_codes"]) fail(codes_path, "missing key");
  const auto names = parse_string_list(settings["status_codes"], codes_path);
  if (names.empty()) fail(codes_path, "expected at least one of ERROR, OK, UNSET");
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "ERROR") policy.status_codes.push_back(StatusCode::Error);
    else if (names[i] == "OK") policy.status_codes.push_back(StatusCode::Ok);
    else if (names[i] == "UNSET") policy.status_codes.push_back(StatusCode::Unset);
    else fail(element(codes_path, i), fmt::format("unknown status code '{}' (expected ERROR, OK or UNSET)", names[i]));
  }
}

void parse_latency(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"threshold_ms", "upper_threshold_ms"});
  if (!settings["threshold_ms"]) fail(child(path, "threshold_ms"), "missing key");
  policy.threshold_ms = parse_integer(settings["threshold_ms"], child(path, "threshold_ms"), 0);
  if (settings["upper_threshold_ms"]) {
    policy.upper_threshold_ms = parse_integer(settings["upper_threshold_ms"], child(path, "upper_threshold_ms"), 0);
    if (policy.upper_threshold_ms != 0 && policy.upper_threshold_ms <= policy.threshold_ms)
      fail(child(path, "upper_threshold_ms"), "must be greater than threshold_ms (or 0 for no upper bound)");
  }
}

void parse_probabilistic(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"sampling_percentage", "hash_salt"});
  if (settings["hash_salt"] && !parse_string(settings["hash_salt"], child(path, "hash_salt")).empty())
    fail(child(path, "hash_salt"),
         "not supported: edgetrace decides on the trace id's consistent probability threshold so tail "
         "and kernel head sampling agree; remove hash_salt");
  const Path percentage_path = child(path, "sampling_percentage");
  if (!settings["sampling_percentage"]) fail(percentage_path, "missing key");
  policy.sampling_percentage =
      parse_number(settings["sampling_percentage"], percentage_path, "a percentage between 0 and 100");
  if (policy.sampling_percentage < 0.0 || policy.sampling_percentage > 100.0)
    fail(percentage_path, "expected a percentage between 0 and 100");
}

void parse_rate_limiting(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"spans_per_second"});
  if (!settings["spans_per_second"]) fail(child(path, "spans_per_second"), "missing key");
  policy.spans_per_second = parse_integer(settings["spans_per_second"], child(path, "spans_per_second"), 1);
}

void parse_string_attribute(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"});
  if (!settings["key"]) fail(child(path, "key"), "missing key");
  policy.key = parse_nonempty_string(settings["key"], child(path, "key"));
  const Path values_path = child(path, "values");
  if (!settings["values"]) fail(values_path, "missing key");
  policy.values = parse_string_list(settings["values"], values_path);
  if (policy.values.empty()) fail(values_path, "expected at least one value");
  if (settings["enabled_regex_matching"])
    policy.enabled_regex_matching = parse_bool(settings["enabled_regex_matching"], child(path, "enabled_regex_matching"));
  if (settings["cache_max_size"]) {
    const auto size = parse_integer(settings["cache_max_size"], child(path, "cache_max_size"), 0);
    if (size > 0) policy.cache_max_size = static_cast<std::size_t>(size);
  }
  if (settings["invert_match"]) policy.invert_match = parse_bool(settings["invert_match"], child(path, "invert_match"));
  if (policy.enabled_regex_matching) {
    for (std::size_t i = 0; i < policy.values.size(); ++i) {
      try {
        std::regex compiled(policy.values[i], std::regex::ECMAScript);
      } catch (const std::regex_error& error) {
        fail(element(values_path, i), fmt::format("invalid regular expression '{}': {}", policy.values[i], error.what()));
      }
    }
  }
}

void parse_numeric_attribute(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"key", "min_value", "max_value", "invert_match"});
  if (!settings["key"]) fail(child(path, "key"), "missing key");
  policy.key = parse_nonempty_string(settings["key"], child(path, "key"));
  constexpr auto any = std::numeric_limits<std::int64_t>::min();
  if (settings["min_value"]) policy.min_value = parse_integer(settings["min_value"], child(path, "min_value"), any);
  if (settings["max_value"]) policy.max_value = parse_integer(settings["max_value"], child(path, "max_value"), any);
  if (!policy.min_value && !policy.max_value) fail(path, "expected min_value, max_value or both");
  if (policy.min_value && policy.max_value && *policy.max_value < *policy.min_value)
    fail(child(path, "max_value"), "must not be less than min_value");
  if (settings["invert_match"]) policy.invert_match = parse_bool(settings["invert_match"], child(path, "invert_match"));
}

void parse_span_count(const YAML::Node& settings, const Path& path, PolicyConfig& policy) {
  reject_unknown_keys(settings, path, {"min_spans", "max_spans"});
  if (!settings["min_spans"] && !settings["max_spans"]) fail(path, "expected min_spans, max_spans or both");
  if (settings["min_spans"]) policy.min_spans = parse_integer(settings["min_spans"], child(path, "min_spans"), 0);
  if (settings["max_spans"]) {
    policy.max_spans = parse_integer(settings["max_spans"], child(path, "max_spans"), 0);
    if (policy.max_spans != 0 && policy.max_spans < policy.min_spans)
      fail(child(path, "max_spans"), "must not be less than min_spans (or 0 for no upper bound)");
  }
}

void parse_composite(const YAML::Node& settings, const Path& path, PolicyConfig& policy, int depth) {
  reject_unknown_keys(settings, path,
                      {"max_total_spans_per_second", "policy_order", "composite_sub_policy", "rate_allocation"});
  const Path max_path = child(path, "max_total_spans_per_second");
  if (!settings["max_total_spans_per_second"]) fail(max_path, "missing key");
  policy.max_total_spans_per_second = parse_integer(settings["max_total_spans_per_second"], max_path, 1);

  const Path subs_path = child(path, "composite_sub_policy");
  if (!settings["composite_sub_policy"]) fail(subs_path, "missing key");
  policy.sub_policies = parse_policy_list(settings["composite_sub_policy"], subs_path, depth + 1);
  const auto names_sub_policy = [&](const std::string& name) {
    return std::any_of(policy.sub_policies.begin(), policy.sub_policies.end(),
                       [&](const PolicyConfig& sub) { return sub.name == name; });
  };

  if (settings["policy_order"]) {
    const Path order_path = child(path, "policy_order");
    policy.policy_order = parse_string_list(settings["policy_order"], order_path);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < policy.policy_order.size(); ++i) {
      const auto& name = policy.policy_order[i];
      if (!names_sub_policy(name)) fail(element(order_path, i), fmt::format("'{}' is not a composite_sub_policy name", name));
      if (!seen.insert(name).second) fail(element(order_path, i), fmt::format("'{}' is listed twice", name));
    }
  }

  if (settings["rate_allocation"]) {
    const Path allocation_path = child(path, "rate_allocation");
    const YAML::Node allocations = settings["rate_allocation"];
    require_sequence(allocations, allocation_path);
    std::int64_t total = 0;
    std::set<std::string> seen;
    for (std::size_t i = 0; i < allocations.size(); ++i) {
      const Path entry_path = element(allocation_path, i);
      require_map(allocations[i], entry_path);
      reject_unknown_keys(allocations[i], entry_path, {"policy", "percent"});
      RateAllocation allocation;
      if (!allocations[i]["policy"]) fail(child(entry_path, "policy"), "missing key");
      allocation.policy = parse_nonempty_string(allocations[i]["policy"], child(entry_path, "policy"));
      if (!names_sub_policy(allocation.policy))
        fail(child(entry_path, "policy"), fmt::format("'{}' is not a composite_sub_policy name", allocation.policy));
      if (!seen.insert(allocation.policy).second)
        fail(child(entry_path, "policy"), fmt::format("'{}' is allocated twice", allocation.policy));
      if (!allocations[i]["percent"]) fail(child(entry_path, "percent"), "missing key");
      allocation.percent = parse_integer(allocations[i]["percent"], child(entry_path, "percent"), 0);
      if (allocation.percent > 100) fail(child(entry_path, "percent"), "expected a percentage between 0 and 100");
      total += allocation.percent;
      policy.rate_allocation.push_back(std::move(allocation));
    }
    if (total > 100) fail(allocation_path, fmt::format("percentages add up to {} (at most 100)", total));
  }
}

PolicyConfig parse_policy(const YAML::Node& node, const Path& path, int depth) {
  require_map(node, path);
  PolicyConfig policy;
  if (!node["name"]) fail(child(path, "name"), "missing key");
  policy.name = parse_nonempty_string(node["name"], child(path, "name"));
  if (!node["type"]) fail(child(path, "type"), "missing key");
  const std::string type_name = parse_nonempty_string(node["type"], child(path, "type"));
  const auto type = policy_type_from_name(type_name);
  if (!type)
    fail(child(path, "type"),
         fmt::format("unknown policy type '{}' (expected always_sample, status_code, latency, probabilistic, "
                     "rate_limiting, string_attribute, numeric_attribute, span_count, and, drop or composite)",
                     type_name));
  policy.type = *type;
  const std::string_view type_key = policy_type_name(policy.type);
  if (policy.type == PolicyType::AlwaysSample) {
    reject_unknown_keys(node, path, {"name", "type"});
    return policy;
  }
  reject_unknown_keys(node, path, {"name", "type", type_key});
  const YAML::Node settings = settings_of(node, path, type_key);
  const Path settings_path = child(path, type_key);
  switch (policy.type) {
    case PolicyType::AlwaysSample: break;
    case PolicyType::StatusCode: parse_status_code(settings, settings_path, policy); break;
    case PolicyType::Latency: parse_latency(settings, settings_path, policy); break;
    case PolicyType::Probabilistic: parse_probabilistic(settings, settings_path, policy); break;
    case PolicyType::RateLimiting: parse_rate_limiting(settings, settings_path, policy); break;
    case PolicyType::StringAttribute: parse_string_attribute(settings, settings_path, policy); break;
    case PolicyType::NumericAttribute: parse_numeric_attribute(settings, settings_path, policy); break;
    case PolicyType::SpanCount: parse_span_count(settings, settings_path, policy); break;
    case PolicyType::And:
    case PolicyType::Drop: {
      const std::string list_key = fmt::format("{}_sub_policy", type_key);
      reject_unknown_keys(settings, settings_path, {list_key});
      const Path list_path = child(settings_path, list_key);
      if (!settings[list_key]) fail(list_path, "missing key");
      policy.sub_policies = parse_policy_list(settings[list_key], list_path, depth + 1);
      break;
    }
    case PolicyType::Composite: parse_composite(settings, settings_path, policy, depth); break;
  }
  return policy;
}

std::vector<PolicyConfig> parse_policy_list(const YAML::Node& node, const Path& path, int depth) {
  if (depth > kMaxPolicyNesting) fail(path, fmt::format("policies nest deeper than {} levels", kMaxPolicyNesting));
  require_sequence(node, path);
  if (node.size() == 0) fail(path, "expected at least one policy");
  std::vector<PolicyConfig> policies;
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const Path policy_path = element(path, i);
    policies.push_back(parse_policy(node[i], policy_path, depth));
    if (!names.insert(policies.back().name).second)
      fail(child(policy_path, "name"), fmt::format("duplicate policy name '{}'", policies.back().name));
  }
  return policies;
}

}  // namespace

TailSamplingConfig parse_tail_sampling_config(const YAML::Node& section) {
  const Path root = "tail_sampling";
  TailSamplingConfig config;
  if (!section || section.IsNull()) {
    config.policies = default_tail_sampling_policies();
    return config;
  }
  require_map(section, root);
  reject_unknown_keys(section, root,
                      {"enabled", "decision_wait", "num_traces", "max_bytes", "early_decision_grace",
                       "max_spans_per_trace", "expected_new_traces_per_sec", "decision_cache", "policies"});
  if (section["enabled"]) (void)parse_bool(section["enabled"], child(root, "enabled"));
  if (section["decision_wait"]) {
    config.decision_wait = parse_duration_node(section["decision_wait"], child(root, "decision_wait"));
    if (config.decision_wait <= std::chrono::nanoseconds::zero())
      fail(child(root, "decision_wait"), "expected a duration greater than zero");
  }
  if (section["num_traces"])
    config.num_traces = static_cast<std::size_t>(parse_integer(section["num_traces"], child(root, "num_traces"), 1));
  if (section["max_bytes"]) config.max_bytes = parse_byte_size(section["max_bytes"], child(root, "max_bytes"));
  if (section["early_decision_grace"])
    config.early_decision_grace = parse_duration_node(section["early_decision_grace"], child(root, "early_decision_grace"));
  if (section["max_spans_per_trace"])
    config.max_spans_per_trace =
        static_cast<std::size_t>(parse_integer(section["max_spans_per_trace"], child(root, "max_spans_per_trace"), 1));
  if (section["expected_new_traces_per_sec"])
    config.expected_new_traces_per_sec = static_cast<std::size_t>(
        parse_integer(section["expected_new_traces_per_sec"], child(root, "expected_new_traces_per_sec"), 0));
  if (section["decision_cache"]) {
    const Path cache_path = child(root, "decision_cache");
    const YAML::Node cache = section["decision_cache"];
    require_map(cache, cache_path);
    reject_unknown_keys(cache, cache_path, {"sampled_cache_size", "non_sampled_cache_size"});
    if (cache["sampled_cache_size"])
      config.decision_cache.sampled_cache_size = static_cast<std::size_t>(
          parse_integer(cache["sampled_cache_size"], child(cache_path, "sampled_cache_size"), 0));
    if (cache["non_sampled_cache_size"])
      config.decision_cache.non_sampled_cache_size = static_cast<std::size_t>(
          parse_integer(cache["non_sampled_cache_size"], child(cache_path, "non_sampled_cache_size"), 0));
  }
  const YAML::Node policies = section["policies"];
  if (!policies || policies.IsNull()) {
    config.policies = default_tail_sampling_policies();
  } else {
    if (policies.IsSequence() && policies.size() == 0)
      fail(child(root, "policies"), "expected at least one policy (omit the key for the default policies)");
    config.policies = parse_policy_list(policies, child(root, "policies"), 1);
  }
  return config;
}

}  // namespace edgetrace
