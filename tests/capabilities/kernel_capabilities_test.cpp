// Runs the real probe against the running kernel. Expectations come from independent
// evidence (securityfs, the perf PMU directories, statfs), so the suite stays right on a
// kernel that has kprobes, fentry or no lockdown (Debian's 6.1 under qemu).
#include "capabilities/kernel_capabilities.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "capabilities/system_files.h"
#include "capabilities/unique_fd.h"

namespace edgetrace::capabilities {
namespace {

bool path_exists(const std::string& path) { return std::filesystem::exists(path); }

// The lockdown mode read here without the probe's code: the bracketed word in securityfs.
std::string lockdown_from_securityfs() {
  std::string text;
  if (auto direct = read_text_file("/sys/kernel/security/lockdown")) {
    text = *direct;
  } else {
    ScopedPseudoMount securityfs("securityfs");
    if (!securityfs.mounted()) return "unknown";
    auto mounted = read_text_file(securityfs.path() + "/lockdown");
    if (!mounted) return "none";
    text = *mounted;
  }
  for (const char* mode : {"none", "integrity", "confidentiality"})
    if (text.find(std::string("[") + mode + "]") != std::string::npos) return mode;
  return "unknown";
}

const HookCheck& require_check(const KernelCapabilities& capabilities, Hook hook) {
  const auto* check = capabilities.find(hook);
  if (check == nullptr) throw std::runtime_error("no check for " + std::string(hook_name(hook)));
  return *check;
}

class KernelCapabilitiesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::geteuid(), 0u) << "this suite loads BPF programs and must run as root";
    capabilities_ = probe_kernel_capabilities();
  }
  static void TearDownTestSuite() { capabilities_.reset(); }
  static const KernelCapabilities& caps() { return capabilities_.value(); }

 private:
  // Probed once for the suite: every test reads the same, real result.
  static inline std::optional<KernelCapabilities> capabilities_;
};

TEST_F(KernelCapabilitiesTest, FactsMatchTheSystem) {
  const auto& facts = caps().facts;
  utsname names{};
  ASSERT_EQ(::uname(&names), 0);
  EXPECT_EQ(facts.kernel_release, names.release);
  EXPECT_EQ(facts.btf_present, ::access("/sys/kernel/btf/vmlinux", R_OK) == 0);
  EXPECT_EQ(facts.lockdown, lockdown_from_securityfs());
  EXPECT_EQ(facts.uid, 0u);
  EXPECT_TRUE(facts.running_as_root());
  EXPECT_TRUE(facts.has_bpf_privileges());
  EXPECT_EQ(facts.kprobe_pmu, path_exists("/sys/bus/event_source/devices/kprobe"));
  EXPECT_EQ(facts.uprobe_pmu, path_exists("/sys/bus/event_source/devices/uprobe"));
  EXPECT_EQ(facts.cgroup_v1_net_controllers, path_exists("/sys/fs/cgroup/net_cls/cgroup.procs") ||
                                                 path_exists("/sys/fs/cgroup/net_prio/cgroup.procs") ||
                                                 path_exists("/sys/fs/cgroup/net_cls,net_prio/cgroup.procs"));
  ASSERT_TRUE(facts.bpf_stats_enabled.has_value());
  std::ifstream stats("/proc/sys/kernel/bpf_stats_enabled");
  int stats_value = -1;
  stats >> stats_value;
  EXPECT_EQ(*facts.bpf_stats_enabled, stats_value == 1);
}

