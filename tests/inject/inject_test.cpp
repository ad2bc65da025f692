// The sk_msg traceparent injector against real loopback TCP: the test process moves into a
// scratch cgroup the injector is attached to, writes plans the way the capture program does
// (keyed by its own pid_tgid) and checks every byte a recording server receives.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "edgetrace.h"
#include "inject_support.h"
#include "injection.h"

namespace edgetrace::testing {
namespace {

constexpr std::string_view kSimpleRequest =
    "GET /orders/17?verbose=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n";

std::string family_name(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

class InjectorFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the injector tests load BPF programs and create cgroups: run them as root";
    cgroup_.emplace();
    injector_.emplace(-1);
    injector_->attach_cgroup(cgroup_->path());
    cgroup_->enter();
    ipv4_server_.emplace(AF_INET);
    ipv6_server_.emplace(AF_INET6);
  }

  void TearDown() override {
    ipv4_server_.reset();
    ipv6_server_.reset();
    injector_.reset();
    cgroup_.reset();
  }

  RecordingServer& server(int family) { return family == AF_INET ? *ipv4_server_ : *ipv6_server_; }
  int plans() const { return injector_->inject_plans_fd(); }

  // Closes the client and returns what the server received on that connection.
  std::string finish(Client& client, int family) {
    const auto port = client.local_port();
    client.close();
    auto bytes = server(family).received_from(port);
    if (!bytes) ADD_FAILURE() << "the server did not see connection " << port << " close";
    return bytes.value_or("");
  }

  std::mt19937_64 rng_{20261121};
  std::optional<ScratchCgroup> cgroup_;
  std::optional<TraceContextInjector> injector_;
  std::optional<RecordingServer> ipv4_server_;
  std::optional<RecordingServer> ipv6_server_;
};

class InjectTest : public InjectorFixture, public ::testing::WithParamInterface<int> {};

TEST_P(InjectTest, InsertsTheHeaderRightAfterTheRequestLineAndReportsTheApplicationsByteCount) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const auto header = random_traceparent_header(rng_);
  const auto plan = make_plan(kSimpleRequest, header);
  put_plan(plans(), plan);
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_FALSE(plan_present(plans())) << "a plan is used once";
  const auto received = finish(client, family);
  EXPECT_EQ(received, with_header(kSimpleRequest, plan));
  EXPECT_EQ(received.substr(0, 35), "GET /orders/17?verbose=1 HTTP/1.1\r\n");
  EXPECT_EQ(received.substr(35, 70), header);
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 1u);
  EXPECT_EQ(counters.sockets_tracked, 1u);
  EXPECT_EQ(counters.skipped_plans(), 0u);
}

TEST_P(InjectTest, EverySendCallIsInjected) {
  const int family = GetParam();
  Client client(family, server(family).port());
  std::string expected;
  for (const auto call : {SendCall::write, SendCall::send, SendCall::writev, SendCall::sendmsg}) {
    for (std::size_t pieces : {1, 3, 7}) {
      const auto plan = make_plan(kSimpleRequest, random_traceparent_header(rng_));
      put_plan(plans(), plan);
      ASSERT_EQ(client.send_once(kSimpleRequest, call, pieces), static_cast<long>(kSimpleRequest.size()));
      expected += with_header(kSimpleRequest, plan);
    }
  }
  EXPECT_EQ(finish(client, family), expected);
  EXPECT_EQ(injector_->counters().injected, 12u);
}

TEST_P(InjectTest, SendWithoutPlanArrivesUnchanged) {
  const int family = GetParam();
  Client client(family, server(family).port());
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_EQ(finish(client, family), kSimpleRequest);
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 0u);
  EXPECT_EQ(counters.no_plan, 1u);
}

