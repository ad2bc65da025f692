// Small readers of /proc, /sys and mount tables, and scoped helpers that undo what they do.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrace::capabilities {

std::optional<std::string> read_text_file(const std::string& path);
std::string trim(std::string_view text);
std::string errno_text(int error_number);

struct MountEntry {
  std::string mount_point;
  std::string fstype;
  std::string super_options;  // e.g. "rw,net_cls,net_prio" for a cgroup v1 hierarchy
};

// /proc/self/mountinfo, with octal escapes (\040 for space) decoded.
std::vector<MountEntry> read_mounts(const std::string& mountinfo_path = "/proc/self/mountinfo");
std::vector<MountEntry> parse_mountinfo(std::string_view mountinfo);

// "none [integrity] confidentiality" -> "integrity"; nullopt when nothing is bracketed.
std::optional<std::string> parse_lockdown(std::string_view text);

// Mounts a pseudo filesystem (securityfs, tracefs) on a fresh directory under /tmp for as
// long as the object lives, so probing never changes the host's mount table for good.
class ScopedPseudoMount {
 public:
  explicit ScopedPseudoMount(const std::string& fstype);
  ScopedPseudoMount(const ScopedPseudoMount&) = delete;
  ScopedPseudoMount& operator=(const ScopedPseudoMount&) = delete;
  ~ScopedPseudoMount();

  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

// A child cgroup created under the cgroup2 mount and removed on destruction.
class TemporaryCgroup {
 public:
  explicit TemporaryCgroup(const std::string& cgroup2_mount);
  TemporaryCgroup(const TemporaryCgroup&) = delete;
  TemporaryCgroup& operator=(const TemporaryCgroup&) = delete;
  ~TemporaryCgroup();

  [[nodiscard]] bool created() const { return fd_ >= 0; }
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
  int fd_ = -1;
};

// Name prefix of every cgroup, BPF program and map the probe creates; tests look for leftovers.
inline constexpr std::string_view kProbeObjectPrefix = "et_caps";
inline constexpr std::string_view kTemporaryCgroupPrefix = "edgetrace-doctor-";

}  // namespace edgetrace::capabilities
