#include "queue/disk_batch_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "config/config_error.h"
#include "queue/queue_status.h"
#include "queue/segment_format.h"
#include "queue_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using queue_test::make_payload;
using queue_test::payload_id;
using queue_test::payload_intact;
using queue_test::segment_files;
using queue_test::small_config;
using queue_test::TempDir;

// Peeks and acknowledges everything, returning the batches in order.
std::vector<QueuedBatch> drain(DiskBatchQueue& queue) {
  std::vector<QueuedBatch> batches;
  while (auto batch = queue.peek(0ms)) {
    batches.push_back(*batch);
    queue.acknowledge(batch->sequence);
  }
  return batches;
}

void flip_byte(const std::filesystem::path& file, std::uint64_t offset) {
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  stream.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  stream.get(c);
  stream.seekp(static_cast<std::streamoff>(offset));
  stream.put(static_cast<char>(c ^ 0x5A));
}

TEST(DiskBatchQueue, PushPeekAcknowledgeInOrder) {
  TempDir dir;
  DiskBatchQueue queue(small_config(dir.path()));
  for (std::uint64_t id = 1; id <= 50; ++id) ASSERT_TRUE(queue.push(make_payload(id, 100 + id * 37), 3));
  auto stats = queue.stats();
  EXPECT_EQ(stats.depth_batches, 50u);
  EXPECT_EQ(stats.depth_spans, 150u);
  std::uint64_t expected_bytes = 0;
  for (std::uint64_t id = 1; id <= 50; ++id) expected_bytes += queue::kRecordHeaderSize + 100 + id * 37;
  EXPECT_EQ(stats.depth_bytes, expected_bytes);

  auto first = queue.peek(0ms);
  ASSERT_TRUE(first);
  auto again = queue.peek(0ms);
  ASSERT_TRUE(again);
  EXPECT_EQ(first->sequence, again->sequence) << "peek without acknowledge returns the same batch";
  const auto batches = drain(queue);
  ASSERT_EQ(batches.size(), 50u);
  for (std::uint64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(batches[i].sequence, i + 1);
    EXPECT_EQ(payload_id(batches[i].payload), i + 1);
    EXPECT_TRUE(payload_intact(batches[i].payload));
    EXPECT_EQ(batches[i].span_count, 3u);
    EXPECT_GT(batches[i].enqueued_unix_nanos, 0u);
  }
  stats = queue.stats();
  EXPECT_EQ(stats.depth_batches, 0u);
  EXPECT_EQ(stats.depth_spans, 0u);
  EXPECT_EQ(stats.depth_bytes, 0u);
  EXPECT_EQ(stats.oldest_age_nanos, 0u);
  EXPECT_LE(segment_files(dir.path()).size(), 1u) << "acknowledged sealed segments are deleted";
}

TEST(DiskBatchQueue, PeekWaitsForAPushAndCloseWakesIt) {
  TempDir dir;
  DiskBatchQueue queue(small_config(dir.path()));
  EXPECT_FALSE(queue.peek(20ms));
  std::thread producer([&] {
    std::this_thread::sleep_for(50ms);
    queue.push(make_payload(1, 10), 1);
  });
  auto batch = queue.peek(10s);
  producer.join();
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->sequence, 1u);
  queue.acknowledge(1);

  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    queue.close();
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(queue.peek(30s));
  closer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  EXPECT_TRUE(queue.push(make_payload(2, 10), 1)) << "pushes after close are still kept";
  EXPECT_EQ(queue.stats().depth_batches, 1u);
}

