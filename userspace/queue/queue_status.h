// `edgetrace queue status --dir DIR`: what the spill queue holds, read straight from the
// files, so it works while the agent is stopped (and, read-only, while it runs).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>

namespace edgetrace {

struct QueueDirectoryStatus {
  bool agent_running = false;
  std::string agent_pid;
  std::uint64_t depth_batches = 0;
  std::uint64_t depth_spans = 0;
  std::uint64_t depth_bytes = 0;
  std::optional<std::uint64_t> oldest_enqueued_unix_nanos;
  std::uint64_t segments = 0;
  std::uint64_t disk_bytes = 0;
  std::uint64_t unreadable_segments = 0;   // would be quarantined on the next start
  std::uint64_t quarantined_files = 0;      // already in quarantine/
  std::uint64_t acknowledged_sequence = 0;
  std::uint64_t dropped_batches = 0;
  std::uint64_t dropped_spans = 0;
  std::uint64_t corrupted_records = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t quarantined_segments = 0;  // moved aside by the agent so far
  std::uint64_t torn_tails_truncated = 0;
  std::string last_error;
  std::string last_export_error;
  std::uint64_t counters_updated_unix_nanos = 0;  // 0: no state file yet
};

// Throws std::runtime_error when `dir` does not exist or is not a directory.
QueueDirectoryStatus inspect_queue_directory(const std::filesystem::path& dir);

// Prints a human-readable report; returns the process exit code (0 ok, 1 unreadable, 2 no queue).
int print_queue_status(const std::filesystem::path& dir, std::ostream& out);

}  // namespace edgetrace
