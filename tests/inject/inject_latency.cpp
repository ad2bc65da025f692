// Not a test: measures what the injector adds to one send() on loopback, and how many sk_msg
// verdict calls sends of various sizes take. Run as root:
//   build/tests/inject/inject_latency [iterations]
// Prints, per column, the median over batches of the mean time per send.
#include <spdlog/spdlog.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <bpf/bpf.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>
#include <thread>
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

void report(const char* name, std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))]; };
  std::printf("%-44s median %9.0f ns   p10 %9.0f   p90 %9.0f   max %11.0f\n", name, at(0.5), at(0.1), at(0.9),
              samples.back());
}

std::size_t slower_than(const std::vector<double>& samples, double ns) {
  return static_cast<std::size_t>(std::count_if(samples.begin(), samples.end(), [&](double v) { return v > ns; }));
}


// A keep-alive HTTP/1.1 peer on its own thread: answers every request head with an empty 200.
class Responder {
 public:
  explicit Responder(int family) : listener_(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(listener_.get(), 8) != 0)
      throw std::runtime_error("responder: cannot listen");
    ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::jthread([this] { serve(); });
  }
  ~Responder() { ::shutdown(listener_.get(), SHUT_RDWR); }
  std::uint16_t port() const { return port_; }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      connections_.emplace_back([fd] { answer(UniqueFd(fd)); });
    }
  }
  static void answer(UniqueFd connection) {
    {
      std::string pending;
      std::vector<char> buffer(65536);
      const std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
      for (;;) {
        const ssize_t n = ::read(connection.get(), buffer.data(), buffer.size());
        if (n <= 0) break;
        pending.append(buffer.data(), static_cast<std::size_t>(n));
        for (auto end = pending.find("\r\n\r\n"); end != std::string::npos; end = pending.find("\r\n\r\n")) {
          pending.erase(0, end + 4);
          if (::write(connection.get(), response.data(), response.size()) < 0) return;
        }
      }
    }
  }
  UniqueFd listener_;
  std::uint16_t port_ = 0;
  std::vector<std::jthread> connections_;
  std::jthread thread_;
};

// Request/response round trips on one keep-alive connection (default Nagle settings, like
// most HTTP clients): a send split into segments can wait for the peer's delayed ACK.
std::vector<double> round_trips(Client& client, std::size_t count, const std::string& request, int plans,
                                const et_inject_plan* plan) {
  std::vector<double> samples;
  std::vector<char> buffer(4096);
  for (std::size_t i = 0; i < count; ++i) {
    if (plan) put_plan(plans, *plan);
    const auto t0 = now_ns();
    client.send_once(request);
    std::string response;
    while (response.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::read(client.fd(), buffer.data(), buffer.size());
      if (n <= 0) throw std::runtime_error("responder closed");
      response.append(buffer.data(), static_cast<std::size_t>(n));
    }
    samples.push_back(static_cast<double>(now_ns() - t0));
  }
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t iterations = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100000;
  spdlog::set_level(spdlog::level::warn);
  ScratchCgroup cgroup;
  TraceContextInjector injector(-1);
  cgroup.enter();
  RecordingServer server(AF_INET);
  Client untracked(AF_INET, server.port());  // exists before attach: plain TCP path
  injector.attach_cgroup(cgroup.path());
  Client tracked_plain(AF_INET, server.port());
  Client tracked_injected(AF_INET, server.port());
  // Every send transmits at once (no Nagle queueing), so each sample takes the same path.
  for (Client* client : {&untracked, &tracked_plain, &tracked_injected}) {
    const int yes = 1;
    ::setsockopt(client->fd(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  }

  const std::string request =
      "GET /api/v1/orders/12345?include=items HTTP/1.1\r\nHost: orders.internal\r\nUser-Agent: bench\r\n"
      "Accept: application/json\r\n\r\n";
  std::mt19937_64 rng(1);
  const auto plan = make_plan(request, random_traceparent_header(rng));
  const int plans = injector.inject_plans_fd();
  const std::uint64_t elsewhere = 1;  // a key no thread has: same map-update cost, no plan
  // Batches of sends, interleaved across the three columns so that load on the shared VM
  // hits them alike; each sample is a batch's mean time per send (map update included in
  // every column, so the differences are the sk_msg path and the injection).
  constexpr std::size_t batch = 1000;
  std::vector<double> plain, tracked, injected;
  auto run = [&](Client& client, bool with_plan) {
    const auto t0 = now_ns();
    for (std::size_t i = 0; i < batch; ++i) {
      if (with_plan)
        put_plan(plans, plan);
      else
        bpf_map_update_elem(plans, &elsewhere, &plan, BPF_ANY);
      client.send_once(request);
    }
    return static_cast<double>(now_ns() - t0) / batch;
  };
  for (std::size_t i = 0; i < iterations / batch; ++i) {
    plain.push_back(run(untracked, false));
    tracked.push_back(run(tracked_plain, false));
    injected.push_back(run(tracked_injected, true));
  }
  bpf_map_delete_elem(plans, &elsewhere);
  const auto counters = injector.counters();
  std::printf("%zu batches of %zu sends of %zu bytes per column, loopback IPv4, TCP_NODELAY; %llu injected\n",
              plain.size(), batch, request.size(), static_cast<unsigned long long>(counters.injected));
  std::printf("(each sample: one batch's mean time per send)\n");
  report("connection not in the sockhash (plain TCP)", plain);
  report("tracked connection, no plan (sk_msg pass)", tracked);
  report("tracked connection, plan (header injected)", injected);

  {
    Responder responder(AF_INET);
    Client plain_client(AF_INET, responder.port());
    Client injected_client(AF_INET, responder.port());
    const std::size_t count = std::max<std::size_t>(300, iterations / 20);
    std::printf("\n%zu request/response round trips per column, keep-alive, Nagle on (one sample per round trip):\n",
                count);
    auto plain_rtt = round_trips(plain_client, count, request, plans, nullptr);
    auto injected_rtt = round_trips(injected_client, count, request, plans, &plan);
    report("tracked connection, no plan", plain_rtt);
    report("tracked connection, header injected", injected_rtt);
    std::printf("round trips over 10 ms: %zu without plan, %zu injected; sends coalesced %llu, injections unmerged %llu\n",
                slower_than(plain_rtt, 1e7), slower_than(injected_rtt, 1e7),
                static_cast<unsigned long long>(injector.counters().coalesced),
                static_cast<unsigned long long>(injector.counters().unmerged));
    plain_client.close();
    injected_client.close();
  }
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