TEST_F(KernelCapabilitiesTest, Cgroup2MountIsReallyCgroup2) {
  const auto& facts = caps().facts;
  ASSERT_FALSE(facts.cgroup2_mount.empty());
  struct statfs info {};
  ASSERT_EQ(::statfs(facts.cgroup2_mount.c_str(), &info), 0);
  EXPECT_EQ(static_cast<unsigned long>(info.f_type), static_cast<unsigned long>(CGROUP2_SUPER_MAGIC));
  struct statfs top {};
  ASSERT_EQ(::statfs("/sys/fs/cgroup", &top), 0);
  const bool unified = static_cast<unsigned long>(top.f_type) == static_cast<unsigned long>(CGROUP2_SUPER_MAGIC);
  EXPECT_EQ(facts.cgroup2_hybrid, !unified);
  EXPECT_EQ(facts.cgroup2_mount, unified ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified");
}

TEST_F(KernelCapabilitiesTest, HooksTheAgentReliesOnWork) {
  for (const Hook hook : {Hook::SyscallTracepoint, Hook::RawTracepoint, Hook::Uprobe, Hook::SockOps, Hook::SkMsg,
                          Hook::Tc, Hook::CgroupSkb, Hook::RingBuffer, Hook::BpfLoop, Hook::GetCurrentCgroupId,
                          Hook::CurrentTaskUnderCgroup, Hook::ProbeReadKernel, Hook::TaskStorage}) {
    const auto& check = require_check(caps(), hook);
    EXPECT_TRUE(check.supported) << check.name << ": " << check.detail;
  }
  // Attached is not enough for these: they must have run.
  for (const Hook hook : {Hook::SyscallTracepoint, Hook::RawTracepoint, Hook::Uprobe, Hook::SockOps, Hook::SkMsg,
                          Hook::Tc, Hook::CgroupSkb})
    EXPECT_NE(require_check(caps(), hook).detail.find("fired"), std::string::npos) << hook_name(hook);
  EXPECT_NE(require_check(caps(), Hook::RingBuffer).detail.find("read back"), std::string::npos);
}

TEST_F(KernelCapabilitiesTest, KprobeFollowsThePmu) {
  const bool pmu = path_exists("/sys/bus/event_source/devices/kprobe");
  const auto& kprobe = require_check(caps(), Hook::Kprobe);
  EXPECT_EQ(kprobe.supported, pmu) << kprobe.detail;
  if (!pmu) {
    EXPECT_NE(kprobe.detail.find("kprobes not supported"), std::string::npos) << kprobe.detail;
  }
}

// On the kernels we run, fentry and kprobes come together: this VM's 6.18 has neither
// (fentry loads get EPERM), Debian's stock 6.1 has both. A kernel that splits them fails
// here on purpose so someone looks at it.
TEST_F(KernelCapabilitiesTest, FentryMatchesTheKernelFamily) {
  const bool pmu = path_exists("/sys/bus/event_source/devices/kprobe");
  const auto& fentry = require_check(caps(), Hook::Fentry);
  EXPECT_EQ(fentry.supported, pmu) << fentry.detail;
  if (!fentry.supported) {
    EXPECT_NE(fentry.detail.find("errno"), std::string::npos) << fentry.detail;
  }
}

// Whether the kernel has the sock:sock_send_length tracepoint, read from tracefs (privately
// mounted if need be) rather than from the BTF the probe itself uses.
bool tracefs_has_sock_send_length() {
  std::string tracefs;
  for (const auto& mount : read_mounts())
    if (mount.fstype == "tracefs") tracefs = mount.mount_point;
  std::optional<ScopedPseudoMount> private_tracefs;
  if (tracefs.empty()) {
    private_tracefs.emplace("tracefs");
    if (!private_tracefs->mounted()) throw std::runtime_error("cannot mount tracefs: " + private_tracefs->error());
    tracefs = private_tracefs->path();
  }
  return path_exists(tracefs + "/events/sock/sock_send_length/id");
}

// This VM's 6.18 has the tracepoint, Debian's 6.1 has not; either way the check follows the
// kernel, and where it works it must have read sendto's number from the task's registers.
TEST_F(KernelCapabilitiesTest, SocketTracepointFollowsTheKernel) {
  const bool tracepoint = tracefs_has_sock_send_length();
  const auto& check = require_check(caps(), Hook::SocketTracepoint);
#if defined(__x86_64__)
  EXPECT_EQ(check.supported, tracepoint) << check.detail;
#endif
  if (check.supported) {
    EXPECT_EQ(check.detail,
              "attached to tp_btf sock_send_length and fired, with sendto's number in bpf_task_pt_regs()->orig_ax");
  } else if (!tracepoint) {
    EXPECT_NE(check.detail.find("not supported: this kernel has no sock_send_length tracepoint"), std::string::npos)
        << check.detail;
  }
}

TEST_F(KernelCapabilitiesTest, ProbeWriteUserFollowsLockdown) {
  const auto lockdown = lockdown_from_securityfs();
  ASSERT_NE(lockdown, "unknown");
  const auto& check = require_check(caps(), Hook::ProbeWriteUser);
  EXPECT_EQ(check.supported, lockdown == "none") << "lockdown " << lockdown << ": " << check.detail;
  if (!check.supported) {
    EXPECT_NE(check.detail.find("bpf_probe_write_user"), std::string::npos) << check.detail;
    EXPECT_NE(check.detail.find("lockdown"), std::string::npos) << check.detail;
  }
}

TEST_F(KernelCapabilitiesTest, EveryCheckExplainsItself) {
  std::set<Hook> seen;
  for (const auto& check : caps().hooks) {
    EXPECT_TRUE(seen.insert(check.hook).second) << "duplicate " << check.name;
    EXPECT_EQ(check.name, hook_name(check.hook));
    EXPECT_FALSE(check.detail.empty()) << check.name;
    // A refusal names what refused; a success names what ran.
    if (!check.supported) {
      EXPECT_TRUE(check.detail.find("refused") != std::string::npos ||
                  check.detail.find("not supported") != std::string::npos ||
                  check.detail.find("never ran") != std::string::npos)
          << check.name << ": " << check.detail;
    }
  }
  EXPECT_EQ(seen.size(), 19u);
}

TEST_F(KernelCapabilitiesTest, CapturePathIsTheFirstWorkingHookTheAgentHasProgramsFor) {
  const auto& path = caps().capture_path;
  // BTF raw tracepoints load on this VM and on Debian's 6.1; the socket tracepoints only on
  // this VM, fentry only on Debian's 6.1. kprobes, where they work, are listed but not used.
  EXPECT_TRUE(caps().supports(Hook::BtfTracepoint)) << caps().find(Hook::BtfTracepoint)->detail;
  const auto expected = tracefs_has_sock_send_length() ? SyscallCapture::SocketTracepoint
                        : caps().supports(Hook::Fentry) ? SyscallCapture::Fentry
                                                        : SyscallCapture::BtfTracepoint;
  EXPECT_EQ(path.syscall_capture, expected) << to_string(path.syscall_capture);
  EXPECT_TRUE(path.context_injection);
  EXPECT_TRUE(path.uprobes);
  EXPECT_TRUE(caps().ready()) << (caps().missing_requirements.empty() ? "" : caps().missing_requirements.front());
}

HookCheck fake(Hook hook, bool supported) {
  HookCheck check;
  check.hook = hook;
  check.name = std::string(hook_name(hook));
  check.supported = supported;
  check.detail = "synthetic";
  return check;
}

TEST(ChooseCapturePath, ListsEveryWorkingHookCheapestFirstAndUsesAnImplementedOne) {
  auto path = choose_capture_path({fake(Hook::SyscallTracepoint, true), fake(Hook::Kprobe, true),
                                   fake(Hook::Fentry, true), fake(Hook::RawTracepoint, true),
                                   fake(Hook::BtfTracepoint, true), fake(Hook::SocketTracepoint, true)});
  EXPECT_EQ(path.available, (std::vector<SyscallCapture>{SyscallCapture::SocketTracepoint, SyscallCapture::Fentry,
                                                         SyscallCapture::Kprobe, SyscallCapture::BtfTracepoint,
                                                         SyscallCapture::SyscallTracepoint,
                                                         SyscallCapture::RawTracepoint}));
  EXPECT_EQ(path.syscall_capture, kImplementedSyscallCaptures.front());
  const bool x86_sets = kImplementedSyscallCaptures.size() > 1;
  // This VM: socket tracepoints, no fentry, no kprobes.
  path = choose_capture_path({fake(Hook::Fentry, false), fake(Hook::Kprobe, false), fake(Hook::BtfTracepoint, true),
                              fake(Hook::SyscallTracepoint, true), fake(Hook::SocketTracepoint, true)});
  EXPECT_EQ(path.syscall_capture, x86_sets ? SyscallCapture::SocketTracepoint : SyscallCapture::SyscallTracepoint);
  // Debian's 6.1: no socket tracepoints, so fentry, ahead of BTF raw tracepoints.
  path = choose_capture_path({fake(Hook::SocketTracepoint, false), fake(Hook::Fentry, true), fake(Hook::Kprobe, true),
                              fake(Hook::BtfTracepoint, true), fake(Hook::SyscallTracepoint, true)});
  EXPECT_EQ(path.syscall_capture, x86_sets ? SyscallCapture::Fentry : SyscallCapture::SyscallTracepoint);
  // Neither socket tracepoints nor fentry: BTF raw tracepoints, ahead of syscall tracepoints.
  path = choose_capture_path({fake(Hook::SocketTracepoint, false), fake(Hook::Fentry, false),
                              fake(Hook::BtfTracepoint, true), fake(Hook::SyscallTracepoint, true)});
  EXPECT_EQ(path.syscall_capture, x86_sets ? SyscallCapture::BtfTracepoint : SyscallCapture::SyscallTracepoint);
  // Without fentry and BTF raw tracepoints: syscall tracepoints, even where kprobes work.
  path = choose_capture_path({fake(Hook::Kprobe, true), fake(Hook::BtfTracepoint, false), fake(Hook::SyscallTracepoint, true)});
  EXPECT_EQ(path.syscall_capture, SyscallCapture::SyscallTracepoint);
  // Hooks the agent has no programs for do not make a capture path.
  path = choose_capture_path({fake(Hook::Kprobe, true), fake(Hook::RawTracepoint, true)});
  EXPECT_EQ(path.syscall_capture, SyscallCapture::None);
  EXPECT_EQ(path.available.size(), 2u);
  path = choose_capture_path({fake(Hook::Fentry, false)});
  EXPECT_EQ(path.syscall_capture, SyscallCapture::None);
  EXPECT_TRUE(path.available.empty());
}

TEST(ChooseCapturePath, ContextInjectionNeedsSockopsAndSkMsg) {
  EXPECT_FALSE(choose_capture_path({fake(Hook::SockOps, true), fake(Hook::SkMsg, false)}).context_injection);
  EXPECT_FALSE(choose_capture_path({fake(Hook::SockOps, false), fake(Hook::SkMsg, true)}).context_injection);
  EXPECT_TRUE(choose_capture_path({fake(Hook::SockOps, true), fake(Hook::SkMsg, true)}).context_injection);
}

KernelFacts privileged_facts() {
  KernelFacts facts;
  facts.btf_present = true;
  facts.cap_bpf = facts.cap_perfmon = facts.cap_net_admin = true;
  return facts;
}

TEST(FindMissingRequirements, NothingMissingWhenAllIsThere) {
  EXPECT_TRUE(find_missing_requirements(privileged_facts(), {fake(Hook::RingBuffer, true),
                                                             fake(Hook::SyscallTracepoint, true),
                                                             fake(Hook::TaskStorage, true)})
                  .empty());
}

TEST(FindMissingRequirements, OneSentencePerMissingThing) {
  auto facts = privileged_facts();
  facts.btf_present = false;
  const auto missing = find_missing_requirements(
      facts, {fake(Hook::RingBuffer, false), fake(Hook::SyscallTracepoint, false), fake(Hook::TaskStorage, false)});
  ASSERT_EQ(missing.size(), 4u);
  EXPECT_NE(missing[0].find("BTF"), std::string::npos);
  EXPECT_NE(missing[1].find("ring buffer"), std::string::npos);
  EXPECT_NE(missing[2].find("No syscall hook the capture programs use"), std::string::npos);
  EXPECT_NE(missing[3].find("task storage"), std::string::npos);
}

TEST(FindMissingRequirements, MissingPrivilegesIsTheOnlySentence) {
  KernelFacts facts;
  facts.uid = 1000;
  facts.cap_bpf = true;  // CAP_BPF alone cannot load tracing programs
  const auto missing = find_missing_requirements(facts, {fake(Hook::RingBuffer, false)});
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_NE(missing[0].find("needs root or CAP_BPF"), std::string::npos) << missing[0];
  EXPECT_NE(missing[0].find("uid 1000"), std::string::npos) << missing[0];
}

TEST(FindWarnings, NamesTracefsLockdownAndNetControllers) {
  KernelFacts facts = privileged_facts();
  facts.lockdown = "integrity";
  CapturePath tracepoints;
  tracepoints.syscall_capture = SyscallCapture::SyscallTracepoint;
  facts.tracefs_mount = "/sys/kernel/tracing";
  EXPECT_TRUE(find_warnings(facts, tracepoints).empty());

  facts.tracefs_mount.clear();
  facts.lockdown = "unknown";
  facts.lockdown_detail = "securityfs is not mounted";
  facts.cgroup_v1_net_controllers = true;
  const auto warnings = find_warnings(facts, tracepoints);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("tracefs is not mounted"), std::string::npos);
  EXPECT_NE(warnings[1].find("securityfs is not mounted"), std::string::npos);
  EXPECT_NE(warnings[2].find("net_cls/net_prio"), std::string::npos);

  CapturePath fentry;
  fentry.syscall_capture = SyscallCapture::Fentry;
  facts.lockdown = "none";
  facts.cgroup_v1_net_controllers = false;
  EXPECT_TRUE(find_warnings(facts, fentry).empty()) << "fentry does not need tracefs";
}

