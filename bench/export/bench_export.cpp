// OTLP export throughput.
//   bench_export [--seconds S] [--repetitions R] [--e2e-spans N] [--e2e-compression gzip|none]
// 1. Encoding on one core: realistic HTTP server/client spans (8 attributes each, 4
//    process resources) → ExportTraceServiceRequest bytes, batches of 512, with the
//    wire encoder (OtlpEncoder) and, for comparison, with protobuf's generated messages
//    on an arena. Also gzip of the encoded batches.
// 2. End to end: Batcher → MemoryBatchQueue → Deliverer → sender → loopback receiver,
//    for OTLP/gRPC and OTLP/HTTP (gzip on), spans/s delivered.
// Each figure is the median of R repetitions.
#include <google/protobuf/arena.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "export/batcher.h"
#include "export/deliverer.h"
#include "export/gzip.h"
#include "export/memory_batch_queue.h"
#include "export/otlp_encoder.h"
#include "export/otlp_sender.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#ifdef EDGETRACE_BENCH_E2E
#include "otlp_test_receivers.h"
#endif

namespace {

using namespace edgetrace;
using Clock = std::chrono::steady_clock;
namespace pb = opentelemetry::proto;

constexpr std::size_t kBatch = 512;

std::vector<Span> make_spans(std::size_t n) {
  std::vector<std::shared_ptr<const Resource>> resources;
  for (int i = 0; i < 4; ++i) {
    auto r = std::make_shared<Resource>();
    r->pid = static_cast<std::uint32_t>(1000 + i);
    r->attributes = {{"service.name", "service-" + std::to_string(i)},
                     {"host.name", std::string("node-17.prod.example")},
                     {"process.executable.name", std::string("python3")},
                     {"telemetry.sdk.name", std::string("edgetrace")}};
    resources.push_back(std::move(r));
  }
  const char* routes[] = {"/api/v1/orders/{id}", "/api/v1/cart", "/healthz", "/api/v1/users/{id}/profile"};
  std::vector<Span> spans(n);
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (std::size_t i = 0; i < n; ++i) {
    Span& s = spans[i];
    for (auto& b : s.trace_id) b = static_cast<std::uint8_t>(next());
    for (auto& b : s.span_id) b = static_cast<std::uint8_t>(next());
    if (i % 2) for (auto& b : s.parent_span_id) b = static_cast<std::uint8_t>(next());
    const bool server = i % 3 != 0;
    const char* route = routes[i % 4];
    s.kind = server ? SpanKind::Server : SpanKind::Client;
    s.name = std::string(server ? "GET " : "POST ") + route;
    s.start_unix_nanos = 1'700'000'000'000'000'000ULL + i * 1'000'000;
    s.end_unix_nanos = s.start_unix_nanos + 250'000 + next() % 5'000'000;
    const std::int64_t code = i % 50 == 0 ? 503 : 200;
    if (code >= 500) s.status = StatusCode::Error;
    s.attributes = {
        {"http.request.method", std::string(server ? "GET" : "POST")},
        {"url.path", std::string(route) + "?page=" + std::to_string(i % 10)},
        {"http.route", std::string(route)},
        {"http.response.status_code", code},
        {"server.address", std::string("orders.internal.example")},
        {"server.port", std::int64_t{8080}},
        {"network.peer.address", std::string("10.12.") + std::to_string(i % 256) + "." + std::to_string((i / 256) % 256)},
        {"user_agent.original", std::string("python-requests/2.31.0")},
    };
    s.resource = resources[i % resources.size()];
  }
  return spans;
}

// Builds the request with generated messages on an arena: what the encoder would cost
// without the hand-written wire writer.
void encode_with_messages(std::span<const Span> spans, std::string& out) {
  google::protobuf::Arena arena;
  auto* req = google::protobuf::Arena::CreateMessage<pb::collector::trace::v1::ExportTraceServiceRequest>(&arena);
  std::vector<std::pair<const Resource*, pb::trace::v1::ScopeSpans*>> groups;
  auto set_value = [](pb::common::v1::AnyValue* v, const AttributeValue& a) {
    std::visit(
        [v](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) v->set_string_value(x);
          else if constexpr (std::is_same_v<T, std::int64_t>) v->set_int_value(x);
          else if constexpr (std::is_same_v<T, double>) v->set_double_value(x);
          else v->set_bool_value(x);
        },
        a);
  };
  for (const auto& s : spans) {
    pb::trace::v1::ScopeSpans* ss = nullptr;
    for (auto& [r, g] : groups)
      if (r == s.resource.get()) ss = g;
    if (ss == nullptr) {
      auto* rs = req->add_resource_spans();
      for (const auto& a : s.resource->attributes) {
        auto* kv = rs->mutable_resource()->add_attributes();
        kv->set_key(a.key.data(), a.key.size());
        set_value(kv->mutable_value(), a.value);
      }
      ss = rs->add_scope_spans();
      ss->mutable_scope()->set_name("edgetrace");
      ss->mutable_scope()->set_version(std::string(edgetrace_version()));
      groups.emplace_back(s.resource.get(), ss);
    }
    auto* p = ss->add_spans();
    p->set_trace_id(s.trace_id.data(), s.trace_id.size());
    p->set_span_id(s.span_id.data(), s.span_id.size());
    if (!s.is_root()) p->set_parent_span_id(s.parent_span_id.data(), s.parent_span_id.size());
    p->set_name(s.name);
    p->set_kind(static_cast<pb::trace::v1::Span::SpanKind>(s.kind));
    p->set_start_time_unix_nano(s.start_unix_nanos);
    p->set_end_time_unix_nano(s.end_unix_nanos);
    p->set_flags(s.trace_flags);
    for (const auto& a : s.attributes) {
      auto* kv = p->add_attributes();
      kv->set_key(a.key.data(), a.key.size());
      set_value(kv->mutable_value(), a.value);
    }
    if (s.status != StatusCode::Unset) p->mutable_status()->set_code(static_cast<pb::trace::v1::Status::StatusCode>(s.status));
  }
  req->SerializeToString(&out);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double spans_per_second(const std::vector<Span>& spans, double seconds, F&& encode_batch, std::size_t* bytes_out = nullptr) {
  std::size_t done = 0, bytes = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    for (std::size_t off = 0; off + kBatch <= spans.size(); off += kBatch) {
      bytes += encode_batch(std::span<const Span>(spans).subspan(off, kBatch));
      done += kBatch;
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (bytes_out) *bytes_out = bytes / std::max<std::size_t>(done, 1);
  return static_cast<double>(done) / elapsed;
}

#ifdef EDGETRACE_BENCH_E2E
double end_to_end(OtlpProtocol protocol, OtlpCompression compression, const std::vector<Span>& spans, std::size_t total) {
  std::unique_ptr<testing::OtlpReceiver> receiver;
  if (protocol == OtlpProtocol::Grpc)
    receiver = std::make_unique<testing::GrpcOtlpReceiver>();
  else
    receiver = std::make_unique<testing::HttpOtlpReceiver>();
  receiver->start();
  ExporterConfig cfg;
  cfg.protocol = protocol;
  cfg.endpoint = receiver->endpoint();
  cfg.batch.max_spans = kBatch;
  cfg.compression = compression;
  MemoryBatchQueue queue(cfg.memory_queue);
  ExportCounters counters;
  auto sender = make_sender(cfg);
  Deliverer deliverer(queue, *sender, counters, cfg.retry, cfg.drain_timeout);
  Batcher batcher(queue, counters, cfg.batch);
  const auto start = Clock::now();
  deliverer.start();
  // Produce no faster than delivery drains (a short queue), so the figure is the
  // sustainable rate rather than the queue's fill rate.
  for (std::size_t sent = 0; sent < total; sent += spans.size()) {
    while (queue.stats().depth_batches > 32) std::this_thread::sleep_for(std::chrono::microseconds(200));
    batcher.consume(SpanBatch(spans.begin(), spans.end()));
  }
  batcher.flush();
  const std::size_t expected = (total + spans.size() - 1) / spans.size() * spans.size();
  if (!receiver->wait_for_spans(expected, std::chrono::minutes(2)) || counters.dropped_spans.load() != 0)
    std::fprintf(stderr, "end-to-end: incomplete (%zu of %zu spans, %llu dropped)\n", receiver->accepted_span_count(),
                 expected, static_cast<unsigned long long>(counters.dropped_spans.load()));
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  deliverer.stop();
  receiver->stop();
  return static_cast<double>(expected) / elapsed;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  int repetitions = 5;
  [[maybe_unused]] std::size_t e2e_spans = 200'000;
  [[maybe_unused]] OtlpCompression e2e_compression = OtlpCompression::Gzip;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::stod(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repetitions")) repetitions = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--e2e-spans")) e2e_spans = std::stoull(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--e2e-compression") && !std::strcmp(argv[i + 1], "none")) e2e_compression = OtlpCompression::None;
    else if (!std::strcmp(argv[i], "--e2e-compression") && !std::strcmp(argv[i + 1], "gzip")) e2e_compression = OtlpCompression::Gzip;
    else {
      std::fprintf(stderr, "usage: %s [--seconds S] [--repetitions R] [--e2e-spans N] [--e2e-compression gzip|none]\n", argv[0]);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  const auto spans = make_spans(8 * kBatch);

  OtlpEncoder encoder;
  std::string out;
  GzipCompressor gzip;
  GzipCompressor gzip_fast(Z_BEST_SPEED);
  std::string compressed;
  std::vector<double> wire, messages, gz, gz_fast;
  std::size_t bytes_per_span = 0, gz_bytes_per_span = 0, gz_fast_bytes_per_span = 0;
  for (int r = 0; r < repetitions; ++r) {
    wire.push_back(spans_per_second(spans, seconds, [&](std::span<const Span> b) { encoder.encode_into(b, out); return out.size(); }, &bytes_per_span));
    messages.push_back(spans_per_second(spans, seconds, [&](std::span<const Span> b) { encode_with_messages(b, out); return out.size(); }));
    gz.push_back(spans_per_second(spans, seconds, [&](std::span<const Span> b) {
      encoder.encode_into(b, out);
      gzip.compress(out, compressed);
      return compressed.size();
    }, &gz_bytes_per_span));
    gz_fast.push_back(spans_per_second(spans, seconds, [&](std::span<const Span> b) {
      encoder.encode_into(b, out);
      gzip_fast.compress(out, compressed);
      return compressed.size();
    }, &gz_fast_bytes_per_span));
  }
  std::printf("encode  OtlpEncoder (wire writer)      : %10.0f spans/s  (%zu B/span, batches of %zu, median of %d)\n",
              median(wire), bytes_per_span, kBatch, repetitions);
  std::printf("encode  generated messages on arena   : %10.0f spans/s  (ratio wire/messages %.2fx)\n", median(messages),
              median(wire) / median(messages));
  std::printf("encode+gzip (zlib default level 6)     : %10.0f spans/s  (%zu B/span compressed)\n", median(gz), gz_bytes_per_span);
  std::printf("encode+gzip (zlib level 1, HttpSender) : %10.0f spans/s  (%zu B/span compressed)\n", median(gz_fast), gz_fast_bytes_per_span);
#ifdef EDGETRACE_BENCH_E2E
  std::vector<double> grpc, http;
  for (int r = 0; r < repetitions; ++r) {
    grpc.push_back(end_to_end(OtlpProtocol::Grpc, e2e_compression, spans, e2e_spans));
    http.push_back(end_to_end(OtlpProtocol::HttpProtobuf, e2e_compression, spans, e2e_spans));
  }
  const char* comp = e2e_compression == OtlpCompression::Gzip ? "gzip" : "none";
  std::printf("end-to-end OTLP/gRPC  loopback, %-4s   : %10.0f spans/s  (%zu spans, median of %d)\n", comp, median(grpc), e2e_spans, repetitions);
  std::printf("end-to-end OTLP/HTTP  loopback, %-4s   : %10.0f spans/s  (%zu spans, median of %d)\n", comp, median(http), e2e_spans, repetitions);
#else
  std::printf("end-to-end: skipped (configure with EDGETRACE_BUILD_TESTS=ON for the loopback receivers)\n");
#endif
  return 0;
}
