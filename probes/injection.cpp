#include "injection.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgetrace.h"
#include "inject.skel.h"
#include "trace_probes.h"

namespace edgetrace {
namespace {

// Must match inject_plans in bpf/inject.bpf.c and bpf/http_capture.bpf.c.
constexpr __u32 kInjectPlanEntries = 16384;

// The kernel would only notice a different layout as a verifier error; say what is wrong.
void require_plan_map_layout(int map_fd) {
  bpf_map_info info{};
  __u32 length = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &length) != 0)
    throw std::runtime_error("the inject_plans map fd " + std::to_string(map_fd) + " is not a BPF map: " +
                             errno_text(errno));
  if (info.type != BPF_MAP_TYPE_HASH || info.key_size != sizeof(__u64) || info.value_size != sizeof(et_inject_plan) ||
      info.max_entries != kInjectPlanEntries)
    throw std::runtime_error(fmt::format(
        "the shared inject_plans map must be a HASH map of u64 -> struct et_inject_plan ({} bytes) with {} entries, "
        "but it has type {}, key {} bytes, value {} bytes, {} entries",
        sizeof(et_inject_plan), kInjectPlanEntries, info.type, info.key_size, info.value_size, info.max_entries));
}

}  // namespace

void TraceContextInjector::SkeletonDeleter::operator()(inject_bpf* skeleton) const { inject_bpf::destroy(skeleton); }

void TraceContextInjector::LinkDeleter::operator()(bpf_link* link) const { bpf_link__destroy(link); }

TraceContextInjector::VerdictAttachment::VerdictAttachment(int program_fd, int sockhash_fd) {
  if (bpf_prog_attach(program_fd, sockhash_fd, BPF_SK_MSG_VERDICT, 0) != 0)
    throw std::runtime_error("cannot attach the sk_msg injector to its sockhash: " + errno_text(errno));
  program_fd_ = program_fd;
  sockhash_fd_ = sockhash_fd;
}

TraceContextInjector::VerdictAttachment::VerdictAttachment(VerdictAttachment&& other) noexcept
    : program_fd_(other.program_fd_), sockhash_fd_(other.sockhash_fd_) {
  other.program_fd_ = other.sockhash_fd_ = -1;
}

TraceContextInjector::VerdictAttachment& TraceContextInjector::VerdictAttachment::operator=(
    VerdictAttachment&& other) noexcept {
  if (this != &other) {
    reset();
    program_fd_ = other.program_fd_;
    sockhash_fd_ = other.sockhash_fd_;
    other.program_fd_ = other.sockhash_fd_ = -1;
  }
  return *this;
}

TraceContextInjector::VerdictAttachment::~VerdictAttachment() { reset(); }

void TraceContextInjector::VerdictAttachment::reset() {
  if (program_fd_ >= 0 && bpf_prog_detach2(program_fd_, sockhash_fd_, BPF_SK_MSG_VERDICT) != 0)
    spdlog::warn("detaching the sk_msg injector failed: {}", errno_text(errno));
  program_fd_ = sockhash_fd_ = -1;
}

TraceContextInjector::TraceContextInjector(int inject_plans_map_fd) : TraceContextInjector(inject_plans_map_fd, {}) {}

TraceContextInjector::TraceContextInjector(const HttpCaptureProbes& capture)
    : TraceContextInjector(capture.inject_plans_fd(), capture.injector_chain()) {}

TraceContextInjector::TraceContextInjector(int inject_plans_map_fd, InjectorChain chain) {
  skeleton_.reset(inject_bpf::open());
  if (!skeleton_) throw std::runtime_error("cannot open the injector BPF object: " + errno_text(errno));
  if (inject_plans_map_fd >= 0) {
    require_plan_map_layout(inject_plans_map_fd);
    if (int err = bpf_map__reuse_fd(skeleton_->maps.inject_plans, inject_plans_map_fd); err != 0)
      throw std::runtime_error("cannot share the capture program's inject_plans map with the injector (" +
                               errno_text(err) + ")");
  }
  if (int err = inject_bpf::load(skeleton_.get()); err != 0)
    throw std::runtime_error("the kernel refused the injector programs (" + errno_text(err) +
                             "); run with --log-level debug for the verifier log");
  int verdict_program = bpf_program__fd(skeleton_->progs.et_inject_traceparent);
  if (chain.first_program_fd >= 0) {
    const __u32 slot = 0;
    if (bpf_map_update_elem(chain.injector_slot_fd, &slot, &verdict_program, BPF_ANY) != 0)
      throw std::runtime_error("cannot place the sk_msg injector behind the capture program: " + errno_text(errno));
    verdict_program = chain.first_program_fd;
  }
  verdict_ = VerdictAttachment(verdict_program, bpf_map__fd(skeleton_->maps.client_sockets));
  spdlog::info("traceparent injector loaded ({} plans map)", inject_plans_map_fd >= 0 ? "shared" : "private");
}

