// The real pair: the capture program (syscall tracepoints) writes the plans, the injector
// applies them. Real clients (this process, curl) in an opted-in cgroup send to a recording
// server on loopback.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>


#include <cstdlib>
#include <regex>
#include <string>

#include "inject_support.h"
#include "injection.h"
#include "trace_probes.h"

namespace edgetrace::testing {
namespace {

const std::regex kInjectedHead(
    "GET /e2e HTTP/1\\.1\\r\\ntraceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\\r\\nHost: localhost\\r\\n\\r\\n");

class CaptureEndToEnd : public ::testing::TestWithParam<int> {};

TEST_P(CaptureEndToEnd, CapturePlansAndInjectorInsertsIntoRealSends) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root";
  const int family = GetParam();
  ScratchCgroup cgroup;
  HttpCaptureProbes capture(CaptureOptions{});
  capture.add_cgroup(cgroup.path());
  const int plans = capture.inject_plans_fd();
  TraceContextInjector injector(capture);
  injector.attach_cgroup(cgroup.path());
  cgroup.enter();
  RecordingServer server(family);

  {
    Client client(family, server.port());
    const std::string request = "GET /e2e HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ASSERT_EQ(client.send_once(request), static_cast<long>(request.size()));
    EXPECT_FALSE(plan_present(plans)) << "the capture program deletes plans at syscall exit";
    const auto port = client.local_port();
    client.close();
    const auto received = server.received_from(port).value_or("");
    EXPECT_TRUE(std::regex_match(received, kInjectedHead)) << received;
  }
  {
    Client client(family, server.port());
    const std::string request = "GET /e2e HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    ASSERT_EQ(client.send_once(request, SendCall::writev, 2), static_cast<long>(request.size()));
    const auto port = client.local_port();
    client.close();
    EXPECT_EQ(server.received_from(port).value_or(""), request) << "a request with its own traceparent is left alone";
  }

  // curl (a child, so in the cgroup too): the server never answers, curl gives up after 1 s.
  const std::string host = family == AF_INET ? "127.0.0.1" : "[::1]";
  const std::string command = "curl -s -o /dev/null --max-time 1 -H 'X-Probe: 1' http://" + host + ":" +
                              std::to_string(server.port()) + "/from-curl";
  std::system(command.c_str());
  const auto from_curl = server.received_from_any().value_or("");
  EXPECT_TRUE(std::regex_search(
      from_curl, std::regex("^GET /from-curl HTTP/1\\.1\\r\\ntraceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\\r\\nHost: ")))
      << from_curl;
  EXPECT_NE(from_curl.find("X-Probe: 1\r\n"), std::string::npos);
  injector.detach_cgroup(cgroup.path());
  const auto counters = injector.counters();
  EXPECT_EQ(counters.injected, 2u) << "verdict calls without a plan: " << counters.no_plan;
  EXPECT_EQ(counters.skipped_plans(), 0u);
  EXPECT_EQ(counters.sockets_tracked, 3u);
}

// Keeps the calling thread on one CPU, so that every call it makes consults the same
// per-CPU opt-in verdict cache of the capture programs (opt_in_verdicts).
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    CPU_ZERO(&previous_);
    ::sched_getaffinity(0, sizeof(previous_), &previous_);
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &previous_)) {
        CPU_SET(cpu, &one);
        break;
      }
    }
    pinned_ = ::sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~PinnedToOneCpu() { ::sched_setaffinity(0, sizeof(previous_), &previous_); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  [[nodiscard]] bool pinned() const { return pinned_; }

 private:
  cpu_set_t previous_;
  bool pinned_ = false;
};

// The kernel caches each cgroup's opt-in verdict: adding or removing a cgroup must reach a
// thread that already decided, on its very next call.
TEST(CaptureOptIn, ChangesToTheOptInSetReachAThreadThatAlreadyDecided) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root";
  PinnedToOneCpu pinned;
  ASSERT_TRUE(pinned.pinned());
  ScratchCgroup cgroup;
  cgroup.enter();
  HttpCaptureProbes capture(CaptureOptions{});
  TraceContextInjector injector(capture);
  injector.attach_cgroup(cgroup.path());
  RecordingServer server(AF_INET);
  const std::string request = "GET /e2e HTTP/1.1\r\nHost: localhost\r\n\r\n";
  const auto send_one = [&] {
    Client client(AF_INET, server.port());
    EXPECT_EQ(client.send_once(request), static_cast<long>(request.size()));
    const auto port = client.local_port();
    client.close();
    return server.received_from(port).value_or("");
  };

  EXPECT_EQ(send_one(), request) << "not opted in: connect and write decide 'untraced'";
  capture.add_cgroup(cgroup.path());
  const auto opted_in = send_one();
  EXPECT_TRUE(std::regex_match(opted_in, kInjectedHead)) << "opted in, same thread, same CPU: " << opted_in;
  capture.remove_cgroup(cgroup.path());
  EXPECT_EQ(send_one(), request) << "opted out again";
  injector.detach_cgroup(cgroup.path());
  EXPECT_EQ(injector.counters().injected, 1u);
}

INSTANTIATE_TEST_SUITE_P(Families, CaptureEndToEnd, ::testing::Values(AF_INET, AF_INET6),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == AF_INET ? "IPv4" : "IPv6");
                         });

}  // namespace
}  // namespace edgetrace::testing