TEST_P(InjectTest, PlansThatDoNotMatchTheSendLeaveItUnchangedAndAreConsumed) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const std::string request(kSimpleRequest);
  const auto header = random_traceparent_header(rng_);
  std::string expected;
  auto send_with = [&](et_inject_plan plan) {
    put_plan(plans(), plan);
    EXPECT_EQ(client.send_once(request), static_cast<long>(request.size()));
    EXPECT_FALSE(plan_present(plans()));
    expected += request;
  };

  auto shorter = make_plan(request, header);
  shorter.send_length -= 1;
  send_with(shorter);

  auto other_first_bytes = make_plan(request, header);
  other_first_bytes.first_bytes[0] = 'P';
  send_with(other_first_bytes);

  send_with(make_plan(request, header, 20));  // not after the request line's CRLF

  auto malformed = make_plan(request, header);
  malformed.header[20] = 'G';  // not hex
  send_with(malformed);
  auto no_crlf = make_plan(request, header);
  no_crlf.header[69] = ' ';
  send_with(no_crlf);

  send_with(make_plan(request, header, static_cast<std::uint32_t>(request.size() + 1)));  // beyond the send

  EXPECT_EQ(finish(client, family), expected);
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 0u);
  EXPECT_EQ(counters.size_mismatch, 1u);
  EXPECT_EQ(counters.content_mismatch, 2u);
  EXPECT_EQ(counters.bad_plan, 2u);
  EXPECT_EQ(counters.beyond_chunk, 1u);
}

TEST_P(InjectTest, APlanLeftForOneSendIsNotAppliedToAnother) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const std::string other = "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc";
  // Planned for kSimpleRequest, but the next send is a different one: consumed, not applied.
  put_plan(plans(), make_plan(kSimpleRequest, random_traceparent_header(rng_)));
  EXPECT_EQ(client.send_once(other), static_cast<long>(other.size()));
  EXPECT_FALSE(plan_present(plans()));
  // The send it was meant for, now without a plan, is not injected either.
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_EQ(finish(client, family), other + std::string(kSimpleRequest));
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 0u);
  EXPECT_EQ(counters.content_mismatch, 1u);
  EXPECT_EQ(counters.no_plan, 1u);
}

TEST_P(InjectTest, ConnectionEstablishedBeforeAttachIsNeverTouched) {
  const int family = GetParam();
  injector_->detach_cgroup(cgroup_->path());
  Client before(family, server(family).port());
  injector_->attach_cgroup(cgroup_->path());
  Client after(family, server(family).port());

  put_plan(plans(), make_plan(kSimpleRequest, random_traceparent_header(rng_)));
  EXPECT_EQ(before.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  // No verdict program ran for this socket, so nothing consumed the plan (the capture
  // program deletes it at syscall exit).
  EXPECT_TRUE(plan_present(plans()));
  remove_plan(plans());
  EXPECT_EQ(finish(before, family), kSimpleRequest);

  const auto plan = make_plan(kSimpleRequest, random_traceparent_header(rng_));
  put_plan(plans(), plan);
  EXPECT_EQ(after.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_EQ(finish(after, family), with_header(kSimpleRequest, plan));

  const auto counters = injector_->counters();
  EXPECT_EQ(counters.sockets_tracked, 1u);
  EXPECT_EQ(counters.injected, 1u);
}

TEST_P(InjectTest, DetachedCgroupsNewConnectionsAreNotTracked) {
  const int family = GetParam();
  injector_->detach_cgroup(cgroup_->path());
  Client client(family, server(family).port());
  put_plan(plans(), make_plan(kSimpleRequest, random_traceparent_header(rng_)));
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_TRUE(plan_present(plans()));
  remove_plan(plans());
  EXPECT_EQ(finish(client, family), kSimpleRequest);
  EXPECT_EQ(injector_->counters().sockets_tracked, 0u);
}

// tcp_bpf gives TCP each scatterlist piece separately: left as [request line][header][rest],
// the request line would leave alone and Nagle would hold the rest until the peer's delayed
// ACK (40 ms per request). The injector merges them again, so a small request stays one
// segment.
TEST_P(InjectTest, InjectedRequestLeavesAsOneSegment) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const auto plan = make_plan(kSimpleRequest, random_traceparent_header(rng_));
  put_plan(plans(), plan);
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  tcp_info info{};
  socklen_t length = sizeof(info);
  ASSERT_EQ(::getsockopt(client.fd(), IPPROTO_TCP, TCP_INFO, &info, &length), 0);
  EXPECT_EQ(info.tcpi_data_segs_out, 1u);
  EXPECT_EQ(finish(client, family), with_header(kSimpleRequest, plan));
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 1u);
  EXPECT_EQ(counters.unmerged, 0u);
}

