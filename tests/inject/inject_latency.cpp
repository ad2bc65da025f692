// Not a test: measures what the injector adds to one send() on loopback, and how many sk_msg
// verdict calls sends of various sizes take. Run as root:
//   build/tests/inject/inject_latency [iterations]
// Prints medians and tails in nanoseconds of the send syscall alone (the plan is written
// before the clock starts: in production the capture program writes it inside the syscall).
#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "inject_support.h"
#include "injection.h"

namespace {

using namespace edgetrace;
using namespace edgetrace::testing;

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

void report(const char* name, std::vector<std::uint64_t> samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))]; };
  std::printf("%-44s median %6llu ns   p90 %6llu ns   p99 %7llu ns\n", name, static_cast<unsigned long long>(at(0.5)),
              static_cast<unsigned long long>(at(0.9)), static_cast<unsigned long long>(at(0.99)));
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t iterations = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20000;
  spdlog::set_level(spdlog::level::warn);
  ScratchCgroup cgroup;
  TraceContextInjector injector(-1);
  cgroup.enter();
  RecordingServer server(AF_INET);
  Client untracked(AF_INET, server.port());  // exists before attach: plain TCP path
  injector.attach_cgroup(cgroup.path());
  Client tracked_plain(AF_INET, server.port());
  Client tracked_injected(AF_INET, server.port());

  const std::string request =
      "GET /api/v1/orders/12345?include=items HTTP/1.1\r\nHost: orders.internal\r\nUser-Agent: bench\r\n"
      "Accept: application/json\r\n\r\n";
  std::mt19937_64 rng(1);
  const auto plan = make_plan(request, random_traceparent_header(rng));
  std::vector<std::uint64_t> plain, tracked, injected;
  plain.reserve(iterations);
  tracked.reserve(iterations);
  injected.reserve(iterations);
  for (std::size_t i = 0; i < iterations; ++i) {
    auto t0 = now_ns();
    untracked.send_once(request);
    plain.push_back(now_ns() - t0);

    t0 = now_ns();
    tracked_plain.send_once(request);
    tracked.push_back(now_ns() - t0);

    put_plan(injector.inject_plans_fd(), plan);
    t0 = now_ns();
    tracked_injected.send_once(request);
    injected.push_back(now_ns() - t0);
  }
  const auto counters = injector.counters();
  std::printf("%zu sends of %zu bytes per column, loopback IPv4; %llu injected\n", iterations, request.size(),
              static_cast<unsigned long long>(counters.injected));
  report("connection not in the sockhash (plain TCP)", plain);
  report("tracked connection, no plan (sk_msg pass)", tracked);
  report("tracked connection, plan (header injected)", injected);

  std::printf("\nverdict calls per send (tracked connection, blocking write):\n");
  for (std::size_t size : {4096u, 65536u, 262144u, 557056u, 1048576u, 4194304u}) {
    const std::string payload(size, 'x');
    const auto before = injector.counters().no_plan;
    tracked_plain.send_once(payload);
    std::printf("  %8zu bytes: %llu\n", size, static_cast<unsigned long long>(injector.counters().no_plan - before));
  }
  for (Client* client : {&untracked, &tracked_plain, &tracked_injected}) {
    const auto port = client->local_port();
    client->close();
    server.received_from(port);
  }
  return 0;
}
