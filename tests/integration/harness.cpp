#include "harness.h"

#include <cstdlib>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "trace_probes.h"

namespace edgetrace::testing {

std::filesystem::path edgetrace_binary() { return EDGETRACE_BINARY; }
std::filesystem::path build_dir() { return EDGETRACE_BUILD_DIR; }
std::filesystem::path source_dir() { return EDGETRACE_SOURCE_DIR; }

Subprocess::Subprocess(std::vector<std::string> argv, SpawnOptions options) {
  int out_pipe[2];
  int in_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (options.pipe_stdin && ::pipe2(in_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  char stderr_template[] = "/tmp/edgetrace-test-stderr-XXXXXX";
  const int stderr_fd = ::mkstemp(stderr_template);
  stderr_path_ = stderr_template;

  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const std::string procs = options.cgroup ? (*options.cgroup / "cgroup.procs").string() : std::string();

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(stderr_fd, STDERR_FILENO);
    if (options.pipe_stdin) ::dup2(in_pipe[0], STDIN_FILENO);
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!procs.empty()) {
      const int fd = ::open(procs.c_str(), O_WRONLY);
      if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(126);
      ::close(fd);
    }
    for (auto& e : options.environment) ::putenv(e.data());
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(out_pipe[1]);
  ::close(stderr_fd);
  if (options.pipe_stdin) {
    ::close(in_pipe[0]);
    stdin_fd_ = in_pipe[1];
  }
  const int read_fd = out_pipe[0];
  reader_ = std::jthread([this, read_fd] {
    std::string pending;
    char buffer[65536];
    for (;;) {
      const auto n = ::read(read_fd, buffer, sizeof(buffer));
      if (n <= 0) break;
      pending.append(buffer, static_cast<std::size_t>(n));
      std::size_t newline;
      std::lock_guard lock(mutex_);
      while ((newline = pending.find('\n')) != std::string::npos) {
        lines_.push_back(pending.substr(0, newline));
        pending.erase(0, newline + 1);
      }
      changed_.notify_all();
    }
    if (!pending.empty()) {
      std::lock_guard lock(mutex_);
      lines_.push_back(pending);
      changed_.notify_all();
    }
    ::close(read_fd);
  });
}

Subprocess::~Subprocess() {
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  if (!exit_code_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    wait(5s);
  }
  std::error_code ec;
  std::filesystem::remove(stderr_path_, ec);
}

void Subprocess::write_stdin(std::string_view text) {
  if (stdin_fd_ < 0) return;
  (void)!::write(stdin_fd_, text.data(), text.size());
}

void Subprocess::signal(int signo) { ::kill(pid_, signo); }

std::chrono::milliseconds scaled(std::chrono::milliseconds timeout) {
  static const int scale = [] {
    const char* text = std::getenv("EDGETRACE_TEST_TIME_SCALE");
    const int value = text != nullptr ? std::atoi(text) : 1;
    return value >= 1 ? value : 1;
  }();
  return timeout * scale;
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (reader_.joinable()) reader_.join();
      return exit_code_;
    }
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

std::vector<std::string> Subprocess::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

bool Subprocess::wait_for_lines(std::size_t count, std::chrono::milliseconds timeout,
                                const std::function<bool(const std::string&)>& predicate) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, scaled(timeout), [&] {
    std::size_t matching = 0;
    for (const auto& line : lines_)
      if (!predicate || predicate(line)) ++matching;
    return matching >= count;
  });
}

std::string Subprocess::stderr_text() const {
  std::ifstream in(stderr_path_);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

CommandResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  Subprocess process(std::move(argv));
  const auto code = process.wait(timeout);
  std::string output;
  for (const auto& line : process.lines()) output += line + "\n";
  return {code.value_or(-1), output};
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

bool wait_for_port(int port, std::chrono::milliseconds timeout, bool ipv6) {
  const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int rc;
    if (ipv6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(static_cast<std::uint16_t>(port));
      a.sin6_addr = in6addr_loopback;
      rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    }
    ::close(fd);
    if (rc == 0) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::vector<nlohmann::json> parse_spans(const std::vector<std::string>& lines) {
  std::vector<nlohmann::json> spans;
  for (const auto& line : lines) {
    if (line.empty() || line.front() != '{') continue;  // the traced command's own output
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (!parsed.is_discarded() && parsed.contains("span_id")) spans.push_back(std::move(parsed));
  }
  return spans;
}

std::vector<nlohmann::json> with_path(const std::vector<nlohmann::json>& spans, const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const auto& s : spans)
    if (s["attributes"].value("url.path", "") == path) out.push_back(s);
  return out;
}

double duration_ms(const nlohmann::json& span) { return span["duration_ns"].get<double>() / 1e6; }

std::vector<std::string> capture_path_flags() {
  std::vector<std::string> flags;
  if (const char* path = std::getenv("EDGETRACE_TEST_CAPTURE_PATH"); path != nullptr && *path != '\0')
    flags.insert(flags.end(), {"--capture-path", path});
  if (const char* hooks = std::getenv("EDGETRACE_TEST_SYSCALL_HOOKS"); hooks != nullptr && *hooks != '\0')
    flags.insert(flags.end(), {"--syscall-hooks", hooks});
  return flags;
}

std::string capture_path_under_test() {
  const char* path = std::getenv("EDGETRACE_TEST_CAPTURE_PATH");
  return path == nullptr || *path == '\0' ? "syscalls" : path;
}

bool sees_reads_as_they_return(const std::string& agent_log) {
  return capture_path_under_test() == "sockets" ||
         agent_log.find("capture programs attached: socket tracepoints") != std::string::npos;
}

TracedRun::TracedRun(std::vector<std::string> command, std::vector<std::string> extra_flags, SpawnOptions options)
    : process_(
          [&] {
            std::vector<std::string> argv{edgetrace_binary().string(), "run"};
            const auto path_flags = capture_path_flags();
            argv.insert(argv.end(), path_flags.begin(), path_flags.end());
            if (std::find(extra_flags.begin(), extra_flags.end(), "--output") == extra_flags.end())
              argv.insert(argv.end(), {"--output", "json"});
            argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
            argv.push_back("--");
            argv.insert(argv.end(), command.begin(), command.end());
            return argv;
          }(),
          options) {}

bool TracedRun::wait_for_spans(std::size_t count, std::chrono::milliseconds timeout) const {
  return process_.wait_for_lines(count, timeout, [](const std::string& line) {
    return line.starts_with("{\"trace_id\"");
  });
}

std::vector<nlohmann::json> TracedRun::spans() const { return parse_spans(process_.lines()); }

std::optional<int> TracedRun::stop() {
  process_.signal(SIGINT);
  return process_.wait(20s);
}

ScratchCgroup::ScratchCgroup(const std::string& name) {
  path_ = cgroup2_mount_point() / "edgetrace-test" / (name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(path_);
}

ScratchCgroup::~ScratchCgroup() {
  if (std::ofstream kill_file(path_ / "cgroup.kill"); kill_file) kill_file << "1";
  for (int i = 0; i < 100 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) std::this_thread::sleep_for(20ms);
}

}  // namespace edgetrace::testing
