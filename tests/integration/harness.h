// Real processes for the integration tests: the edgetrace binary, servers and clients, each
// a child process with its stdout collected line by line.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace edgetrace::testing {

using namespace std::chrono_literals;

struct SpawnOptions {
  bool pipe_stdin = false;
  std::optional<std::filesystem::path> cgroup;  // enter this cgroup before exec
  std::vector<std::string> environment;         // extra NAME=VALUE entries
};

class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> argv, SpawnOptions options = {});
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  void write_stdin(std::string_view text);
  void signal(int signo);
  // Waits for exit; returns the exit code (128+signal when killed), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = 20s);
  [[nodiscard]] std::vector<std::string> lines() const;
  // Waits until at least `count` stdout lines satisfy `predicate`.
  bool wait_for_lines(std::size_t count, std::chrono::milliseconds timeout,
                      const std::function<bool(const std::string&)>& predicate = nullptr) const;
  [[nodiscard]] std::string stderr_text() const;

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::filesystem::path stderr_path_;
  std::optional<int> exit_code_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<std::string> lines_;
  std::jthread reader_;
};

// Runs to completion; returns exit code and stdout.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout = 30s);

int free_tcp_port();
bool wait_for_port(int port, std::chrono::milliseconds timeout = 10s, bool ipv6 = false);
// A wait's limit times EDGETRACE_TEST_TIME_SCALE (default 1): the 6.1 guest under software
// emulation (vm-tests) takes half a minute to verify the capture programs at each start.
// Subprocess::wait, wait_for_lines and wait_for_port apply it; durations asserted are not scaled.
std::chrono::milliseconds scaled(std::chrono::milliseconds timeout);

std::filesystem::path edgetrace_binary();
// {"--capture-path", P} when EDGETRACE_TEST_CAPTURE_PATH=P and {"--syscall-hooks", H} when
// EDGETRACE_TEST_SYSCALL_HOOKS=H, else nothing: CMake registers the capture tests once per
// capture path and once more on the syscall path's fallback hooks.
std::vector<std::string> capture_path_flags();
// The capture path under test ("syscalls" unless EDGETRACE_TEST_CAPTURE_PATH says otherwise).
std::string capture_path_under_test();
// Whether the capture that wrote this agent log sees a read as it returns rather than as it
// starts (the socket path, and the syscall path's socket tracepoints): a read a thread was
// already blocked in when it became traced is then seen whole.
bool sees_reads_as_they_return(const std::string& agent_log);
std::filesystem::path build_dir();
std::filesystem::path source_dir();

// `edgetrace run --output json <extra> -- <command>` (unless <extra> names another --output):
// spans are its stdout JSON lines.
class TracedRun {
 public:
  TracedRun(std::vector<std::string> command, std::vector<std::string> extra_flags = {}, SpawnOptions options = {});
  bool wait_for_spans(std::size_t count, std::chrono::milliseconds timeout = 15s) const;
  [[nodiscard]] std::vector<nlohmann::json> spans() const;
  // SIGINT to edgetrace, which passes it on and flushes; returns its exit code.
  std::optional<int> stop();
  Subprocess& process() { return process_; }

 private:
  Subprocess process_;
};

std::vector<nlohmann::json> parse_spans(const std::vector<std::string>& lines);
// Spans whose url.path equals `path`.
std::vector<nlohmann::json> with_path(const std::vector<nlohmann::json>& spans, const std::string& path);
double duration_ms(const nlohmann::json& span);

// A cgroup v2 directory made for one test and removed (with anything left in it) after.
class ScratchCgroup {
 public:
  explicit ScratchCgroup(const std::string& name);
  ~ScratchCgroup();
  ScratchCgroup(const ScratchCgroup&) = delete;
  ScratchCgroup& operator=(const ScratchCgroup&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace edgetrace::testing
