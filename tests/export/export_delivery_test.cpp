// Senders + Deliverer against the real loopback receivers, for both transports.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <yaml-cpp/yaml.h>

#include <ctime>
#include <thread>

#include "config/config_error.h"
#include "export/batcher.h"
#include "export/deliverer.h"
#include "export/grpc_sender.h"
#include "export/otlp_exporter.h"
#include "export/memory_batch_queue.h"
#include "export/otlp_encoder.h"
#include "export/otlp_sender.h"
#include "export_test_support.h"
#include "otlp_test_receivers.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using testing::GrpcOtlpReceiver;
using testing::HttpOtlpReceiver;
using testing::make_http_span;
using testing::make_resource;
using testing::OtlpReceiver;
using testing::Reply;

enum class Transport { Grpc, Http };
void PrintTo(Transport t, std::ostream* os) { *os << (t == Transport::Grpc ? "grpc" : "http"); }

std::string name_of(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::Grpc ? "Grpc" : "Http";
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

// A loopback port with a bound but never-listening socket: connections are refused.
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
    socklen_t len = sizeof addr;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  testing::UniqueFd fd_;
  std::uint16_t port_ = 0;
};

class Delivery : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    if (GetParam() == Transport::Grpc)
      receiver_ = std::make_unique<GrpcOtlpReceiver>();
    else
      receiver_ = std::make_unique<HttpOtlpReceiver>();
    receiver_->start();
  }

  [[nodiscard]] bool grpc() const { return GetParam() == Transport::Grpc; }

  ExporterConfig config() const {
    ExporterConfig c;
    c.protocol = grpc() ? OtlpProtocol::Grpc : OtlpProtocol::HttpProtobuf;
    c.endpoint = receiver_->endpoint();
    c.timeout = 5s;
    c.retry = {.initial_backoff = 10ms, .max_backoff = 40ms, .max_elapsed = 0ms};
    c.drain_timeout = 2s;
    return c;
  }

  // Pushes `batches` batches of `spans_each` spans.
  void enqueue(BatchQueue& q, int batches, int spans_each) {
    OtlpEncoder encoder;
    auto r = make_resource("svc", 77);
    for (int b = 0; b < batches; ++b) {
      SpanBatch spans;
      for (int i = 0; i < spans_each; ++i) spans.push_back(make_http_span(static_cast<std::uint64_t>(b * 1000 + i), r));
      ASSERT_TRUE(q.push(encoder.encode(spans), static_cast<std::uint32_t>(spans.size())));
    }
  }

  // Delivers one batch of 5 spans with `replies` scripted; returns once the queue is empty.
  void deliver_with(std::vector<Reply> replies, const ExporterConfig& cfg) {
    receiver_->script(std::move(replies));
    MemoryBatchQueue q({});
    enqueue(q, 1, 5);
    auto sender = make_sender(cfg);
    Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
    d.start();
    ASSERT_TRUE(wait_until([&] { return q.stats().depth_batches == 0; }, 20s));
    d.stop();
  }

  std::unique_ptr<OtlpReceiver> receiver_;
  ExportCounters counters_;
};

TEST_P(Delivery, DeliversInOrderWithGzipAndHeaders) {
  auto cfg = config();
  cfg.headers = {{"X-Api-Key", "s3cret"}, {"x-tenant", "blue team"}};
  MemoryBatchQueue q({});
  enqueue(q, 3, 5);
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
  d.start();
  ASSERT_TRUE(receiver_->wait_for_spans(15, 10s));
  ASSERT_TRUE(wait_until([&] { return q.stats().depth_batches == 0; }, 5s));
  d.stop();

  const auto reqs = receiver_->requests();
  ASSERT_EQ(reqs.size(), 3u);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    EXPECT_TRUE(r.gzip) << "request " << i << " was not gzip-compressed";
    EXPECT_EQ(r.header("x-api-key"), "s3cret");
    EXPECT_EQ(r.header("x-tenant"), "blue team");
    EXPECT_NE(r.header("user-agent").value_or("").find("edgetrace/"), std::string::npos);
    // Batches arrive in queue order: batch i holds seeds i*1000.. .
    const auto& first = r.request.resource_spans(0).scope_spans(0).spans(0);
    EXPECT_EQ(first.span_id(), std::string(reinterpret_cast<const char*>(make_http_span(i * 1000, nullptr).span_id.data()), 8));
    if (!grpc()) {
      EXPECT_EQ(r.path, "/v1/traces");
      EXPECT_EQ(r.header("content-type"), "application/x-protobuf");
      EXPECT_LT(r.body_bytes, r.decoded_bytes);  // really compressed on the wire
    }
  }
  const auto c = counters_.snapshot();
  EXPECT_EQ(c.exported_spans, 15u);
  EXPECT_EQ(c.exported_batches, 3u);
  EXPECT_EQ(c.retries, 0u);
  EXPECT_EQ(c.failed_spans, 0u);
  EXPECT_EQ(c.dropped_spans, 0u);
}