// Sends without a plan whose bytes straddle the end of the thread's page fragment reach the
// verdict program in two pieces; they are made one piece again (bytes unchanged).
TEST_P(InjectTest, SmallSendsSplitAcrossPageFragmentsAreCoalescedUnchanged) {
  const int family = GetParam();
  Client client(family, server(family).port());
  std::string request = "POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 940\r\n\r\n";
  request += std::string(1000 - request.size(), 'b');
  std::string expected;
  // 300 KB in 1000-byte sends: past several 32 KiB fragments, and a send straddles the end
  // of one unless fewer than 32 bytes were left in it (then a new fragment starts).
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(client.send_once(request), static_cast<long>(request.size()));
    expected += request;
  }
  EXPECT_TRUE(finish(client, family) == expected) << "the stream differs";
  const auto counters = injector_->counters();
  EXPECT_GE(counters.coalesced, 1u);
  EXPECT_EQ(counters.no_plan, 300u);
}

// Clients that write the request line on its own: the header is appended to that send and
// the rest of the head follows in the next one.
TEST_P(InjectTest, RequestLineSentAloneGetsTheHeaderAppended) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const std::string line = "GET /only-the-line HTTP/1.1\r\n";
  const std::string rest = "Host: localhost\r\n\r\n";
  const auto plan = make_plan(line, random_traceparent_header(rng_));
  put_plan(plans(), plan);
  EXPECT_EQ(client.send_once(line), static_cast<long>(line.size()));
  EXPECT_EQ(client.send_once(rest), static_cast<long>(rest.size()));
  EXPECT_EQ(finish(client, family), with_header(line, plan) + rest);
  EXPECT_EQ(injector_->counters().injected, 1u);
}

// Destroying the injector frees the sockhash: tracked connections go back to plain TCP and
// keep working, untouched.
TEST_P(InjectTest, ConnectionsOutliveTheInjectorUntouched) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const auto plan = make_plan(kSimpleRequest, random_traceparent_header(rng_));
  put_plan(plans(), plan);
  ASSERT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  injector_.reset();
  ASSERT_EQ(client.send_once(kSimpleRequest, SendCall::writev, 3), static_cast<long>(kSimpleRequest.size()));
  EXPECT_EQ(finish(client, family), with_header(kSimpleRequest, plan) + std::string(kSimpleRequest));
}

// tcp_bpf hands a large send to the verdict program in several chunks (one scatterlist of at
// most MAX_SKB_FRAGS pages each); the plan is consumed by the first, which holds the request
// line, and the remaining chunks pass as they are.
TEST_P(InjectTest, LargeSendIsInjectedOnceInItsFirstChunk) {
  const int family = GetParam();
  Client client(family, server(family).port());
  std::string request = "PUT /blob HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4194304\r\n\r\n";
  const auto head_size = request.size();
  request.resize(head_size + (4u << 20));
  for (std::size_t i = head_size; i < request.size(); ++i) request[i] = static_cast<char>(rng_());
  const auto plan = make_plan(request, random_traceparent_header(rng_));
  put_plan(plans(), plan);
  EXPECT_EQ(client.send_once(request), static_cast<long>(request.size()));
  EXPECT_TRUE(finish(client, family) == with_header(request, plan)) << "the stream differs";
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, 1u);
  EXPECT_EQ(counters.skipped_plans(), 0u);
  EXPECT_GE(counters.no_plan, 1u) << "a 4 MiB send was expected to reach the verdict program in several chunks";
  std::printf("4 MiB send: %llu verdict calls\n", static_cast<unsigned long long>(counters.no_plan + 1));
}