TraceContextInjector::~TraceContextInjector() = default;

void TraceContextInjector::attach_cgroup(const std::filesystem::path& cgroup_dir) {
  auto canonical = canonical_cgroup_dir(cgroup_dir);
  if (cgroups_.contains(canonical)) return;
  Fd cgroup(::open(canonical.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cgroup.get() < 0) throw std::runtime_error("cannot open cgroup " + canonical.string() + ": " + errno_text(errno));
  std::unique_ptr<bpf_link, LinkDeleter> link(
      bpf_program__attach_cgroup(skeleton_->progs.et_track_client_connections, cgroup.get()));
  if (!link)
    throw std::runtime_error("cannot attach the injector's sockops program to cgroup " + canonical.string() + ": " +
                             errno_text(errno));
  cgroups_.emplace(canonical, CgroupAttachment{std::move(cgroup), std::move(link)});
  spdlog::info("traceparent injection enabled for new outgoing connections of cgroup {}", canonical.string());
}

void TraceContextInjector::detach_cgroup(const std::filesystem::path& cgroup_dir) {
  std::error_code ec;
  auto canonical = std::filesystem::canonical(cgroup_dir, ec);
  // A removed cgroup directory no longer resolves: fall back to the path as given.
  if (cgroups_.erase(ec ? cgroup_dir : canonical) > 0)
    spdlog::info("traceparent injection disabled for new connections of cgroup {}", cgroup_dir.string());
}

int TraceContextInjector::inject_plans_fd() const { return bpf_map__fd(skeleton_->maps.inject_plans); }

InjectCounters TraceContextInjector::counters() const {
  const int cpus = libbpf_num_possible_cpus();
  std::array<std::uint64_t, ET_INJECT_STAT_COUNT> totals{};
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  for (std::uint32_t stat = 0; stat < ET_INJECT_STAT_COUNT; ++stat) {
    if (bpf_map__lookup_elem(skeleton_->maps.et_inject_stats, &stat, sizeof(stat), per_cpu.data(),
                             per_cpu.size() * sizeof(std::uint64_t), 0) != 0)
      throw std::runtime_error("cannot read the injector's counters: " + errno_text(errno));
    for (auto v : per_cpu) totals[stat] += v;
  }
  return InjectCounters{
      .injected = totals[ET_INJECT_STAT_INJECTED],
      .no_plan = totals[ET_INJECT_STAT_NO_PLAN],
      .size_mismatch = totals[ET_INJECT_STAT_SIZE_MISMATCH],
      .beyond_chunk = totals[ET_INJECT_STAT_BEYOND_CHUNK],
      .content_mismatch = totals[ET_INJECT_STAT_CONTENT_MISMATCH],
      .bad_plan = totals[ET_INJECT_STAT_BAD_PLAN],
      .unsafe_socket = totals[ET_INJECT_STAT_UNSAFE_SOCKET],
      .push_failed = totals[ET_INJECT_STAT_PUSH_FAILED],
      .write_failed = totals[ET_INJECT_STAT_WRITE_FAILED],
      .dropped = totals[ET_INJECT_STAT_DROPPED],
      .sockets_tracked = totals[ET_INJECT_STAT_SOCKETS_TRACKED],
      .sockhash_failed = totals[ET_INJECT_STAT_SOCKHASH_FAILED],
      .unmerged = totals[ET_INJECT_STAT_UNMERGED],
      .coalesced = totals[ET_INJECT_STAT_COALESCED],
  };
}

}  // namespace edgetrace
