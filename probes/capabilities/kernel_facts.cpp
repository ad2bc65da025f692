#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>

#include "capabilities/kernel_capabilities.h"
#include "capabilities/system_files.h"

namespace edgetrace::capabilities {
namespace {

constexpr const char* kLockdownFile = "/sys/kernel/security/lockdown";

void read_lockdown(KernelFacts& facts) {
  if (auto text = read_text_file(kLockdownFile)) {
    if (auto mode = parse_lockdown(*text)) {
      facts.lockdown = *mode;
      return;
    }
    facts.lockdown_detail = std::string("unexpected contents of ") + kLockdownFile + ": " + trim(*text);
    return;
  }
  // securityfs is often not mounted in containers and minimal VMs; look at it privately.
  ScopedPseudoMount securityfs("securityfs");
  if (!securityfs.mounted()) {
    facts.lockdown_detail = "securityfs is not mounted and " + securityfs.error();
    return;
  }
  const auto text = read_text_file(securityfs.path() + "/lockdown");
  if (!text) {
    facts.lockdown_detail = "securityfs has no lockdown file (kernel built without the lockdown LSM)";
    facts.lockdown = "none";
    return;
  }
  if (auto mode = parse_lockdown(*text))
    facts.lockdown = *mode;
  else
    facts.lockdown_detail = "unexpected contents of securityfs lockdown: " + trim(*text);
}

void read_capabilities(KernelFacts& facts) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return;
  const auto has = [&](int capability) {
    return (data[CAP_TO_INDEX(capability)].effective & CAP_TO_MASK(capability)) != 0;
  };
  facts.cap_sys_admin = has(CAP_SYS_ADMIN);
  facts.cap_bpf = has(CAP_BPF);
  facts.cap_perfmon = has(CAP_PERFMON);
  facts.cap_net_admin = has(CAP_NET_ADMIN);
}

void read_mount_facts(KernelFacts& facts) {
  const auto mounts = read_mounts();
  bool cgroup_v1_present = false;
  for (const auto& mount : mounts) {
    if (mount.fstype == "cgroup") {
      cgroup_v1_present = true;
      for (const char* controller : {",net_cls", ",net_prio"})
        if ((mount.super_options + ",").find(std::string(controller) + ",") != std::string::npos)
          facts.cgroup_v1_net_controllers = true;
    }
    // The first cgroup2 mount wins; hybrid systems mount it at /sys/fs/cgroup/unified.
    if (mount.fstype == "cgroup2" && facts.cgroup2_mount.empty()) facts.cgroup2_mount = mount.mount_point;
    if (mount.fstype == "tracefs" && (facts.tracefs_mount.empty() || mount.mount_point == "/sys/kernel/tracing"))
      facts.tracefs_mount = mount.mount_point;
  }
  facts.cgroup2_hybrid = !facts.cgroup2_mount.empty() && cgroup_v1_present;
}

}  // namespace

KernelFacts read_kernel_facts() {
  KernelFacts facts;
  utsname names{};
  if (::uname(&names) == 0) facts.kernel_release = names.release;
  facts.btf_present = ::access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  facts.uid = ::geteuid();
  read_capabilities(facts);
  read_mount_facts(facts);
  read_lockdown(facts);
  if (auto stats = read_text_file("/proc/sys/kernel/bpf_stats_enabled")) facts.bpf_stats_enabled = trim(*stats) == "1";
  facts.kprobe_pmu = ::access("/sys/bus/event_source/devices/kprobe/type", R_OK) == 0;
  facts.uprobe_pmu = ::access("/sys/bus/event_source/devices/uprobe/type", R_OK) == 0;
  return facts;
}

}  // namespace edgetrace::capabilities
