// One check per hook: load a tiny program, attach it for real, make it fire where that is
// cheap and side-effect free, then tear everything down through RAII.
#include <arpa/inet.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "capabilities/bpf_program.h"
#include "capabilities/kernel_capabilities.h"
#include "capabilities/system_files.h"

// A function of our own for the uprobe check to attach to. C linkage and noinline keep it a
// real, separately addressable function in whatever binary links this library.
extern "C" __attribute__((noinline)) void edgetrace_capabilities_uprobe_target() { asm volatile("" ::: "memory"); }

namespace edgetrace::capabilities {
namespace {

using namespace bpf_asm;

HookCheck make_check(Hook hook) {
  HookCheck check;
  check.hook = hook;
  check.name = std::string(hook_name(hook));
  return check;
}

HookCheck refused(Hook hook, std::string detail) {
  auto check = make_check(hook);
  check.detail = std::move(detail);
  return check;
}

// Calls that every syscall-entry candidate below sees.
void trigger_syscalls() {
  ::syscall(SYS_getppid);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

// The kprobe and fentry checks attach to the first of these the kernel knows.
constexpr std::array<const char*, 4> kSyscallFunctions = {"do_sys_openat2", "__x64_sys_getppid",
                                                          "__arm64_sys_getppid", "__do_sys_getppid"};

// Finishes a check whose program increments `counter`: attached is not enough, it must fire.
HookCheck judge_firing(Hook hook, const FireCounter& counter, const std::string& target,
                       const std::function<void()>& trigger) {
  for (int attempt = 0; attempt < 20 && counter.value() == 0; ++attempt) {
    trigger();
    if (counter.value() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto check = make_check(hook);
  if (counter.value() > 0) {
    check.supported = true;
    check.detail = "attached to " + target + " and fired";
  } else {
    check.detail = "attached to " + target + " but the program never ran";
  }
  return check;
}

std::optional<int> read_pmu_type(const std::string& pmu) {
  const auto text = read_text_file("/sys/bus/event_source/devices/" + pmu + "/type");
  if (!text) return std::nullopt;
  try {
    return std::stoi(*text);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct PerfEvent {
  UniqueFd fd;
  std::string error;
};

// Bound to the calling thread (pid 0, any cpu), so only our own trigger makes it fire.
PerfEvent open_perf_event(perf_event_attr attr) {
  attr.size = sizeof(attr);
  attr.sample_period = 1;
  attr.wakeup_events = 1;
  PerfEvent event;
  const int fd = static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
  if (fd >= 0)
    event.fd.reset(fd);
  else
    event.error = "perf_event_open refused: " + errno_text(errno);
  return event;
}

struct Attachment {
  UniqueFd link;
  std::string error;
};

// BPF links (5.15+) detach when closed; older kernels take the perf ioctl, undone when the
// perf event fd closes.
Attachment attach_to_perf_event(int prog_fd, int perf_fd) {
  Attachment attachment;
  const int link = bpf_link_create(prog_fd, perf_fd, BPF_PERF_EVENT, nullptr);
  if (link >= 0) {
    attachment.link.reset(link);
    return attachment;
  }
  if (::ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, prog_fd) != 0) {
    attachment.error = "attach refused: " + errno_text(errno);
    return attachment;
  }
  ::ioctl(perf_fd, PERF_EVENT_IOC_ENABLE, 0);
  return attachment;
}

HookCheck check_perf_program(Hook hook, bpf_prog_type type, const char* prog_name, const PerfEvent& event,
                             const std::string& target, const std::function<void()>& trigger) {
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  const auto insns = counter.program(0);
  auto program = load_program(type, prog_name, insns);
  if (!program.fd) return refused(hook, program.error);
  if (!event.fd) return refused(hook, "loaded, but " + event.error);
  const auto attachment = attach_to_perf_event(program.fd.get(), event.fd.get());
  if (!attachment.error.empty()) return refused(hook, attachment.error);
  return judge_firing(hook, counter, target, trigger);
}

HookCheck check_syscall_tracepoint(const KernelFacts& facts) {
  constexpr Hook hook = Hook::SyscallTracepoint;
  std::string tracefs = facts.tracefs_mount;
  std::optional<ScopedPseudoMount> private_tracefs;
  if (tracefs.empty()) {
    private_tracefs.emplace("tracefs");
    if (!private_tracefs->mounted())
      return refused(hook, "tracefs is not mounted and " + private_tracefs->error());
    tracefs = private_tracefs->path();
  }
  const auto id_text = read_text_file(tracefs + "/events/syscalls/sys_enter_getppid/id");
  if (!id_text)
    return refused(hook, "no syscalls:sys_enter_getppid in tracefs (kernel without CONFIG_FTRACE_SYSCALLS?)");
  perf_event_attr attr{};
  attr.type = PERF_TYPE_TRACEPOINT;
  try {
    attr.config = std::stoull(*id_text);
  } catch (const std::exception&) {
    return refused(hook, "unreadable tracepoint id in tracefs: " + trim(*id_text));
  }
  const auto event = open_perf_event(attr);
  return check_perf_program(hook, BPF_PROG_TYPE_TRACEPOINT, "et_caps_tp", event, "syscalls:sys_enter_getppid",
                            trigger_syscalls);
}

HookCheck check_raw_tracepoint() {
  constexpr Hook hook = Hook::RawTracepoint;
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  const auto insns = counter.program(0);
  auto program = load_program(BPF_PROG_TYPE_RAW_TRACEPOINT, "et_caps_raw_tp", insns);
  if (!program.fd) return refused(hook, program.error);
  const int link = bpf_raw_tracepoint_open("sys_enter", program.fd.get());
  if (link < 0) return refused(hook, "attach to raw tracepoint sys_enter refused: " + errno_text(-link));
  UniqueFd link_fd(link);
  return judge_firing(hook, counter, "raw tracepoint sys_enter", trigger_syscalls);
}

HookCheck check_kprobe(const KernelFacts& facts) {
  constexpr Hook hook = Hook::Kprobe;
  const auto pmu = read_pmu_type("kprobe");
  if (!facts.kprobe_pmu || !pmu)
    return refused(hook,
                   "kprobes not supported: no kprobe PMU at /sys/bus/event_source/devices/kprobe "
                   "(kernel built without CONFIG_KPROBES)");
  PerfEvent event;
  std::string target;
  for (const char* function : kSyscallFunctions) {
    perf_event_attr attr{};
    attr.type = static_cast<std::uint32_t>(*pmu);
    attr.config1 = reinterpret_cast<std::uint64_t>(function);  // kprobe_func
    attr.config2 = 0;                                           // probe_offset
    event = open_perf_event(attr);
    target = std::string("kprobe ") + function;
    if (event.fd) break;
  }
  return check_perf_program(hook, BPF_PROG_TYPE_KPROBE, "et_caps_kprobe", event, target, trigger_syscalls);
}

struct BtfDeleter {
  void operator()(btf* object) const { btf__free(object); }
};
using BtfPtr = std::unique_ptr<btf, BtfDeleter>;

// Loads a counting BPF_PROG_TYPE_TRACING program at a kernel BTF id, attaches it and sees it
// fire: the common part of the fentry and both BTF raw tracepoint checks. `target` names it.
// `prologue` runs before the counter and may end the program itself, so a check can make
// "fired" mean more than "ran".
HookCheck check_tracing_program(Hook hook, bpf_attach_type attach_type, std::int32_t btf_id, const std::string& target,
                                const char* program_name, std::vector<bpf_insn> prologue = {},
                                const std::function<void()>& trigger = trigger_syscalls) {
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  bpf_prog_load_opts opts{};
  opts.expected_attach_type = attach_type;
  opts.attach_btf_id = static_cast<std::uint32_t>(btf_id);
  auto insns = std::move(prologue);
  const auto count = counter.program(0);
  insns.insert(insns.end(), count.begin(), count.end());
  auto program = load_program(BPF_PROG_TYPE_TRACING, program_name, insns, opts);
  if (!program.fd) return refused(hook, target + ": " + program.error);
  const int link = bpf_raw_tracepoint_open(nullptr, program.fd.get());
  if (link < 0) return refused(hook, "attach to " + target + " refused: " + errno_text(-link));
  UniqueFd link_fd(link);
  return judge_firing(hook, counter, target, trigger);
}

// What the capture programs attach to when the socket tracepoints and fentry are refused:
// sys_enter as a BTF raw tracepoint (BPF_TRACE_RAW_TP). Needs no tracefs and no trampoline.
HookCheck check_btf_tracepoint(const KernelFacts& facts) {
  constexpr Hook hook = Hook::BtfTracepoint;
  if (!facts.btf_present) return refused(hook, "needs kernel BTF (/sys/kernel/btf/vmlinux), which is absent");
  BtfPtr vmlinux(btf__load_vmlinux_btf());
  if (!vmlinux) return refused(hook, "cannot parse kernel BTF: " + errno_text(errno));
  const std::int32_t btf_id = btf__find_by_name_kind(vmlinux.get(), "btf_trace_sys_enter", BTF_KIND_TYPEDEF);
  if (btf_id <= 0) return refused(hook, "not supported: kernel BTF has no btf_trace_sys_enter");
  return check_tracing_program(hook, BPF_TRACE_RAW_TP, btf_id, "tp_btf sys_enter", "et_caps_tp_btf");
}

HookCheck check_fentry(const KernelFacts& facts) {
  constexpr Hook hook = Hook::Fentry;
  if (!facts.btf_present) return refused(hook, "needs kernel BTF (/sys/kernel/btf/vmlinux), which is absent");
  BtfPtr vmlinux(btf__load_vmlinux_btf());
  if (!vmlinux) return refused(hook, "cannot parse kernel BTF: " + errno_text(errno));
  std::int32_t btf_id = -1;
  std::string function;
  for (const char* candidate : kSyscallFunctions) {
    btf_id = btf__find_by_name_kind(vmlinux.get(), candidate, BTF_KIND_FUNC);
    if (btf_id > 0) {
      function = candidate;
      break;
    }
  }
  if (btf_id <= 0) return refused(hook, "none of the syscall functions it attaches to is in kernel BTF");
  return check_tracing_program(hook, BPF_TRACE_FENTRY, btf_id, "fentry " + function, "et_caps_fentry");
}

struct CodeLocation {
  std::string path;
  std::uint64_t file_offset = 0;
};

// The loader already mapped the function; its file offset is address - mapping start +
// mapping offset, which saves an ELF symbol lookup (and handles PIE and shared objects alike).
std::optional<CodeLocation> locate_code(std::uintptr_t address, std::string& error) {
  const auto maps = read_text_file("/proc/self/maps");
  if (!maps) {
    error = "cannot read /proc/self/maps: " + errno_text(errno);
    return std::nullopt;
  }
  std::istringstream lines(*maps);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode, path;
    fields >> range >> perms >> offset >> device >> inode;
    std::getline(fields, path);
    const auto dash = range.find('-');
    if (dash == std::string::npos) continue;
    std::uint64_t start = 0, end = 0, file_offset = 0;
    try {
      start = std::stoull(range.substr(0, dash), nullptr, 16);
      end = std::stoull(range.substr(dash + 1), nullptr, 16);
      file_offset = std::stoull(offset, nullptr, 16);
    } catch (const std::exception&) {
      continue;
    }
    if (address < start || address >= end) continue;
    path = trim(path);
    if (path.empty() || path.front() != '/' || path.ends_with("(deleted)")) {
      error = "the probe target is not in a file-backed mapping (" + path + ")";
      return std::nullopt;
    }
    return CodeLocation{path, address - start + file_offset};
  }
  error = "the probe target is not in /proc/self/maps";
  return std::nullopt;
}

HookCheck check_uprobe(const KernelFacts& facts) {
  constexpr Hook hook = Hook::Uprobe;
  const auto pmu = read_pmu_type("uprobe");
  if (!facts.uprobe_pmu || !pmu)
    return refused(hook, "no uprobe PMU at /sys/bus/event_source/devices/uprobe (kernel without CONFIG_UPROBES)");
  std::string error;
  const auto location = locate_code(reinterpret_cast<std::uintptr_t>(&edgetrace_capabilities_uprobe_target), error);
  if (!location) return refused(hook, error);
  perf_event_attr attr{};
  attr.type = static_cast<std::uint32_t>(*pmu);
  attr.config1 = reinterpret_cast<std::uint64_t>(location->path.c_str());  // uprobe_path
  attr.config2 = location->file_offset;                                     // probe_offset
  const auto event = open_perf_event(attr);
  void (*volatile target)() = &edgetrace_capabilities_uprobe_target;
  char offset_text[32];
  std::snprintf(offset_text, sizeof(offset_text), "0x%llx", static_cast<unsigned long long>(location->file_offset));
  return check_perf_program(hook, BPF_PROG_TYPE_KPROBE, "et_caps_uprobe", event,
                            "uprobe " + location->path + ":" + offset_text, [target] { target(); });
}

struct LoopbackTcpPair {
  UniqueFd client;
  UniqueFd server;
  std::string error;
};

UniqueFd listen_on_loopback(sockaddr_in& address, std::string& error) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (!listener || ::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener.get(), 1) != 0 ||
      ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    error = "cannot listen on 127.0.0.1: " + errno_text(errno);
    return {};
  }
  return listener;
}

UniqueFd accept_within(int listener, int timeout_ms) {
  pollfd readable{listener, POLLIN, 0};
  if (::poll(&readable, 1, timeout_ms) != 1) return {};
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

// Cgroup programs only run for sockets of processes inside the cgroup, so a child joins the
// temporary cgroup and makes one loopback TCP connection. The child uses only
// async-signal-safe calls: the parent may have other threads.
std::string connect_from_cgroup(const std::string& cgroup_path) {
  std::string error;
  sockaddr_in address{};
  auto listener = listen_on_loopback(address, error);
  if (!listener) return error;
  const std::string procs = cgroup_path + "/cgroup.procs";
  const pid_t child = ::fork();
  if (child < 0) return "cannot fork: " + errno_text(errno);
  if (child == 0) {
    const int procs_fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (procs_fd < 0 || ::write(procs_fd, "0", 1) != 1) ::_exit(2);
    ::close(procs_fd);
    const int socket_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (socket_fd < 0 || ::connect(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) ::_exit(3);
    if (::send(socket_fd, "x", 1, MSG_NOSIGNAL) != 1) ::_exit(4);
    ::close(socket_fd);
    ::_exit(0);
  }
  auto accepted = accept_within(listener.get(), 2000);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "the child that joins the cgroup and connects failed (status " + std::to_string(status) + ")";
  if (!accepted) return "the connection from the cgroup never arrived";
  return {};
}

HookCheck check_cgroup_program(Hook hook, const KernelFacts& facts, bpf_prog_type type, bpf_attach_type attach_type,
                               const char* prog_name) {
  if (facts.cgroup2_mount.empty()) return refused(hook, "no cgroup2 filesystem is mounted");
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  const auto insns = counter.program(1);  // sockops: ignored; cgroup_skb: 1 = allow
  auto program = load_program(type, prog_name, insns);
  if (!program.fd) return refused(hook, program.error);
  TemporaryCgroup cgroup(facts.cgroup2_mount);
  if (!cgroup.created()) return refused(hook, "loaded, but " + cgroup.error());
  UniqueFd link(bpf_link_create(program.fd.get(), cgroup.fd(), attach_type, nullptr));
  struct LegacyDetach {
    int prog = -1, cgroup = -1;
    bpf_attach_type type{};
    ~LegacyDetach() {
      if (prog >= 0) bpf_prog_detach2(prog, cgroup, type);
    }
  } legacy;
  if (!link) {
    // Kernels before 5.7 have no cgroup links; the legacy attach needs an explicit detach.
    if (bpf_prog_attach(program.fd.get(), cgroup.fd(), attach_type, 0) != 0)
      return refused(hook, "attach to a temporary cgroup refused: " + errno_text(errno));
    legacy = {program.fd.get(), cgroup.fd(), attach_type};
  }
  const std::string target = "a temporary cgroup under " + facts.cgroup2_mount;
  if (const auto error = connect_from_cgroup(cgroup.path()); !error.empty())
    return refused(hook, "attached to " + target + ", but " + error);
  return judge_firing(hook, counter, target, [] {});
}

LoopbackTcpPair connect_loopback_tcp() {
  LoopbackTcpPair pair;
  sockaddr_in address{};
  auto listener = listen_on_loopback(address, pair.error);
  if (!listener) return pair;
  pair.client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!pair.client || ::connect(pair.client.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    pair.error = "cannot connect to 127.0.0.1: " + errno_text(errno);
    return pair;
  }
  pair.server = accept_within(listener.get(), 2000);
  if (!pair.server) pair.error = "cannot accept on 127.0.0.1: " + errno_text(errno);
  return pair;
}

HookCheck check_sk_msg() {
  constexpr Hook hook = Hook::SkMsg;
  auto sockhash = create_map(BPF_MAP_TYPE_SOCKHASH, "et_caps_sockhash", sizeof(std::uint32_t),
                             sizeof(std::uint32_t), 1);
  if (!sockhash.fd) return refused(hook, sockhash.error);
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  const auto insns = counter.program(SK_PASS);
  auto program = load_program(BPF_PROG_TYPE_SK_MSG, "et_caps_sk_msg", insns);
  if (!program.fd) return refused(hook, program.error);
  if (bpf_prog_attach(program.fd.get(), sockhash.fd.get(), BPF_SK_MSG_VERDICT, 0) != 0)
    return refused(hook, "attach to a sockhash refused: " + errno_text(errno));
  struct Detach {
    int prog, map;
    ~Detach() { bpf_prog_detach2(prog, map, BPF_SK_MSG_VERDICT); }
  } detach{program.fd.get(), sockhash.fd.get()};

  // The context-injection path depends on messages on a real socket passing through the program.
  auto pair = connect_loopback_tcp();
  if (!pair.error.empty()) return refused(hook, "attached, but " + pair.error);
  std::uint32_t key = 0;
  auto socket_fd = static_cast<std::uint32_t>(pair.client.get());
  if (bpf_map_update_elem(sockhash.fd.get(), &key, &socket_fd, BPF_ANY) != 0)
    return refused(hook, "attached, but adding a TCP socket to the sockhash was refused: " + errno_text(errno));
  constexpr char kMessage[] = "edgetrace";
  if (::send(pair.client.get(), kMessage, sizeof(kMessage), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(kMessage)))
    return refused(hook, "attached, but sending on the socket failed: " + errno_text(errno));
  pollfd readable{pair.server.get(), POLLIN, 0};
  std::array<char, sizeof(kMessage)> received{};
  if (::poll(&readable, 1, 1000) != 1 || ::recv(pair.server.get(), received.data(), received.size(), 0) <= 0)
    return refused(hook, "attached, but the message did not arrive through the sk_msg program");
  return judge_firing(hook, counter, "a sockhash holding a loopback TCP socket", [] {});
}

// Byte offset of `member` in the kernel's struct `type`, from its BTF; nullopt if absent.
std::optional<std::uint32_t> member_offset(const btf* types, const char* type, const char* member) {
  const std::int32_t id = btf__find_by_name_kind(types, type, BTF_KIND_STRUCT);
  if (id <= 0) return std::nullopt;
  const btf_type* structure = btf__type_by_id(types, static_cast<std::uint32_t>(id));
  const btf_member* members = btf_members(structure);
  for (std::uint16_t i = 0; i < btf_vlen(structure); ++i)
    if (std::strcmp(btf__name_by_offset(types, members[i].name_off), member) == 0)
      return btf_member_bit_offset(structure, i) / 8;
  return std::nullopt;
}

// What the socket tracepoint set does on every socket read and write: a tp_btf program on
// sock_send_length (sock_recv_length and inet_sock_set_state beside it) that takes the
// syscall's number and arguments from the registers the thread entered the kernel with. The
// counter only counts a sendto of this process whose regs->orig_ax says sendto, so "fired"
// means that read works, not just that the tracepoint ran.
HookCheck check_socket_tracepoint(const KernelFacts& facts) {
  constexpr Hook hook = Hook::SocketTracepoint;
  if (!facts.btf_present) return refused(hook, "needs kernel BTF (/sys/kernel/btf/vmlinux), which is absent");
  BtfPtr vmlinux(btf__load_vmlinux_btf());
  if (!vmlinux) return refused(hook, "cannot parse kernel BTF: " + errno_text(errno));
  for (const char* tracepoint : {"sock_send_length", "sock_recv_length", "inet_sock_set_state"})
    if (btf__find_by_name_kind(vmlinux.get(), (std::string("btf_trace_") + tracepoint).c_str(), BTF_KIND_TYPEDEF) <= 0)
      return refused(hook, std::string("not supported: this kernel has no ") + tracepoint +
                               " tracepoint (no btf_trace_" + tracepoint + " in its BTF)");
  const std::int32_t btf_id = btf__find_by_name_kind(vmlinux.get(), "btf_trace_sock_send_length", BTF_KIND_TYPEDEF);
  const auto orig_ax = member_offset(vmlinux.get(), "pt_regs", "orig_ax");
  if (!orig_ax) return refused(hook, "not supported: struct pt_regs has no orig_ax (the set is x86-64 only)");

  auto pair = connect_loopback_tcp();
  if (!pair.error.empty()) return refused(hook, pair.error);
  const std::vector<bpf_insn> prologue = {
      call(BPF_FUNC_get_current_pid_tgid),
      rsh64_imm(R0, 32),
      jump_if_not_equal(R0, static_cast<std::int32_t>(::getpid()), 5),
      call(BPF_FUNC_get_current_task_btf),
      mov64_reg(R1, R0),
      call(BPF_FUNC_task_pt_regs),
      load_u64(R1, R0, static_cast<std::int16_t>(*orig_ax)),
      jump_if_equal(R1, SYS_sendto, 2),  // on to the counter
      mov64_imm(R0, 0),
      exit_insn(),
  };
  const int client = pair.client.get();
  auto check = check_tracing_program(hook, BPF_TRACE_RAW_TP, btf_id, "tp_btf sock_send_length", "et_caps_sock_tp",
                                     prologue, [client] { ::sendto(client, "x", 1, MSG_NOSIGNAL, nullptr, 0); });
  if (check.detail.starts_with("attached"))
    check.detail += check.supported ? ", with sendto's number in bpf_task_pt_regs()->orig_ax"
                                    : " (or did not find sendto's number in bpf_task_pt_regs()->orig_ax)";
  return check;
}

bool bring_loopback_up(std::string& error) {
  UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq request{};
  std::snprintf(request.ifr_name, IFNAMSIZ, "lo");
  if (!control || ::ioctl(control.get(), SIOCGIFFLAGS, &request) != 0) {
    error = "cannot read lo flags: " + errno_text(errno);
    return false;
  }
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(control.get(), SIOCSIFFLAGS, &request) != 0) {
    error = "cannot bring lo up: " + errno_text(errno);
    return false;
  }
  return true;
}

void send_udp_to_loopback() {
  UniqueFd sender(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(9);  // discard; nothing needs to listen, ingress sees the packet
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  constexpr char kPayload[] = "edgetrace";
  ::sendto(sender.get(), kPayload, sizeof(kPayload), 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
}

// Attaches a counting filter to lo's clsact ingress, makes a packet cross it, then removes
// exactly that filter, and the clsact qdisc only if this call created it.
HookCheck attach_tc_on_loopback(const std::string& where, std::uint32_t handle, std::uint32_t priority) {
  constexpr Hook hook = Hook::Tc;
  FireCounter counter;
  if (!counter.valid()) return refused(hook, counter.error());
  const auto insns = counter.program(0);  // TC_ACT_OK
  auto program = load_program(BPF_PROG_TYPE_SCHED_CLS, "et_caps_tc", insns);
  if (!program.fd) return refused(hook, program.error);

  bpf_tc_hook tc_hook{};
  tc_hook.sz = sizeof(tc_hook);
  tc_hook.ifindex = static_cast<int>(::if_nametoindex("lo"));
  tc_hook.attach_point = BPF_TC_INGRESS;
  const int created = bpf_tc_hook_create(&tc_hook);
  if (created != 0 && created != -EEXIST) return refused(hook, "clsact qdisc refused: " + errno_text(-created));
  struct DestroyCreatedHook {
    bpf_tc_hook* hook;
    bool created;
    ~DestroyCreatedHook() {
      if (!created) return;
      hook->attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      bpf_tc_hook_destroy(hook);
    }
  } destroy_created_hook{&tc_hook, created == 0};

  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.prog_fd = program.fd.get();
  opts.handle = handle;
  opts.priority = priority;
  const int attached = bpf_tc_attach(&tc_hook, &opts);
  if (attached != 0) return refused(hook, "tc filter on lo ingress refused: " + errno_text(-attached));
  auto check = judge_firing(hook, counter, "clsact ingress of lo " + where, send_udp_to_loopback);
  bpf_tc_opts detach{};
  detach.sz = sizeof(detach);
  detach.handle = handle;
  detach.priority = priority;
  if (const int detached = bpf_tc_detach(&tc_hook, &detach); detached != 0)
    spdlog::warn("could not remove the doctor's tc filter (lo ingress, handle {:#x}, priority {}): {}", handle,
                 priority, errno_text(-detached));
  return check;
}

// Runs on its own thread inside a fresh network namespace: the host's lo never sees a filter
// or qdisc from us, and the namespace vanishes with the thread. Without CAP_SYS_ADMIN there
// is no private namespace; then the check uses the host's lo with a filter only it owns.
HookCheck check_tc_in_private_netns() {
  if (::unshare(CLONE_NEWNET) != 0) {
    const int error = errno;
    if (error != EPERM)
      return refused(Hook::Tc, "cannot create a private network namespace to test TC in: " + errno_text(error));
    constexpr std::uint32_t kHostPriority = 0xED00;
    return attach_tc_on_loopback("in the host namespace",
                                 0xED000000u | (static_cast<std::uint32_t>(::getpid()) & 0xFFFFFFu), kHostPriority);
  }
  std::string error;
  if (!bring_loopback_up(error)) return refused(Hook::Tc, error);
  return attach_tc_on_loopback("in a private network namespace", 1, 1);
}

HookCheck check_tc() {
  HookCheck check;
  std::thread worker([&check] { check = check_tc_in_private_netns(); });
  worker.join();
  return check;
}

HookCheck check_ring_buffer() {
  constexpr Hook hook = Hook::RingBuffer;
  const auto page = static_cast<std::uint32_t>(::sysconf(_SC_PAGESIZE));
  auto ring = create_map(BPF_MAP_TYPE_RINGBUF, "et_caps_ringbuf", 0, 0, 4 * page);
  if (!ring.fd) return refused(hook, ring.error);
  constexpr std::int32_t kMagic = 0x65646765;  // "edge"
  std::vector<bpf_insn> insns;
  // Only our own process writes, so the buffer is not flooded by the rest of the system.
  insns.push_back(call(BPF_FUNC_get_current_pid_tgid));
  insns.push_back(rsh64_imm(R0, 32));
  insns.push_back(jump_if_not_equal(R0, static_cast<std::int32_t>(::getpid()), 8));
  insns.push_back(store_imm_u64(R10, -8, kMagic));
  append_load_map(insns, R1, ring.fd.get());
  insns.push_back(mov64_reg(R2, R10));
  insns.push_back(add64_imm(R2, -8));
  insns.push_back(mov64_imm(R3, 8));
  insns.push_back(mov64_imm(R4, 0));
  insns.push_back(call(BPF_FUNC_ringbuf_output));
  insns.push_back(mov64_imm(R0, 0));
  insns.push_back(exit_insn());
  auto program = load_program(BPF_PROG_TYPE_RAW_TRACEPOINT, "et_caps_ringbuf", insns);
  if (!program.fd) return refused(hook, program.error);

  const int link = bpf_raw_tracepoint_open("sys_enter", program.fd.get());
  auto check = make_check(hook);
  if (link < 0) {
    // The ring buffer itself works; delivery just cannot be shown without a hook to fire.
    check.supported = true;
    check.detail = "map created and a program writing to it loaded (not fired: raw tracepoint refused)";
    return check;
  }
  UniqueFd link_fd(link);
  struct Received {
    bool magic_seen = false;
  } received;
  const auto on_sample = [](void* context, void* data, std::size_t size) -> int {
    std::int64_t value = 0;
    if (size == sizeof(value)) {
      std::memcpy(&value, data, sizeof(value));
      if (value == kMagic) static_cast<Received*>(context)->magic_seen = true;
    }
    return 0;
  };
  std::unique_ptr<ring_buffer, decltype(&ring_buffer__free)> reader(
      ring_buffer__new(ring.fd.get(), on_sample, &received, nullptr), &ring_buffer__free);
  if (!reader) return refused(hook, "cannot map the ring buffer: " + errno_text(errno));
  for (int attempt = 0; attempt < 20 && !received.magic_seen; ++attempt) {
    trigger_syscalls();
    ring_buffer__poll(reader.get(), 50);
  }
  check.supported = received.magic_seen;
  check.detail = received.magic_seen ? "a record written on sys_enter was read back"
                                     : "attached, but no record arrived through the ring buffer";
  return check;
}

// Helper availability differs by program type and kernel build: load-only checks in a
// tracepoint program, the type the agent's syscall hooks use.
HookCheck check_tracepoint_helper(Hook hook, const char* prog_name, const std::vector<bpf_insn>& insns,
                                  const std::string& helper, bpf_prog_load_opts opts = {}) {
  auto program = load_program(BPF_PROG_TYPE_TRACEPOINT, prog_name, insns, opts);
  if (!program.fd) return refused(hook, program.error);
  auto check = make_check(hook);
  check.supported = true;
  check.detail = "a tracepoint program calling " + helper + " loaded";
  return check;
}

HookCheck check_probe_write_user(const KernelFacts& facts) {
  const std::vector<bpf_insn> insns = {
      store_imm_u64(R10, -8, 0), mov64_imm(R1, 0),  mov64_imm(R3, 8), mov64_reg(R2, R10), add64_imm(R2, -8),
      call(BPF_FUNC_probe_write_user), mov64_imm(R0, 0), exit_insn(),
  };
  auto check = check_tracepoint_helper(Hook::ProbeWriteUser, "et_caps_pwu", insns, "bpf_probe_write_user");
  if (!check.supported && (facts.lockdown == "integrity" || facts.lockdown == "confidentiality"))
    check.detail += " (kernel lockdown '" + facts.lockdown + "' forbids writing user memory)";
  return check;
}

HookCheck check_probe_read_kernel() {
  const std::vector<bpf_insn> insns = {
      call(BPF_FUNC_get_current_task),
      mov64_reg(R3, R0),
      mov64_reg(R1, R10),
      add64_imm(R1, -8),
      mov64_imm(R2, 8),
      call(BPF_FUNC_probe_read_kernel),
      mov64_imm(R0, 0),
      exit_insn(),
  };
  return check_tracepoint_helper(Hook::ProbeReadKernel, "et_caps_prk", insns, "bpf_probe_read_kernel");
}

HookCheck check_get_current_cgroup_id() {
  const std::vector<bpf_insn> insns = {call(BPF_FUNC_get_current_cgroup_id), mov64_imm(R0, 0), exit_insn()};
  return check_tracepoint_helper(Hook::GetCurrentCgroupId, "et_caps_cgid", insns, "bpf_get_current_cgroup_id");
}

HookCheck check_get_current_ancestor_cgroup_id() {
  const std::vector<bpf_insn> insns = {mov64_imm(R1, 1), call(BPF_FUNC_get_current_ancestor_cgroup_id),
                                       mov64_imm(R0, 0), exit_insn()};
  return check_tracepoint_helper(Hook::GetCurrentAncestorCgroupId, "et_caps_acgid", insns,
                                 "bpf_get_current_ancestor_cgroup_id");
}

HookCheck check_current_task_under_cgroup() {
  constexpr Hook hook = Hook::CurrentTaskUnderCgroup;
  auto cgroups = create_map(BPF_MAP_TYPE_CGROUP_ARRAY, "et_caps_cgarray", sizeof(std::uint32_t),
                            sizeof(std::uint32_t), 1);
  if (!cgroups.fd) return refused(hook, cgroups.error);
  std::vector<bpf_insn> insns;
  append_load_map(insns, R1, cgroups.fd.get());
  insns.push_back(mov64_imm(R2, 0));
  insns.push_back(call(BPF_FUNC_current_task_under_cgroup));
  insns.push_back(mov64_imm(R0, 0));
  insns.push_back(exit_insn());
  return check_tracepoint_helper(hook, "et_caps_undercg", insns, "bpf_current_task_under_cgroup");
}

// A BTF of a check's own (for a map's key and value, or a program's functions), starting
// with the "int" and "long" both such checks use. `types` is empty if it cannot be made.
struct CheckBtf {
  BtfPtr types;
  int int_type = -1;
  int long_type = -1;
};

CheckBtf new_check_btf() {
  CheckBtf built{BtfPtr(btf__new_empty())};
  if (built.types) {
    built.int_type = btf__add_int(built.types.get(), "int", 4, BTF_INT_SIGNED);
    built.long_type = btf__add_int(built.types.get(), "long", 8, BTF_INT_SIGNED);
  }
  return built;
}

// What the syscall capture programs do on every call: take the current task from
// bpf_get_current_task_btf, read it directly (they read its cgroup and its bpf_storage
// pointer), and keep a traced thread's call in flight in task storage. A task storage map
// needs BTF for its key and value, so the check carries a minimal BTF of its own.
HookCheck check_task_storage() {
  constexpr Hook hook = Hook::TaskStorage;
  auto [types, int_type, long_type] = new_check_btf();
  if (!types || int_type < 0 || long_type < 0) return refused(hook, "cannot build BTF for the map's key and value");
  if (const int loaded = btf__load_into_kernel(types.get()); loaded != 0)
    return refused(hook, "BTF load refused: " + errno_text(-loaded));
  bpf_map_create_opts map_opts{};
  map_opts.sz = sizeof(map_opts);
  map_opts.btf_fd = static_cast<std::uint32_t>(btf__fd(types.get()));
  map_opts.btf_key_type_id = static_cast<std::uint32_t>(int_type);
  map_opts.btf_value_type_id = static_cast<std::uint32_t>(long_type);
  map_opts.map_flags = BPF_F_NO_PREALLOC;
  const int map_fd = bpf_map_create(BPF_MAP_TYPE_TASK_STORAGE, "et_caps_task", sizeof(std::int32_t),
                                    sizeof(std::int64_t), 0, &map_opts);
  if (map_fd < 0) return refused(hook, "task storage map creation refused: " + errno_text(-map_fd));
  UniqueFd map(map_fd);

  std::vector<bpf_insn> insns;
  insns.push_back(call(BPF_FUNC_get_current_task_btf));
  insns.push_back(mov64_reg(R6, R0));
  insns.push_back(load_u32(R1, R6, 0));  // a direct read through the BTF pointer
  append_load_map(insns, R1, map.get());
  insns.push_back(mov64_reg(R2, R6));
  insns.push_back(mov64_imm(R3, 0));
  insns.push_back(mov64_imm(R4, BPF_LOCAL_STORAGE_GET_F_CREATE));
  insns.push_back(call(BPF_FUNC_task_storage_get));
  insns.push_back(mov64_imm(R0, 0));
  insns.push_back(exit_insn());
  auto check = check_tracepoint_helper(hook, "et_caps_task", insns, "bpf_get_current_task_btf and bpf_task_storage_get");
  if (check.supported) check.detail += " (reading the task through BTF, on a task storage map)";
  return check;
}

// bpf_loop takes a callback subprogram, and the verifier insists on BTF func info that marks
// it static, so this check carries a minimal BTF of its own.
HookCheck check_bpf_loop() {
  constexpr Hook hook = Hook::BpfLoop;
  auto [types, int_type, long_type] = new_check_btf();
  if (!types) return refused(hook, "cannot build BTF: " + errno_text(errno));
  const int void_pointer = btf__add_ptr(types.get(), 0);
  const int main_proto = btf__add_func_proto(types.get(), int_type);
  btf__add_func_param(types.get(), "ctx", void_pointer);
  const int main_func = btf__add_func(types.get(), "et_caps_loop", BTF_FUNC_GLOBAL, main_proto);
  const int callback_proto = btf__add_func_proto(types.get(), long_type);
  btf__add_func_param(types.get(), "index", long_type);
  btf__add_func_param(types.get(), "ctx", void_pointer);
  const int callback_func = btf__add_func(types.get(), "et_caps_loop_cb", BTF_FUNC_STATIC, callback_proto);
  if (main_func < 0 || callback_func < 0) return refused(hook, "cannot build BTF for the loop callback");
  if (const int loaded = btf__load_into_kernel(types.get()); loaded != 0)
    return refused(hook, "BTF load refused: " + errno_text(-loaded));

  std::vector<bpf_insn> insns;
  insns.push_back(mov64_imm(R1, 1));  // one iteration
  append_load_function(insns, R2, 5);  // callback at index 1 + 1 + 5 = 7
  insns.push_back(mov64_imm(R3, 0));
  insns.push_back(mov64_imm(R4, 0));
  insns.push_back(call(BPF_FUNC_loop));
  insns.push_back(exit_insn());  // returns bpf_loop's iteration count
  const auto callback_offset = static_cast<std::uint32_t>(insns.size());
  insns.push_back(mov64_imm(R0, 0));
  insns.push_back(exit_insn());

  const std::array<bpf_func_info, 2> functions = {
      bpf_func_info{0, static_cast<std::uint32_t>(main_func)},
      bpf_func_info{callback_offset, static_cast<std::uint32_t>(callback_func)},
  };
  bpf_prog_load_opts opts{};
  opts.prog_btf_fd = static_cast<std::uint32_t>(btf__fd(types.get()));
  opts.func_info = functions.data();
  opts.func_info_cnt = functions.size();
  opts.func_info_rec_size = sizeof(bpf_func_info);
  return check_tracepoint_helper(hook, "et_caps_loop", insns, "bpf_loop", opts);
}

// libbpf prints its own warnings (netlink errors, BTF parsing); during probing they are
// expected outcomes, so they go to spdlog at debug level instead of stderr.
int forward_libbpf_message(libbpf_print_level level, const char* format, va_list arguments) {
  std::array<char, 1024> message{};
  std::vsnprintf(message.data(), message.size(), format, arguments);
  spdlog::debug("libbpf ({}): {}", static_cast<int>(level), trim(message.data()));
  return 0;
}

class ScopedLibbpfPrint {
 public:
  ScopedLibbpfPrint() : previous_(libbpf_set_print(forward_libbpf_message)) {}
  ScopedLibbpfPrint(const ScopedLibbpfPrint&) = delete;
  ScopedLibbpfPrint& operator=(const ScopedLibbpfPrint&) = delete;
  ~ScopedLibbpfPrint() { libbpf_set_print(previous_); }

 private:
  libbpf_print_fn_t previous_;
};

}  // namespace

std::vector<HookCheck> probe_hooks(const KernelFacts& facts) {
  ScopedLibbpfPrint quiet_libbpf;
  std::vector<HookCheck> checks;
  checks.push_back(check_syscall_tracepoint(facts));
  checks.push_back(check_raw_tracepoint());
  checks.push_back(check_btf_tracepoint(facts));
  checks.push_back(check_socket_tracepoint(facts));
  checks.push_back(check_kprobe(facts));
  checks.push_back(check_fentry(facts));
  checks.push_back(check_uprobe(facts));
  checks.push_back(check_cgroup_program(Hook::SockOps, facts, BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS,
                                        "et_caps_sockops"));
  checks.push_back(check_sk_msg());
  checks.push_back(check_tc());
  checks.push_back(check_cgroup_program(Hook::CgroupSkb, facts, BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS,
                                        "et_caps_cg_skb"));
  checks.push_back(check_ring_buffer());
  checks.push_back(check_probe_write_user(facts));
  checks.push_back(check_bpf_loop());
  checks.push_back(check_get_current_cgroup_id());
  checks.push_back(check_get_current_ancestor_cgroup_id());
  checks.push_back(check_current_task_under_cgroup());
  checks.push_back(check_probe_read_kernel());
  checks.push_back(check_task_storage());
  for (const auto& check : checks)
    spdlog::debug("capability {}: {} ({})", check.name, check.supported ? "yes" : "no", check.detail);
  return checks;
}

}  // namespace edgetrace::capabilities
