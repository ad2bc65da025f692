// Configuration of the disk spill queue (the `queue:` section of the agent's YAML).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace YAML {
class Node;
}

namespace edgetrace {

enum class FsyncMode : std::uint8_t {
  Always,    // fdatasync before push/acknowledge returns: nothing acknowledged to the caller is lost
  Interval,  // a background flusher syncs every `fsync_interval`: loss window ≤ interval on power loss
  Never,     // the kernel writes back when it likes: survives process crashes, not power loss
};

enum class OverflowPolicy : std::uint8_t {
  DropOldest,  // delete the oldest segment to make room (every batch in it is counted as dropped)
  DropNewest,  // refuse the incoming batch (counted as dropped)
};

struct QueueConfig {
  std::filesystem::path dir = "/var/lib/edgetrace/queue";
  std::uint64_t max_bytes = 1024ull * 1024 * 1024;  // all segment files together
  std::uint64_t segment_bytes = 16ull * 1024 * 1024;
  FsyncMode fsync = FsyncMode::Interval;
  std::chrono::milliseconds fsync_interval{1000};
  OverflowPolicy overflow = OverflowPolicy::DropOldest;
};

// Reads the keys under `queue:` (dir, max_bytes, segment_bytes, fsync, overflow). Sizes accept
// plain byte counts or a KiB/MiB/GiB (also KB/MB/GB, K/M/G = binary) suffix. An undefined or
// null node yields the defaults. Throws edgetrace::ConfigError naming the key on bad input.
QueueConfig parse_queue_config(const YAML::Node& queue_section);

// Throws ConfigError when the values cannot work together (also used by DiskBatchQueue).
void validate_queue_config(const QueueConfig& config);

std::string to_string(FsyncMode mode, std::chrono::milliseconds interval);
std::string to_string(OverflowPolicy policy);

}  // namespace edgetrace