TEST_P(Delivery, CompressionNoneSendsPlainBody) {
  auto cfg = config();
  cfg.compression = OtlpCompression::None;
  deliver_with({}, cfg);
  const auto reqs = receiver_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_FALSE(reqs[0].gzip);
  if (!grpc()) {
    EXPECT_FALSE(reqs[0].header("content-encoding"));
    EXPECT_EQ(reqs[0].body_bytes, reqs[0].decoded_bytes);
  }
}

struct RetryCase {
  std::string name;
  Reply reply;
};

TEST_P(Delivery, RetryableAnswersAreRetriedUntilAccepted) {
  std::vector<RetryCase> cases = {
      {"unavailable/503", Reply::unavailable()},
      {"resource_exhausted+RetryInfo/429+Retry-After", Reply::resource_exhausted_with_retry_info(20ms)},
      {"429 Retry-After 0", Reply::too_many_requests("0")},
      {"503 Retry-After 0", Reply::service_unavailable("0")},
      {"502", Reply::error(grpc::StatusCode::UNAVAILABLE, 502)},
      {"504", Reply::error(grpc::StatusCode::DEADLINE_EXCEEDED, 504)},
  };
  if (grpc()) {
    for (auto code : {grpc::StatusCode::CANCELLED, grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::ABORTED,
                      grpc::StatusCode::OUT_OF_RANGE, grpc::StatusCode::DATA_LOSS})
      cases.push_back({"grpc code " + std::to_string(code), Reply::error(code, 503)});
  } else {
    // Over HTTP a 429 is retryable even without Retry-After.
    cases.push_back({"429 without Retry-After", Reply::resource_exhausted()});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    receiver_->clear();
    counters_.reset();
    deliver_with({c.reply, c.reply, Reply::ok()}, config());
    EXPECT_EQ(receiver_->request_count(), 3u);
    EXPECT_EQ(receiver_->accepted_span_count(), 5u);
    const auto s = counters_.snapshot();
    EXPECT_EQ(s.retries, 2u);
    EXPECT_EQ(s.exported_spans, 5u);
    EXPECT_EQ(s.exported_batches, 1u);
    EXPECT_EQ(s.failed_spans, 0u);
    EXPECT_EQ(s.dropped_spans, 0u);
  }
}

TEST_P(Delivery, PermanentAnswersDropTheBatchWithoutRetry) {
  std::vector<RetryCase> cases = {
      {"bad request / INVALID_ARGUMENT", Reply::bad_request()},
      {"500 / INTERNAL", Reply::error(grpc::StatusCode::INTERNAL, 500)},
      {"401 / UNAUTHENTICATED", Reply::error(grpc::StatusCode::UNAUTHENTICATED, 401)},
  };
  // gRPC RESOURCE_EXHAUSTED without RetryInfo is not retryable.
  if (grpc()) cases.push_back({"resource_exhausted without RetryInfo", Reply::resource_exhausted()});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    receiver_->clear();
    counters_.reset();
    deliver_with({c.reply, Reply::ok()}, config());
    EXPECT_EQ(receiver_->request_count(), 1u);
    EXPECT_EQ(receiver_->accepted_span_count(), 0u);
    const auto s = counters_.snapshot();
    EXPECT_EQ(s.retries, 0u);
    EXPECT_EQ(s.failed_spans, 5u);
    EXPECT_EQ(s.failed_batches, 1u);
    EXPECT_EQ(s.exported_spans, 0u);
  }
}

