// Who is traced on the syscall path: processes moved into or out of an opted-in cgroup
// while the agent runs, and pid targets next to processes of the same cgroup. The kernel
// caches opt-in verdicts (bpf/http_capture.bpf.c, current_is_traced), so these are the
// cases a stale cache would get wrong.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <set>

#include "harness.h"
#include "trace_probes.h"

namespace edgetrace::testing {
namespace {

// `edgetrace agent` on the syscall path with the given targets; stopped (SIGINT, flushed)
// by stop() or at destruction.
class Agent {
 public:
  explicit Agent(const std::string& targets_yaml)
      : config_(std::filesystem::temp_directory_path() /
                ("edgetrace-opt-in-" + std::to_string(::getpid()) + "-" + std::to_string(next_id_++) + ".yaml")) {
    std::ofstream(config_) << "output: json\nstatus_interval_seconds: 0\ntargets:\n" << targets_yaml;
    process_ = std::make_unique<Subprocess>(std::vector<std::string>{
        edgetrace_binary().string(), "agent", "--config", config_.string(), "--capture-path", "syscalls"});
    for (int i = 0; i < 200 && !running(); ++i) std::this_thread::sleep_for(50ms);
  }
  ~Agent() {
    stop();
    std::filesystem::remove(config_);
  }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  [[nodiscard]] bool running() const { return process_->stderr_text().find("agent running") != std::string::npos; }
  [[nodiscard]] std::string log() const { return process_->stderr_text(); }
  bool wait_for_spans(std::size_t count, std::chrono::milliseconds timeout = 15s) const {
    return process_->wait_for_lines(count, timeout, [](const std::string& l) { return l.starts_with("{"); });
  }
  // Gives stray spans time to show up, then stops the agent; returns every span it wrote.
  std::vector<nlohmann::json> stop() {
    if (!stopped_) {
      std::this_thread::sleep_for(500ms);
      process_->signal(SIGINT);
      exit_code_ = process_->wait(20s);
      stopped_ = true;
    }
    return parse_spans(process_->lines());
  }
  [[nodiscard]] std::optional<int> exit_code() const { return exit_code_; }

 private:
  static inline int next_id_ = 0;
  std::filesystem::path config_;
  std::unique_ptr<Subprocess> process_;
  bool stopped_ = false;
  std::optional<int> exit_code_;
};

std::filesystem::path own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("0::")) return cgroup2_mount_point() / std::filesystem::path(line.substr(3)).relative_path();
  throw std::runtime_error("/proc/self/cgroup has no cgroup v2 entry");
}

void move_process(pid_t pid, const std::filesystem::path& cgroup) {
  std::ofstream procs(cgroup / "cgroup.procs");
  procs << pid;
  procs.flush();
  ASSERT_TRUE(procs.good()) << "cannot move " << pid << " into " << cgroup;
}

CommandResult client(int port, std::vector<std::string> args) {
  std::vector<std::string> argv{TEST_HTTP_CLIENT, std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

// The status code curl got.
std::string curl(int port, const std::string& path) {
  auto result = run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                             "http://127.0.0.1:" + std::to_string(port) + path});
  while (!result.output.empty() && result.output.back() == '\n') result.output.pop_back();
  return result.output;
}

std::set<std::int64_t> pids_of(const std::vector<nlohmann::json>& spans) {
  std::set<std::int64_t> pids;
  for (const auto& s : spans) pids.insert(s["resource"]["process.pid"].get<std::int64_t>());
  return pids;
}

