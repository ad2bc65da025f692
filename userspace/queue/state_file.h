// The queue's persisted counters (dir/state): a small text file replaced atomically
// (write temp, fsync, rename) so `edgetrace queue status` can report them while the agent
// is stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace edgetrace::queue {

struct PersistedState {
  std::uint64_t dropped_batches = 0;
  std::uint64_t dropped_spans = 0;
  std::uint64_t corrupted_records = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t quarantined_segments = 0;
  std::uint64_t torn_tails_truncated = 0;
  std::uint64_t updated_unix_nanos = 0;
  std::string last_error;
  std::string last_export_error;
};

// nullopt when absent or unreadable; unknown keys are ignored (newer writers).
std::optional<PersistedState> read_state_file(const std::filesystem::path& path);
// Atomic replace; `durable` adds fsync of the file and the directory. False on error (errno).
bool write_state_file(const std::filesystem::path& path, const PersistedState& state, bool durable);

}  // namespace edgetrace::queue