TEST_P(Delivery, TimeoutIsRetryable) {
  auto cfg = config();
  cfg.timeout = 300ms;
  const auto t0 = std::chrono::steady_clock::now();
  deliver_with({Reply::delayed(Reply::ok(), 1500ms), Reply::ok()}, cfg);
  EXPECT_EQ(receiver_->request_count(), 2u);
  const auto reqs = receiver_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  // The retry went out once the client gave up, well before the slow answer.
  EXPECT_LT(reqs[1].at - reqs[0].at, 1400ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  const auto s = counters_.snapshot();
  EXPECT_EQ(s.retries, 1u);
  EXPECT_EQ(s.exported_spans, 5u);
}

TEST_P(Delivery, PartialSuccessIsCountedNotRetried) {
  deliver_with({Reply::partial_success(2, "two spans too old")}, config());
  EXPECT_EQ(receiver_->request_count(), 1u);
  const auto s = counters_.snapshot();
  EXPECT_EQ(s.rejected_spans, 2u);
  EXPECT_EQ(s.exported_spans, 3u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.failed_spans, 0u);
}

TEST_P(Delivery, ServerRetryDelayIsHonoured) {
  // With a 10 ms client backoff, any gap near the server's delay comes from honouring it.
  const auto delay = grpc() ? 700ms : 1000ms;
  const Reply throttle = grpc() ? Reply::resource_exhausted_with_retry_info(delay) : Reply::too_many_requests("1");
  deliver_with({throttle, Reply::ok()}, config());
  const auto reqs = receiver_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(reqs[1].at - reqs[0].at);
  EXPECT_GE(gap, delay * 8 / 10);
  EXPECT_LT(gap, delay + 5s);
}

TEST_P(Delivery, DeadCollectorIsRetryableAndLosesNothing) {
  RefusingPort dead;
  auto cfg = config();
  cfg.endpoint = grpc() ? "http://127.0.0.1:" + std::to_string(dead.port())
                        : "http://127.0.0.1:" + std::to_string(dead.port()) + "/v1/traces";
  cfg.drain_timeout = 100ms;
  MemoryBatchQueue q({});
  enqueue(q, 2, 5);
  {
    auto sender = make_sender(cfg);
    Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
    d.start();
    ASSERT_TRUE(wait_until([&] { return counters_.retries.load() >= 3; }, 20s));
    const auto t0 = std::chrono::steady_clock::now();
    d.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  }
  const auto s = counters_.snapshot();
  EXPECT_EQ(s.exported_spans, 0u);
  EXPECT_EQ(s.failed_spans, 0u);
  EXPECT_EQ(s.dropped_spans, 0u);
  EXPECT_EQ(q.stats().depth_batches, 2u);
  EXPECT_EQ(q.stats().depth_spans, 10u);

  // The same queue drains completely once a collector is reachable.
  auto live = config();
  auto sender = make_sender(live);
  Deliverer d(q, *sender, counters_, live.retry, live.drain_timeout);
  d.start();
  ASSERT_TRUE(receiver_->wait_for_spans(10, 10s));
  d.stop();
  EXPECT_EQ(q.stats().depth_batches, 0u);
  EXPECT_EQ(counters_.exported_spans.load(), 10u);
}

TEST_P(Delivery, RetryBudgetExhaustionDropsAndCounts) {
  receiver_->set_default_reply(Reply::unavailable());
  auto cfg = config();
  cfg.retry.max_elapsed = 150ms;
  deliver_with({}, cfg);
  const auto s = counters_.snapshot();
  EXPECT_EQ(s.dropped_spans, 5u);
  EXPECT_EQ(s.exported_spans, 0u);
  EXPECT_GE(s.retries, 1u);
}

TEST_P(Delivery, StopDuringBackoffKeepsTheBatchQueued) {
  receiver_->set_default_reply(Reply::unavailable());
  auto cfg = config();
  cfg.retry = {.initial_backoff = 20s, .max_backoff = 20s, .max_elapsed = 0ms};
  cfg.drain_timeout = 200ms;
  MemoryBatchQueue q({});
  enqueue(q, 1, 5);
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
  d.start();
  ASSERT_TRUE(receiver_->wait_for_requests(1, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  d.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(q.stats().depth_spans, 5u);
  EXPECT_EQ(counters_.dropped_spans.load(), 0u);
}

TEST_P(Delivery, StopDrainsWhatIsQueued) {
  auto cfg = config();
  MemoryBatchQueue q({});
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
  d.start();
  enqueue(q, 20, 10);
  d.stop();
  EXPECT_EQ(q.stats().depth_batches, 0u);
  EXPECT_EQ(receiver_->accepted_span_count(), 200u);
}

TEST_P(Delivery, ClosedQueueStillDeliversLaterPushesWithoutSpinning) {
  auto cfg = config();
  MemoryBatchQueue q({});
  q.close();
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
  d.start();
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  const auto cpu_before = cpu_now();
  std::this_thread::sleep_for(300ms);
  // A deliverer spinning on the closed queue would burn most of these 300 ms.
  EXPECT_LT(cpu_now() - cpu_before, 100ms);
  enqueue(q, 1, 5);
  ASSERT_TRUE(receiver_->wait_for_spans(5, 10s));
  d.stop();
  EXPECT_EQ(q.stats().depth_batches, 0u);
}

TEST_P(Delivery, BatcherQueueDelivererEndToEnd) {
  auto cfg = config();
  cfg.batch = {.max_spans = 64, .max_delay = 50ms};
  MemoryBatchQueue q(cfg.memory_queue);
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters_, cfg.retry, cfg.drain_timeout);
  d.start();
  Batcher batcher(q, counters_, cfg.batch);
  auto a = make_resource("frontend", 100);
  auto b = make_resource("backend", 200);
  for (int round = 0; round < 10; ++round) {
    SpanBatch spans;
    for (int i = 0; i < 100; ++i) spans.push_back(make_http_span(static_cast<std::uint64_t>(round * 100 + i), i % 2 ? a : b));
    batcher.consume(std::move(spans));
  }
  batcher.flush();
  ASSERT_TRUE(receiver_->wait_for_spans(1000, 20s));
  d.stop();
  std::map<std::string, int> per_service;
  for (const auto& s : receiver_->received_spans()) {
    const auto* svc = testing::find_attribute(s.resource.attributes(), "service.name");
    ASSERT_NE(svc, nullptr);
    ++per_service[svc->string_value()];
    EXPECT_EQ(s.scope.name(), "edgetrace");
  }
  EXPECT_EQ(per_service["frontend"], 500);
  EXPECT_EQ(per_service["backend"], 500);
  EXPECT_EQ(counters_.exported_spans.load(), 1000u);
  EXPECT_EQ(receiver_->request_count(), (1000 + 63) / 64);
}

TEST_P(Delivery, OtlpExporterFromYamlAndEnvironment) {
  const auto cfg = parse_exporter_config(
      YAML::Load(std::string("protocol: ") + (grpc() ? "grpc" : "http/protobuf") +
                 "\nbatch: {max_spans: 10, max_delay_ms: 50}\nretry: {initial_backoff_ms: 10, max_backoff_ms: 40}\n"),
      testing::env_from({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver_->endpoint()},
                         {"OTEL_EXPORTER_OTLP_HEADERS", "x-scope=e2e"}}));
  receiver_->script({Reply::unavailable()});
  std::string status;
  {
    OtlpExporter exporter(cfg);
    auto r = make_resource("svc", 3);
    SpanBatch spans;
    for (int i = 0; i < 25; ++i) spans.push_back(make_http_span(static_cast<std::uint64_t>(i), r));
    exporter.consume(std::move(spans));
    exporter.shutdown();
    const auto c = exporter.counters().snapshot();
    EXPECT_EQ(c.exported_spans, 25u);
    EXPECT_EQ(c.retries, 1u);
    status = exporter.status_line();
  }
  EXPECT_EQ(receiver_->accepted_span_count(), 25u);
  EXPECT_EQ(receiver_->request_count(), 4u);  // 10 + 10 + 5, the first one twice
  EXPECT_EQ(receiver_->requests()[0].header("x-scope"), "e2e");
  EXPECT_NE(status.find("exported=25 spans/3 batches"), std::string::npos) << status;
  EXPECT_NE(status.find("retried=1"), std::string::npos) << status;
  EXPECT_NE(status.find("queue=0 batches"), std::string::npos) << status;
}

INSTANTIATE_TEST_SUITE_P(Transports, Delivery, ::testing::Values(Transport::Grpc, Transport::Http), name_of);

// ---- environment-driven endpoints against a live receiver -------------------------------

TEST(HttpEndpointFromEnvironment, BasePathGetsV1Traces) {
  HttpOtlpReceiver receiver;
  receiver.start();
  for (const std::string base_path : {"", "/", "/mycollector/", "/mycollector"}) {
    SCOPED_TRACE(base_path);
    receiver.clear();
    auto cfg = parse_exporter_config(
        YAML::Node(), testing::env_from({{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
                                         {"OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url() + base_path},
                                         {"OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken"}}));
    auto sender = make_sender(cfg);
    OtlpEncoder encoder;
    SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
    ASSERT_TRUE(sender->send(encoder.encode(spans)).ok());
    const auto reqs = receiver.requests();
    ASSERT_EQ(reqs.size(), 1u);
    const std::string prefix = base_path.starts_with("/mycollector") ? "/mycollector" : "";
    EXPECT_EQ(reqs[0].path, prefix + "/v1/traces");
    EXPECT_EQ(reqs[0].header("authorization"), "Bearer t0ken");
  }
  // The signal-specific variable is used as-is.
  receiver.clear();
  auto cfg = parse_exporter_config(YAML::Node(), testing::env_from({{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
                                                                    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.base_url() + "/custom/ingest"}}));
  OtlpEncoder encoder;
  SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
  ASSERT_TRUE(make_sender(cfg)->send(encoder.encode(spans)).ok());
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.requests()[0].path, "/custom/ingest");
}

TEST(HttpRetryAfter, HttpDateIsHonoured) {
  HttpOtlpReceiver receiver;
  receiver.start();
  // Three seconds ahead at one-second resolution: at least ~2 s minus however long the
  // exporter takes to see the answer, so asserting 1 s leaves a second of slack.
  const std::time_t when = std::time(nullptr) + 3;
  char date[64];
  std::tm tm{};
  gmtime_r(&when, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  receiver.script({Reply::service_unavailable(std::string(date)), Reply::ok()});

  ExporterConfig cfg;
  cfg.protocol = OtlpProtocol::HttpProtobuf;
  cfg.endpoint = receiver.endpoint();
  cfg.retry = {.initial_backoff = 10ms, .max_backoff = 40ms, .max_elapsed = 0ms};
  MemoryBatchQueue q({});
  OtlpEncoder encoder;
  SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
  q.push(encoder.encode(spans), 1);
  ExportCounters counters;
  auto sender = make_sender(cfg);
  Deliverer d(q, *sender, counters, cfg.retry, 2s);
  d.start();
  ASSERT_TRUE(receiver.wait_for_spans(1, 15s));
  d.stop();
  const auto reqs = receiver.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_GE(reqs[1].at - reqs[0].at, 1000ms);
}

// ---- TLS (gRPC receiver) ----------------------------------------------------------------

class GrpcTls : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI missing (scripts/setup.sh installs it)";
    server_ = testing::make_self_signed_certificate(dir_, "server");
    client_ = testing::make_self_signed_certificate(dir_, "client");
    other_ = testing::make_self_signed_certificate(dir_, "other");
  }

  SendResult send_once(GrpcOtlpReceiver& receiver, const OtlpTlsConfig& tls) {
    ExporterConfig cfg;
    cfg.protocol = OtlpProtocol::Grpc;
    cfg.endpoint = receiver.endpoint();
    cfg.timeout = 5s;
    cfg.tls = tls;
    auto sender = make_sender(cfg);
    OtlpEncoder encoder;
    SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
    return sender->send(encoder.encode(spans));
  }

  testing::TempDir dir_;
  testing::TestCertificate server_, client_, other_;
};

TEST_F(GrpcTls, CaFileTrustsTheReceiver) {
  GrpcOtlpReceiver receiver(testing::ReceiverTls{server_.cert_pem, server_.key_pem, {}});
  receiver.start();
  ASSERT_EQ(receiver.endpoint().rfind("https://", 0), 0u);
  const auto ok = send_once(receiver, {.ca_file = server_.cert_file});
  EXPECT_TRUE(ok.ok()) << ok.message;
  EXPECT_EQ(receiver.accepted_span_count(), 1u);

  // An unrelated CA must not verify: retryable (configuration may be fixed), nothing received.
  const auto wrong = send_once(receiver, {.ca_file = other_.cert_file});
  EXPECT_TRUE(wrong.retryable()) << wrong.message;
  EXPECT_EQ(receiver.request_count(), 1u);
}

TEST_F(GrpcTls, MutualTlsPresentsTheClientCertificate) {
  GrpcOtlpReceiver receiver(testing::ReceiverTls{server_.cert_pem, server_.key_pem, client_.cert_pem});
  receiver.start();
  const auto ok = send_once(receiver, {.ca_file = server_.cert_file, .cert_file = client_.cert_file, .key_file = client_.key_file});
  EXPECT_TRUE(ok.ok()) << ok.message;
  const auto without = send_once(receiver, {.ca_file = server_.cert_file});
  EXPECT_FALSE(without.ok());
  EXPECT_EQ(receiver.request_count(), 1u);
}

class HttpTls : public GrpcTls {
 protected:
  SendResult send_once(HttpOtlpReceiver& receiver, const OtlpTlsConfig& tls) {
    ExporterConfig cfg;
    cfg.protocol = OtlpProtocol::HttpProtobuf;
    cfg.endpoint = receiver.endpoint();
    cfg.timeout = 5s;
    cfg.tls = tls;
    auto sender = make_sender(cfg);
    OtlpEncoder encoder;
    SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
    return sender->send(encoder.encode(spans));
  }
};

TEST_F(HttpTls, CaFileTrustsTheReceiver) {
  HttpOtlpReceiver receiver(testing::ReceiverTls{server_.cert_pem, server_.key_pem, {}});
  receiver.start();
  ASSERT_EQ(receiver.endpoint().rfind("https://", 0), 0u);
  const auto ok = send_once(receiver, {.ca_file = server_.cert_file});
  EXPECT_TRUE(ok.ok()) << ok.message;
  EXPECT_EQ(receiver.accepted_span_count(), 1u);
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_TRUE(receiver.requests()[0].gzip);

  const auto wrong = send_once(receiver, {.ca_file = other_.cert_file});
  EXPECT_TRUE(wrong.retryable()) << wrong.message;
  EXPECT_EQ(receiver.request_count(), 1u);
}

TEST_F(HttpTls, MutualTlsPresentsTheClientCertificate) {
  HttpOtlpReceiver receiver(testing::ReceiverTls{server_.cert_pem, server_.key_pem, client_.cert_pem});
  receiver.start();
  const auto ok = send_once(receiver, {.ca_file = server_.cert_file, .cert_file = client_.cert_file, .key_file = client_.key_file});
  EXPECT_TRUE(ok.ok()) << ok.message;
  const auto without = send_once(receiver, {.ca_file = server_.cert_file});
  EXPECT_FALSE(without.ok());
  EXPECT_EQ(receiver.request_count(), 1u);
  // The receiver counts the refused handshake on its own thread, maybe after the client gave up.
  EXPECT_TRUE(wait_until([&] { return receiver.failed_handshakes() >= 1; }, 5s));
}

TEST(GrpcTarget, SchemeOrInsecureFlagDecidesTls) {
  EXPECT_EQ(GrpcSender::parse_target("http://c:4317", false).authority, "c:4317");
  EXPECT_FALSE(GrpcSender::parse_target("http://c:4317", false).secure);
  EXPECT_EQ(GrpcSender::parse_target("https://c:4317/", true).authority, "c:4317");
  EXPECT_TRUE(GrpcSender::parse_target("HTTPS://c:4317", true).secure);
  EXPECT_TRUE(GrpcSender::parse_target("c:4317", false).secure);
  EXPECT_FALSE(GrpcSender::parse_target("c:4317", true).secure);
  EXPECT_EQ(GrpcSender::parse_target("dns:///c:4317", true).authority, "dns:///c:4317");
}

TEST(GrpcTarget, InvalidMetadataIsAConfigError) {
  ExporterConfig cfg;
  cfg.headers = {{"X!Key", "v"}};
  EXPECT_THROW(make_sender(cfg), ConfigError);
  cfg.headers = {{"grpc-timeout", "1S"}};
  EXPECT_THROW(make_sender(cfg), ConfigError);
  cfg.headers = {{"x-key", "caf\xc3\xa9"}};
  EXPECT_THROW(make_sender(cfg), ConfigError);
  cfg.headers = {{"X-Key", "fine value"}};
  EXPECT_NO_THROW(make_sender(cfg));
}

TEST(GrpcTarget, NoSchemeWithInsecureReachesAPlaintextReceiver) {
  GrpcOtlpReceiver receiver;
  receiver.start();
  ExporterConfig cfg;
  cfg.endpoint = "127.0.0.1:" + std::to_string(receiver.port());
  cfg.tls.insecure = true;
  OtlpEncoder encoder;
  SpanBatch spans{make_http_span(1, make_resource("svc", 1))};
  const auto r = make_sender(cfg)->send(encoder.encode(spans));
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(receiver.accepted_span_count(), 1u);
}

}  // namespace
}  // namespace edgetrace