TEST(DiskBatchQueue, RestartKeepsReadPositionAndSequences) {
  TempDir dir;
  constexpr std::uint64_t kPushed = 300, kAcked = 137;
  for (auto fsync : {FsyncMode::Never, FsyncMode::Interval, FsyncMode::Always}) {
    SCOPED_TRACE(to_string(fsync, 1000ms));
    std::filesystem::remove_all(dir.path());
    auto config = small_config(dir.path());
    config.fsync = fsync;
    {
      DiskBatchQueue queue(config);
      for (std::uint64_t id = 1; id <= kPushed; ++id) ASSERT_TRUE(queue.push(make_payload(id, 700), 2));
      for (std::uint64_t i = 1; i <= kAcked; ++i) {
        auto batch = queue.peek(0ms);
        ASSERT_TRUE(batch);
        ASSERT_EQ(batch->sequence, i);
        queue.acknowledge(batch->sequence);
      }
      ASSERT_GT(segment_files(dir.path()).size(), 2u) << "the test must span several segments";
    }
    DiskBatchQueue reopened(config);
    auto stats = reopened.disk_stats();
    EXPECT_EQ(stats.depth_batches, kPushed - kAcked);
    EXPECT_EQ(stats.depth_spans, 2 * (kPushed - kAcked));
    EXPECT_EQ(stats.acknowledged_sequence, kAcked);
    EXPECT_EQ(stats.next_sequence, kPushed + 1);
    EXPECT_GT(stats.oldest_age_nanos, 0u);
    auto next = reopened.peek(0ms);
    ASSERT_TRUE(next);
    EXPECT_EQ(next->sequence, kAcked + 1);
    EXPECT_EQ(payload_id(next->payload), kAcked + 1);
    ASSERT_TRUE(reopened.push(make_payload(kPushed + 1, 700), 2));
    const auto rest = drain(reopened);
    ASSERT_EQ(rest.size(), kPushed - kAcked + 1);
    for (std::size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].sequence, kAcked + 1 + i);
      EXPECT_EQ(payload_id(rest[i].payload), kAcked + 1 + i);
      EXPECT_TRUE(payload_intact(rest[i].payload));
    }
    EXPECT_EQ(reopened.stats().corrupted_records, 0u);
  }
}

TEST(DiskBatchQueue, FullyAcknowledgedQueueRestartsEmptyWithHigherSequences) {
  TempDir dir;
  auto config = small_config(dir.path());
  {
    DiskBatchQueue queue(config);
    for (std::uint64_t id = 1; id <= 200; ++id) ASSERT_TRUE(queue.push(make_payload(id, 900), 1));
    ASSERT_EQ(drain(queue).size(), 200u);
  }
  DiskBatchQueue reopened(config);
  EXPECT_EQ(reopened.stats().depth_batches, 0u);
  EXPECT_FALSE(reopened.peek(0ms));
  ASSERT_TRUE(reopened.push(make_payload(201, 10), 1));
  auto batch = reopened.peek(0ms);
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->sequence, 201u);
}

TEST(DiskBatchQueue, SecondOpenOfALockedDirectoryFailsClearly) {
  TempDir dir;
  DiskBatchQueue first(small_config(dir.path()));
  try {
    DiskBatchQueue second(small_config(dir.path()));
    FAIL() << "a second queue on the same directory must not open";
  } catch (const QueueOpenError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("in use by another edgetrace agent"), std::string::npos) << message;
    EXPECT_NE(message.find("pid " + std::to_string(::getpid())), std::string::npos) << message;
  }
  // From another process too (the lock is what keeps two agents apart).
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      DiskBatchQueue other(small_config(dir.path()));
      ::_exit(0);
    } catch (const QueueOpenError&) {
      ::_exit(42);
    }
    ::_exit(1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);
}

TEST(DiskBatchQueue, LockIsReleasedWhenTheQueueCloses) {
  TempDir dir;
  { DiskBatchQueue first(small_config(dir.path())); }
  EXPECT_NO_THROW(DiskBatchQueue second(small_config(dir.path())));
}

TEST(DiskBatchQueue, RejectsBadConfig) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = config.segment_bytes;
  EXPECT_THROW(DiskBatchQueue queue(config), ConfigError);
}

TEST(DiskBatchQueue, UncreatableDirectoryThrows) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  auto config = small_config(dir.path() / "file" / "queue");
  EXPECT_THROW(DiskBatchQueue queue(config), QueueOpenError);
}

// --- bounds -----------------------------------------------------------------------------

