// Kill -9 a writer at random points, hundreds of times, and check that recovery keeps every
// batch whose push returned (fsync: always) and the consumer's read position.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include "queue/disk_batch_queue.h"
#include "queue_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using queue_test::make_payload;
using queue_test::payload_id;
using queue_test::payload_intact;

struct Report {
  char kind = 0;  // 'P' push returned true, 'A' acknowledge returned
  std::uint64_t sequence = 0;
  std::uint64_t id = 0;
  std::uint32_t size = 0;
};
static_assert(sizeof(Report) <= PIPE_BUF, "reports must be written atomically");

[[noreturn]] void run_writer(const QueueConfig& config, int report_fd, std::uint64_t first_id, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  DiskBatchQueue queue(config);
  for (std::uint64_t id = first_id;; ++id) {
    const auto size = static_cast<std::uint32_t>(32 + random() % 6000);  // longer than the id prefix
    if (queue.push(make_payload(id, size), 1)) {
      Report report{'P', queue.disk_stats().next_sequence - 1, id, size};
      if (::write(report_fd, &report, sizeof(report)) != sizeof(report)) ::_exit(3);
    }
    if (random() % 3 == 0) {
      if (auto batch = queue.peek(0ms)) {
        queue.acknowledge(batch->sequence);
        Report report{'A', batch->sequence, payload_id(batch->payload), 0};
        if (::write(report_fd, &report, sizeof(report)) != sizeof(report)) ::_exit(3);
      }
    }
  }
}

// For a failure message: what each segment file holds according to a full scan.
std::string describe_segments(const std::filesystem::path& dir) {
  std::string text;
  for (const auto& file : queue_test::segment_files(dir)) {
    const auto size = std::filesystem::file_size(file);
    text += "\n  " + file.filename().string() + " size " + std::to_string(size);
    queue::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    const auto scan = queue::scan_segment(fd.get(), queue::kSegmentHeaderSize, size, true);
    text += " scan " + std::to_string(scan.first_sequence) + ".." + std::to_string(scan.last_sequence) + " n=" +
            std::to_string(scan.record_count) + " valid_end=" + std::to_string(scan.valid_end);
    queue::TrailerBytes bytes;
    if (size >= queue::kSegmentHeaderSize + queue::kTrailerSize &&
        queue::pread_fully(fd.get(), bytes.data(), bytes.size(), size - queue::kTrailerSize))
      if (auto trailer = queue::decode_trailer(bytes.data()))
        text += " trailer " + std::to_string(trailer->first_sequence) + ".." +
                std::to_string(trailer->last_sequence) + " n=" + std::to_string(trailer->record_count);
  }
  return text;
}

