// Loads, configures and attaches the HTTP capture programs, and manages the opt-in set.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

struct http_capture_bpf;

namespace edgetrace {

struct CaptureOptions {
  std::uint32_t capture_bytes = 512;       // power of two, at most ET_MAX_CAPTURE
  std::uint32_t max_connections = 4096;    // tracked connections (LRU)
  std::uint32_t ring_buffer_bytes = 8u << 20;
  std::uint32_t sampler_mode = 3;          // enum et_sampler
  std::uint64_t sampler_threshold = 0;     // rejection threshold on the trace id's low 56 bits
  bool plan_injection = true;              // write traceparent plans for the sk_msg injector
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

class HttpCaptureProbes {
 public:
  // Opens, sizes, loads and attaches every program. Throws std::runtime_error saying which
  // step failed and why (verifier log goes to the debug log).
  explicit HttpCaptureProbes(const CaptureOptions& options);
  ~HttpCaptureProbes();
  HttpCaptureProbes(const HttpCaptureProbes&) = delete;
  HttpCaptureProbes& operator=(const HttpCaptureProbes&) = delete;

  // Traces every process in this cgroup v2 directory and its descendants.
  void add_cgroup(const std::filesystem::path& cgroup_dir);
  void remove_cgroup(const std::filesystem::path& cgroup_dir);
  void add_pid(std::uint32_t tgid);
  void remove_pid(std::uint32_t tgid);

  [[nodiscard]] int ring_buffer_fd() const;
  // The map through which the capture programs hand traceparent plans to the injector.
  [[nodiscard]] int inject_plans_fd() const;
  [[nodiscard]] KernelCounters counters() const;
  [[nodiscard]] std::uint32_t capture_bytes() const { return capture_bytes_; }

 private:
  struct SkeletonDeleter {
    void operator()(http_capture_bpf* skeleton) const;
  };
  void refresh_levels();

  std::unique_ptr<http_capture_bpf, SkeletonDeleter> skeleton_;
  std::uint32_t capture_bytes_;
  std::array<std::uint32_t, 32> cgroups_per_level_{};
  std::uint32_t pid_count_ = 0;
};

// The cgroup v2 mount point ("/sys/fs/cgroup" or "/sys/fs/cgroup/unified" in hybrid mode).
std::filesystem::path cgroup2_mount_point();

}  // namespace edgetrace
