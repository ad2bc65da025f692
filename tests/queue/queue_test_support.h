// Shared helpers for the queue suites: real directories under /var/tmp, deterministic payloads.
#pragma once

#include "../common/temp_dir.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "queue/disk_batch_queue.h"
#include "queue/segment_format.h"

namespace edgetrace::queue_test {

class TempDir : public edgetrace::testing::TempDir {
 public:
  explicit TempDir(const std::string& prefix = "edgetrace-queue-test") : edgetrace::testing::TempDir(prefix, "/var/tmp") {}
};

// Self-describing payload: "id=<n>;" then filler derived from the id, so a reader can
// regenerate it and tell an intact record from a damaged one.
inline std::string make_payload(std::uint64_t id, std::size_t size) {
  std::string payload = "id=" + std::to_string(id) + ";";
  std::uint64_t state = id * 0x9E3779B97F4A7C15ull + 1;
  while (payload.size() < size) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    payload.push_back(static_cast<char>('a' + state % 26));
  }
  return payload;
}

inline std::uint64_t payload_id(const std::string& payload) {
  if (!payload.starts_with("id=")) return 0;
  return std::stoull(payload.substr(3, payload.find(';') - 3));
}

inline bool payload_intact(const std::string& payload) {
  const auto id = payload_id(payload);
  return id != 0 && make_payload(id, payload.size()) == payload;
}

inline QueueConfig small_config(const std::filesystem::path& dir) {
  QueueConfig config;
  config.dir = dir;
  config.segment_bytes = 64 * 1024;
  config.max_bytes = 32ull * 1024 * 1024;
  config.fsync = FsyncMode::Never;
  return config;
}

inline std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (queue::parse_segment_file_name(entry.path().filename().string())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

inline std::uint64_t segment_bytes_on_disk(const std::filesystem::path& dir) {
  std::uint64_t total = 0;
  for (const auto& file : segment_files(dir)) total += std::filesystem::file_size(file);
  return total;
}

}  // namespace edgetrace::queue_test
