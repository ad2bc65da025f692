#include "capabilities/system_files.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

namespace edgetrace::capabilities {

std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return contents.str();
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::string errno_text(int error_number) {
  return std::string(std::strerror(error_number)) + " (errno " + std::to_string(error_number) + ")";
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_field(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const auto digits = field.substr(i + 1, 3);
      if (digits.size() == 3 && digits.find_first_not_of("01234567") == std::string_view::npos) {
        out.push_back(static_cast<char>(std::stoi(std::string(digits), nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t pos = 0;
  while (pos < line.size()) {
    const auto start = line.find_first_not_of(' ', pos);
    if (start == std::string_view::npos) break;
    const auto end = line.find(' ', start);
    fields.push_back(line.substr(start, end == std::string_view::npos ? line.size() - start : end - start));
    if (end == std::string_view::npos) break;
    pos = end;
  }
  return fields;
}

}  // namespace

std::vector<MountEntry> parse_mountinfo(std::string_view mountinfo) {
  // id parent major:minor root mount_point options [optional fields...] - fstype source super_options
  std::vector<MountEntry> mounts;
  std::size_t pos = 0;
  while (pos < mountinfo.size()) {
    auto end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    const auto fields = split_fields(mountinfo.substr(pos, end - pos));
    pos = end + 1;
    if (fields.size() < 7) continue;
    std::size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") ++separator;
    if (separator + 1 >= fields.size()) continue;
    mounts.push_back({unescape_mount_field(fields[4]), std::string(fields[separator + 1]),
                      separator + 3 < fields.size() ? std::string(fields[separator + 3]) : std::string()});
  }
  return mounts;
}

std::vector<MountEntry> read_mounts(const std::string& mountinfo_path) {
  const auto text = read_text_file(mountinfo_path);
  if (!text) {
    spdlog::warn("cannot read {}: {}", mountinfo_path, errno_text(errno));
    return {};
  }
  return parse_mountinfo(*text);
}

std::optional<std::string> parse_lockdown(std::string_view text) {
  const auto open = text.find('[');
  const auto close = text.find(']', open == std::string_view::npos ? 0 : open);
  if (open == std::string_view::npos || close == std::string_view::npos || close <= open + 1)
    return std::nullopt;
  return std::string(text.substr(open + 1, close - open - 1));
}

ScopedPseudoMount::ScopedPseudoMount(const std::string& fstype) {
  std::string pattern = "/tmp/edgetrace-" + fstype + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    error_ = "cannot create a mount point under /tmp: " + errno_text(errno);
    return;
  }
  path_ = pattern;
  if (::mount(fstype.c_str(), path_.c_str(), fstype.c_str(), MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    error_ = "cannot mount " + fstype + ": " + errno_text(errno);
    return;
  }
  mounted_ = true;
}

ScopedPseudoMount::~ScopedPseudoMount() {
  if (mounted_ && ::umount2(path_.c_str(), MNT_DETACH) != 0)
    spdlog::warn("cannot unmount {}: {}", path_, errno_text(errno));
  if (!path_.empty() && ::rmdir(path_.c_str()) != 0)
    spdlog::warn("cannot remove {}: {}", path_, errno_text(errno));
}

TemporaryCgroup::TemporaryCgroup(const std::string& cgroup2_mount) {
  static std::atomic<unsigned> sequence{0};
  path_ = cgroup2_mount + "/" + std::string(kTemporaryCgroupPrefix) + std::to_string(::getpid()) + "-" +
          std::to_string(sequence.fetch_add(1));
  if (::mkdir(path_.c_str(), 0755) != 0) {
    error_ = "cannot create cgroup " + path_ + ": " + errno_text(errno);
    path_.clear();
    return;
  }
  fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) error_ = "cannot open cgroup " + path_ + ": " + errno_text(errno);
}

TemporaryCgroup::~TemporaryCgroup() {
  if (fd_ >= 0) ::close(fd_);
  if (path_.empty()) return;
  // A process that just left the cgroup may still be counted for a moment (EBUSY).
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spdlog::warn("cannot remove temporary cgroup {}: {}", path_, errno_text(errno));
}

}  // namespace edgetrace::capabilities
