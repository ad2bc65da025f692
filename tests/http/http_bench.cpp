// Throughput of parsing kernel-sized captures. Prints the median over repetitions of the
// thread CPU time per operation: on a shared machine, time spent descheduled is not counted and
// the remaining noise shows up as spread (min/max), not as a wrong median.
//   http_bench [repetitions=15]
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "http/exchange.h"
#include "http/route_matcher.h"

namespace {

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// Keeps the optimiser from discarding results.
volatile std::size_t g_sink = 0;

struct Result {
  double median_ns;
  double min_ns;
  double max_ns;
};

Result measure(int repetitions, std::size_t iterations, const std::function<std::size_t()>& op) {
  for (std::size_t i = 0; i < iterations / 10 + 1; ++i) g_sink = g_sink + op();  // warm-up
  std::vector<double> per_op;
  for (int r = 0; r < repetitions; ++r) {
    const double start = thread_cpu_ns();
    std::size_t acc = 0;
    for (std::size_t i = 0; i < iterations; ++i) acc += op();
    const double elapsed = thread_cpu_ns() - start;
    g_sink = g_sink + acc;
    per_op.push_back(elapsed / static_cast<double>(iterations));
  }
  std::sort(per_op.begin(), per_op.end());
  return {per_op[per_op.size() / 2], per_op.front(), per_op.back()};
}

void report(const char* name, std::size_t bytes, const Result& r) {
  const double mb_per_s = bytes > 0 ? static_cast<double>(bytes) / r.median_ns * 1e3 : 0.0;
  std::printf("%-44s %6zu B %10.0f ns/op (min %8.0f, max %8.0f) %8.1f MB/s\n", name, bytes,
              r.median_ns, r.min_ns, r.max_ns, mb_per_s);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace edgetrace::http;
  const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 15;

  const std::string get =
      "GET /api/v1/users/12345/orders?page=2&limit=50 HTTP/1.1\r\n"
      "Host: shop.internal:8080\r\n"
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0\r\n"
      "Accept: application/json\r\n"
      "Accept-Encoding: gzip, deflate, br\r\n"
      "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
      "tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\r\n"
      "Cookie: session=0123456789abcdef0123456789abcdef\r\n"
      "Connection: keep-alive\r\n"
      "\r\n";
  const std::string response =
      "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 14:00:00 GMT\r\n"
      "Content-Type: application/json\r\nContent-Length: 27\r\nConnection: keep-alive\r\n\r\n"
      "{\"orders\": [], \"page\": 2}\r\n";
  const std::string pipelined =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
      "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n";
  const std::string chunked_response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + [] {
        std::string body;
        for (int i = 0; i < 20; ++i) body += "10\r\n0123456789abcdef\r\n";
        return body + "0\r\n\r\n";
      }();
  const std::string tls("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  const std::string truncated = get.substr(0, 200);

  std::vector<std::string> patterns;
  for (int i = 0; i < 20; ++i) patterns.push_back("/svc" + std::to_string(i) + "/items/{id}");
  patterns.push_back("/api/v1/users/{id}/orders");
  patterns.push_back("/static/**");
  const RouteMatcher routes(patterns);

  const std::size_t n = 20000;
  std::printf("http_bench: median of %d repetitions\n", repetitions);
  report("parse_requests GET with 9 headers", get.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_requests(get, s).size();
         }));
  ParseOptions no_generic_headers;
  no_generic_headers.max_headers = 0;
  report("parse_requests GET, max_headers = 0", get.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_requests(get, s, no_generic_headers).size();
         }));
  report("parse_requests 3 pipelined (CL + chunked)", pipelined.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_requests(pipelined, s).size();
         }));
  report("parse_requests truncated at 200 B", truncated.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_requests(truncated, s).size();
         }));
  report("parse_requests TLS ClientHello (rejected)", tls.size(), measure(repetitions, n * 10, [&] {
           ParseStatus s;
           return parse_requests(tls, s).size() + static_cast<std::size_t>(s.stop);
         }));
  report("parse_responses 200 with body", response.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_responses(response, s).size();
         }));
  report("parse_responses chunked, 21 chunks", chunked_response.size(), measure(repetitions, n, [&] {
           ParseStatus s;
           return parse_responses(chunked_response, s).size();
         }));
  report("parse_exchange GET + 200", get.size() + response.size(), measure(repetitions, n, [&] {
           return parse_exchange(get, response).pairing.pairs.size();
         }));
  report("RouteMatcher::match, 22 patterns, hit #21", 0, measure(repetitions, n * 10, [&] {
           return routes.match("/api/v1/users/12345/orders").has_value() ? 1u : 0u;
         }));
  report("RouteMatcher::match, 22 patterns, miss", 0, measure(repetitions, n * 10, [&] {
           return routes.match("/nothing/here/at/all").has_value() ? 1u : 0u;
         }));
  return 0;
}
