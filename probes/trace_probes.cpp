#include "trace_probes.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "edgetrace.h"
#include "http_capture.skel.h"

namespace edgetrace {
namespace {

// libbpf hands over the verifier's whole log as one message: format it at any length and
// log it line by line, so a refused program's reason is never cut off.
int forward_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  va_list measure;
  va_copy(measure, args);
  const int length = std::vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  if (length <= 0) return 0;
  std::string text(static_cast<std::size_t>(length) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, args);
  text.resize(static_cast<std::size_t>(length));
  std::string_view rest(text);
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const auto line = rest.substr(0, end);
    if (!line.empty()) {
      if (level == LIBBPF_WARN)
        spdlog::warn("libbpf: {}", line);
      else
        spdlog::debug("libbpf: {}", line);
    }
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return 0;
}

bool is_power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

struct CgroupIdentity {
  std::uint64_t id;
  std::uint32_t level;
};

CgroupIdentity identify_cgroup(const std::filesystem::path& dir) {
  const auto canonical = canonical_cgroup_dir(dir);
  const auto relative = canonical.lexically_relative(cgroup2_mount_point());
  std::uint32_t level = 0;
  for (const auto& part : relative)
    if (part != ".") ++level;
  if (level == 0 || level >= ET_MAX_CGROUP_LEVEL)
    throw std::runtime_error("cgroup " + dir.string() + " must be below the root and at most " +
                             std::to_string(ET_MAX_CGROUP_LEVEL - 1) + " levels deep");
  struct stat st {};
  if (::stat(canonical.c_str(), &st) != 0) throw std::runtime_error("cgroup " + dir.string() + ": " + errno_text(errno));
  // On cgroup2 (kernfs) a directory's inode number is the cgroup id the BPF helpers return.
  return {static_cast<std::uint64_t>(st.st_ino), level};
}

// libbpf finds syscall tracepoint ids under tracefs; minimal hosts boot without it mounted.
void ensure_tracefs_mounted() {
  constexpr long tracefs_magic = 0x74726163;
  constexpr const char* path = "/sys/kernel/tracing";
  struct statfs fs {};
  if (::statfs(path, &fs) == 0 && fs.f_type == tracefs_magic) return;
  if (::access("/sys/kernel/debug/tracing/events", F_OK) == 0) return;
  if (::mount("tracefs", path, "tracefs", 0, nullptr) != 0)
    throw std::runtime_error(std::string("tracefs is not mounted and mounting it at ") + path + " failed: " + errno_text(errno));
  spdlog::info("mounted tracefs at {}", path);
}

}  // namespace

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

std::filesystem::path canonical_cgroup_dir(const std::filesystem::path& dir) {
  const auto mount = cgroup2_mount_point();
  std::error_code ec;
  auto canonical = std::filesystem::canonical(dir, ec);
  if (ec) throw std::runtime_error("cgroup " + dir.string() + ": " + ec.message());
  const auto relative = canonical.lexically_relative(mount);
  if (relative.empty() || *relative.begin() == "..")
    throw std::runtime_error("cgroup " + dir.string() + " is not under the cgroup v2 mount " + mount.string());
  return canonical;
}

void route_libbpf_logs_to_spdlog() { libbpf_set_print(forward_libbpf_log); }

void validate_capture_options(const CaptureOptions& options) {
  if (!is_power_of_two(options.capture_bytes) || options.capture_bytes > ET_MAX_CAPTURE || options.capture_bytes < 64)
    throw std::invalid_argument("capture_bytes must be a power of two from 64 to " + std::to_string(ET_MAX_CAPTURE));
  if (!is_power_of_two(options.ring_buffer_bytes) || options.ring_buffer_bytes < 4096)
    throw std::invalid_argument("ring_buffer_bytes must be a power of two of at least 4096");
}

KernelCounters read_kernel_counters(int et_stats_map_fd) {
  const int cpus = libbpf_num_possible_cpus();
  std::array<std::uint64_t, ET_STAT_COUNT> totals{};
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus > 0 ? cpus : 1));
  for (std::uint32_t stat = 0; stat < ET_STAT_COUNT; ++stat) {
    if (bpf_map_lookup_elem(et_stats_map_fd, &stat, per_cpu.data()) != 0) continue;
    for (auto v : per_cpu) totals[stat] += v;
  }
  return KernelCounters{
      .exchanges_emitted = totals[ET_STAT_EXCHANGES_EMITTED],
      .ring_buffer_drops = totals[ET_STAT_RINGBUF_DROPS],
      .unsampled = totals[ET_STAT_UNSAMPLED],
      .non_http_connections = totals[ET_STAT_NON_HTTP_CONNECTIONS],
      .connection_table_full = totals[ET_STAT_CONN_TABLE_FULL],
      .capture_faults = totals[ET_STAT_CAPTURE_FAULTS],
      .injections_planned = totals[ET_STAT_INJECT_PLANNED],
  };
}

