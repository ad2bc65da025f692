// The cgroup `edgetrace run` creates for its command: made before the command starts, so
// every socket the command opens belongs to it; removed (after killing stragglers) at the end.
#pragma once

#include <filesystem>

namespace edgetrace {

class RunCgroup {
 public:
  // Creates <cgroup2 mount>/edgetrace/run-<our pid>. Throws std::runtime_error on failure.
  RunCgroup();
  ~RunCgroup();
  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  // Moves the calling process into the cgroup (used by the child between fork and exec).
  // Async-signal-safe; returns false on failure.
  [[nodiscard]] bool enter_from_child() const noexcept;

 private:
  std::filesystem::path path_;
  std::string procs_file_;
};

}  // namespace edgetrace
