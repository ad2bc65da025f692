// bench_spans: userspace CPU per span on the agent's hot path, on one core. Kernel exchange
// records (an nginx server exchange as wrk drives it, from 50 keep-alive connections) go
// through the same ExchangeStitcher and span writer the agent wires up for
// `run --output json`, written to /dev/null. Each figure is the median of R repetitions.
//
//   bench_spans [--records N] [--batch B] [--repetitions R] [--sink discard|json|console]
//     --batch: records between two deliver() calls (the agent delivers once per drain of the
//              ring buffer, i.e. thousands of records at a high request rate)
//     --sink: run only that case (for profiling one of them)
//   bench_spans --dump PREFIX
//     Writes PREFIX.json and PREFIX.console: the JSON and console output for a fixed mix of
//     records covering the stitcher's cases (pipelining, unknown requests and responses,
//     client spans, IPv6, escaping, routes...), so two builds can be compared with diff.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrace.h"
#include "output/span_writers.h"
#include "stitch/exchange_stitcher.h"

namespace {

using namespace edgetrace;
using Steady = std::chrono::steady_clock;

constexpr std::uint16_t kCapture = ET_DEFAULT_CAPTURE;

// The parts of a record that vary between the cases; the rest is filled in by make_record.
struct RecordSpec {
  std::string_view request;
  std::string_view response;
  std::uint64_t connection_id = 1;
  std::uint32_t sequence = 1;
  std::uint32_t flags = 0;
  std::uint8_t role = ET_ROLE_SERVER;
  std::uint32_t tgid = 0;  // 0: this process
  bool ipv6 = false;
  bool ipv4_mapped = false;
  std::uint16_t capture = kCapture;                   // per side, as the kernel's capture_bytes
  std::optional<std::uint16_t> response_offset;       // unset: right after the request, as the kernel writes it
  std::uint64_t request_bytes = 0;  // 0: the request's size
  std::uint64_t id_seed = 1;        // trace and span ids derive from it; 0: no kernel ids
  bool response_end_known = true;
};

std::vector<std::byte> make_record(const RecordSpec& spec) {
  auto exchange = std::make_unique<et_http_exchange>();
  std::memset(exchange.get(), 0, sizeof(*exchange));
  exchange->record_type = ET_RECORD_HTTP1_EXCHANGE;
  exchange->flags = spec.flags;
  exchange->connection_id = spec.connection_id;
  exchange->tgid = spec.tgid ? spec.tgid : static_cast<std::uint32_t>(getpid());
  exchange->tid = exchange->tgid + 1;
  exchange->fd = 7;
  exchange->sequence = spec.sequence;
  exchange->role = spec.role;
  const bool server = spec.role == ET_ROLE_SERVER;
  exchange->local_port = server ? 8080 : static_cast<std::uint16_t>(40000 + spec.connection_id % 20000);
  exchange->remote_port = server ? static_cast<std::uint16_t>(40000 + spec.connection_id % 20000) : 8080;
  if (spec.ipv6) {
    exchange->family = 10;  // AF_INET6
    exchange->local_addr[15] = 1;
    const std::uint8_t remote[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd};
    std::memcpy(exchange->remote_addr, remote, 16);
  } else if (spec.ipv4_mapped) {
    exchange->family = 10;
    const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7};
    std::memcpy(exchange->local_addr, mapped, 16);
    std::memcpy(exchange->remote_addr, mapped, 16);
    exchange->remote_addr[15] = 9;
  } else {
    exchange->family = 2;  // AF_INET
    const std::uint8_t loopback[4] = {127, 0, 0, 1};
    std::memcpy(exchange->local_addr, loopback, 4);
    std::memcpy(exchange->remote_addr, loopback, 4);
  }
  const std::uint64_t start = 1'000'000'000ULL * 3600 + spec.connection_id * 1'000'000 + spec.sequence * 10'000;
  exchange->request_start_ns = start;
  exchange->request_end_ns = start + 2'000;
  exchange->response_start_ns = start + 30'000;
  exchange->response_end_ns = spec.response_end_known ? start + 41'000 : 0;
  exchange->request_bytes = spec.request_bytes ? spec.request_bytes : spec.request.size();
  exchange->response_bytes = spec.response.size();
  exchange->request_captured = static_cast<std::uint16_t>(std::min<std::size_t>(spec.request.size(), spec.capture));
  exchange->response_captured = static_cast<std::uint16_t>(std::min<std::size_t>(spec.response.size(), spec.capture));
  exchange->response_offset = spec.response_offset.value_or(exchange->request_captured);
  std::memcpy(exchange->data, spec.request.data(), exchange->request_captured);
  std::memcpy(exchange->data + exchange->response_offset, spec.response.data(), exchange->response_captured);
  if (spec.id_seed) {
    exchange->trace_flags = 1;
    std::uint64_t x = spec.id_seed * 0x9E3779B97F4A7C15ULL;
    auto next = [&x] {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return static_cast<std::uint8_t>(x);
    };
    for (auto& b : exchange->trace_id) b = next();
    for (auto& b : exchange->span_id) b = next();
    if (spec.flags & ET_EXCHANGE_HAS_PARENT)
      for (auto& b : exchange->parent_span_id) b = next();
  }
  const std::size_t size = ET_EXCHANGE_HEADER_SIZE + exchange->response_offset + exchange->response_captured;
  std::vector<std::byte> record(size);
  std::memcpy(record.data(), exchange.get(), size);
  return record;
}