std::filesystem::path cgroup2_mount_point() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    // "... mount_point options - fstype source super_options"
    const auto separator = line.find(" - ");
    if (separator == std::string::npos) continue;
    std::istringstream tail(line.substr(separator + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, separator));
    std::string field, mount_point;
    for (int i = 0; i < 5 && head >> field; ++i)
      if (i == 4) mount_point = field;
    if (!mount_point.empty()) return mount_point;
  }
  throw std::runtime_error("no cgroup v2 filesystem is mounted (looked in /proc/self/mountinfo)");
}

void HttpCaptureProbes::SkeletonDeleter::operator()(http_capture_bpf* skeleton) const {
  http_capture_bpf::destroy(skeleton);
}

std::string_view to_string(SyscallHooks hooks) {
  switch (hooks) {
    case SyscallHooks::Auto: return "auto";
    case SyscallHooks::SocketTracepoints: return "socket_tracepoints";
    case SyscallHooks::Fentry: return "fentry";
    case SyscallHooks::BtfTracepoints: return "btf_tracepoints";
    case SyscallHooks::SyscallTracepoints: return "tracepoints";
  }
  return "?";
}

namespace {

// Whether this build has the socket tracepoint, fentry and BTF raw tracepoint sets, whose
// syscall table, registers and function names are x86-64's (kImplementedSyscallCaptures
// says the same to the doctor).
constexpr bool kX86HookSetsBuilt =
#if defined(__x86_64__)
    true;
#else
    false;
#endif

// Whether a program of bpf/http_capture.bpf.c belongs to a hook set, by its name.
bool in_hook_set(std::string_view program, SyscallHooks hooks) {
  const bool tracepoints = hooks == SyscallHooks::SyscallTracepoints;
  // The fork hook: a tracepoint where tracefs is needed anyway, else a BTF raw tracepoint.
  if (program == "on_fork") return tracepoints;
  if (program == "on_fork_btf") return !tracepoints;
  if (program.starts_with("fentry_") || program.starts_with("fexit_")) return hooks == SyscallHooks::Fentry;
  if (program.starts_with("on_syscall_")) return hooks == SyscallHooks::BtfTracepoints;
  if (program.starts_with("on_socket_") || program == "on_client_send") return hooks == SyscallHooks::SocketTracepoints;
  return tracepoints;  // enter_*, exit_*
}

std::string_view attached_description(SyscallHooks hooks) {
  switch (hooks) {
    case SyscallHooks::SocketTracepoints: return "socket tracepoints (sock_recv_length/sock_send_length)";
    case SyscallHooks::Fentry: return "fentry/fexit on the followed syscalls";
    case SyscallHooks::BtfTracepoints: return "BTF raw tracepoints on sys_enter/sys_exit";
    default: return "syscall tracepoints";
  }
}

// While a hook set that may well be refused is tried, libbpf's complaints go to the debug log
// only: the fallback that follows is the expected outcome on kernels without it.
int forward_libbpf_log_quietly(enum libbpf_print_level, const char* format, va_list args) {
  return forward_libbpf_log(LIBBPF_DEBUG, format, args);
}

}  // namespace

HttpCaptureProbes::Skeleton HttpCaptureProbes::load_and_attach(const CaptureOptions& options, SyscallHooks hooks) {
  Skeleton skeleton(http_capture_bpf::open());
  if (!skeleton) throw std::runtime_error("cannot open the BPF object: " + errno_text(errno));
  apply_shared_capture_options(*skeleton, options);
  skeleton->rodata->inject_enabled = options.plan_injection ? 1 : 0;
  skeleton->rodata->servers_end_at_response_length = hooks == SyscallHooks::SocketTracepoints ? 1 : 0;
  bpf_map__set_max_entries(skeleton->maps.conns, options.max_connections);
  // The sets live in one object; only the chosen one is loaded (and so attached).
  bpf_program* program = nullptr;
  bpf_object__for_each_program(program, skeleton->obj) bpf_program__set_autoload(program, in_hook_set(bpf_program__name(program), hooks));
  if (int err = http_capture_bpf::load(skeleton.get()); err != 0)
    throw std::runtime_error("the kernel refused the capture programs on " + std::string(to_string(hooks)) + " (" +
                             errno_text(err) + "); run with --log-level debug for the verifier log");
  if (hooks == SyscallHooks::SyscallTracepoints) ensure_tracefs_mounted();
  if (int err = http_capture_bpf::attach(skeleton.get()); err != 0)
    throw std::runtime_error("cannot attach the capture programs on " + std::string(to_string(hooks)) + ": " +
                             errno_text(err));
  return skeleton;
}