TEST(RunDoctor, ReportsEverythingAndSucceedsAsRoot) {
  ASSERT_EQ(::geteuid(), 0u);
  std::ostringstream out;
  EXPECT_EQ(run_doctor(out), 0) << out.str();
  const auto report = out.str();
  for (const char* expected : {"kernel", "BTF", "lockdown", "cgroup v2", "syscall capture", "context injection",
                               "verdict: edgetrace can run here."})
    EXPECT_NE(report.find(expected), std::string::npos) << expected << "\n" << report;
  for (int hook = 0; hook <= static_cast<int>(Hook::TaskStorage); ++hook)
    EXPECT_NE(report.find(std::string(hook_name(static_cast<Hook>(hook)))), std::string::npos) << report;
}

std::string command_output(const std::string& command) {
  std::string output;
  std::unique_ptr<FILE, decltype(&::pclose)> pipe(::popen(command.c_str(), "r"), &::pclose);
  if (!pipe) return output;
  std::array<char, 4096> buffer{};
  while (const auto n = std::fread(buffer.data(), 1, buffer.size(), pipe.get())) output.append(buffer.data(), n);
  return output;
}

struct ChildResult {
  int exit_code = -1;
  std::string output;
};

constexpr int kChildSetupFailed = 100;

bool set_effective_capabilities(std::initializer_list<int> capabilities) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  for (const int capability : capabilities) {
    data[CAP_TO_INDEX(capability)].effective |= CAP_TO_MASK(capability);
    data[CAP_TO_INDEX(capability)].permitted |= CAP_TO_MASK(capability);
  }
  return ::syscall(SYS_capset, &header, data.data()) == 0;
}