// A non-blocking sender whose send buffer is nearly full: TCP could stop inside the request
// line or the header and the byte count returned would then be off by the inserted bytes, so
// the guard leaves the send untouched. The peer reads slowly until the planned send gets in.
TEST_P(InjectTest, NearlyFullSendBufferIsNotInjected) {
  const int family = GetParam();
  UniqueFd listener(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(listener.get(), 0);
  const int small = 16384;
  ASSERT_EQ(::setsockopt(listener.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  sockaddr_storage address{};
  socklen_t length = 0;
  if (family == AF_INET) {
    auto& in4 = reinterpret_cast<sockaddr_in&>(address);
    in4.sin_family = AF_INET;
    in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(in4);
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    length = sizeof(in6);
  }
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  const auto port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in&>(address).sin_port
                                            : reinterpret_cast<sockaddr_in6&>(address).sin6_port);
  Client client(family, port);
  UniqueFd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(peer.get(), 0);
  const int sndbuf = 65536;
  ASSERT_EQ(::setsockopt(client.fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  ASSERT_EQ(::fcntl(client.fd(), F_SETFL, O_NONBLOCK), 0);

  std::string sent;
  const std::string filler(4096, 'f');
  while (client.send_once(filler) > 0) sent += filler;

  const std::string request(kSimpleRequest);
  const auto plan = make_plan(request, random_traceparent_header(rng_));
  std::string received;
  std::vector<char> buffer(1024);
  long written = -EAGAIN;
  for (int attempt = 0; attempt < 2000 && written == -EAGAIN; ++attempt) {
    const ssize_t n = ::read(peer.get(), buffer.data(), buffer.size());
    ASSERT_GT(n, 0);
    received.append(buffer.data(), static_cast<std::size_t>(n));
    ::usleep(200);
    put_plan(plans(), plan);
    written = client.send_once(request);
  }
  ASSERT_GT(written, 0) << "the send buffer never drained";
  EXPECT_FALSE(plan_present(plans())) << "the verdict program saw the send";
  sent += request.substr(0, static_cast<std::size_t>(written));
  ASSERT_EQ(::fcntl(client.fd(), F_SETFL, 0), 0);
  const std::string rest = request.substr(static_cast<std::size_t>(written));
  if (!rest.empty()) {
    ASSERT_EQ(client.send_once(rest), static_cast<long>(rest.size()));
    sent += rest;
  }
  client.close();
  for (;;) {
    const ssize_t n = ::read(peer.get(), buffer.data(), buffer.size());
    ASSERT_GE(n, 0);
    if (n == 0) break;
    received.append(buffer.data(), static_cast<std::size_t>(n));
  }
  EXPECT_TRUE(received == sent) << "the stream differs from what the application sent";
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.unsafe_socket, 1u);
  EXPECT_EQ(counters.injected, 0u);
}

// TCP_NOTSENT_LOWAT below the bytes up to the end of the header: TCP may stop (and a
// non-blocking send return short) before the header is out, so nothing is inserted.
TEST_P(InjectTest, NotSentLowWaterMarkBelowTheHeaderIsNotInjected) {
  const int family = GetParam();
  Client client(family, server(family).port());
  const int lowat = 64;
  ASSERT_EQ(::setsockopt(client.fd(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)), 0);
  put_plan(plans(), make_plan(kSimpleRequest, random_traceparent_header(rng_)));
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  EXPECT_FALSE(plan_present(plans()));
  EXPECT_EQ(finish(client, family), kSimpleRequest);
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.unsafe_socket, 1u);
  EXPECT_EQ(counters.injected, 0u);
}

INSTANTIATE_TEST_SUITE_P(Families, InjectTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const ::testing::TestParamInfo<int>& info) { return family_name(info.param); });

// --- Traffic integrity under random traffic ----------------------------------------------

struct Send {
  std::string bytes;
  std::optional<et_inject_plan> plan;
  SendCall call = SendCall::write;
  std::size_t pieces = 1;
};

class RequestGenerator {
 public:
  explicit RequestGenerator(std::mt19937_64& rng) : rng_(rng) {}

  std::string request() {
    static constexpr const char* methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    const std::string method = methods[rng_() % 5];
    std::string text = method + " /" + token(1 + rng_() % 300) + " HTTP/1.1\r\nHost: localhost\r\n";
    for (std::uint64_t i = rng_() % 6; i > 0; --i) text += "X-Test-" + token(1 + rng_() % 10) + ": " + token(rng_() % 80) + "\r\n";
    if (method == "GET" || method == "DELETE") return text + "\r\n";
    const auto body = random_bytes(body_size());
    if (rng_() % 2 == 0) return text + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    text += "Transfer-Encoding: chunked\r\n\r\n";
    std::size_t at = 0;
    while (at < body.size()) {
      const std::size_t chunk = std::min<std::size_t>(body.size() - at, 1 + rng_() % 8192);
      char size_line[32];
      std::snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk);
      text += size_line;
      text.append(body, at, chunk);
      text += "\r\n";
      at += chunk;
    }
    return text + "0\r\n\r\n";
  }

 private:
  std::size_t body_size() {
    const auto bucket = rng_() % 100;
    if (bucket < 60) return rng_() % 2048;
    if (bucket < 90) return rng_() % 16384;
    if (bucket < 99) return rng_() % 65537;
    return (256u << 10) + rng_() % (768u << 10);  // several verdict chunks per send
  }
  std::string token(std::size_t length) {
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string text(length, 'x');
    for (auto& c : text) c = alphabet[rng_() % (sizeof(alphabet) - 1)];
    return text;
  }
  std::string random_bytes(std::size_t length) {
    std::string bytes(length, '\0');
    std::size_t i = 0;
    for (; i + 8 <= length; i += 8) {
      const auto word = rng_();
      std::memcpy(bytes.data() + i, &word, 8);
    }
    for (; i < length; ++i) bytes[i] = static_cast<char>(rng_());
    return bytes;
  }
  std::mt19937_64& rng_;
};