void run_crash_loop(FsyncMode fsync, const int kIterations) {
  queue_test::TempDir dir("edgetrace-queue-crash");
  QueueConfig config;
  config.dir = dir.path() / "queue";
  config.segment_bytes = 32 * 1024;  // rolls every few records: kills land in every code path
  config.max_bytes = 16ull * 1024 * 1024;  // 512 segments: never reached (drained every 5 rounds)
  config.fsync = fsync;
  config.fsync_interval = std::chrono::milliseconds(5);

  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 random(seed);

  std::map<std::uint64_t, Report> expected;  // pushes reported and not yet known consumed
  std::uint64_t acked_floor = 0;             // highest sequence known acknowledged
  std::uint64_t highest_known = 0;           // highest sequence reported or learned
  std::uint64_t total_pushes = 0, total_acks = 0, drained = 0, unreported_pushes = 0, torn_seen = 0;
  const auto started = std::chrono::steady_clock::now();

  for (int iteration = 0; iteration < kIterations; ++iteration) {
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const std::uint64_t first_id = static_cast<std::uint64_t>(iteration + 1) * 1'000'000;
    const std::uint64_t child_seed = random();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      run_writer(config, pipe_fds[1], first_id, child_seed);
    }
    ::close(pipe_fds[1]);
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 70'000));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer must die by the kill, not exit (status " << status << ")";

    Report report;
    std::uint64_t max_reported_push = 0;
    while (::read(pipe_fds[0], &report, sizeof(report)) == static_cast<ssize_t>(sizeof(report))) {
      if (report.kind == 'P') {
        ASSERT_TRUE(expected.emplace(report.sequence, report).second) << "sequence reused: " << report.sequence;
        max_reported_push = std::max(max_reported_push, report.sequence);
        highest_known = std::max(highest_known, report.sequence);
        ++total_pushes;
      } else {
        ASSERT_GT(report.sequence, acked_floor) << "acknowledged twice";
        acked_floor = report.sequence;
        expected.erase(report.sequence);
        ++total_acks;
      }
    }
    ::close(pipe_fds[0]);
    for (auto it = expected.begin(); it != expected.end() && it->first <= acked_floor;) it = expected.erase(it);

    DiskBatchQueue queue(config);
    auto stats = queue.disk_stats();
    ASSERT_EQ(stats.corrupted_records, 0u);
    ASSERT_EQ(stats.quarantined_segments, 0u);
    ASSERT_EQ(stats.dropped_batches, 0u) << "the test's backlog must stay below max_bytes";
    torn_seen = stats.torn_tails_truncated;
    ASSERT_GE(stats.acknowledged_sequence, acked_floor) << "the read position went backwards";
    // At most one acknowledgement can have returned without being reported (killed in between).
    std::uint64_t acked_unreported = 0;
    for (const auto& [sequence, pushed] : expected)
      if (sequence <= stats.acknowledged_sequence) ++acked_unreported;
    ASSERT_LE(acked_unreported, 1u) << "records before the read position that were never acknowledged";
    for (auto it = expected.begin(); it != expected.end() && it->first <= stats.acknowledged_sequence;)
      it = expected.erase(it);
    acked_floor = stats.acknowledged_sequence;
    // Everything reported and unconsumed is still there; at most one unreported push on top.
    if (stats.depth_batches < expected.size()) {
      const std::string files = describe_segments(config.dir);
      std::string missing;
      std::map<std::uint64_t, bool> present;
      while (auto batch = queue.peek(0ms)) {
        present[batch->sequence] = true;
        queue.acknowledge(batch->sequence);
      }
      for (const auto& [sequence, pushed] : expected)
        if (!present.count(sequence)) missing += " " + std::to_string(sequence) + pushed.kind;
      std::string all;
      for (const auto& [sequence, pushed] : expected) all += " " + std::to_string(sequence) + pushed.kind;
      FAIL() << "depth " << stats.depth_batches << " < expected " << expected.size() << "; missing:" << missing
             << "; expected:" << all << "; acked " << stats.acknowledged_sequence << files;
    }
    ASSERT_LE(stats.depth_batches, expected.size() + 1);

    auto first = queue.peek(0ms);
    if (!expected.empty()) {
      ASSERT_TRUE(first);
      ASSERT_EQ(first->sequence, expected.begin()->first) << "the read position did not survive";
    }

    // Every 5th round (and the last, or once the backlog passes 4 MiB) the parent drains the whole backlog and checks each byte;
    // otherwise the backlog carries into the next writer.
    if (iteration % 5 == 4 || iteration + 1 == kIterations || stats.depth_bytes > 4 * 1024 * 1024) {
      std::uint64_t previous = acked_floor;
      while (auto batch = queue.peek(0ms)) {
        ASSERT_GT(batch->sequence, previous) << "out of order or duplicated";
        ASSERT_TRUE(payload_intact(batch->payload)) << "sequence " << batch->sequence;
        auto it = expected.find(batch->sequence);
        if (it != expected.end()) {
          if (it->second.kind == 'P') {
            ASSERT_EQ(payload_id(batch->payload), it->second.id);
            ASSERT_EQ(batch->payload.size(), it->second.size);
          }
          expected.erase(it);
        } else {
          ASSERT_GT(batch->sequence, std::max(max_reported_push, highest_known))
              << "an unknown record in the middle of the log";
          highest_known = batch->sequence;
          ++unreported_pushes;
        }
        previous = batch->sequence;
        queue.acknowledge(batch->sequence);
        ++drained;
      }
      ASSERT_TRUE(expected.empty()) << expected.size() << " reported records were lost, first sequence "
                                    << expected.begin()->first;
      acked_floor = previous;
    } else {
      // Records the writer pushed but was killed before reporting stay in the log; learn them
      // so the next rounds can account for them.
      const std::uint64_t next_sequence = queue.disk_stats().next_sequence;
      ASSERT_LE(next_sequence, std::max(highest_known, acked_floor) + 2) << "more than one unreported push";
      for (std::uint64_t sequence = std::max(highest_known, acked_floor) + 1; sequence < next_sequence; ++sequence) {
        expected.emplace(sequence, Report{'U', sequence, 0, 0});
        highest_known = sequence;
        ++unreported_pushes;
      }
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  std::printf("crash loop: %d kills, %llu pushes and %llu acks reported, %llu drained, %llu unreported pushes "
              "recovered, %llu torn tails truncated, %.1f s\n",
              kIterations, static_cast<unsigned long long>(total_pushes), static_cast<unsigned long long>(total_acks),
              static_cast<unsigned long long>(drained), static_cast<unsigned long long>(unreported_pushes),
              static_cast<unsigned long long>(torn_seen),
              std::chrono::duration<double>(elapsed).count());
  EXPECT_GT(total_pushes, 2u * kIterations) << "the writers must have done real work";
  EXPECT_GT(total_acks, kIterations / 4u);
  EXPECT_LE(unreported_pushes, static_cast<std::uint64_t>(kIterations)) << "at most one per kill";
}

// fsync: always is the policy under which a returned push must survive anything.
TEST(QueueCrash, SigkillWithFsyncAlwaysLosesNothingThatWasAcknowledgedToTheCaller) {
  run_crash_loop(FsyncMode::Always, 200);
}

// A killed process (unlike a power cut) loses nothing under the interval policy either:
// written data sits in the page cache. The flusher runs every 5 ms here to interleave with kills.
TEST(QueueCrash, SigkillWithFsyncIntervalLosesNothingEither) { run_crash_loop(FsyncMode::Interval, 100); }

}  // namespace
}  // namespace edgetrace
