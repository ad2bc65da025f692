#include "queue/queue_config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/config_error.h"

namespace edgetrace {
namespace {

QueueConfig parse(const std::string& yaml) { return parse_queue_config(YAML::Load(yaml)["queue"]); }

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "no error";
}

TEST(QueueConfig, DefaultsWhenSectionMissing) {
  const auto config = parse("other: 1");
  EXPECT_EQ(config.dir, "/var/lib/edgetrace/queue");
  EXPECT_EQ(config.max_bytes, 1ull << 30);
  EXPECT_EQ(config.segment_bytes, 16ull << 20);
  EXPECT_EQ(config.fsync, FsyncMode::Interval);
  EXPECT_EQ(config.fsync_interval, std::chrono::milliseconds(1000));
  EXPECT_EQ(config.overflow, OverflowPolicy::DropOldest);
}

TEST(QueueConfig, ParsesEveryKey) {
  const auto config = parse(R"(
queue:
  dir: /data/q
  max_bytes: 512MiB
  segment_bytes: 8388608
  fsync: interval:250
  overflow: drop_newest
)");
  EXPECT_EQ(config.dir, "/data/q");
  EXPECT_EQ(config.max_bytes, 512ull << 20);
  EXPECT_EQ(config.segment_bytes, 8ull << 20);
  EXPECT_EQ(config.fsync, FsyncMode::Interval);
  EXPECT_EQ(config.fsync_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(config.overflow, OverflowPolicy::DropNewest);
  EXPECT_EQ(parse("queue: {fsync: always}").fsync, FsyncMode::Always);
  EXPECT_EQ(parse("queue: {fsync: never}").fsync, FsyncMode::Never);
  EXPECT_EQ(parse("queue: {max_bytes: 2GiB}").max_bytes, 2ull << 30);
  EXPECT_EQ(parse("queue: {max_bytes: 64 MB}").max_bytes, 64ull << 20);
}

TEST(QueueConfig, BadValuesNameTheKey) {
  EXPECT_EQ(error_of("queue: {fsync: sometimes}"),
            "queue.fsync: expected always, never or interval:<ms>, got \"sometimes\"");
  EXPECT_NE(error_of("queue: {fsync: 'interval:0'}").find("queue.fsync:"), std::string::npos);
  EXPECT_NE(error_of("queue: {fsync: 'interval:abc'}").find("queue.fsync:"), std::string::npos);
  EXPECT_NE(error_of("queue: {overflow: drop_random}").find("queue.overflow: expected drop_oldest or drop_newest"),
            std::string::npos);
  EXPECT_NE(error_of("queue: {max_bytes: lots}").find("queue.max_bytes: expected a byte count"), std::string::npos);
  EXPECT_NE(error_of("queue: {max_bytes: -5}").find("queue.max_bytes:"), std::string::npos);
  EXPECT_NE(error_of("queue: {max_bytes: 99999999999999999999999}").find("queue.max_bytes:"), std::string::npos);
  EXPECT_NE(error_of("queue: {segment_bytes: 100}").find("queue.segment_bytes: must be at least 4096"),
            std::string::npos);
  EXPECT_NE(error_of("queue: {max_bytes: 1MiB, segment_bytes: 1MiB}").find("queue.max_bytes: must be at least twice"),
            std::string::npos);
  EXPECT_NE(error_of("queue: {max_bytes: 1GiB, segment_bytes: 1MiB}")
                .find("queue.segment_bytes: must be at least queue.max_bytes / 512 (2097152 bytes)"),
            std::string::npos);
  EXPECT_EQ(parse("queue: {max_bytes: 1GiB, segment_bytes: 2MiB}").segment_bytes, 2ull << 20);
  EXPECT_NE(error_of("queue: {dir: ''}").find("queue.dir"), std::string::npos);
  EXPECT_NE(error_of("queue: {dir: [a, b]}").find("queue.dir"), std::string::npos);
  EXPECT_NE(error_of("queue: {colour: blue}").find("queue.colour: unknown key"), std::string::npos);
  EXPECT_NE(error_of("queue: [1, 2]").find("queue: expected a mapping"), std::string::npos);
}

}  // namespace
}  // namespace edgetrace