// The sends of one connection: single planned requests, unplanned ones, pipelined batches
// (only the first request of a send can be planned) and requests split across two sends.
std::vector<Send> connection_script(std::mt19937_64& rng, std::size_t requests) {
  RequestGenerator generator(rng);
  std::vector<Send> sends;
  auto add = [&](std::string bytes, bool planned) {
    Send send;
    send.call = static_cast<SendCall>(rng() % 4);
    send.pieces = 1 + rng() % 8;
    if (planned) send.plan = make_plan(bytes, random_traceparent_header(rng));
    send.bytes = std::move(bytes);
    sends.push_back(std::move(send));
  };
  for (std::size_t made = 0; made < requests;) {
    const auto kind = rng() % 100;
    if (kind < 15) {
      std::string batch;
      const std::size_t count = std::min<std::size_t>(requests - made, 2 + rng() % 3);
      for (std::size_t i = 0; i < count; ++i) batch += generator.request();
      made += count;
      add(std::move(batch), true);
    } else if (kind < 30) {
      auto whole = generator.request();
      const auto line_end = whole.find("\r\n") + 2;
      // The first send holds the request line, alone or with more of the request.
      const auto split = line_end + rng() % (whole.size() - line_end + 1);
      if (split >= whole.size()) {
        add(std::move(whole), true);
      } else {
        add(whole.substr(0, split), true);
        add(whole.substr(split), false);
      }
      ++made;
    } else if (kind < 40) {
      add(generator.request(), false);
      ++made;
    } else {
      add(generator.request(), true);
      ++made;
    }
  }
  return sends;
}

struct StreamCheck {
  bool intact = false;
  std::size_t injected = 0;
  std::size_t not_injected = 0;  // planned, left untouched
  std::string problem;
};

// Walks the received stream send by send: each planned send arrives either with its header
// exactly at its plan's offset or untouched; anything else is corruption.
StreamCheck check_stream(const std::vector<Send>& sends, const std::string& received) {
  StreamCheck check;
  std::size_t at = 0;
  for (std::size_t i = 0; i < sends.size(); ++i) {
    const auto& send = sends[i];
    if (send.plan) {
      const auto injected = with_header(send.bytes, *send.plan);
      if (received.compare(at, injected.size(), injected) == 0) {
        at += injected.size();
        ++check.injected;
        continue;
      }
    }
    if (received.compare(at, send.bytes.size(), send.bytes) == 0) {
      at += send.bytes.size();
      if (send.plan) ++check.not_injected;
      continue;
    }
    check.problem = "send " + std::to_string(i) + " does not match at stream offset " + std::to_string(at);
    return check;
  }
  if (at != received.size()) {
    check.problem = std::to_string(received.size() - at) + " unexpected bytes after the last send";
    return check;
  }
  check.intact = true;
  return check;
}