// Forks; the child drops privileges with `drop` (exiting kChildSetupFailed if that fails),
// runs `body` and sends what it printed back through a pipe.
ChildResult run_in_child(const std::function<bool()>& drop, const std::function<int(std::ostream&)>& body) {
  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    read_end.reset();
    if (!drop()) ::_exit(kChildSetupFailed);
    std::ostringstream out;
    const int code = body(out);
    const auto text = out.str();
    std::size_t written = 0;
    while (written < text.size()) {
      const auto n = ::write(write_end.get(), text.data() + written, text.size() - written);
      if (n <= 0) ::_exit(kChildSetupFailed + 2);
      written += static_cast<std::size_t>(n);
    }
    ::_exit(code);
  }
  write_end.reset();
  ChildResult result;
  std::array<char, 4096> buffer{};
  ssize_t n = 0;
  while ((n = ::read(read_end.get(), buffer.data(), buffer.size())) > 0) result.output.append(buffer.data(), n);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

// setuid away from root clears every capability; capset makes sure of it.
bool become_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0 && set_effective_capabilities({});
}

ChildResult run_doctor_unprivileged() { return run_in_child(become_nobody, run_doctor); }

TEST(RunDoctor, FailsWithOneSentenceWithoutPrivileges) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root to drop it";
  const auto result = run_doctor_unprivileged();
  ASSERT_NE(result.exit_code, kChildSetupFailed) << "the child could not drop privileges";
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("verdict: edgetrace cannot run here."), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("edgetrace needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, but runs as uid 65534"),
            std::string::npos)
      << result.output;
  // The privilege sentence stands alone: no cascade of ring buffer / syscall hook sentences.
  EXPECT_EQ(result.output.find("ring buffer (needs"), std::string::npos) << result.output;
  // And the hook table shows why each check failed.
  EXPECT_NE(result.output.find("Operation not permitted"), std::string::npos) << result.output;
}

