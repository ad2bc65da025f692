#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/exchange.h"

namespace edgetrace::http {
namespace {

std::vector<std::optional<int>> statuses_by_request(const ParsedExchange& e) {
  std::vector<std::optional<int>> out;
  for (const auto& pair : e.pairing.pairs) {
    if (pair.response_index) {
      out.push_back(e.responses[*pair.response_index].status_code);
    } else {
      out.push_back(std::nullopt);
    }
  }
  return out;
}

TEST(PairExchange, PairsInOrderSkippingInterim) {
  const std::string req =
      "POST /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
      "GET /next HTTP/1.1\r\n\r\n";
  const std::string resp =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  const ParsedExchange e = parse_exchange(req, resp);
  ASSERT_EQ(e.requests.size(), 2u);
  ASSERT_EQ(e.responses.size(), 3u);
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{201, 404}));
  EXPECT_EQ(e.pairing.interim_responses, 1u);
  EXPECT_EQ(e.pairing.unpaired_requests, 0u);
  EXPECT_EQ(e.pairing.unpaired_responses, 0u);
}

TEST(PairExchange, ResponseSideCutLeavesLaterRequestsUnpaired) {
  const std::string req =
      "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
  // The second response's body runs past the capture: we cannot know where the third starts.
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 900\r\n\r\n<html>...";
  const ParsedExchange e = parse_exchange(req, resp);
  EXPECT_EQ(e.response_status.stop, ParseStop::TruncatedBody);
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{200, 500, std::nullopt}));
  EXPECT_EQ(e.pairing.unpaired_requests, 1u);
}

TEST(PairExchange, GarbageResponseSidePairsNothing) {
  const ParsedExchange e =
      parse_exchange("GET /a HTTP/1.1\r\n\r\n", std::string("\x17\x03\x03\x00\x20 garbage", 13));
  EXPECT_EQ(e.response_status.stop, ParseStop::NotHttp);
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{std::nullopt}));
}

TEST(PairExchange, RequestSideCutLeavesResponsesUnpaired) {
  const std::string req = "GET /a HTTP/1.1\r\n\r\nGE";
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  const ParsedExchange e = parse_exchange(req, resp);
  EXPECT_EQ(e.request_status.stop, ParseStop::TruncatedStartLine);
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{200}));
  EXPECT_EQ(e.pairing.unpaired_responses, 1u);
}

TEST(PairExchange, InterimAtTheEndIsNotFinal) {
  const ParsedExchange e = parse_exchange(
      "POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{std::nullopt}));
  EXPECT_EQ(e.pairing.interim_responses, 1u);
  EXPECT_EQ(e.pairing.unpaired_requests, 1u);
}

TEST(PairExchange, SwitchingProtocolsIsTheFinalAnswer) {
  const ParsedExchange e = parse_exchange(
      "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85xxxx",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{101}));
  EXPECT_EQ(e.response_status.stop, ParseStop::ProtocolSwitched);
  // The websocket frame after the upgrade request is not a request.
  EXPECT_EQ(e.request_status.stop, ParseStop::NotHttp);
}

TEST(PairExchange, CutRequestLineStillPairs) {
  const ParsedExchange e = parse_exchange("GET /reports?from=2024-01-01&to=2024-0",
                                          "HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(e.requests.size(), 1u);
  EXPECT_FALSE(e.requests[0].start_line_complete);
  EXPECT_EQ(statuses_by_request(e), (std::vector<std::optional<int>>{414}));
}

TEST(PairExchange, AllMessagesKnownNeedsTheWholeStream) {
  const std::string two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  ParseStatus status;
  (void)parse_requests(two, status);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  EXPECT_TRUE(status.all_messages_known(two.size()));
  // The capture ended on a boundary but the kernel saw more bytes: a third may exist.
  EXPECT_FALSE(status.all_messages_known(two.size() + 100));
  (void)parse_requests(two.substr(0, 25), status);
  EXPECT_FALSE(status.all_messages_known(25));
  (void)parse_responses("HTTP/1.0 200 OK\r\n\r\nbody of unknown length", status);
  EXPECT_TRUE(status.all_messages_known(100000));
}

TEST(PairExchange, EmptySides) {
  const Pairing p = pair_exchange({}, {});
  EXPECT_TRUE(p.pairs.empty());
  EXPECT_EQ(p.unpaired_requests, 0u);
  EXPECT_EQ(p.unpaired_responses, 0u);
}

}  // namespace
}  // namespace edgetrace::http
