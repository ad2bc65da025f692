// Spill-queue throughput and recovery benchmark. Figures and the command live in docs/queue.md.
//   bench_queue [--dir /var/tmp] [--append-mib 256] [--backlog-mib 1024] [--reps 3]
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "queue/disk_batch_queue.h"
#include "queue/segment_format.h"
#include "temp_dir.h"

namespace {

using namespace edgetrace;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBatchBytes = 20 * 1024;
constexpr std::uint32_t kSpansPerBatch = 100;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::vector<std::string> make_batches(std::size_t count) {
  std::mt19937_64 random(42);
  std::vector<std::string> batches(count);
  for (auto& batch : batches) {
    batch.resize(kBatchBytes);
    for (std::size_t i = 0; i < batch.size(); i += 8) {
      const std::uint64_t word = random();
      std::memcpy(batch.data() + i, &word, std::min<std::size_t>(8, batch.size() - i));
    }
  }
  return batches;
}

// Drops this benchmark's own files from the page cache (no effect on anything else).
void evict_from_page_cache(const std::filesystem::path& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

struct Throughput {
  double append_mb_s = 0, append_batches_s = 0, durable_mb_s = 0, drain_mb_s = 0, drain_batches_s = 0;
  double push_p50_us = 0, push_p99_us = 0, push_max_us = 0;
};

Throughput run_throughput(const std::filesystem::path& parent, FsyncMode mode, std::size_t batches_to_write,
                          const std::vector<std::string>& batches) {
  edgetrace::testing::TempDir dir("edgetrace-bench-queue", parent);
  QueueConfig config;
  config.dir = dir.path();
  config.fsync = mode;
  config.fsync_interval = std::chrono::milliseconds(1000);
  config.max_bytes = 4ull << 30;
  DiskBatchQueue queue(config);
  std::vector<double> latencies;
  latencies.reserve(batches_to_write);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < batches_to_write; ++i) {
    const auto before = Clock::now();
    if (!queue.push(batches[i % batches.size()], kSpansPerBatch)) throw std::runtime_error("push refused");
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - before).count());
  }
  const double append_seconds = seconds_since(start);
  queue.sync();  // what it takes until every byte is on the disk, not just in the page cache
  const double durable_seconds = seconds_since(start);
  const double megabytes = static_cast<double>(batches_to_write * kBatchBytes) / 1e6;
  Throughput result;
  result.durable_mb_s = megabytes / durable_seconds;
  result.append_mb_s = megabytes / append_seconds;
  result.append_batches_s = static_cast<double>(batches_to_write) / append_seconds;
  std::sort(latencies.begin(), latencies.end());
  result.push_p50_us = latencies[latencies.size() / 2];
  result.push_p99_us = latencies[latencies.size() * 99 / 100];
  result.push_max_us = latencies.back();

  const auto drain_start = Clock::now();
  std::size_t drained = 0;
  while (auto batch = queue.peek(std::chrono::milliseconds(0))) {
    queue.acknowledge(batch->sequence);
    ++drained;
  }
  const double drain_seconds = seconds_since(drain_start);
  if (drained != batches_to_write) throw std::runtime_error("drained " + std::to_string(drained));
  result.drain_mb_s = megabytes / drain_seconds;
  result.drain_batches_s = static_cast<double>(drained) / drain_seconds;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgetrace spill-queue benchmark"};
  std::string parent = "/var/tmp";
  std::size_t append_mib = 256, backlog_mib = 1024, always_batches = 2000;
  int reps = 3;
  app.add_option("--dir", parent, "parent directory for scratch queues (removed afterwards)");
  app.add_option("--append-mib", append_mib, "MiB appended per run for the interval and never policies");
  app.add_option("--always-batches", always_batches, "batches appended per run for fsync: always");
  app.add_option("--backlog-mib", backlog_mib, "backlog size for the recovery measurement");
  app.add_option("--reps", reps, "repetitions (medians are reported)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const auto batches = make_batches(64);
  std::printf("batch: %zu bytes, %u spans (spans/s = batches/s x %u)\n\n", kBatchBytes, kSpansPerBatch,
              kSpansPerBatch);
  std::printf("%-14s %8s %10s %10s %9s %8s %10s %10s %9s %9s %9s\n", "fsync", "append", "append", "append",
              "+sync", "drain", "drain", "drain", "push p50", "push p99", "push max");
  std::printf("%-14s %8s %10s %10s %9s %8s %10s %10s %9s %9s %9s\n", "", "MB/s", "batches/s", "spans/s", "MB/s",
              "MB/s", "batches/s", "spans/s", "us", "us", "us");
  for (auto mode : {FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never}) {
    const std::size_t count = mode == FsyncMode::Always ? always_batches : append_mib * 1024 * 1024 / kBatchBytes;
    std::vector<Throughput> runs;
    for (int rep = 0; rep < reps; ++rep) runs.push_back(run_throughput(parent, mode, count, batches));
    auto pick = [&](double Throughput::*field) {
      std::vector<double> values;
      for (const auto& run : runs) values.push_back(run.*field);
      return median(values);
    };
    const double append_batches = pick(&Throughput::append_batches_s);
    const double drain_batches = pick(&Throughput::drain_batches_s);
    std::printf("%-14s %8.0f %10.0f %10.0f %9.0f %8.0f %10.0f %10.0f %9.1f %9.1f %9.0f\n",
                to_string(mode, std::chrono::milliseconds(1000)).c_str(), pick(&Throughput::append_mb_s),
                append_batches, append_batches * kSpansPerBatch, pick(&Throughput::durable_mb_s),
                pick(&Throughput::drain_mb_s), drain_batches,
                drain_batches * kSpansPerBatch, pick(&Throughput::push_p50_us), pick(&Throughput::push_p99_us),
                pick(&Throughput::push_max_us));
  }

  // Recovery: open a directory holding a backlog of `backlog_mib`, warm and cold page cache.
  edgetrace::testing::TempDir dir("edgetrace-bench-queue", parent);
  QueueConfig config;
  config.dir = dir.path();
  config.max_bytes = 4ull << 30;
  const std::size_t backlog_batches = backlog_mib * 1024 * 1024 / kBatchBytes;
  {
    DiskBatchQueue queue(config);
    for (std::size_t i = 0; i < backlog_batches; ++i) queue.push(batches[i % batches.size()], kSpansPerBatch);
    // Acknowledge a few so the read position sits inside the first segment.
    for (int i = 0; i < 10; ++i) queue.acknowledge(queue.peek(std::chrono::milliseconds(0))->sequence);
  }
  std::vector<double> warm, cold;
  std::uint64_t depth = 0;
  for (int rep = 0; rep < reps; ++rep) {
    auto start = Clock::now();
    {
      DiskBatchQueue queue(config);
      warm.push_back(seconds_since(start));
      depth = queue.stats().depth_batches;
    }
    evict_from_page_cache(dir.path());
    start = Clock::now();
    {
      DiskBatchQueue queue(config);
      cold.push_back(seconds_since(start));
    }
  }
  std::printf("\nrecovery of a %zu MiB backlog (%llu batches, %s segments): open %.3f s warm cache, %.3f s cold cache "
              "(medians of %d)\n",
              backlog_mib, static_cast<unsigned long long>(depth), std::to_string(backlog_mib / 16 + 1).c_str(),
              median(warm), median(cold), reps);

  // Crash-style recovery: a torn, unsealed last segment of full size must be scanned record by record.
  {
    std::vector<std::filesystem::path> segments;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
      if (edgetrace::queue::parse_segment_file_name(entry.path().filename().string())) segments.push_back(entry.path());
    std::sort(segments.begin(), segments.end());
    // The second-newest segment is full and sealed: strip its trailer so it is scanned like a crash leftover.
    const auto& victim = segments[segments.size() - 2];
    std::filesystem::resize_file(victim, std::filesystem::file_size(victim) - edgetrace::queue::kTrailerSize - 100);
    evict_from_page_cache(dir.path());
    const auto start = Clock::now();
    DiskBatchQueue queue(config);
    std::printf("recovery with a torn %llu MiB segment to scan and repair: open %.3f s cold cache\n",
                static_cast<unsigned long long>(config.segment_bytes >> 20), seconds_since(start));
  }
  return 0;
}