// A non-root deployment: uid 0 kept, but only CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN. No
// private network namespace then, so the TC check must use the host's lo and clean up.
TEST(ProbeKernelCapabilities, WorksWithBpfCapabilitiesOnly) {
  ASSERT_EQ(::geteuid(), 0u);
  const auto result = run_in_child([] { return set_effective_capabilities({CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN}); },
                                   [](std::ostream& out) {
                                     const auto capabilities = probe_kernel_capabilities();
                                     print_report(capabilities, out);
                                     return capabilities.ready() ? 0 : 1;
                                   });
  ASSERT_NE(result.exit_code, kChildSetupFailed) << "the child could not drop capabilities";
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("effective capabilities: CAP_BPF CAP_PERFMON CAP_NET_ADMIN"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("attached to raw tracepoint sys_enter and fired"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("attached to clsact ingress of lo in the host namespace and fired"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("a record written on sys_enter was read back"), std::string::npos) << result.output;
  const auto filters = command_output("tc filter show dev lo ingress 2>&1");
  EXPECT_EQ(filters.find(std::string(kProbeObjectPrefix)), std::string::npos) << filters;
}

// Our programs and maps carry this prefix; nothing else on the system uses it.
std::vector<std::string> live_probe_objects() {
  std::vector<std::string> found;
  const auto prefix = std::string(kProbeObjectPrefix);
  __u32 id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    __u32 length = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && std::string(info.name).starts_with(prefix))
      found.push_back(std::string("program ") + info.name);
    ::close(fd);
  }
  id = 0;
  while (bpf_map_get_next_id(id, &id) == 0) {
    const int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_map_info info{};
    __u32 length = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && std::string(info.name).starts_with(prefix))
      found.push_back(std::string("map ") + info.name);
    ::close(fd);
  }
  return found;
}

