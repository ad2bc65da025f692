#include "socket_probes.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <stdexcept>

#include "socket_capture.skel.h"

namespace edgetrace {

void SocketCaptureProbes::SkeletonDeleter::operator()(socket_capture_bpf* skeleton) const {
  socket_capture_bpf::destroy(skeleton);
}

void SocketCaptureProbes::LinkDeleter::operator()(bpf_link* link) const { bpf_link__destroy(link); }

SocketCaptureProbes::SocketCaptureProbes(const CaptureOptions& options) : capture_bytes_(options.capture_bytes) {
  validate_capture_options(options);
  route_libbpf_logs_to_spdlog();
  skeleton_.reset(socket_capture_bpf::open());
  if (!skeleton_) throw std::runtime_error("cannot open the socket capture BPF object: " + errno_text(errno));
  apply_shared_capture_options(*skeleton_, options);
  // Linux 6.1 refuses this helper in cgroup_skb programs; the object then reads the task.
  skeleton_->rodata->has_pid_tgid_helper =
      libbpf_probe_bpf_helper(BPF_PROG_TYPE_CGROUP_SKB, BPF_FUNC_get_current_pid_tgid, nullptr) == 1 ? 1 : 0;
  if (int err = socket_capture_bpf::load(skeleton_.get()); err != 0)
    throw std::runtime_error("the kernel refused the socket capture programs (" + errno_text(err) +
                             "); run with --log-level debug for the verifier log");
  spdlog::info("capture programs loaded: cgroup socket programs, capture {} bytes per side", options.capture_bytes);
  spdlog::debug("socket capture: sender pid from {}", skeleton_->rodata->has_pid_tgid_helper ? "bpf_get_current_pid_tgid" : "the task struct");
}

SocketCaptureProbes::~SocketCaptureProbes() = default;

void SocketCaptureProbes::add_cgroup(const std::filesystem::path& cgroup_dir) {
  const auto canonical = canonical_cgroup_dir(cgroup_dir);
  if (cgroups_.contains(canonical)) return;
  UniqueFd cgroup(::open(canonical.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup) throw std::runtime_error("cannot open cgroup " + canonical.string() + ": " + errno_text(errno));
  auto attach = [&](bpf_program* program, const char* direction) {
    std::unique_ptr<bpf_link, LinkDeleter> link(bpf_program__attach_cgroup(program, cgroup.get()));
    if (!link)
      throw std::runtime_error(std::string("cannot attach the socket capture's ") + direction + " program to cgroup " +
                               canonical.string() + ": " + errno_text(errno));
    return link;
  };
  auto ingress = attach(skeleton_->progs.socket_ingress, "ingress");
  auto egress = attach(skeleton_->progs.socket_egress, "egress");
  cgroups_.emplace(canonical, CgroupAttachment{std::move(cgroup), std::move(ingress), std::move(egress)});
  spdlog::info("tracing cgroup {} (socket programs: its sockets only)", canonical.string());
}

void SocketCaptureProbes::remove_cgroup(const std::filesystem::path& cgroup_dir) {
  std::error_code ec;
  auto canonical = std::filesystem::canonical(cgroup_dir, ec);
  cgroups_.erase(ec ? cgroup_dir : canonical);
}

void SocketCaptureProbes::add_pid(std::uint32_t tgid) {
  throw std::invalid_argument("pid " + std::to_string(tgid) +
                              ": the socket capture path follows cgroups only; trace pids with capture.path: syscalls");
}

void SocketCaptureProbes::remove_pid(std::uint32_t) {}

int SocketCaptureProbes::ring_buffer_fd() const { return bpf_map__fd(skeleton_->maps.exchanges); }

KernelCounters SocketCaptureProbes::counters() const { return read_kernel_counters(bpf_map__fd(skeleton_->maps.et_stats)); }

}  // namespace edgetrace
