// What this kernel lets edgetrace do, found by loading and attaching tiny BPF programs for
// real rather than by guessing from the kernel version: vendor kernels backport and disable
// features freely (this VM has 6.18 without kprobes; Debian's 6.1 has them).
#pragma once

#include <array>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrace::capabilities {

struct KernelFacts {
  std::string kernel_release;  // uname -r
  bool btf_present = false;    // /sys/kernel/btf/vmlinux readable
  // "none", "integrity", "confidentiality", or "unknown" (with lockdown_detail saying why).
  std::string lockdown = "unknown";
  std::string lockdown_detail;
  std::string cgroup2_mount;  // empty when no cgroup2 is mounted
  bool cgroup2_hybrid = false;  // cgroup2 sits beside v1 controllers (e.g. /sys/fs/cgroup/unified)
  // A v1 net_cls/net_prio hierarchy: once used, the kernel stops matching sockets to cgroup2,
  // which silences sockops and cgroup_skb programs.
  bool cgroup_v1_net_controllers = false;
  std::string tracefs_mount;  // empty when tracefs is not mounted anywhere
  unsigned uid = 0;
  bool cap_sys_admin = false;
  bool cap_bpf = false;
  bool cap_perfmon = false;
  bool cap_net_admin = false;
  std::optional<bool> bpf_stats_enabled;  // kernel.bpf_stats_enabled; nullopt if unreadable
  bool kprobe_pmu = false;  // /sys/bus/event_source/devices/kprobe
  bool uprobe_pmu = false;  // /sys/bus/event_source/devices/uprobe

  [[nodiscard]] bool running_as_root() const { return uid == 0; }
  // CAP_SYS_ADMIN implies CAP_BPF and CAP_PERFMON for BPF purposes.
  [[nodiscard]] bool has_bpf_privileges() const {
    return cap_sys_admin || (cap_bpf && cap_perfmon && cap_net_admin);
  }
};

enum class Hook {
  SyscallTracepoint,
  RawTracepoint,
  BtfTracepoint,
  SocketTracepoint,  // tp_btf on sock_send_length reading the syscall's registers
  Kprobe,
  Fentry,
  Uprobe,
  SockOps,
  SkMsg,
  Tc,
  CgroupSkb,
  RingBuffer,
  ProbeWriteUser,
  BpfLoop,
  GetCurrentCgroupId,
  GetCurrentAncestorCgroupId,
  CurrentTaskUnderCgroup,
  ProbeReadKernel,
  TaskStorage,
};

std::string_view hook_name(Hook hook);

struct HookCheck {
  Hook hook{};
  std::string name;
  bool supported = false;
  // What was tried and, when refused, the errno text and the verifier's last words.
  std::string detail;
};

// Ways to see syscalls, cheapest first: socket tracepoints > fentry > kprobe > BTF raw
// tracepoint > syscall tracepoint > raw tracepoint. The capture programs exist for four of
// them (see kImplementedSyscallCaptures); the others are reported for what they would allow.
enum class SyscallCapture { SocketTracepoint, Fentry, Kprobe, BtfTracepoint, SyscallTracepoint, RawTracepoint, None };

std::string_view to_string(SyscallCapture capture);

// The hooks bpf/http_capture.bpf.c has programs for, in the order the agent tries them
// (probes/trace_probes.cpp). The socket tracepoints (reading x86-64's pt_regs), fentry (on
// __x64_sys_*) and the BTF raw tracepoints (with their syscall table) are x86-64 only.
#if defined(__x86_64__)
inline constexpr std::array kImplementedSyscallCaptures{SyscallCapture::SocketTracepoint, SyscallCapture::Fentry,
                                                        SyscallCapture::BtfTracepoint,
                                                        SyscallCapture::SyscallTracepoint};
#else
inline constexpr std::array kImplementedSyscallCaptures{SyscallCapture::SyscallTracepoint};
#endif

struct CapturePath {
  // What the agent will use: the first working hook it has capture programs for.
  SyscallCapture syscall_capture = SyscallCapture::None;
  std::vector<SyscallCapture> available;  // every working syscall hook, cheapest first
  bool context_injection = false;         // sockops + sk_msg both work
  bool uprobes = false;                   // library hooks (TLS) available
};

struct KernelCapabilities {
  KernelFacts facts;
  std::vector<HookCheck> hooks;
  CapturePath capture_path;
  // One sentence per missing requirement; empty means the agent can run.
  std::vector<std::string> missing_requirements;
  // Things that do not stop the agent but an operator should know (one sentence each).
  std::vector<std::string> warnings;

  [[nodiscard]] const HookCheck* find(Hook hook) const;
  [[nodiscard]] bool supports(Hook hook) const;
  [[nodiscard]] bool ready() const { return missing_requirements.empty(); }
};

KernelFacts read_kernel_facts();
// Loads, attaches, fires (where cheap) and detaches one tiny program per hook.
// Leaves no cgroup, tc filter, pinned object or mount behind.
std::vector<HookCheck> probe_hooks(const KernelFacts& facts);
CapturePath choose_capture_path(const std::vector<HookCheck>& hooks);
std::vector<std::string> find_missing_requirements(const KernelFacts& facts,
                                                   const std::vector<HookCheck>& hooks);
std::vector<std::string> find_warnings(const KernelFacts& facts, const CapturePath& path);

// Everything above, for the agent's start-up.
KernelCapabilities probe_kernel_capabilities();

void print_report(const KernelCapabilities& capabilities, std::ostream& out);
// `edgetrace doctor`: probes, prints the report, returns 0 when the agent can run here, 1 otherwise.
int run_doctor(std::ostream& out);

}  // namespace edgetrace::capabilities