TEST(DiskBatchQueue, DropOldestKeepsTheDiskBoundAndCountsExactly) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 1024 * 1024;
  config.segment_bytes = 128 * 1024;
  config.overflow = OverflowPolicy::DropOldest;
  DiskBatchQueue queue(config);
  constexpr std::uint64_t kPushes = 2000;
  for (std::uint64_t id = 1; id <= kPushes; ++id) {
    ASSERT_TRUE(queue.push(make_payload(id, 1000), 3)) << "drop_oldest always keeps the newest batch";
    ASSERT_LE(queue_test::segment_bytes_on_disk(dir.path()), config.max_bytes) << "after push " << id;
  }
  auto stats = queue.disk_stats();
  EXPECT_GT(stats.dropped_batches, 0u);
  EXPECT_EQ(stats.dropped_batches + stats.depth_batches, kPushes);
  EXPECT_EQ(stats.dropped_spans, 3 * stats.dropped_batches);
  EXPECT_EQ(stats.depth_spans, 3 * stats.depth_batches);
  EXPECT_LE(stats.disk_bytes, config.max_bytes);
  EXPECT_EQ(stats.disk_bytes, queue_test::segment_bytes_on_disk(dir.path()));
  EXPECT_GT(stats.disk_bytes, config.max_bytes - 2 * config.segment_bytes) << "the bound is used, not wasted";

  const auto kept = drain(queue);
  ASSERT_EQ(kept.size(), stats.depth_batches);
  EXPECT_EQ(kept.front().sequence, stats.dropped_batches + 1) << "the oldest were dropped, contiguously";
  EXPECT_EQ(kept.back().sequence, kPushes);
  for (std::size_t i = 0; i < kept.size(); ++i) EXPECT_EQ(payload_id(kept[i].payload), kept[i].sequence);
}

TEST(DiskBatchQueue, DropOldestWhileTheConsumerHoldsAPeekedBatch) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 256 * 1024;
  config.segment_bytes = 32 * 1024;
  DiskBatchQueue queue(config);
  ASSERT_TRUE(queue.push(make_payload(1, 1000), 1));
  auto held = queue.peek(0ms);
  ASSERT_TRUE(held);
  for (std::uint64_t id = 2; id <= 1000; ++id) ASSERT_TRUE(queue.push(make_payload(id, 1000), 1));
  queue.acknowledge(held->sequence);  // already dropped: ignored, no crash
  const auto stats = queue.stats();
  const auto kept = drain(queue);
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.size(), stats.depth_batches);
  EXPECT_EQ(kept.back().sequence, 1000u);
  EXPECT_EQ(stats.dropped_batches + kept.size(), 1000u);
}

TEST(DiskBatchQueue, DropNewestRefusesAndCountsExactly) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 1024 * 1024;
  config.segment_bytes = 128 * 1024;
  config.overflow = OverflowPolicy::DropNewest;
  DiskBatchQueue queue(config);
  std::uint64_t refused = 0, kept_count = 0;
  for (std::uint64_t id = 1; id <= 2000; ++id) {
    if (queue.push(make_payload(id, 1000), 5)) {
      ASSERT_EQ(refused, 0u) << "once full, nothing new fits until the consumer frees space";
      ++kept_count;
    } else {
      ++refused;
    }
    ASSERT_LE(queue_test::segment_bytes_on_disk(dir.path()), config.max_bytes);
  }
  auto stats = queue.stats();
  EXPECT_GT(refused, 0u);
  EXPECT_EQ(stats.dropped_batches, refused);
  EXPECT_EQ(stats.dropped_spans, 5 * refused);
  EXPECT_EQ(stats.depth_batches, kept_count);
  EXPECT_EQ(stats.write_errors, 0u);
  EXPECT_NE(queue.disk_stats().last_error.find("queue full"), std::string::npos);

  const auto kept = drain(queue);
  ASSERT_EQ(kept.size(), kept_count);
  EXPECT_EQ(kept.front().sequence, 1u) << "drop_newest keeps the oldest";
  EXPECT_EQ(payload_id(kept.back().payload), kept_count);
  EXPECT_TRUE(queue.push(make_payload(5000, 1000), 5)) << "space freed by acknowledgement is reused";
}

