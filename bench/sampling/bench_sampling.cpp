// bench_sampling: spans per second through TailSampler on one core with a realistic mix
// (10 spans per trace, 1 % of traces with an error, default policies), and the peak memory
// with 100,000 traces in flight.
//
//   bench_sampling [--spans N] [--runs R] [--in-flight T]
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sampling/tail_sampler.h"

namespace {

using namespace edgetrace;
using Steady = std::chrono::steady_clock;

class CountingSink final : public SpanSink {
 public:
  void consume(SpanBatch spans) override { spans_received += spans.size(); }
  std::uint64_t spans_received = 0;
};

std::size_t proc_status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  return 0;
}

// Generates traces the way the stitcher emits them: a server root with nine children (client
// calls and internal work), children before the root because they end first, traces
// interleaved in groups as concurrent requests are.
class TraceGenerator {
 public:
  explicit TraceGenerator(std::uint64_t seed) : rng_(seed) {
    resource_ = std::make_shared<Resource>();
    resource_->attributes.push_back(Attribute{"service.name", std::string("checkout")});
    resource_->attributes.push_back(Attribute{"process.pid", std::int64_t{4242}});
  }

  // `traces` whole traces, spans of `concurrent` traces interleaved.
  SpanBatch batch(int traces, int concurrent, std::uint64_t& error_traces) {
    SpanBatch spans;
    spans.reserve(static_cast<std::size_t>(traces) * 10);
    for (int group = 0; group < traces; group += concurrent) {
      const int n = std::min(concurrent, traces - group);
      std::vector<std::vector<Span>> pending(static_cast<std::size_t>(n));
      for (auto& trace : pending) trace = make_trace(error_traces);
      for (std::size_t i = 0; i < 10; ++i)
        for (auto& trace : pending) spans.push_back(std::move(trace[i]));
    }
    return spans;
  }

