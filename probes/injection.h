// Loads and attaches the kernel-side traceparent injector (bpf/inject.bpf.c): a sockops
// program per opted-in cgroup that tracks outgoing TCP connections, and an sk_msg verdict
// program that inserts the header planned by the capture program into the planned send.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>

#include "common/unique_fd.h"
#include "trace_probes.h"

struct inject_bpf;
struct bpf_link;

namespace edgetrace {

// Sums over all CPUs of the kernel's et_inject_stats (enum et_inject_stat in edgetrace.h).
// Verdict counters count sk_msg verdict calls, i.e. chunks of sends, not syscalls.
struct InjectCounters {
  std::uint64_t injected = 0;
  std::uint64_t no_plan = 0;
  std::uint64_t size_mismatch = 0;
  std::uint64_t beyond_chunk = 0;
  std::uint64_t content_mismatch = 0;
  std::uint64_t bad_plan = 0;
  std::uint64_t unsafe_socket = 0;
  std::uint64_t push_failed = 0;
  std::uint64_t write_failed = 0;
  std::uint64_t dropped = 0;
  std::uint64_t sockets_tracked = 0;
  std::uint64_t sockhash_failed = 0;
  std::uint64_t unmerged = 0;   // injected, but sent as separate pieces (see injection.md)
  std::uint64_t coalesced = 0;  // unplanned sends made one piece again (see injection.md)

  // Plans that reached the verdict program but were not applied.
  [[nodiscard]] std::uint64_t skipped_plans() const {
    return size_mismatch + beyond_chunk + content_mismatch + bad_plan + unsafe_socket + push_failed + write_failed +
           dropped;
  }
};

class TraceContextInjector {
 public:
  // inject_plans_map_fd: the capture program's `inject_plans` map, shared so that plans it
  // writes reach the sk_msg program; -1 creates a private map (tests). Loads the programs and
  // attaches the sk_msg verdict to the sockhash. Throws std::runtime_error saying what failed.
  explicit TraceContextInjector(int inject_plans_map_fd);
  // The injector of these capture programs: shares their plans map and, with the socket
  // tracepoints, runs behind their sk_msg program (see InjectorChain).
  explicit TraceContextInjector(const HttpCaptureProbes& capture);
  ~TraceContextInjector();
  TraceContextInjector(const TraceContextInjector&) = delete;
  TraceContextInjector& operator=(const TraceContextInjector&) = delete;

  // Outgoing TCP connections established from now on by processes in this cgroup v2
  // directory (and its descendants) become eligible for injection. Connections that already
  // exist are never touched. Attaching a cgroup twice is a no-op.
  void attach_cgroup(const std::filesystem::path& cgroup_dir);
  // New connections of the cgroup are no longer tracked; connections already tracked keep
  // their injection until they close (the sockhash holds them, not the cgroup).
  void detach_cgroup(const std::filesystem::path& cgroup_dir);

  [[nodiscard]] int inject_plans_fd() const;
  [[nodiscard]] InjectCounters counters() const;

 private:
  struct SkeletonDeleter {
    void operator()(inject_bpf* skeleton) const;
  };
  struct LinkDeleter {
    void operator()(bpf_link* link) const;
  };
  using Fd = UniqueFd;
  struct CgroupAttachment {
    Fd cgroup;
    std::unique_ptr<bpf_link, LinkDeleter> link;
  };
  // Detaches the sk_msg program from the sockhash when the injector goes.
  class VerdictAttachment {
   public:
    VerdictAttachment() = default;
    VerdictAttachment(int program_fd, int sockhash_fd);
    VerdictAttachment(VerdictAttachment&& other) noexcept;
    VerdictAttachment& operator=(VerdictAttachment&& other) noexcept;
    ~VerdictAttachment();

   private:
    void reset();
    int program_fd_ = -1;
    int sockhash_fd_ = -1;
  };

  TraceContextInjector(int inject_plans_map_fd, InjectorChain chain);

  // Declared first so that it is destroyed last, after the links and the verdict attachment.
  std::unique_ptr<inject_bpf, SkeletonDeleter> skeleton_;
  VerdictAttachment verdict_;
  std::map<std::filesystem::path, CgroupAttachment> cgroups_;
};

}  // namespace edgetrace