TEST(DiskBatchQueue, OversizedBatchIsRefusedAndCounted) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 256 * 1024;
  config.segment_bytes = 64 * 1024;
  DiskBatchQueue queue(config);
  EXPECT_TRUE(queue.push(make_payload(1, 100 * 1024), 2)) << "bigger than a segment still fits max_bytes";
  EXPECT_FALSE(queue.push(make_payload(2, 300 * 1024), 7));
  const auto stats = queue.disk_stats();
  EXPECT_EQ(stats.dropped_batches, 1u);
  EXPECT_EQ(stats.dropped_spans, 7u);
  EXPECT_NE(stats.last_error.find("can never fit"), std::string::npos);
  const auto kept = drain(queue);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(payload_intact(kept[0].payload));
}

// --- torn and corrupt -------------------------------------------------------------------

// Writes `count` records of `size` bytes (ids 1..count) into a queue and closes it.
void fill(const QueueConfig& config, std::uint64_t count, std::size_t size) {
  DiskBatchQueue queue(config);
  for (std::uint64_t id = 1; id <= count; ++id) ASSERT_TRUE(queue.push(make_payload(id, size), 1));
}

TEST(DiskBatchQueueRecovery, TornTailIsTruncatedNotCounted) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 10, 500);
  auto files = segment_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  const auto size = std::filesystem::file_size(files[0]);
  std::filesystem::resize_file(files[0], size - 200);  // mid-payload of record 10
  {
    DiskBatchQueue queue(config);
    auto stats = queue.disk_stats();
    EXPECT_EQ(stats.torn_tails_truncated, 1u);
    EXPECT_EQ(stats.corrupted_records, 0u);
    EXPECT_EQ(stats.depth_batches, 9u);
    EXPECT_EQ(std::filesystem::file_size(files[0]), size - 540) << "cut back to the end of record 9";
    ASSERT_TRUE(queue.push(make_payload(11, 500), 1));
    const auto batches = drain(queue);
    ASSERT_EQ(batches.size(), 10u);
    for (std::size_t i = 0; i < 9; ++i) EXPECT_EQ(payload_id(batches[i].payload), i + 1);
    EXPECT_EQ(payload_id(batches[9].payload), 11u);
    EXPECT_EQ(batches[9].sequence, 10u) << "the torn record's sequence was never handed out durably";
    EXPECT_EQ(queue.stats().corrupted_records, 0u);
  }
  // A tail torn inside the record header as well.
  fill(config, 3, 500);
  files = segment_files(dir.path());
  const auto last = files.back();
  std::filesystem::resize_file(last, std::filesystem::file_size(last) - 540 + 20);
  DiskBatchQueue queue(config);
  EXPECT_EQ(queue.disk_stats().torn_tails_truncated, 2u) << "persisted across restarts";
  EXPECT_EQ(queue.stats().depth_batches, 2u);
}

TEST(DiskBatchQueueRecovery, FlippedPayloadByteInASealedSegmentIsSkippedAndCounted) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 300, 1000);  // ~5 segments of 64 KiB
  const auto files = segment_files(dir.path());
  ASSERT_GE(files.size(), 3u);
  // Record k in a segment starts at 32 + k * 1040; flip a byte in the payload of the 4th.
  const std::uint64_t first_in_segment = *queue::parse_segment_file_name(files[1].filename().string());
  flip_byte(files[1], queue::kSegmentHeaderSize + 3 * 1040 + queue::kRecordHeaderSize + 500);
  DiskBatchQueue queue(config);
  EXPECT_EQ(queue.stats().depth_batches, 300u) << "sealed segments are summarised from trailers, checked on read";
  const auto batches = drain(queue);
  ASSERT_EQ(batches.size(), 299u);
  const auto stats = queue.disk_stats();
  EXPECT_EQ(stats.corrupted_records, 1u);
  EXPECT_EQ(stats.depth_batches, 0u);
  EXPECT_NE(stats.last_error.find("failed its checksum"), std::string::npos) << stats.last_error;
  EXPECT_EQ(segment_files(dir.path()).size(), 1u) << "consumed segments are deleted, skipped records included";
  EXPECT_EQ(stats.disk_bytes, queue_test::segment_bytes_on_disk(dir.path()));
  std::uint64_t expected = 1;
  for (const auto& batch : batches) {
    if (expected == first_in_segment + 3) ++expected;
    EXPECT_EQ(batch.sequence, expected);
    EXPECT_EQ(payload_id(batch.payload), expected);
    EXPECT_TRUE(payload_intact(batch.payload));
    ++expected;
  }
}

