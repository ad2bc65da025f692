// ENOSPC on a real (tiny) filesystem: a 2 MiB tmpfs mounted for the test.
#include <sys/mount.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "queue/disk_batch_queue.h"
#include "queue_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using queue_test::make_payload;
using queue_test::payload_intact;

class DiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a 2 MiB tmpfs on " << dir_.path() << " (" << std::strerror(errno)
                   << "); the disk-full test needs root or CAP_SYS_ADMIN";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_ && ::umount2(dir_.path().c_str(), MNT_DETACH) != 0)
      ADD_FAILURE() << "umount " << dir_.path() << ": " << std::strerror(errno);
  }

  queue_test::TempDir dir_{"edgetrace-queue-diskfull"};
  bool mounted_ = false;
};

TEST_F(DiskFull, EnospcIsCountedAndPushesRecoverWhenSpaceReturns) {
  QueueConfig config;
  config.dir = dir_.path() / "queue";
  config.max_bytes = 64ull * 1024 * 1024;  // far above the filesystem: the disk fills first
  config.segment_bytes = 256 * 1024;
  config.fsync = FsyncMode::Always;
  DiskBatchQueue queue(config);

  std::uint64_t accepted = 0, refused = 0, id = 0;
  while (refused < 20 && id < 1000) {
    if (queue.push(make_payload(++id, 20 * 1024), 100)) {
      ++accepted;
    } else {
      ++refused;
    }
  }
  ASSERT_EQ(refused, 20u) << "a 2 MiB filesystem must fill up";
  auto stats = queue.disk_stats();
  EXPECT_EQ(stats.dropped_batches, refused);
  EXPECT_EQ(stats.dropped_spans, 100 * refused);
  EXPECT_GE(stats.write_errors, 1u);
  EXPECT_NE(stats.last_error.find("No space left on device"), std::string::npos) << stats.last_error;
  EXPECT_EQ(stats.depth_batches, accepted);
  EXPECT_GT(accepted, 40u);

  // Deliver most of the backlog: acknowledged segments are deleted and space returns.
  std::uint64_t delivered = 0;
  while (delivered < accepted - 5) {
    auto batch = queue.peek(0ms);
    ASSERT_TRUE(batch);
    ASSERT_TRUE(payload_intact(batch->payload)) << "sequence " << batch->sequence;
    queue.acknowledge(batch->sequence);
    ++delivered;
  }
  std::uint64_t accepted_after = 0;
  for (int i = 0; i < 30; ++i)
    if (queue.push(make_payload(++id, 20 * 1024), 100)) ++accepted_after;
  EXPECT_EQ(accepted_after, 30u) << "pushes succeed again once space is back; last error: "
                                 << queue.disk_stats().last_error;
  EXPECT_EQ(queue.stats().dropped_batches, refused) << "no further loss";

  // Everything kept is intact and in order.
  std::uint64_t previous = 0, remaining = 0;
  while (auto batch = queue.peek(0ms)) {
    EXPECT_TRUE(payload_intact(batch->payload));
    EXPECT_GT(batch->sequence, previous);
    previous = batch->sequence;
    queue.acknowledge(batch->sequence);
    ++remaining;
  }
  EXPECT_EQ(remaining, 5u + 30u);
}

TEST_F(DiskFull, ReopeningAFullDiskRecoversWhatFitted) {
  QueueConfig config;
  config.dir = dir_.path() / "queue";
  config.segment_bytes = 128 * 1024;
  config.max_bytes = 64ull * 1024 * 1024;
  config.fsync = FsyncMode::Interval;
  config.fsync_interval = 10ms;
  std::uint64_t accepted = 0;
  {
    DiskBatchQueue queue(config);
    for (std::uint64_t id = 1; id <= 200; ++id)
      if (queue.push(make_payload(id, 30 * 1024), 1)) ++accepted;
    ASSERT_LT(accepted, 200u);
  }
  DiskBatchQueue queue(config);
  EXPECT_EQ(queue.stats().depth_batches, accepted);
  std::uint64_t read = 0;
  while (auto batch = queue.peek(0ms)) {
    EXPECT_TRUE(payload_intact(batch->payload));
    queue.acknowledge(batch->sequence);
    ++read;
  }
  EXPECT_EQ(read, accepted);
  EXPECT_EQ(queue.stats().corrupted_records, 0u);
}

}  // namespace
}  // namespace edgetrace