// The server thread that keeps the connection decided "untraced" on the calls it made
// before the move; every call after it must be judged by the cgroup it is in now. A second
// server that stays outside is never traced, before or after.
TEST(OptIn, ProcessMovedIntoTheCgroupIsTracedFromThenAndOthersNeverAre) {
  ScratchCgroup cgroup("moved-in");
  Agent agent("  cgroups: [" + cgroup.path().string() + "]\n");
  ASSERT_TRUE(agent.running()) << agent.log();
  const int port = free_tcp_port();
  const int other_port = free_tcp_port();
  Subprocess server({TEST_HTTP_SERVER, std::to_string(port)});
  Subprocess other({TEST_HTTP_SERVER, std::to_string(other_port)});
  ASSERT_TRUE(wait_for_port(port));
  ASSERT_TRUE(wait_for_port(other_port));

  Subprocess keep_alive({TEST_HTTP_CLIENT, std::to_string(port), "preexisting", "/moved"}, {.pipe_stdin = true});
  ASSERT_TRUE(keep_alive.wait_for_lines(1, 10s)) << "first request answered outside the cgroup";
  EXPECT_EQ(client(other_port, {"keepalive", "3", "/other"}).exit_code, 0);

  move_process(server.pid(), cgroup.path());
  keep_alive.write_stdin("go\n");
  ASSERT_EQ(keep_alive.wait(10s), 0);
  EXPECT_EQ(client(other_port, {"keepalive", "3", "/other"}).exit_code, 0);
  EXPECT_EQ(client(port, {"keepalive", "2", "/new-connection"}).exit_code, 0);

  ASSERT_TRUE(agent.wait_for_spans(4)) << agent.log();
  const auto spans = agent.stop();
  ASSERT_EQ(agent.exit_code(), 0) << agent.log();
  EXPECT_EQ(pids_of(spans), std::set<std::int64_t>{server.pid()});
  EXPECT_TRUE(with_path(spans, "/other").empty());
  // The kept-alive thread sat in read() when it was moved, so hooks that see a read start
  // never saw the request it was reading: that span has the response only. Hooks that see a
  // read return see it whole. The next one is whole either way.
  ASSERT_EQ(spans.size(), 4u);
  const bool whole = sees_reads_as_they_return(agent.log());
  const auto moved = with_path(spans, "/moved");
  ASSERT_EQ(moved.size(), whole ? 2u : 1u);
  EXPECT_EQ(moved.back()["attributes"]["url.query"], "after=2");
  if (whole) {
    EXPECT_EQ(moved.front()["attributes"]["url.query"], "after=1");
  }
  EXPECT_EQ(with_path(spans, "/new-connection").size(), 2u);
  std::size_t request_unknown = 0;
  for (const auto& s : spans)
    if (s["attributes"].value("edgetrace.request.unknown", false)) ++request_unknown;
  EXPECT_EQ(request_unknown, whole ? 0u : 1u);
}

// The reverse: once moved out, nothing the process starts after is traced. The read it was
// blocked in when moved was entered while traced and completes as before.
TEST(OptIn, ProcessMovedOutOfTheCgroupIsNoLongerTraced) {
  ScratchCgroup cgroup("moved-out");
  Agent agent("  cgroups: [" + cgroup.path().string() + "]\n");
  ASSERT_TRUE(agent.running()) << agent.log();
  const int port = free_tcp_port();
  Subprocess server({TEST_HTTP_SERVER, std::to_string(port)}, {.cgroup = cgroup.path()});
  ASSERT_TRUE(wait_for_port(port));

  Subprocess keep_alive({TEST_HTTP_CLIENT, std::to_string(port), "preexisting", "/moved-out"}, {.pipe_stdin = true});
  ASSERT_TRUE(keep_alive.wait_for_lines(1, 10s));
  ASSERT_TRUE(agent.wait_for_spans(1)) << "traced while inside: " << agent.log();

  move_process(server.pid(), own_cgroup());
  keep_alive.write_stdin("go\n");
  ASSERT_EQ(keep_alive.wait(10s), 0);
  EXPECT_EQ(client(port, {"keepalive", "3", "/after-the-move"}).exit_code, 0);

  const auto spans = agent.stop();
  ASSERT_EQ(agent.exit_code(), 0) << agent.log();
  ASSERT_EQ(spans.size(), 1u) << spans.size() << " spans";
  EXPECT_EQ(spans[0]["attributes"]["url.path"], "/moved-out");
  EXPECT_FALSE(spans[0]["attributes"].contains("url.query"));
}

// A pid target and a process of the same cgroup that is not one: the verdict depends on the
// process, not only on the cgroup both are in.
TEST(OptIn, PidTargetIsTracedAndItsCgroupNeighbourIsNot) {
  const int traced_port = free_tcp_port();
  const int untraced_port = free_tcp_port();
  Subprocess traced({"python3", PYTHON_SERVER, std::to_string(traced_port)});
  Subprocess untraced({"python3", PYTHON_SERVER, std::to_string(untraced_port)});
  ASSERT_TRUE(wait_for_port(traced_port));
  ASSERT_TRUE(wait_for_port(untraced_port));
  Agent agent("  pids: [" + std::to_string(traced.pid()) + "]\n");
  ASSERT_TRUE(agent.running()) << agent.log();

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(curl(untraced_port, "/untraced"), "200");
    EXPECT_EQ(curl(traced_port, "/traced"), "200");
  }
  ASSERT_TRUE(agent.wait_for_spans(3)) << agent.log();
  const auto spans = agent.stop();
  ASSERT_EQ(agent.exit_code(), 0) << agent.log();
  EXPECT_EQ(spans.size(), 3u);
  EXPECT_EQ(with_path(spans, "/traced").size(), 3u);
  EXPECT_EQ(pids_of(spans), std::set<std::int64_t>{traced.pid()});
}

}  // namespace
}  // namespace edgetrace::testing