TEST(DiskBatchQueueRecovery, FlippedHeaderByteResyncsToTheNextRecord) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 300, 1000);
  const auto files = segment_files(dir.path());
  const std::uint64_t first_in_segment = *queue::parse_segment_file_name(files[2].filename().string());
  // The payload-size field of the 6th record: the reader cannot know where it ends.
  flip_byte(files[2], queue::kSegmentHeaderSize + 5 * 1040 + 25);
  DiskBatchQueue queue(config);
  const auto batches = drain(queue);
  ASSERT_EQ(batches.size(), 299u);
  EXPECT_EQ(queue.stats().corrupted_records, 1u);
  EXPECT_EQ(queue.stats().depth_batches, 0u);
  EXPECT_EQ(segment_files(dir.path()).size(), 1u);
  for (const auto& batch : batches) {
    EXPECT_NE(batch.sequence, first_in_segment + 5);
    EXPECT_TRUE(payload_intact(batch.payload));
  }
}

TEST(DiskBatchQueueRecovery, CorruptionInTheUnsealedSegmentIsSkippedNotTruncated) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 20, 1000);
  auto files = segment_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  flip_byte(files[0], queue::kSegmentHeaderSize + 7 * 1040 + queue::kRecordHeaderSize + 10);
  DiskBatchQueue queue(config);
  EXPECT_EQ(queue.disk_stats().torn_tails_truncated, 0u) << "valid records follow: not a torn tail";
  const auto batches = drain(queue);
  EXPECT_EQ(batches.size(), 19u);
  EXPECT_EQ(queue.stats().corrupted_records, 1u);
  EXPECT_EQ(batches.back().sequence, 20u);
}

TEST(DiskBatchQueueRecovery, GarbageSegmentHeaderIsQuarantinedAndTheRestDrains) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 300, 1000);
  const auto files = segment_files(dir.path());
  ASSERT_GE(files.size(), 4u);
  flip_byte(files[1], 3);  // magic
  std::filesystem::resize_file(files[2], 10);  // shorter than a header
  const std::uint64_t records_in_2 = *queue::parse_segment_file_name(files[2].filename().string()) -
                                     *queue::parse_segment_file_name(files[1].filename().string());
  const std::uint64_t records_in_3 = *queue::parse_segment_file_name(files[3].filename().string()) -
                                     *queue::parse_segment_file_name(files[2].filename().string());
  DiskBatchQueue queue(config);
  auto stats = queue.disk_stats();
  EXPECT_EQ(stats.quarantined_segments, 2u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "quarantine" / files[1].filename()));
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "quarantine" / files[2].filename()));
  EXPECT_FALSE(std::filesystem::exists(files[1]));
  EXPECT_NE(stats.last_error.find("quarantine"), std::string::npos);
  const auto batches = drain(queue);
  EXPECT_EQ(batches.size(), 300u - records_in_2 - records_in_3);
  for (const auto& batch : batches) EXPECT_TRUE(payload_intact(batch.payload));
  for (std::size_t i = 1; i < batches.size(); ++i) EXPECT_GT(batches[i].sequence, batches[i - 1].sequence);
  EXPECT_EQ(batches.back().sequence, 300u);
  std::ostringstream out;
  EXPECT_EQ(print_queue_status(dir.path(), out), 0);
  EXPECT_NE(out.str().find("quarantined segments: 2 (2 files in quarantine/)"), std::string::npos) << out.str();
}