HttpCaptureProbes::HttpCaptureProbes(const CaptureOptions& options) : capture_bytes_(options.capture_bytes) {
  validate_capture_options(options);
  route_libbpf_logs_to_spdlog();
  hooks_ = options.syscall_hooks;
  if (hooks_ != SyscallHooks::Auto && hooks_ != SyscallHooks::SyscallTracepoints && !kX86HookSetsBuilt)
    throw std::runtime_error("capture.syscall_hooks " + std::string(to_string(hooks_)) +
                             ": this build has those programs on x86-64 only");
  if (hooks_ == SyscallHooks::Auto) {
    hooks_ = SyscallHooks::SyscallTracepoints;
    // Cheapest first (docs/architecture.md, "Which hooks"); the last one is tried below with
    // its errors in full.
    if (kX86HookSetsBuilt) {
      for (const auto candidate : {SyscallHooks::SocketTracepoints, SyscallHooks::Fentry, SyscallHooks::BtfTracepoints}) {
        libbpf_set_print(forward_libbpf_log_quietly);
        try {
          skeleton_ = load_and_attach(options, candidate);
        } catch (const std::runtime_error& error) {
          spdlog::info("{}; trying the next hooks", error.what());
        }
        route_libbpf_logs_to_spdlog();
        if (skeleton_) {
          hooks_ = candidate;
          break;
        }
      }
    }
  }
  if (!skeleton_) skeleton_ = load_and_attach(options, hooks_);
  spdlog::info("capture programs attached: {}, capture {} bytes per side, {} connections", attached_description(hooks_),
               options.capture_bytes, options.max_connections);
}

HttpCaptureProbes::~HttpCaptureProbes() = default;

void HttpCaptureProbes::publish_opt_in() {
  std::uint32_t mask = 0;
  for (std::uint32_t level = 0; level < cgroups_per_level_.size(); ++level)
    if (cgroups_per_level_[level] > 0) mask |= 1u << level;
  skeleton_->bss->opt_in_cgroup_levels = mask;
  skeleton_->bss->opt_in_pid_count = pid_count_;
  // Last, after the maps and the counts: every verdict the programs cached is now out of
  // date, including one taken while this change was half made.
  __atomic_add_fetch(&skeleton_->bss->opt_in_generation, 1, __ATOMIC_SEQ_CST);
}

void HttpCaptureProbes::add_cgroup(const std::filesystem::path& cgroup_dir) {
  const auto cgroup = identify_cgroup(cgroup_dir);
  const std::uint8_t yes = 1;
  if (bpf_map__update_elem(skeleton_->maps.traced_cgroups, &cgroup.id, sizeof(cgroup.id), &yes, sizeof(yes), BPF_NOEXIST) == 0) {
    ++cgroups_per_level_[cgroup.level];
    publish_opt_in();
  }
  spdlog::info("tracing cgroup {} (id {}, level {})", cgroup_dir.string(), cgroup.id, cgroup.level);
}

void HttpCaptureProbes::remove_cgroup(const std::filesystem::path& cgroup_dir) {
  const auto cgroup = identify_cgroup(cgroup_dir);
  if (bpf_map__delete_elem(skeleton_->maps.traced_cgroups, &cgroup.id, sizeof(cgroup.id), 0) == 0) {
    --cgroups_per_level_[cgroup.level];
    publish_opt_in();
  }
}

void HttpCaptureProbes::add_pid(std::uint32_t tgid) {
  const std::uint8_t yes = 1;
  if (bpf_map__update_elem(skeleton_->maps.traced_pids, &tgid, sizeof(tgid), &yes, sizeof(yes), BPF_NOEXIST) == 0) {
    ++pid_count_;
    publish_opt_in();
  }
  spdlog::info("tracing pid {}", tgid);
}

void HttpCaptureProbes::remove_pid(std::uint32_t tgid) {
  if (bpf_map__delete_elem(skeleton_->maps.traced_pids, &tgid, sizeof(tgid), 0) == 0) {
    --pid_count_;
    publish_opt_in();
  }
}

int HttpCaptureProbes::ring_buffer_fd() const { return bpf_map__fd(skeleton_->maps.exchanges); }

int HttpCaptureProbes::inject_plans_fd() const { return bpf_map__fd(skeleton_->maps.inject_plans); }

InjectorChain HttpCaptureProbes::injector_chain() const {
  if (hooks_ != SyscallHooks::SocketTracepoints) return {};
  return {.first_program_fd = bpf_program__fd(skeleton_->progs.on_client_send),
          .injector_slot_fd = bpf_map__fd(skeleton_->maps.injector)};
}

KernelCounters HttpCaptureProbes::counters() const { return read_kernel_counters(bpf_map__fd(skeleton_->maps.et_stats)); }

}  // namespace edgetrace
