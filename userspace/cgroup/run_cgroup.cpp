#include "cgroup/run_cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "trace_probes.h"

namespace edgetrace {

RunCgroup::RunCgroup() {
  const auto parent = cgroup2_mount_point() / "edgetrace";
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw std::runtime_error("cannot create cgroup " + parent.string() + ": " + ec.message());
  path_ = parent / ("run-" + std::to_string(::getpid()));
  if (::mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create cgroup " + path_.string() + ": " + std::strerror(errno));
  procs_file_ = (path_ / "cgroup.procs").string();
}

bool RunCgroup::enter_from_child() const noexcept {
  const int fd = ::open(procs_file_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, "0", 1) == 1;
  ::close(fd);
  return ok;
}

RunCgroup::~RunCgroup() {
  // Children the command left behind would keep the cgroup alive: end them first.
  if (std::ofstream kill_file(path_ / "cgroup.kill"); kill_file) kill_file << "1";
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spdlog::warn("could not remove cgroup {}: {}", path_.string(), std::strerror(errno));
}

}  // namespace edgetrace