TEST_F(InjectorFixture, TenThousandRandomRequestsArriveIntactWithOneHeaderPerPlannedRequest) {
  constexpr std::size_t connections = 50;
  constexpr std::size_t requests_per_connection = 200;
  const auto started = std::chrono::steady_clock::now();
  std::size_t planned = 0, unplanned_sends = 0, injected_seen = 0, untouched_plans = 0, bytes = 0;
  for (std::size_t c = 0; c < connections; ++c) {
    const int family = c % 2 == 0 ? AF_INET : AF_INET6;
    const auto sends = connection_script(rng_, requests_per_connection);
    Client client(family, server(family).port());
    for (const auto& send : sends) {
      if (send.plan) {
        put_plan(plans(), *send.plan);
        ++planned;
      } else {
        ++unplanned_sends;
      }
      const long written = client.send_once(send.bytes, send.call, send.pieces);
      ASSERT_EQ(written, static_cast<long>(send.bytes.size())) << "the send's return value is not the application's count";
      ASSERT_FALSE(send.plan && plan_present(plans())) << "a plan survived its send";
      bytes += send.bytes.size();
    }
    const auto received = finish(client, family);
    const auto check = check_stream(sends, received);
    ASSERT_TRUE(check.intact) << family_name(family) << " connection " << c << ": " << check.problem;
    injected_seen += check.injected;
    untouched_plans += check.not_injected;
  }
  const auto counters = injector_->counters();
  EXPECT_EQ(counters.injected, injected_seen);
  EXPECT_EQ(injected_seen + untouched_plans, planned);
  // The only reason a well-formed, matching plan may be left unapplied is the send path guard.
  EXPECT_EQ(counters.unsafe_socket, untouched_plans);
  EXPECT_LE(untouched_plans, planned / 100) << "the send path guard skipped too many requests";
  EXPECT_EQ(counters.size_mismatch + counters.beyond_chunk + counters.content_mismatch + counters.bad_plan +
                counters.push_failed + counters.write_failed + counters.dropped,
            0u);
  EXPECT_GE(counters.no_plan, unplanned_sends);
  EXPECT_EQ(counters.sockets_tracked, connections);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("%zu sends planned, %zu injected (%llu unmerged), %zu left by the guard, %zu unplanned sends (%llu coalesced), %.1f MB in %.1f s\n",
              planned, injected_seen, static_cast<unsigned long long>(counters.unmerged), untouched_plans, unplanned_sends,
              static_cast<unsigned long long>(counters.coalesced),
              static_cast<double>(bytes) / 1e6, seconds);
}

TEST(InjectorSharedMap, UsesTheCapturesPlanMapAndRejectsAnIncompatibleOne) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root";
  {
    UniqueFd wrong(bpf_map_create(BPF_MAP_TYPE_HASH, "inject_plans", 8, 16, 16384, nullptr));
    ASSERT_GE(wrong.get(), 0);
    EXPECT_THROW(TraceContextInjector{wrong.get()}, std::runtime_error);
  }
  UniqueFd shared(bpf_map_create(BPF_MAP_TYPE_HASH, "inject_plans", sizeof(std::uint64_t), sizeof(et_inject_plan),
                                 16384, nullptr));
  ASSERT_GE(shared.get(), 0);
  ScratchCgroup cgroup;
  TraceContextInjector injector(shared.get());
  bpf_map_info ours{}, theirs{};
  __u32 length = sizeof(ours);
  ASSERT_EQ(bpf_obj_get_info_by_fd(injector.inject_plans_fd(), &ours, &length), 0);
  length = sizeof(theirs);
  ASSERT_EQ(bpf_obj_get_info_by_fd(shared.get(), &theirs, &length), 0);
  EXPECT_EQ(ours.id, theirs.id);

  injector.attach_cgroup(cgroup.path());
  cgroup.enter();
  RecordingServer server(AF_INET);
  Client client(AF_INET, server.port());
  std::mt19937_64 rng(7);
  const auto plan = make_plan(kSimpleRequest, random_traceparent_header(rng));
  put_plan(shared.get(), plan);
  EXPECT_EQ(client.send_once(kSimpleRequest), static_cast<long>(kSimpleRequest.size()));
  const auto port = client.local_port();
  client.close();
  EXPECT_EQ(server.received_from(port).value_or(""), with_header(kSimpleRequest, plan));
}

TEST(InjectorCgroups, RejectsADirectoryOutsideTheCgroupMount) {
  ASSERT_EQ(::geteuid(), 0u) << "run as root";
  TraceContextInjector injector(-1);
  EXPECT_THROW(injector.attach_cgroup("/tmp"), std::runtime_error);
  EXPECT_THROW(injector.attach_cgroup("/sys/fs/cgroup/unified/no-such-edgetrace-cgroup"), std::runtime_error);
}

}  // namespace
}  // namespace edgetrace::testing
