// The record contract between the capture programs and the stitcher (bpf/edgetrace.h): the
// response prefix sits at response_offset, right after the request prefix, and the record
// ends with it. A record that breaks the contract is counted and dropped, never read past.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "edgetrace.h"
#include "stitch/exchange_stitcher.h"

namespace edgetrace {
namespace {

class CollectingSink : public SpanSink {
 public:
  void consume(SpanBatch spans) override {
    for (auto& s : spans) collected.push_back(std::move(s));
  }
  std::vector<Span> collected;
};

constexpr std::string_view kRequest = "GET /orders/7?full=1 HTTP/1.1\r\nHost: shop\r\n\r\n";
constexpr std::string_view kResponse = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

// A server exchange as the kernel sends it: header, request prefix, response prefix.
std::vector<std::byte> server_record(std::string_view request, std::string_view response,
                                     std::optional<std::uint16_t> response_offset = std::nullopt) {
  auto exchange = std::make_unique<et_http_exchange>();
  std::memset(exchange.get(), 0, sizeof(*exchange));
  exchange->record_type = ET_RECORD_HTTP1_EXCHANGE;
  exchange->connection_id = 1;
  exchange->tgid = static_cast<std::uint32_t>(getpid());
  exchange->tid = exchange->tgid;
  exchange->sequence = 1;
  exchange->role = ET_ROLE_SERVER;
  exchange->family = 2;  // AF_INET
  exchange->local_port = 8080;
  exchange->remote_port = 40000;
  exchange->request_start_ns = 1'000'000;
  exchange->response_end_ns = 3'000'000;
  exchange->request_captured = static_cast<std::uint16_t>(request.size());
  exchange->response_captured = static_cast<std::uint16_t>(response.size());
  exchange->response_offset = response_offset.value_or(exchange->request_captured);
  exchange->trace_flags = 1;
  exchange->trace_id[15] = 1;
  exchange->span_id[7] = 1;
  std::memcpy(exchange->data, request.data(), request.size());
  if (exchange->response_offset + response.size() <= sizeof(exchange->data))
    std::memcpy(exchange->data + exchange->response_offset, response.data(), response.size());
  const std::size_t size = std::min<std::size_t>(
      sizeof(et_http_exchange), ET_EXCHANGE_HEADER_SIZE + exchange->response_offset + exchange->response_captured);
  const auto* bytes = reinterpret_cast<const std::byte*>(exchange.get());
  return {bytes, bytes + size};
}

struct Stitching {
  ProcessResources resources{ResourceOptions{}};
  CollectingSink sink;
  ExchangeStitcher stitcher{resources, MonotonicToUnix(0), http::RouteMatcher(std::vector<std::string>{}), sink};

  void feed(const std::vector<std::byte>& record) {
    stitcher.on_record(std::span<const std::byte>(record));
    stitcher.deliver();
  }
};

TEST(ExchangeStitcher, ReadsTheResponseRightAfterTheRequestAndNothingMore) {
  Stitching s;
  const auto record = server_record(kRequest, kResponse);
  EXPECT_EQ(record.size(), ET_EXCHANGE_HEADER_SIZE + kRequest.size() + kResponse.size()) << "the record is compact";
  s.feed(record);
  ASSERT_EQ(s.sink.collected.size(), 1u);
  const auto& span = s.sink.collected[0];
  EXPECT_EQ(span.kind, SpanKind::Server);
  EXPECT_EQ(std::get<std::string>(*span.find_attribute("url.path")), "/orders/7");
  EXPECT_EQ(std::get<std::int64_t>(*span.find_attribute("http.response.status_code")), 404);
  EXPECT_EQ(s.stitcher.counters().malformed_records, 0u);
}

TEST(ExchangeStitcher, RequestWithoutResponseNeedsNoResponseBytes) {
  Stitching s;
  s.feed(server_record(kRequest, ""));
  ASSERT_EQ(s.sink.collected.size(), 1u);
  EXPECT_EQ(s.sink.collected[0].find_attribute("http.response.status_code"), nullptr);
  EXPECT_EQ(s.stitcher.counters().malformed_records, 0u);
}

TEST(ExchangeStitcher, RecordsBreakingTheLayoutAreCountedAndDropped) {
  Stitching s;
  // The response said to start inside the request prefix.
  s.feed(server_record(kRequest, kResponse, static_cast<std::uint16_t>(kRequest.size() - 1)));
  // A response offset beyond any capture.
  auto beyond = server_record(kRequest, kResponse);
  reinterpret_cast<et_http_exchange*>(beyond.data())->response_offset = ET_MAX_CAPTURE + 1;
  s.feed(beyond);
  // Cut short of the response prefix it announces.
  auto cut = server_record(kRequest, kResponse);
  cut.resize(cut.size() - 1);
  s.feed(cut);
  // Shorter than the header.
  s.feed(std::vector<std::byte>(ET_EXCHANGE_HEADER_SIZE - 1));
  EXPECT_TRUE(s.sink.collected.empty());
  EXPECT_EQ(s.stitcher.counters().malformed_records, 4u);
}

}  // namespace
}  // namespace edgetrace
