// Loads the socket-path capture programs (bpf/socket_capture.bpf.c) and attaches them to
// each opted-in cgroup. Only sockets created inside those cgroups are seen, so nothing else
// on the host pays for tracing; see docs/architecture.md for what this path cannot see.
#pragma once

#include <filesystem>
#include <map>
#include <memory>

#include "common/unique_fd.h"
#include "trace_probes.h"

struct socket_capture_bpf;
struct bpf_link;

namespace edgetrace {

class SocketCaptureProbes final : public CaptureProbes {
 public:
  // Opens, sizes and loads the programs; nothing is attached until add_cgroup. Throws
  // std::runtime_error saying which step failed.
  explicit SocketCaptureProbes(const CaptureOptions& options);
  ~SocketCaptureProbes() override;
  SocketCaptureProbes(const SocketCaptureProbes&) = delete;
  SocketCaptureProbes& operator=(const SocketCaptureProbes&) = delete;

  void add_cgroup(const std::filesystem::path& cgroup_dir) override;
  void remove_cgroup(const std::filesystem::path& cgroup_dir) override;
  // A pid has no cgroup of its own to attach to: throws std::invalid_argument.
  void add_pid(std::uint32_t tgid) override;
  void remove_pid(std::uint32_t tgid) override;

  [[nodiscard]] int ring_buffer_fd() const override;
  [[nodiscard]] KernelCounters counters() const override;
  [[nodiscard]] std::uint32_t capture_bytes() const override { return capture_bytes_; }

 private:
  struct SkeletonDeleter {
    void operator()(socket_capture_bpf* skeleton) const;
  };
  struct LinkDeleter {
    void operator()(bpf_link* link) const;
  };
  struct CgroupAttachment {
    UniqueFd cgroup;
    std::unique_ptr<bpf_link, LinkDeleter> ingress;
    std::unique_ptr<bpf_link, LinkDeleter> egress;
  };

  std::unique_ptr<socket_capture_bpf, SkeletonDeleter> skeleton_;
  std::uint32_t capture_bytes_;
  std::map<std::filesystem::path, CgroupAttachment> cgroups_;
};

}  // namespace edgetrace
