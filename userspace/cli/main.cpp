// edgetrace: doctor, run, agent, queue status.
#include <CLI/CLI.hpp>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>

#include "capabilities/kernel_capabilities.h"
#include "cgroup/run_cgroup.h"
#include "cli/tracing_session.h"
#include "queue/queue_status.h"

namespace edgetrace {
namespace {

// Spans are made and freed a ring-buffer drain at a time, megabytes at a high request rate.
// By default glibc hands the freed top of the heap back to the kernel after each batch and the
// next batch faults it back in page by page: bench_spans --sink discard (spans freed right
// after each batch) took 1.19 us/span that way and 0.59 with this. Up to 32 MiB of free heap is
// kept instead. Fixing the trim threshold also stops glibc adapting the mmap threshold, so that
// is raised too: a batch's span vector (hundreds of KiB) stays on the heap, not a fresh mmap.
void keep_freed_heap() {
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

// Signals the main thread waits for; blocked before any thread starts so that every thread
// inherits the mask and only sigwaitinfo() sees them.
sigset_t control_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  return set;
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int run_command(const std::optional<std::string>& config_file, const SessionOverrides& overrides,
                const std::vector<std::string>& command) {
  auto config = resolve_config(config_file, overrides);
  config.is_run_command = true;
  config.run_command_name = std::filesystem::path(command.front()).filename().string();
  configure_logging(config.log_level);

  const sigset_t signals = control_signals();
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &signals, &previous);

  TracingSession session(config);
  RunCgroup cgroup;
  session.trace_cgroup(cgroup.path());
  session.start();

  std::vector<char*> argv;
  for (const auto& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  const pid_t child = fork();
  if (child < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (child == 0) {
    // Only async-signal-safe calls until exec.
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (!cgroup.enter_from_child()) {
      static constexpr char message[] = "edgetrace: cannot enter the tracing cgroup\n";
      (void)!write(STDERR_FILENO, message, sizeof(message) - 1);
      _exit(126);
    }
    execvp(argv[0], argv.data());
    static constexpr char message[] = "edgetrace: cannot execute the command\n";
    (void)!write(STDERR_FILENO, message, sizeof(message) - 1);
    _exit(127);
  }
  spdlog::info("started pid {}: {}", child, fmt::join(command, " "));

  int status = 0;
  for (;;) {
    siginfo_t info{};
    if (sigwaitinfo(&signals, &info) < 0) continue;
    if (info.si_signo == SIGCHLD) {
      if (waitpid(child, &status, WNOHANG) == child) break;
      continue;
    }
    spdlog::info("{}: passing it to pid {} and waiting for it to end", strsignal(info.si_signo), child);
    kill(child, info.si_signo);
  }
  spdlog::info("pid {} ended with {}", child, exit_code_of(status));
  session.stop();
  return exit_code_of(status);
}

int agent_command(const std::string& config_file, const SessionOverrides& overrides) {
  const auto config = resolve_config(config_file, overrides);
  configure_logging(config.log_level);
  if (config.targets.cgroups.empty() && config.targets.pids.empty())
    throw ConfigError(config_file + ": targets: name at least one cgroup or pid to trace");

  const sigset_t signals = control_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TracingSession session(config);
  for (const auto& cgroup : config.targets.cgroups) session.trace_cgroup(cgroup);
  for (const auto pid : config.targets.pids) session.trace_pid(pid);
  session.start();
  spdlog::info("agent running; SIGINT or SIGTERM stops it");
  for (;;) {
    siginfo_t info{};
    if (sigwaitinfo(&signals, &info) < 0) continue;
    if (info.si_signo == SIGINT || info.si_signo == SIGTERM) break;
  }
  spdlog::info("stopping: flushing everything");
  session.stop();
  return 0;
}

}  // namespace
}  // namespace edgetrace

int main(int argc, char** argv) {
  using namespace edgetrace;
  keep_freed_heap();
  CLI::App app{"edgetrace: OpenTelemetry traces of unmodified programs, from the kernel"};
  app.require_subcommand(1);

  auto* doctor = app.add_subcommand("doctor", "Report what this kernel allows and which capture path will be used");

  SessionOverrides overrides;
  std::optional<std::string> config_file;
  std::string output_text;
  std::string capture_path_text;
  std::string syscall_hooks_text;
  std::vector<std::string> command;
  auto* run = app.add_subcommand("run", "Run a command in a new cgroup and trace it");
  run->add_option("--service-name", overrides.service_name, "service.name for the command's spans");
  run->add_option("--output", output_text, "console, json or otlp");
  run->add_option("--config", config_file, "YAML configuration file")->check(CLI::ExistingFile);
  run->add_option("--queue-dir", overrides.queue_dir, "directory of the disk spill queue");
  run->add_option("--log-level", overrides.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  run->add_flag("--no-inject", overrides.no_inject, "do not inject traceparent into outgoing requests");
  run->add_option("--capture-path", capture_path_text, "auto, syscalls or sockets (see docs/configuration.md)");
  run->add_option("--syscall-hooks", syscall_hooks_text, "auto, socket_tracepoints, fentry, btf_tracepoints or tracepoints (syscall path)");
  run->add_option("command", command, "the command and its arguments, after --")->required();

  std::string agent_config;
  auto* agent = app.add_subcommand("agent", "Trace the cgroups and pids named in a configuration file");
  agent->add_option("--config", agent_config, "YAML configuration file")->required()->check(CLI::ExistingFile);
  agent->add_option("--queue-dir", overrides.queue_dir, "directory of the disk spill queue");
  agent->add_option("--capture-path", capture_path_text, "auto, syscalls or sockets (see docs/configuration.md)");
  agent->add_option("--syscall-hooks", syscall_hooks_text, "auto, socket_tracepoints, fentry, btf_tracepoints or tracepoints (syscall path)");
  agent->add_option("--log-level", overrides.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  std::string queue_dir;
  auto* queue = app.add_subcommand("queue", "Inspect the disk spill queue");
  queue->require_subcommand(1);
  auto* queue_status = queue->add_subcommand("status", "Depth, oldest record, drops and last export error (works while the agent is stopped)");
  queue_status->add_option("--dir", queue_dir, "queue directory")->required();

  CLI11_PARSE(app, argc, argv);

  try {
    // The values are checked by the same parsers as the config file's keys, so that the two
    // accept the same words; an error names the flag.
    if (!output_text.empty()) overrides.output = parse_named("--output", output_text, parse_output_kind);
    if (!capture_path_text.empty()) overrides.capture_path = parse_named("--capture-path", capture_path_text, parse_capture_path);
    if (!syscall_hooks_text.empty())
      overrides.syscall_hooks = parse_named("--syscall-hooks", syscall_hooks_text, parse_syscall_hooks);
    if (doctor->parsed()) return capabilities::run_doctor(std::cout);
    if (queue_status->parsed()) return print_queue_status(queue_dir, std::cout);
    if (run->parsed()) return run_command(config_file, overrides, command);
    if (agent->parsed()) return agent_command(agent_config, overrides);
  } catch (const ConfigError& e) {
    std::cerr << "edgetrace: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "edgetrace: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