TEST(DiskBatchQueueRecovery, SegmentWithoutTrailerInTheMiddleIsScannedAndSealed) {
  TempDir dir;
  auto config = small_config(dir.path());
  fill(config, 300, 1000);
  const auto files = segment_files(dir.path());
  // Simulate a crash between the last record of segment 1 and its trailer.
  std::filesystem::resize_file(files[1], std::filesystem::file_size(files[1]) - queue::kTrailerSize);
  {
    DiskBatchQueue queue(config);
    EXPECT_EQ(queue.stats().depth_batches, 300u);
  }
  DiskBatchQueue queue(config);
  const auto batches = drain(queue);
  ASSERT_EQ(batches.size(), 300u);
  EXPECT_EQ(queue.stats().corrupted_records, 0u);
}

TEST(DiskBatchQueueRecovery, DamagedAckLogTailFallsBackToTheLastGoodRecord) {
  TempDir dir;
  auto config = small_config(dir.path());
  {
    DiskBatchQueue queue(config);
    for (std::uint64_t id = 1; id <= 20; ++id) ASSERT_TRUE(queue.push(make_payload(id, 100), 1));
    for (int i = 0; i < 5; ++i) queue.acknowledge(queue.peek(0ms)->sequence);
  }
  std::ofstream(dir.path() / "acks.log", std::ios::app | std::ios::binary) << "garbage";
  {
    DiskBatchQueue queue(config);
    EXPECT_EQ(queue.peek(0ms)->sequence, 6u);
    queue.acknowledge(6);
  }
  DiskBatchQueue queue(config);
  EXPECT_EQ(queue.peek(0ms)->sequence, 7u) << "acks appended after a torn record are still found";
}

// --- concurrency ---------------------------------------------------------------------

TEST(DiskBatchQueue, OneProducerOneConsumerLoseNothing) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.fsync = FsyncMode::Interval;
  config.fsync_interval = 20ms;
  config.segment_bytes = 256 * 1024;
  DiskBatchQueue queue(config);
  constexpr std::uint64_t kBatches = 20000;
  std::thread producer([&] {
    for (std::uint64_t id = 1; id <= kBatches; ++id) ASSERT_TRUE(queue.push(make_payload(id, 64 + id % 2000), 1));
  });
  std::uint64_t expected = 1;
  while (expected <= kBatches) {
    auto batch = queue.peek(5s);
    ASSERT_TRUE(batch) << "stalled at " << expected;
    ASSERT_EQ(batch->sequence, expected);
    ASSERT_TRUE(payload_intact(batch->payload));
    ASSERT_EQ(payload_id(batch->payload), expected);
    queue.acknowledge(batch->sequence);
    ++expected;
  }
  producer.join();
  const auto stats = queue.disk_stats();
  EXPECT_EQ(stats.depth_batches, 0u);
  EXPECT_EQ(stats.dropped_batches, 0u);
  EXPECT_EQ(stats.write_errors, 0u);
  EXPECT_LE(stats.segments, 2u);
}

TEST(DiskBatchQueue, ConcurrentDropOldestKeepsOrderAndAccountsForEveryBatch) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 256 * 1024;
  config.segment_bytes = 16 * 1024;
  config.fsync = FsyncMode::Interval;
  config.fsync_interval = 5ms;
  DiskBatchQueue queue(config);
  constexpr std::uint64_t kBatches = 30000;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (std::uint64_t id = 1; id <= kBatches; ++id) ASSERT_TRUE(queue.push(make_payload(id, 200 + id % 700), 2));
    done = true;
  });
  std::uint64_t delivered = 0, previous = 0;
  for (;;) {
    auto batch = queue.peek(1ms);
    if (!batch) {
      if (done && queue.stats().depth_batches == 0) break;
      continue;
    }
    ASSERT_GT(batch->sequence, previous);
    ASSERT_TRUE(payload_intact(batch->payload));
    ASSERT_EQ(payload_id(batch->payload), batch->sequence);
    previous = batch->sequence;
    if (delivered % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));  // a slow link
    queue.acknowledge(batch->sequence);
    ++delivered;
  }
  producer.join();
  const auto stats = queue.disk_stats();
  EXPECT_GT(stats.dropped_batches, 0u) << "the consumer is slower: the bound must have been hit";
  // A batch dropped while the consumer held it is both delivered and counted dropped.
  EXPECT_GE(delivered + stats.dropped_batches, kBatches);
  EXPECT_LE(delivered + stats.dropped_batches, kBatches + stats.dropped_batches / 10 + 5);
  EXPECT_EQ(stats.dropped_spans, 2 * stats.dropped_batches);
  EXPECT_EQ(previous, kBatches) << "the newest batch is never dropped";
  EXPECT_LE(queue_test::segment_bytes_on_disk(dir.path()), config.max_bytes);
  EXPECT_EQ(stats.disk_bytes, queue_test::segment_bytes_on_disk(dir.path())) << "no file outlives its accounting";
}

