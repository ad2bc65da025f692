// Loads, configures and attaches the HTTP capture programs, and manages the opt-in set.
#pragma once

#include <bpf/libbpf.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

struct http_capture_bpf;

namespace edgetrace {

// Which hooks the syscall path loads (bpf/http_capture.bpf.c has every set).
enum class SyscallHooks {
  Auto,                // the first of the four below the kernel takes
  SocketTracepoints,   // tp_btf on sock_recv_length/sock_send_length: only socket reads and writes pay (x86-64)
  Fentry,              // fentry/fexit on the followed syscalls only (x86-64 builds)
  BtfTracepoints,      // tp_btf on sys_enter/sys_exit: ~30 ns per syscall each, host-wide
  SyscallTracepoints,  // one tracepoint per syscall followed: ~90 ns per followed syscall each
};

struct CaptureOptions {
  std::uint32_t capture_bytes = 512;       // power of two, at most ET_MAX_CAPTURE
  std::uint32_t max_connections = 4096;    // tracked connections (LRU)
  std::uint32_t ring_buffer_bytes = 8u << 20;
  std::uint32_t sampler_mode = 3;          // enum et_sampler
  std::uint64_t sampler_threshold = 0;     // rejection threshold on the trace id's low 56 bits
  bool plan_injection = true;              // write traceparent plans for the sk_msg injector
  SyscallHooks syscall_hooks = SyscallHooks::Auto;  // syscall path only
};

// With the socket tracepoints a capture program must run first inside every send of a traced
// client (it writes the injection plan there), then hand over to the injector: it takes the
// injector's place on the sockhash and tail-calls it through the prog array. Both -1 for the
// other hook sets, whose plans are written at syscall entry.
struct InjectorChain {
  int first_program_fd = -1;
  int injector_slot_fd = -1;
};

struct KernelCounters {
  std::uint64_t exchanges_emitted = 0;
  std::uint64_t ring_buffer_drops = 0;
  std::uint64_t unsampled = 0;
  std::uint64_t non_http_connections = 0;
  std::uint64_t connection_table_full = 0;
  std::uint64_t capture_faults = 0;
  std::uint64_t injections_planned = 0;
};

// What the pipeline and the CLI need from a capture path, whichever hooks it uses.
class CaptureProbes {
 public:
  virtual ~CaptureProbes() = default;
  // Traces every process in this cgroup v2 directory and its descendants.
  virtual void add_cgroup(const std::filesystem::path& cgroup_dir) = 0;
  virtual void remove_cgroup(const std::filesystem::path& cgroup_dir) = 0;
  virtual void add_pid(std::uint32_t tgid) = 0;
  virtual void remove_pid(std::uint32_t tgid) = 0;
  [[nodiscard]] virtual int ring_buffer_fd() const = 0;
  [[nodiscard]] virtual KernelCounters counters() const = 0;
  [[nodiscard]] virtual std::uint32_t capture_bytes() const = 0;
};

// The syscall-tracepoint path (bpf/http_capture.bpf.c): complete (pids, processes moved into
// a cgroup, per-thread context, injection plans), at a cost to every process on the host.
class HttpCaptureProbes final : public CaptureProbes {
 public:
  // Opens, sizes, loads and attaches every program. Throws std::runtime_error saying which
  // step failed and why (verifier log goes to the debug log).
  explicit HttpCaptureProbes(const CaptureOptions& options);
  ~HttpCaptureProbes() override;
  HttpCaptureProbes(const HttpCaptureProbes&) = delete;
  HttpCaptureProbes& operator=(const HttpCaptureProbes&) = delete;

  void add_cgroup(const std::filesystem::path& cgroup_dir) override;
  void remove_cgroup(const std::filesystem::path& cgroup_dir) override;
  void add_pid(std::uint32_t tgid) override;
  void remove_pid(std::uint32_t tgid) override;

  [[nodiscard]] int ring_buffer_fd() const override;
  // The map through which the capture programs hand traceparent plans to the injector.
  [[nodiscard]] int inject_plans_fd() const;
  [[nodiscard]] InjectorChain injector_chain() const;
  [[nodiscard]] KernelCounters counters() const override;
  [[nodiscard]] std::uint32_t capture_bytes() const override { return capture_bytes_; }

 private:
  struct SkeletonDeleter {
    void operator()(http_capture_bpf* skeleton) const;
  };
  using Skeleton = std::unique_ptr<http_capture_bpf, SkeletonDeleter>;
  // Opens, sizes, loads and attaches the programs of one hook set; throws std::runtime_error.
  static Skeleton load_and_attach(const CaptureOptions& options, SyscallHooks hooks);
  // Hands the opt-in counts to the programs and invalidates the verdicts they cached.
  void publish_opt_in();

  Skeleton skeleton_;
  std::uint32_t capture_bytes_;
  SyscallHooks hooks_ = SyscallHooks::Auto;  // what was loaded, never Auto once constructed
  std::array<std::uint32_t, 32> cgroups_per_level_{};
  std::uint32_t pid_count_ = 0;
};

std::string_view to_string(SyscallHooks hooks);  // "auto", "socket_tracepoints", "fentry", "btf_tracepoints", "tracepoints"

// Sends libbpf's messages (verifier logs included, line by line) to spdlog.
void route_libbpf_logs_to_spdlog();
// Sums the per-CPU `et_stats` array (enum et_stat) that both capture objects keep.
KernelCounters read_kernel_counters(int et_stats_map_fd);
// Checks that options can be loaded; throws std::invalid_argument saying which is wrong.
void validate_capture_options(const CaptureOptions& options);

// Before load: the read-only settings and the ring both capture objects share (their
// skeletons are different types with the same members).
template <typename CaptureSkeleton>
void apply_shared_capture_options(CaptureSkeleton& skeleton, const CaptureOptions& options) {
  skeleton.rodata->capture_bytes = options.capture_bytes;
  skeleton.rodata->ring_wakeup_bytes = options.ring_buffer_bytes / 4;
  skeleton.rodata->sampler_mode = options.sampler_mode;
  skeleton.rodata->sampler_threshold = options.sampler_threshold;
  bpf_map__set_max_entries(skeleton.maps.exchanges, options.ring_buffer_bytes);
}

// The canonical path of a cgroup v2 directory; throws std::runtime_error when it does not
// exist or is not under the cgroup v2 mount.
std::filesystem::path canonical_cgroup_dir(const std::filesystem::path& dir);
// strerror of an errno value, or of a negative libbpf return.
std::string errno_text(int err);

// The cgroup v2 mount point ("/sys/fs/cgroup" or "/sys/fs/cgroup/unified" in hybrid mode).
std::filesystem::path cgroup2_mount_point();

}  // namespace edgetrace