 private:
  std::vector<Span> make_trace(std::uint64_t& error_traces) {
    TraceId trace{};
    const std::uint64_t a = rng_(), b = rng_();
    std::memcpy(trace.data(), &a, 8);
    std::memcpy(trace.data() + 8, &b, 8);
    const bool error = std::uniform_int_distribution<int>(0, 99)(rng_) == 0;
    error_traces += error ? 1 : 0;
    // Mostly fast requests; a tail beyond 200 ms.
    const std::uint64_t duration_ms = std::uniform_int_distribution<int>(0, 99)(rng_) < 3 ? 250 : 5 + rng_() % 60;
    const std::uint64_t start = 1'700'000'000'000'000'000ULL + (rng_() % 1'000'000'000ULL);
    std::vector<Span> spans;
    spans.reserve(10);
    for (int i = 0; i < 10; ++i) {
      Span span;
      span.trace_id = trace;
      const std::uint64_t id = rng_();
      std::memcpy(span.span_id.data(), &id, 8);
      span.resource = resource_;
      spans.push_back(std::move(span));
    }
    Span& root = spans[9];
    root.kind = SpanKind::Server;
    root.name = "POST /api/orders/{id}";
    root.start_unix_nanos = start;
    root.end_unix_nanos = start + duration_ms * 1'000'000;
    root.status = error ? StatusCode::Error : StatusCode::Unset;
    root.attributes = {{"http.request.method", std::string("POST")},
                       {"url.path", std::string("/api/orders/8c1f2e5d")},
                       {"http.route", std::string("/api/orders/{id}")},
                       {"http.response.status_code", std::int64_t{error ? 500 : 200}}};
    for (int i = 0; i < 9; ++i) {
      Span& child = spans[static_cast<std::size_t>(i)];
      child.parent_span_id = root.span_id;
      child.kind = i % 3 == 0 ? SpanKind::Internal : SpanKind::Client;
      child.name = i % 3 == 0 ? "render" : "GET /inventory/{sku}";
      child.start_unix_nanos = start + 1'000'000 + static_cast<std::uint64_t>(i) * 100'000;
      child.end_unix_nanos = child.start_unix_nanos + 500'000;
      if (child.kind == SpanKind::Client)
        child.attributes = {{"server.address", std::string("inventory.internal")},
                            {"http.response.status_code", std::int64_t{200}}};
    }
    return spans;
  }

  std::mt19937_64 rng_;
  std::shared_ptr<Resource> resource_;
};

struct ThroughputResult {
  double spans_per_second;
  std::uint64_t forwarded;
  std::uint64_t received;
};

// Feeds `total_spans` through a default-policy sampler in batches of 1000 spans; only
// consume()/flush() time is measured. Simulated time advances 1 ms per batch, so early
// decisions (root ended + 200 ms grace) happen as in production.
ThroughputResult run_throughput(std::uint64_t total_spans, std::uint64_t seed) {
  TraceGenerator generator(seed);
  CountingSink sink;
  Steady::time_point simulated{std::chrono::hours(1)};
  TailSampler sampler(default_tail_sampling_config(), sink, [&simulated] { return simulated; });
  std::uint64_t error_traces = 0;
  Steady::duration busy{};
  std::uint64_t fed = 0;
  constexpr int kTracesPerBatch = 100;  // 1000 spans
  std::vector<SpanBatch> chunk;
  while (fed < total_spans) {
    // Generate a chunk outside the timed region, then time feeding it.
    chunk.clear();
    for (int i = 0; i < 100 && fed + chunk.size() * 1000 < total_spans; ++i)
      chunk.push_back(generator.batch(kTracesPerBatch, 32, error_traces));
    const auto begin = Steady::now();
    for (auto& batch : chunk) {
      fed += batch.size();
      sampler.consume(std::move(batch));
      simulated += std::chrono::milliseconds(1);
      if (fed % 100'000 == 0) sampler.flush();
    }
    busy += Steady::now() - begin;
  }
  const auto begin = Steady::now();
  sampler.flush_all();
  busy += Steady::now() - begin;
  const auto c = sampler.counters();
  return {static_cast<double>(fed) / std::chrono::duration<double>(busy).count(), c.spans_forwarded, c.spans_received};
}

void run_in_flight(int traces) {
  TraceGenerator generator(7);
  CountingSink sink;
  Steady::time_point simulated{std::chrono::hours(1)};
  auto config = default_tail_sampling_config();
  config.num_traces = static_cast<std::size_t>(traces) * 2;
  config.max_bytes = std::size_t{4} << 30;
  // No decision while filling: every trace stays in flight.
  config.decision_wait = std::chrono::hours(1);
  config.early_decision_grace = std::chrono::hours(1);
  std::uint64_t error_traces = 0;
  const std::size_t rss_before = proc_status_kib("VmRSS");
  TailSampler sampler(config, sink, [&simulated] { return simulated; });
  for (int done = 0; done < traces; done += 100) sampler.consume(generator.batch(100, 32, error_traces));
  const std::size_t rss_full = proc_status_kib("VmRSS");
  fmt::print("in-flight: traces={} spans={} estimated_bytes={} ({:.1f} MiB) rss_growth={:.1f} MiB "
             "bytes_per_span_estimated={:.0f} bytes_per_span_rss={:.0f}\n",
             sampler.traces_in_flight(), sampler.counters().spans_received, sampler.bytes_in_flight(),
             static_cast<double>(sampler.bytes_in_flight()) / (1 << 20),
             static_cast<double>(rss_full - rss_before) / 1024.0,
             static_cast<double>(sampler.bytes_in_flight()) / static_cast<double>(sampler.counters().spans_received),
             static_cast<double>(rss_full - rss_before) * 1024.0 /
                 static_cast<double>(sampler.counters().spans_received));
  sampler.flush_all();
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t spans = 5'000'000;
  int runs = 5;
  int in_flight = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--spans") spans = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--runs") runs = std::atoi(argv[i + 1]);
    else if (flag == "--in-flight") in_flight = std::atoi(argv[i + 1]);
    else {
      fmt::print(stderr, "usage: bench_sampling [--spans N] [--runs R] [--in-flight T]\n");
      return 2;
    }
  }
  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    const auto result = run_throughput(spans, 1000 + static_cast<std::uint64_t>(run));
    rates.push_back(result.spans_per_second);
    fmt::print("run {}: {:.0f} spans/s (forwarded {} of {} spans, {:.1f}%)\n", run + 1, result.spans_per_second,
               result.forwarded, result.received,
               100.0 * static_cast<double>(result.forwarded) / static_cast<double>(result.received));
  }
  std::sort(rates.begin(), rates.end());
  fmt::print("throughput: median {:.0f} spans/s, min {:.0f}, max {:.0f} over {} runs of {} spans\n",
             rates[rates.size() / 2], rates.front(), rates.back(), runs, spans);
  run_in_flight(in_flight);
  return 0;
}
