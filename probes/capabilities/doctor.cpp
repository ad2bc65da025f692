#include <algorithm>
#include <exception>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "capabilities/kernel_capabilities.h"

namespace edgetrace::capabilities {

std::string_view hook_name(Hook hook) {
  switch (hook) {
    case Hook::SyscallTracepoint: return "syscall tracepoint";
    case Hook::RawTracepoint: return "raw tracepoint";
    case Hook::BtfTracepoint: return "BTF raw tracepoint (tp_btf)";
    case Hook::SocketTracepoint: return "socket tracepoint (sock_send_length)";
    case Hook::Kprobe: return "kprobe";
    case Hook::Fentry: return "fentry";
    case Hook::Uprobe: return "uprobe";
    case Hook::SockOps: return "sockops";
    case Hook::SkMsg: return "sk_msg";
    case Hook::Tc: return "tc (clsact)";
    case Hook::CgroupSkb: return "cgroup_skb";
    case Hook::RingBuffer: return "ring buffer";
    case Hook::ProbeWriteUser: return "bpf_probe_write_user";
    case Hook::BpfLoop: return "bpf_loop";
    case Hook::GetCurrentCgroupId: return "bpf_get_current_cgroup_id";
    case Hook::GetCurrentAncestorCgroupId: return "bpf_get_current_ancestor_cgroup_id";
    case Hook::CurrentTaskUnderCgroup: return "bpf_current_task_under_cgroup";
    case Hook::ProbeReadKernel: return "bpf_probe_read_kernel";
    case Hook::TaskStorage: return "task storage (bpf_task_storage_get)";
  }
  return "unknown";
}

std::string_view to_string(SyscallCapture capture) {
  switch (capture) {
    case SyscallCapture::SocketTracepoint: return "socket tracepoints (sock_recv_length/sock_send_length)";
    case SyscallCapture::Fentry: return "fentry";
    case SyscallCapture::Kprobe: return "kprobes";
    case SyscallCapture::BtfTracepoint: return "BTF raw tracepoints (sys_enter/sys_exit)";
    case SyscallCapture::SyscallTracepoint: return "syscall tracepoints";
    case SyscallCapture::RawTracepoint: return "raw tracepoints (sys_enter/sys_exit)";
    case SyscallCapture::None: return "none";
  }
  return "unknown";
}

const HookCheck* KernelCapabilities::find(Hook hook) const {
  const auto it = std::find_if(hooks.begin(), hooks.end(), [hook](const HookCheck& c) { return c.hook == hook; });
  return it == hooks.end() ? nullptr : &*it;
}

bool KernelCapabilities::supports(Hook hook) const {
  const auto* check = find(hook);
  return check != nullptr && check->supported;
}

namespace {

bool supported(const std::vector<HookCheck>& hooks, Hook hook) {
  return std::any_of(hooks.begin(), hooks.end(),
                     [hook](const HookCheck& c) { return c.hook == hook && c.supported; });
}

}  // namespace

CapturePath choose_capture_path(const std::vector<HookCheck>& hooks) {
  CapturePath path;
  // The socket tracepoints fire only on socket reads and writes, so files, pipes and every
  // other syscall pay nothing. fentry and kprobes hook only the syscalls followed, but on any
  // fd. BTF raw tracepoints see every syscall but cost ~30 ns each; a syscall tracepoint
  // costs ~90 ns per followed syscall (docs/benchmarks.md).
  constexpr std::pair<SyscallCapture, Hook> kCheapestFirst[] = {
      {SyscallCapture::SocketTracepoint, Hook::SocketTracepoint},
      {SyscallCapture::Fentry, Hook::Fentry},
      {SyscallCapture::Kprobe, Hook::Kprobe},
      {SyscallCapture::BtfTracepoint, Hook::BtfTracepoint},
      {SyscallCapture::SyscallTracepoint, Hook::SyscallTracepoint},
      {SyscallCapture::RawTracepoint, Hook::RawTracepoint},
  };
  for (const auto& [capture, hook] : kCheapestFirst)
    if (supported(hooks, hook)) path.available.push_back(capture);
  for (const auto capture : path.available)
    if (std::find(kImplementedSyscallCaptures.begin(), kImplementedSyscallCaptures.end(), capture) !=
        kImplementedSyscallCaptures.end()) {
      path.syscall_capture = capture;
      break;
    }
  path.context_injection = supported(hooks, Hook::SockOps) && supported(hooks, Hook::SkMsg);
  path.uprobes = supported(hooks, Hook::Uprobe);
  return path;
}

std::vector<std::string> find_missing_requirements(const KernelFacts& facts, const std::vector<HookCheck>& hooks) {
  std::vector<std::string> missing;
  if (!facts.has_bpf_privileges()) {
    // Every hook check fails for lack of privilege then; one sentence says why.
    missing.push_back(fmt::format(
        "edgetrace needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, but runs as uid {} without them.",
        facts.uid));
    return missing;
  }
  if (!facts.btf_present)
    missing.push_back("The kernel has no BTF (/sys/kernel/btf/vmlinux), which the CO-RE programs need.");
  if (!supported(hooks, Hook::RingBuffer))
    missing.push_back("The kernel has no working BPF ring buffer (needs 5.8 or later).");
  if (choose_capture_path(hooks).syscall_capture == SyscallCapture::None)
    missing.push_back(
        "No syscall hook the capture programs use works here: socket tracepoints, fentry, BTF raw tracepoints "
        "and syscall tracepoints all failed.");
  if (!supported(hooks, Hook::TaskStorage))
    missing.push_back(
        "The syscall capture programs keep each traced thread's call in task storage and read the current task "
        "through BTF, which a tracepoint program may not do here (BPF_MAP_TYPE_TASK_STORAGE, "
        "bpf_get_current_task_btf, bpf_task_storage_get).");
  return missing;
}

std::vector<std::string> find_warnings(const KernelFacts& facts, const CapturePath& path) {
  std::vector<std::string> warnings;
  if (path.syscall_capture == SyscallCapture::SyscallTracepoint && facts.tracefs_mount.empty())
    warnings.push_back(
        "tracefs is not mounted; attaching syscall tracepoints needs it "
        "(mount -t tracefs tracefs /sys/kernel/tracing).");
  if (facts.lockdown == "unknown")
    warnings.push_back("The kernel lockdown mode could not be read (" + facts.lockdown_detail + ").");
  if (facts.cgroup_v1_net_controllers)
    warnings.push_back(
        "A cgroup v1 net_cls/net_prio hierarchy is mounted; using it makes the kernel stop running "
        "cgroup2 socket programs (sockops, cgroup_skb).");
  return warnings;
}

KernelCapabilities probe_kernel_capabilities() {
  KernelCapabilities capabilities;
  capabilities.facts = read_kernel_facts();
  capabilities.hooks = probe_hooks(capabilities.facts);
  capabilities.capture_path = choose_capture_path(capabilities.hooks);
  capabilities.missing_requirements = find_missing_requirements(capabilities.facts, capabilities.hooks);
  capabilities.warnings = find_warnings(capabilities.facts, capabilities.capture_path);
  return capabilities;
}

namespace {

std::string yes_no(bool value) { return value ? "yes" : "no"; }

std::string privileges_line(const KernelFacts& facts) {
  std::vector<std::string> held;
  if (facts.cap_sys_admin) held.emplace_back("CAP_SYS_ADMIN");
  if (facts.cap_bpf) held.emplace_back("CAP_BPF");
  if (facts.cap_perfmon) held.emplace_back("CAP_PERFMON");
  if (facts.cap_net_admin) held.emplace_back("CAP_NET_ADMIN");
  return fmt::format("uid {}{}, effective capabilities: {}", facts.uid, facts.running_as_root() ? " (root)" : "",
                     held.empty() ? std::string("none of the BPF ones") : fmt::format("{}", fmt::join(held, " ")));
}

}  // namespace

void print_report(const KernelCapabilities& capabilities, std::ostream& out) {
  const auto& facts = capabilities.facts;
  out << "edgetrace doctor\n\n";
  out << fmt::format("  {:<22} {}\n", "kernel", facts.kernel_release);
  out << fmt::format("  {:<22} {}\n", "BTF", facts.btf_present ? "yes (/sys/kernel/btf/vmlinux)" : "no");
  out << fmt::format("  {:<22} {}{}\n", "lockdown", facts.lockdown,
                     facts.lockdown_detail.empty() ? "" : " (" + facts.lockdown_detail + ")");
  out << fmt::format("  {:<22} {}\n", "cgroup v2",
                     facts.cgroup2_mount.empty()
                         ? std::string("not mounted")
                         : facts.cgroup2_mount + (facts.cgroup2_hybrid ? " (hybrid, beside cgroup v1)" : " (unified)"));
  out << fmt::format("  {:<22} {}\n", "tracefs",
                     facts.tracefs_mount.empty() ? std::string("not mounted (mount -t tracefs tracefs /sys/kernel/tracing)")
                                                 : facts.tracefs_mount);
  out << fmt::format("  {:<22} {}\n", "privileges", privileges_line(facts));
  out << fmt::format("  {:<22} {}\n", "bpf_stats_enabled",
                     facts.bpf_stats_enabled ? yes_no(*facts.bpf_stats_enabled) : std::string("unreadable"));

  std::size_t name_width = 4;
  for (const auto& check : capabilities.hooks) name_width = std::max(name_width, check.name.size());
  out << fmt::format("\n  {:<{}}  {:<3}  {}\n", "hook", name_width, "ok", "detail");
  for (const auto& check : capabilities.hooks)
    out << fmt::format("  {:<{}}  {:<3}  {}\n", check.name, name_width, yes_no(check.supported), check.detail);

  const auto& path = capabilities.capture_path;
  std::vector<std::string> available;
  for (const auto capture : path.available) available.emplace_back(to_string(capture));
  out << fmt::format("\n  {:<22} {}\n", "syscall capture", to_string(path.syscall_capture));
  std::erase(available, std::string(to_string(path.syscall_capture)));
  out << fmt::format("  {:<22} {}\n", "  also working", available.empty() ? std::string("-") : fmt::format("{}", fmt::join(available, ", ")));
  out << fmt::format("  {:<22} {}\n", "context injection", path.context_injection ? "yes (sockops + sk_msg)" : "no");
  out << fmt::format("  {:<22} {}\n", "library uprobes", yes_no(path.uprobes));

  out << "\n";
  for (const auto& warning : capabilities.warnings) out << "warning: " << warning << "\n";
  if (capabilities.ready()) {
    out << "verdict: edgetrace can run here.\n";
    return;
  }
  out << "verdict: edgetrace cannot run here.\n";
  for (const auto& sentence : capabilities.missing_requirements) out << "  - " << sentence << "\n";
}

int run_doctor(std::ostream& out) {
  try {
    const auto capabilities = probe_kernel_capabilities();
    print_report(capabilities, out);
    out.flush();
    return capabilities.ready() ? 0 : 1;
  } catch (const std::exception& error) {
    out << "verdict: edgetrace cannot run here.\n  - The capability probe failed: " << error.what() << "\n";
    return 1;
  }
}

}  // namespace edgetrace::capabilities