// --- status ---------------------------------------------------------------------------

TEST(QueueStatus, ReportsDepthAgeDropsAndErrorsWhileStopped) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.max_bytes = 256 * 1024;
  config.segment_bytes = 32 * 1024;
  std::uint64_t depth = 0, spans = 0, dropped = 0;
  {
    DiskBatchQueue queue(config);
    for (std::uint64_t id = 1; id <= 400; ++id) ASSERT_TRUE(queue.push(make_payload(id, 1000), 4));
    for (int i = 0; i < 10; ++i) queue.acknowledge(queue.peek(0ms)->sequence);
    queue.set_last_export_error("grpc UNAVAILABLE: connection refused");
    const auto stats = queue.stats();
    depth = stats.depth_batches;
    spans = stats.depth_spans;
    dropped = stats.dropped_batches;
    ASSERT_GT(dropped, 0u);
  }
  const auto status = inspect_queue_directory(dir.path());
  EXPECT_FALSE(status.agent_running);
  EXPECT_EQ(status.depth_batches, depth);
  EXPECT_EQ(status.depth_spans, spans);
  EXPECT_EQ(status.dropped_batches, dropped);
  EXPECT_EQ(status.dropped_spans, 4 * dropped);
  ASSERT_TRUE(status.oldest_enqueued_unix_nanos);
  EXPECT_EQ(status.last_export_error, "grpc UNAVAILABLE: connection refused");

  std::ostringstream out;
  EXPECT_EQ(print_queue_status(dir.path(), out), 0);
  const std::string text = out.str();
  EXPECT_NE(text.find("agent:                stopped"), std::string::npos) << text;
  EXPECT_NE(text.find("depth:                " + std::to_string(depth) + " batches, " + std::to_string(spans) + " spans"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dropped:              " + std::to_string(dropped) + " batches"), std::string::npos) << text;
  EXPECT_NE(text.find("last export error:    grpc UNAVAILABLE: connection refused"), std::string::npos) << text;
  EXPECT_NE(text.find(" old (enqueued "), std::string::npos) << text;

  DiskBatchQueue running(config);
  std::ostringstream while_running;
  EXPECT_EQ(print_queue_status(dir.path(), while_running), 0);
  EXPECT_NE(while_running.str().find("running (pid " + std::to_string(::getpid()) + ")"), std::string::npos)
      << while_running.str();
}

TEST(QueueStatus, CountersReachTheStateFileWhileRunningEvenWithALongFsyncInterval) {
  TempDir dir;
  auto config = small_config(dir.path());
  config.fsync = FsyncMode::Interval;
  config.fsync_interval = std::chrono::hours(1);
  DiskBatchQueue queue(config);
  EXPECT_FALSE(queue.push(std::string(128ull * 1024 * 1024, 'x'), 9));  // can never fit: dropped
  queue.set_last_export_error("connection refused");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  QueueDirectoryStatus status;
  do {
    std::this_thread::sleep_for(50ms);
    status = inspect_queue_directory(dir.path());
  } while (status.dropped_spans != 9 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(status.dropped_batches, 1u);
  EXPECT_EQ(status.dropped_spans, 9u);
  EXPECT_EQ(status.last_export_error, "connection refused");
  EXPECT_TRUE(status.agent_running);
}

TEST(QueueStatus, MissingDirectoryIsAnError) {
  std::ostringstream out;
  EXPECT_EQ(print_queue_status("/var/tmp/edgetrace-no-such-queue-dir", out), 2);
  EXPECT_NE(out.str().find("no queue directory"), std::string::npos);
}

}  // namespace
}  // namespace edgetrace
