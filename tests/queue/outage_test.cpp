// End to end over real loopback sockets: Batcher → DiskBatchQueue → Deliverer → HTTP sender →
// a relay → a real OTLP/HTTP receiver. The relay is the "uplink": taking it down refuses and
// resets connections; bringing it back listens on the same port again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "export/batcher.h"
#include "export/deliverer.h"
#include "export/export_counters.h"
#include "export/otlp_sender.h"
#include "otlp_test_receivers.h"
#include "queue/disk_batch_queue.h"
#include "queue_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;

// A TCP relay on 127.0.0.1 that can go down (listener closed, live connections reset) and
// come back on the same port.
class LoopbackRelay {
 public:
  explicit LoopbackRelay(std::uint16_t upstream_port) : upstream_port_(upstream_port) {}
  ~LoopbackRelay() { stop(); }
  LoopbackRelay(const LoopbackRelay&) = delete;
  LoopbackRelay& operator=(const LoopbackRelay&) = delete;

  void start() {
    listen_fd_ = queue::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    ::setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_.get(), 64) != 0)
      throw std::runtime_error(std::string("relay bind/listen: ") + std::strerror(errno));
    socklen_t length = sizeof addr;
    ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
    stopping_ = false;
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  void stop() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    listen_fd_.reset();
    std::list<std::thread> connections;
    {
      std::lock_guard lock(mutex_);
      connections.swap(connections_);
    }
    for (auto& connection : connections) connection.join();
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Delay before forwarding each chunk towards the receiver: makes a backlog drain slowly.
  void set_delay(std::chrono::milliseconds delay) { delay_ms_ = static_cast<int>(delay.count()); }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd waiting{listen_fd_.get(), POLLIN, 0};
      if (::poll(&waiting, 1, 20) <= 0) continue;
      queue::UniqueFd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) continue;
      std::lock_guard lock(mutex_);
      connections_.emplace_back([this, fd = std::move(client)]() mutable { relay(std::move(fd)); });
    }
  }

  void relay(queue::UniqueFd client) {
    queue::UniqueFd upstream(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(upstream_port_);
    if (::connect(upstream.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    char buffer[64 * 1024];
    while (!stopping_) {
      pollfd fds[2] = {{client.get(), POLLIN, 0}, {upstream.get(), POLLIN, 0}};
      if (::poll(fds, 2, 20) <= 0) continue;
      for (int side = 0; side < 2; ++side) {
        if (!(fds[side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(fds[side].fd, buffer, sizeof buffer);
        if (got <= 0) return;
        if (side == 0 && delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
        for (ssize_t sent = 0; sent < got;) {
          const ssize_t put = ::write(fds[1 - side].fd, buffer + sent, static_cast<std::size_t>(got - sent));
          if (put <= 0) return;
          sent += put;
        }
      }
    }
    // Going down: reset rather than close politely, as a dropped uplink would look.
    linger reset{1, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }

  const std::uint16_t upstream_port_;
  std::uint16_t port_ = 0;
  queue::UniqueFd listen_fd_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> delay_ms_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::list<std::thread> connections_;
};

SpanBatch make_spans(std::uint64_t first_id, std::size_t count, const std::shared_ptr<const Resource>& resource) {
  SpanBatch spans;
  for (std::uint64_t id = first_id; id < first_id + count; ++id) {
    Span span;
    for (std::size_t i = 0; i < 8; ++i) span.span_id[i] = static_cast<std::uint8_t>(id >> (56 - 8 * i));
    span.trace_id[0] = 1;
    for (std::size_t i = 0; i < 8; ++i) span.trace_id[8 + i] = span.span_id[i];
    span.name = "GET /orders/{id}";
    span.kind = SpanKind::Server;
    span.start_unix_nanos = 1'700'000'000'000'000'000ull + id * 1000;
    span.end_unix_nanos = span.start_unix_nanos + 250'000;
    span.attributes = {{"http.request.method", std::string("GET")}, {"http.response.status_code", std::int64_t{200}},
                       {"url.path", std::string("/orders/") + std::to_string(id)}};
    span.resource = resource;
    spans.push_back(std::move(span));
  }
  return spans;
}

std::uint64_t span_number(const std::string& span_id) {
  std::uint64_t id = 0;
  for (unsigned char byte : span_id) id = (id << 8) | byte;
  return id;
}

// The delivering side of an agent: disk queue + deliverer, restartable.
struct DeliveringSide {
  DeliveringSide(const QueueConfig& queue_config, const ExporterConfig& exporter_config)
      : queue(queue_config), sender(make_sender(exporter_config)),
        deliverer(queue, *sender, counters, exporter_config.retry, 0ms) {
    deliverer.set_error_observer([this](const std::string& message) { queue.set_last_export_error(message); });
    deliverer.start();
  }
  ~DeliveringSide() { deliverer.stop(); }

  DiskBatchQueue queue;
  ExportCounters counters;
  std::unique_ptr<OtlpSender> sender;
  Deliverer deliverer;
};

template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(QueueOutage, EverySpanArrivesAfterAnOutageAndADelivererRestartMidBacklog) {
  queue_test::TempDir dir("edgetrace-queue-outage");
  QueueConfig queue_config;
  queue_config.dir = dir.path() / "queue";
  queue_config.segment_bytes = 128 * 1024;
  queue_config.max_bytes = 64ull * 1024 * 1024;
  queue_config.fsync = FsyncMode::Interval;
  queue_config.fsync_interval = 100ms;

  testing::HttpOtlpReceiver receiver;
  receiver.start();
  LoopbackRelay uplink(receiver.port());
  uplink.start();

  ExporterConfig exporter;
  exporter.protocol = OtlpProtocol::HttpProtobuf;
  exporter.endpoint = "http://127.0.0.1:" + std::to_string(uplink.port()) + "/v1/traces";
  exporter.timeout = 2s;
  exporter.retry = {.initial_backoff = 10ms, .max_backoff = 100ms, .max_elapsed = 0ms};  // retry forever
  exporter.batch = {.max_spans = 50, .max_delay = 1000ms};

  const auto resource = std::make_shared<Resource>(Resource{{{"service.name", std::string("orders")}}, 42});
  constexpr std::uint64_t kSpansPerBatch = 50;
  std::uint64_t next_span = 1;
  auto produce = [&](Batcher& batcher, std::size_t batches) {
    for (std::size_t b = 0; b < batches; ++b) {
      batcher.consume(make_spans(next_span, kSpansPerBatch, resource));
      next_span += kSpansPerBatch;
    }
  };

  auto side = std::make_unique<DeliveringSide>(queue_config, exporter);
  ExportCounters batcher_counters;
  {
    Batcher batcher(side->queue, batcher_counters, exporter.batch);
    // Link up: flows straight through.
    produce(batcher, 20);
    ASSERT_TRUE(receiver.wait_for_spans(20 * kSpansPerBatch, 20s));

    // Link down: connections are refused; everything piles up on disk, retried with backoff.
    uplink.stop();
    produce(batcher, 300);
  }
  ASSERT_TRUE(eventually([&] { return side->counters.retries.load() >= 5; }, 20s));
  std::this_thread::sleep_for(300ms);
  const auto retries_before = side->counters.retries.load();
  std::this_thread::sleep_for(500ms);
  EXPECT_LT(side->counters.retries.load() - retries_before, 30u) << "backoff, not a retry storm";
  auto stats = side->queue.disk_stats();
  EXPECT_GE(stats.depth_batches, 299u);
  EXPECT_EQ(stats.depth_spans, stats.depth_batches * kSpansPerBatch);
  EXPECT_FALSE(stats.last_export_error.empty());
  EXPECT_EQ(receiver.accepted_span_count(), 20 * kSpansPerBatch);

  // The agent restarts during the outage: a new queue object on the same directory.
  side.reset();
  side = std::make_unique<DeliveringSide>(queue_config, exporter);
  EXPECT_GE(side->queue.stats().depth_batches, 299u) << "the backlog survived the restart";

  // Link back, slowly: the backlog drains at link speed. Restart again mid-backlog.
  uplink.set_delay(3ms);
  uplink.start();
  const std::size_t total_spans = (next_span - 1);
  ASSERT_TRUE(eventually([&] { return receiver.accepted_span_count() >= 20 * kSpansPerBatch + 60 * kSpansPerBatch; },
                         30s));
  const auto delivered_at_restart = receiver.accepted_span_count();
  side.reset();
  EXPECT_LT(delivered_at_restart, total_spans) << "the restart must land mid-backlog";
  side = std::make_unique<DeliveringSide>(queue_config, exporter);
  uplink.set_delay(0ms);
  ASSERT_TRUE(eventually([&] { return side->queue.stats().depth_batches == 0; }, 60s))
      << side->queue.stats().depth_batches << " batches still queued";

  // Every span arrived; repeats only from the one batch in flight at each restart.
  std::map<std::uint64_t, int> seen;
  std::uint64_t highest_first_seen = 0;
  bool in_order = true;
  for (const auto& received : receiver.received_spans()) {
    const auto number = span_number(received.span.span_id());
    if (seen[number]++ == 0) {
      if (number < highest_first_seen) in_order = false;
      highest_first_seen = number;
    }
  }
  std::size_t missing = 0, repeated = 0;
  for (std::uint64_t number = 1; number <= total_spans; ++number) {
    if (seen[number] == 0) ++missing;
    if (seen[number] > 1) ++repeated;
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_LE(repeated, 2 * kSpansPerBatch) << "at-least-once: at most the in-flight batch per restart";
  EXPECT_TRUE(in_order) << "batches are delivered oldest first";
  EXPECT_EQ(seen.size(), total_spans);
  stats = side->queue.disk_stats();
  EXPECT_EQ(stats.dropped_batches, 0u);
  EXPECT_EQ(stats.corrupted_records, 0u);
  EXPECT_EQ(stats.write_errors, 0u);
  side.reset();
  uplink.stop();
  receiver.stop();
}

}  // namespace
}  // namespace edgetrace
