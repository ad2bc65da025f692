#include "queue/queue_config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <limits>
#include <optional>

#include "config/config_error.h"
#include "queue/segment_format.h"

namespace edgetrace {
namespace {

// Each segment holds an open descriptor; stay far below the usual 1024 soft RLIMIT_NOFILE.
constexpr std::uint64_t kMaxSegments = 512;

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::optional<std::uint64_t> parse_unsigned(std::string_view digits) {
  std::uint64_t value = 0;
  const auto* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, value);
  if (ec != std::errc{} || ptr != end || digits.empty()) return std::nullopt;
  return value;
}

std::optional<std::uint64_t> parse_size(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  std::size_t digits_end = 0;
  while (digits_end < text.size() && std::isdigit(static_cast<unsigned char>(text[digits_end]))) ++digits_end;
  auto number = parse_unsigned(std::string_view(text).substr(0, digits_end));
  if (!number) return std::nullopt;
  std::string unit = lowercase(text.substr(digits_end));
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(0, 1);
  std::uint64_t multiplier = 0;
  if (unit.empty() || unit == "b") multiplier = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") multiplier = 1ull << 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") multiplier = 1ull << 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") multiplier = 1ull << 30;
  else if (unit == "t" || unit == "tb" || unit == "tib") multiplier = 1ull << 40;
  else return std::nullopt;
  if (*number > std::numeric_limits<std::uint64_t>::max() / multiplier) return std::nullopt;
  return *number * multiplier;
}

std::string scalar_of(const YAML::Node& node, const std::string& key, const char* expected) {
  if (!node.IsScalar()) throw ConfigError("queue." + key + ": expected " + expected);
  return node.Scalar();
}

std::uint64_t size_of(const YAML::Node& node, const std::string& key) {
  constexpr const char* kExpected = "a byte count such as 1073741824, 512MiB or 1GiB";
  auto size = parse_size(scalar_of(node, key, kExpected));
  if (!size) throw ConfigError("queue." + key + ": expected " + std::string(kExpected) + ", got \"" + node.Scalar() + "\"");
  return *size;
}

}  // namespace

void validate_queue_config(const QueueConfig& config) {
  if (config.dir.empty()) throw ConfigError("queue.dir: must not be empty");
  const std::uint64_t smallest_segment = queue::kSegmentHeaderSize + queue::kRecordHeaderSize + queue::kTrailerSize + 1;
  if (config.segment_bytes < std::max<std::uint64_t>(smallest_segment, 4096))
    throw ConfigError("queue.segment_bytes: must be at least 4096 bytes");
  if (config.max_bytes / config.segment_bytes > kMaxSegments)
    throw ConfigError("queue.segment_bytes: must be at least queue.max_bytes / " + std::to_string(kMaxSegments) + " (" +
                      std::to_string((config.max_bytes + kMaxSegments - 1) / kMaxSegments) +
                      " bytes), because every segment keeps a file open");
  if (config.max_bytes < 2 * config.segment_bytes)
    throw ConfigError("queue.max_bytes: must be at least twice queue.segment_bytes (" +
                      std::to_string(config.segment_bytes) + " bytes), because the oldest segment is dropped as a whole");
  if (config.fsync == FsyncMode::Interval && config.fsync_interval.count() <= 0)
    throw ConfigError("queue.fsync: interval:<ms> needs a positive number of milliseconds");
}

QueueConfig parse_queue_config(const YAML::Node& queue_section) {
  QueueConfig config;
  if (!queue_section.IsDefined() || queue_section.IsNull()) return config;
  if (!queue_section.IsMap()) throw ConfigError("queue: expected a mapping with dir, max_bytes, segment_bytes, fsync, overflow");

  for (const auto& entry : queue_section) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    if (key == "dir") {
      auto text = scalar_of(value, key, "a directory path");
      if (text.empty()) throw ConfigError("queue.dir: must not be empty");
      config.dir = text;
    } else if (key == "max_bytes") {
      config.max_bytes = size_of(value, key);
    } else if (key == "segment_bytes") {
      config.segment_bytes = size_of(value, key);
    } else if (key == "fsync") {
      constexpr const char* kExpected = "always, never or interval:<ms>";
      const std::string text = lowercase(scalar_of(value, key, kExpected));
      if (text == "always") {
        config.fsync = FsyncMode::Always;
      } else if (text == "never") {
        config.fsync = FsyncMode::Never;
      } else if (text.starts_with("interval:")) {
        auto ms = parse_unsigned(std::string_view(text).substr(9));
        if (!ms || *ms == 0 || *ms > 3'600'000)
          throw ConfigError(std::string("queue.fsync: expected ") + kExpected + " with 1 ≤ ms ≤ 3600000, got \"" + value.Scalar() + "\"");
        config.fsync = FsyncMode::Interval;
        config.fsync_interval = std::chrono::milliseconds(*ms);
      } else {
        throw ConfigError(std::string("queue.fsync: expected ") + kExpected + ", got \"" + value.Scalar() + "\"");
      }
    } else if (key == "overflow") {
      const std::string text = lowercase(scalar_of(value, key, "drop_oldest or drop_newest"));
      if (text == "drop_oldest") config.overflow = OverflowPolicy::DropOldest;
      else if (text == "drop_newest") config.overflow = OverflowPolicy::DropNewest;
      else throw ConfigError("queue.overflow: expected drop_oldest or drop_newest, got \"" + value.Scalar() + "\"");
    } else {
      throw ConfigError("queue." + key + ": unknown key (expected dir, max_bytes, segment_bytes, fsync, overflow)");
    }
  }
  validate_queue_config(config);
  return config;
}

std::string to_string(FsyncMode mode, std::chrono::milliseconds interval) {
  switch (mode) {
    case FsyncMode::Always: return "always";
    case FsyncMode::Never: return "never";
    case FsyncMode::Interval: return "interval:" + std::to_string(interval.count());
  }
  return "unknown";
}

std::string to_string(OverflowPolicy policy) {
  return policy == OverflowPolicy::DropOldest ? "drop_oldest" : "drop_newest";
}

}  // namespace edgetrace