constexpr std::string_view kNginxRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n";
constexpr std::string_view kNginxResponse =
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 14 May 2024 10:00:00 GMT\r\n"
    "Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n";

// Swallows batches: the stitcher's share alone (span destruction included).
class DiscardingSink final : public SpanSink {
 public:
  void consume(SpanBatch spans) override { spans_received += spans.size(); }
  std::uint64_t spans_received = 0;
};

std::FILE* open_or_die(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot open " + path);
  return f;
}

// ns per span for `records` records through the stitcher into `sink`, delivering every `batch`.
double run_once(const std::vector<std::vector<std::byte>>& workload, std::size_t records, std::size_t batch,
                SpanSink& sink, ProcessResources& resources) {
  ExchangeStitcher stitcher(resources, MonotonicToUnix(1'700'000'000'000'000'000LL), http::RouteMatcher{}, sink);
  const auto begin = Steady::now();
  for (std::size_t i = 0; i < records; ++i) {
    stitcher.on_record(workload[i % workload.size()]);
    if ((i + 1) % batch == 0) stitcher.deliver();
  }
  stitcher.deliver();
  sink.flush();
  const auto elapsed = std::chrono::duration<double, std::nano>(Steady::now() - begin).count();
  if (stitcher.counters().spans != records) throw std::runtime_error("workload records did not all become spans");
  return elapsed / static_cast<double>(records);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void benchmark(std::size_t records, std::size_t batch, int repetitions, std::string_view only_sink) {
  // 50 keep-alive connections taking turns, as wrk -c50 drives them.
  std::vector<std::vector<std::byte>> workload;
  for (std::uint32_t i = 0; i < 4096; ++i)
    workload.push_back(make_record({.request = kNginxRequest, .response = kNginxResponse, .connection_id = 1 + i % 50,
                                    .sequence = 1 + i / 50, .id_seed = 1 + i}));
  ProcessResources resources(ResourceOptions{});
  std::FILE* devnull = open_or_die("/dev/null");
  DiscardingSink discard;
  JsonSpanWriter json(devnull);
  ConsoleSpanWriter console(devnull);
  struct Case {
    std::string_view id;
    const char* name;
    SpanSink* sink;
  };
  std::printf("%zu records per run, deliver every %zu, median of %d runs\n", records, batch, repetitions);
  for (const Case& c : {Case{"discard", "stitch only (spans discarded)", &discard},
                        Case{"json", "stitch + JSON lines", &json}, Case{"console", "stitch + console lines", &console}}) {
    if (!only_sink.empty() && only_sink != c.id) continue;
    run_once(workload, std::min<std::size_t>(records, 20'000), batch, *c.sink, resources);  // warm-up
    std::vector<double> ns;
    for (int r = 0; r < repetitions; ++r) ns.push_back(run_once(workload, records, batch, *c.sink, resources));
    std::printf("  %-32s %8.0f ns/span\n", c.name, median(ns));
  }
  std::fclose(devnull);
}

// Every case the stitcher distinguishes, in one deterministic sequence (all ids from the
// kernel so the output is the same run after run).
std::vector<std::vector<std::byte>> dump_records() {
  static const std::string escaped_request =
      "GET /caf\xc3\xa9/\"q\"\\x?a=1&b=%20z HTTP/1.1\r\nHost: shop.example\r\n"
      "User-Agent: agent \"quoted\" \\ tab\there \xff\r\n"
      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "tracestate: congo=t61rcWkgMzE\r\ntracestate: rojo=00f067aa0ba902b7\r\n\r\n";
  static const std::string pipelined_requests =
      "GET /first HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nPOST /second HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
      "Content-Length: 3\r\n\r\nabcHEAD /third HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
  static const std::string long_request = "GET /" + std::string(600, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::uint32_t self = 0;
  const std::uint32_t init = 1;
  const std::uint32_t gone = 4'000'000;  // above pid_max on any default system: no /proc entry
  std::vector<RecordSpec> specs = {
      {.request = kNginxRequest, .response = kNginxResponse, .connection_id = 1, .id_seed = 11},
      {.request = escaped_request, .response = "HTTP/1.1 204 No Content\r\n\r\n", .connection_id = 2,
       .flags = ET_EXCHANGE_HAS_PARENT, .id_seed = 12},
      {.request = "GET /users/42?x=y HTTP/1.1\r\nHost: [::1]:9090\r\n\r\n",
       .response = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", .connection_id = 3, .ipv6 = true,
       .id_seed = 13},
      {.request = "GET /static/css/site.css HTTP/1.0\r\n\r\n", .response = "HTTP/1.0 404 Not Found\r\n\r\n",
       .connection_id = 4, .ipv4_mapped = true, .id_seed = 14},
      {.request = "GET /users/7 HTTP/1.1\r\nHost: api.example:81\r\nUser-Agent: curl/8.0\r\n\r\n",
       .response = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", .connection_id = 5,
       .role = ET_ROLE_CLIENT, .tgid = init, .id_seed = 15},
      {.request = "GET http://proxy.example/a/b?c=d HTTP/1.1\r\nHost: ignored.example\r\n\r\n",
       .response = "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", .connection_id = 6,
       .flags = ET_EXCHANGE_HAS_PARENT, .role = ET_ROLE_CLIENT, .id_seed = 16},
      {.request = "POST /upload HTTP/1.1\r\n\r\n", .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
       .connection_id = 7, .role = ET_ROLE_CLIENT, .ipv6 = true, .id_seed = 17},
      // Three pipelined requests: the first record holds the first response, the next two follow.
      {.request = pipelined_requests, .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", .connection_id = 8,
       .sequence = 1, .id_seed = 18},
      {.request = pipelined_requests,
       .response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", .connection_id = 8,
       .sequence = 2, .flags = ET_EXCHANGE_PIPELINED, .id_seed = 19},
      {.request = pipelined_requests, .response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", .connection_id = 8,
       .sequence = 3, .flags = ET_EXCHANGE_PIPELINED | ET_EXCHANGE_CLOSED, .id_seed = 20},
      // A response whose request was never captured (joined mid-stream).
      {.request = "", .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", .connection_id = 9,
       .flags = ET_EXCHANGE_JOINED_MIDSTREAM, .tgid = gone, .id_seed = 21},
      // Pipelined record with nothing pending.
      {.request = "", .response = "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", .connection_id = 10,
       .flags = ET_EXCHANGE_PIPELINED, .id_seed = 22},
      // Closed before a response.
      {.request = "DELETE /items/3 HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n", .response = "", .connection_id = 11,
       .flags = ET_EXCHANGE_NO_RESPONSE | ET_EXCHANGE_CLOSED, .id_seed = 23, .response_end_known = false},
      // A response that is not HTTP.
      {.request = "GET /odd HTTP/1.1\r\nHost: h:notaport\r\n\r\n", .response = "SSH-2.0-OpenSSH\r\n",
       .connection_id = 12, .id_seed = 24},
      // Not HTTP at all: no span.
      {.request = "\x16\x03\x01\x02\x00", .response = "", .connection_id = 13, .id_seed = 25},
      // A request longer than the capture.
      {.request = long_request, .response = "HTTP/1.1 414 URI Too Long\r\n\r\n", .connection_id = 14, .id_seed = 26},
      // Two requests, capture cut inside the second.
      {.request = pipelined_requests, .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", .connection_id = 15,
       .capture = 64, .request_bytes = 400, .id_seed = 27},
      {.request = "OPTIONS * HTTP/1.1\r\nHost: example.com:65536\r\n\r\n",
       .response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", .connection_id = 16, .role = ET_ROLE_CLIENT,
       .id_seed = 28},
      {.request = "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
       .response = "HTTP/1.1 200 Connection established\r\n\r\n", .connection_id = 17, .role = ET_ROLE_CLIENT,
       .id_seed = 29},
      {.request = kNginxRequest, .response = kNginxResponse, .connection_id = 1, .sequence = 2, .tgid = self,
       .id_seed = 30},
  };
  std::vector<std::vector<std::byte>> records;
  for (const auto& spec : specs) records.push_back(make_record(spec));
  // Malformed: shorter than a record header, and a response offset beyond the maximum.
  records.push_back(std::vector<std::byte>(16));
  auto oversized = make_record(specs[0]);
  reinterpret_cast<et_http_exchange*>(oversized.data())->response_offset = ET_MAX_CAPTURE * 2;
  records.push_back(std::move(oversized));
  return records;
}

void dump(const std::string& prefix) {
  const auto records = dump_records();
  ProcessResources resources(ResourceOptions{});
  std::FILE* json_file = open_or_die(prefix + ".json");
  std::FILE* console_file = open_or_die(prefix + ".console");
  JsonSpanWriter json(json_file);
  ConsoleSpanWriter console(console_file);
  for (SpanSink* sink : {static_cast<SpanSink*>(&json), static_cast<SpanSink*>(&console)}) {
    ExchangeStitcher stitcher(resources, MonotonicToUnix(1'700'000'000'000'000'000LL),
                              http::RouteMatcher({"/users/{id}", "/static/**"}), *sink);
    for (std::size_t i = 0; i < records.size(); ++i) {
      stitcher.on_record(records[i]);
      if (i % 3 == 2) stitcher.deliver();  // batches of several spans as well as single ones
    }
    stitcher.deliver();
    sink->flush();
    const auto& c = stitcher.counters();
    std::fprintf(stderr, "records=%lu spans=%lu malformed=%lu unparsable=%lu responses_unknown=%lu beyond=%lu truncated=%lu\n",
                 static_cast<unsigned long>(c.records), static_cast<unsigned long>(c.spans),
                 static_cast<unsigned long>(c.malformed_records), static_cast<unsigned long>(c.unparsable_exchanges),
                 static_cast<unsigned long>(c.responses_unknown), static_cast<unsigned long>(c.requests_beyond_capture),
                 static_cast<unsigned long>(c.truncated_request_captures));
  }
  std::fclose(json_file);
  std::fclose(console_file);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t records = 500'000;
  std::size_t batch = 2048;
  int repetitions = 5;
  std::string dump_prefix;
  std::string only_sink;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!value) {
      std::fprintf(stderr, "%s needs a value\n", argv[i]);
      return 2;
    }
    if (arg == "--records") records = std::strtoull(value, nullptr, 10);
    else if (arg == "--batch") batch = std::max<std::size_t>(1, std::strtoull(value, nullptr, 10));
    else if (arg == "--repetitions") repetitions = std::max(1, std::atoi(value));
    else if (arg == "--dump") dump_prefix = value;
    else if (arg == "--sink") only_sink = value;
    else {
      std::fprintf(stderr, "usage: bench_spans [--records N] [--batch B] [--repetitions R] [--sink discard|json|console] | --dump PREFIX\n");
      return 2;
    }
    ++i;
  }
  if (!dump_prefix.empty()) {
    dump(dump_prefix);
    return 0;
  }
  benchmark(records, batch, repetitions, only_sink);
  return 0;
}