std::vector<std::string> leftover_paths(const std::string& cgroup_root) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(cgroup_root))
    if (entry.path().filename().string().starts_with(kTemporaryCgroupPrefix)) found.push_back(entry.path());
  for (const auto& entry : std::filesystem::directory_iterator("/tmp")) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("edgetrace-securityfs-") || name.starts_with("edgetrace-tracefs-")) found.push_back(entry.path());
  }
  for (const auto& mount : read_mounts())
    if (mount.mount_point.starts_with("/tmp/edgetrace-")) found.push_back("mount " + mount.mount_point);
  for (const auto& mount : read_mounts()) {
    if (mount.fstype != "bpf") continue;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(mount.mount_point))
      if (entry.path().filename().string().find(kProbeObjectPrefix) != std::string::npos)
        found.push_back("pinned " + entry.path().string());
  }
  return found;
}

TEST(ProbeKernelCapabilities, LeavesNothingBehind) {
  ASSERT_EQ(::geteuid(), 0u);
  const auto facts = read_kernel_facts();
  ASSERT_FALSE(facts.cgroup2_mount.empty());
  const auto paths_before = leftover_paths(facts.cgroup2_mount);
  const auto capabilities = probe_kernel_capabilities();
  ASSERT_TRUE(capabilities.supports(Hook::Tc));  // otherwise the tc expectation below proves nothing
  ASSERT_TRUE(capabilities.supports(Hook::SockOps));

  EXPECT_EQ(leftover_paths(facts.cgroup2_mount), paths_before);
  // Closing an fd frees programs and maps after an RCU grace period; give it a moment.
  std::vector<std::string> objects;
  for (int attempt = 0; attempt < 100; ++attempt) {
    objects = live_probe_objects();
    if (objects.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(objects.empty()) << objects.front();
  const auto filters = command_output("tc filter show dev lo ingress 2>&1; tc filter show dev lo egress 2>&1");
  EXPECT_EQ(filters.find(std::string(kProbeObjectPrefix)), std::string::npos) << filters;
}

TEST(ProbeKernelCapabilities, LeftoverDetectionSeesALiveProgram) {
  // Guards the test above: while a probe-named program is alive, the scan must find it.
  const std::array<bpf_insn, 2> insns = {bpf_insn{BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0},
                                         bpf_insn{BPF_JMP | BPF_EXIT, 0, 0, 0, 0}};
  UniqueFd canary(bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "et_caps_canary", "GPL", insns.data(), insns.size(), nullptr));
  ASSERT_TRUE(canary.valid());
  const auto objects = live_probe_objects();
  EXPECT_NE(std::find(objects.begin(), objects.end(), "program et_caps_canary"), objects.end());
}

}  // namespace
}  // namespace edgetrace::capabilities
