#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"

namespace edgetrace::http {
namespace {

std::vector<ParsedRequest> requests_with_methods(const std::vector<std::string>& methods) {
  std::vector<ParsedRequest> requests;
  for (const auto& m : methods) {
    ParsedRequest r;
    r.method = m;
    requests.push_back(r);
  }
  return requests;
}

TEST(ResponseParser, SimpleResponseWithBody) {
  const std::string bytes =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  ParseStatus status;
  const auto responses = parse_responses(bytes, status);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  EXPECT_EQ(status.consumed, bytes.size());
  const ParsedResponse& r = responses[0];
  EXPECT_EQ(r.version, "1.1");
  EXPECT_EQ(r.status_code, 200);
  EXPECT_EQ(r.reason, "OK");
  ASSERT_TRUE(r.content_length);
  EXPECT_EQ(*r.content_length, 5u);
  EXPECT_FALSE(r.chunked);
  EXPECT_TRUE(r.start_line_complete);
  EXPECT_TRUE(r.head_complete);
  EXPECT_TRUE(r.body_complete);
  EXPECT_FALSE(r.informational());
  ASSERT_NE(r.find_header("content-type"), nullptr);
  EXPECT_EQ(r.find_header("CONTENT-TYPE")->value, "text/plain");
}

struct ResponseCase {
  std::string name;
  std::string bytes;
  std::vector<std::string> request_methods;
  std::vector<int> statuses;
  ParseStop stop;
};

class ResponseSequenceTest : public testing::TestWithParam<ResponseCase> {};

TEST_P(ResponseSequenceTest, FramesEachResponse) {
  const ResponseCase& c = GetParam();
  const auto requests = requests_with_methods(c.request_methods);
  ParseStatus status;
  const auto responses = parse_responses(c.bytes, status, requests);
  std::vector<int> statuses;
  for (const auto& r : responses) statuses.push_back(r.status_code);
  EXPECT_EQ(statuses, c.statuses);
  EXPECT_EQ(status.stop, c.stop) << to_string(status.stop);
  if (c.stop == ParseStop::Complete) { EXPECT_EQ(status.consumed, c.bytes.size()); }
}

INSTANTIATE_TEST_SUITE_P(
    Sequences, ResponseSequenceTest,
    testing::Values(
        ResponseCase{"NoReasonPhrase", "HTTP/1.1 204\r\n\r\n", {}, {204}, ParseStop::Complete},
        ResponseCase{"EmptyReasonPhrase", "HTTP/1.1 204 \r\n\r\n", {}, {204}, ParseStop::Complete},
        ResponseCase{"Http10WithLength", "HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nno", {},
                     {404}, ParseStop::Complete},
        ResponseCase{"NoLengthMeansUntilClose", "HTTP/1.0 200 OK\r\n\r\nall the rest HTTP/1.1 200", {},
                     {200}, ParseStop::BodyUntilClose},
        ResponseCase{"UnknownTransferCodingMeansUntilClose",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b", {}, {200},
                     ParseStop::BodyUntilClose},
        ResponseCase{"NoContentHasNoBody",
                     "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", {},
                     {204, 200}, ParseStop::Complete},
        ResponseCase{"NotModifiedIgnoresContentLength",
                     "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                     {}, {304, 200}, ParseStop::Complete},
        ResponseCase{"HeadResponseHasNoBody",
                     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
                     {"HEAD", "GET"}, {200, 200}, ParseStop::Complete},
        ResponseCase{"HeadResponseWithoutKnownRequestIsFramedByLength",
                     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", {},
                     {200}, ParseStop::TruncatedBody},
        ResponseCase{"HeadChunkedResponseHasNoBody",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 201 Created\r\n"
                     "Content-Length: 0\r\n\r\n",
                     {"HEAD", "POST"}, {200, 201}, ParseStop::Complete},
        ResponseCase{"Continue",
                     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                     {"POST"}, {100, 201}, ParseStop::Complete},
        ResponseCase{"ContinueThenHeadIsFramedByTheRightRequest",
                     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                     {"HEAD", "GET"}, {100, 200, 200}, ParseStop::Complete},
        ResponseCase{"EarlyHintsThenFinal",
                     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                     {"GET"}, {103, 200}, ParseStop::Complete},
        ResponseCase{"SwitchingProtocolsStops",
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", {"GET"},
                     {101}, ParseStop::ProtocolSwitched},
        ResponseCase{"ConnectEstablishedStops",
                     "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03", {"CONNECT"}, {200},
                     ParseStop::ProtocolSwitched},
        ResponseCase{"ConnectRefusedContinues",
                     "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                     {"CONNECT", "CONNECT"}, {407, 200}, ParseStop::ProtocolSwitched},
        ResponseCase{"ChunkedWithTrailers",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n0\r\n"
                     "Expires: never\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                     {}, {200, 404}, ParseStop::Complete},
        ResponseCase{"PipelinedThree",
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n"
                     "\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 2\r\n\r\nxy",
                     {}, {200, 500, 302}, ParseStop::Complete},
        ResponseCase{"BodyPastCapture", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial", {},
                     {200}, ParseStop::TruncatedBody},
        ResponseCase{"InvalidContentLength", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", {}, {200},
                     ParseStop::InvalidFraming},
        ResponseCase{"HeadCut", "HTTP/1.1 200 OK\r\nServer: ngi", {}, {200}, ParseStop::TruncatedHead},
        ResponseCase{"ReasonCut", "HTTP/1.1 503 Service Unav", {}, {503}, ParseStop::TruncatedStartLine},
        ResponseCase{"CodeCut", "HTTP/1.1 50", {}, {}, ParseStop::TruncatedStartLine},
        ResponseCase{"CodeWithoutFollowingByte", "HTTP/1.1 503", {}, {}, ParseStop::TruncatedStartLine},
        ResponseCase{"VersionCut", "HTTP/1", {}, {}, ParseStop::TruncatedStartLine},
        ResponseCase{"Empty", "", {}, {}, ParseStop::Complete},
        ResponseCase{"Http2Version", "HTTP/2 200\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"Http12Version", "HTTP/1.2 200 OK\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"TwoDigitStatus", "HTTP/1.1 20 OK\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"FourDigitStatus", "HTTP/1.1 2000 OK\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"LeadingZeroStatus", "HTTP/1.1 099 X\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"LetterInStatus", "HTTP/1.1 2x0 OK\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"RequestOnResponseSide", "GET / HTTP/1.1\r\n\r\n", {}, {}, ParseStop::NotHttp},
        ResponseCase{"MidStreamJoin", "lo world\", \"id\": 3}", {}, {}, ParseStop::NotHttp},
        ResponseCase{"GarbageAfterFirst",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\x17\x03\x03\x00\x10", {}, {200},
                     ParseStop::NotHttp},
        ResponseCase{"ExtraCrlfIsNotTolerated",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", {},
                     {200}, ParseStop::NotHttp}),
    [](const testing::TestParamInfo<ResponseCase>& info) { return info.param.name; });

TEST(ResponseParser, InformationalAndInterimFlags) {
  ParsedResponse r;
  r.status_code = 100;
  EXPECT_TRUE(r.informational());
  EXPECT_TRUE(r.interim());
  r.status_code = 101;
  EXPECT_TRUE(r.informational());
  EXPECT_FALSE(r.interim());
  r.status_code = 199;
  EXPECT_TRUE(r.interim());
  r.status_code = 200;
  EXPECT_FALSE(r.informational());
  EXPECT_FALSE(r.interim());
}

TEST(ResponseParser, CutReasonKeepsStatus) {
  ParseStatus status;
  const auto responses = parse_responses("HTTP/1.0 418 I'm a te", status);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status_code, 418);
  EXPECT_EQ(responses[0].version, "1.0");
  EXPECT_EQ(responses[0].reason, "I'm a te");
  EXPECT_FALSE(responses[0].start_line_complete);
  EXPECT_FALSE(responses[0].head_complete);
  EXPECT_TRUE(status.rest_unknown());
}

TEST(ResponseParser, UntilCloseAndProtocolSwitchAreNotUnknown) {
  ParseStatus status;
  (void)parse_responses("HTTP/1.0 200 OK\r\n\r\nbody", status);
  EXPECT_EQ(status.stop, ParseStop::BodyUntilClose);
  EXPECT_FALSE(status.rest_unknown());
  (void)parse_responses("HTTP/1.1 101 Switching Protocols\r\n\r\n", status);
  EXPECT_EQ(status.stop, ParseStop::ProtocolSwitched);
  EXPECT_FALSE(status.rest_unknown());
}

}  // namespace
}  // namespace edgetrace::http

namespace edgetrace::http {
namespace {

TEST(ResponseParser, CutHeadRequestStillFramesItsResponse) {
  ParseStatus request_status;
  const auto requests = parse_requests("HEAD /very/long/pa", request_status);
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_FALSE(requests[0].start_line_complete);
  ParseStatus status;
  const auto responses = parse_responses(
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status,
      requests);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(status.stop, ParseStop::Complete);
}

TEST(ResponseParser, StopReasonsHaveDistinctNames) {
  std::vector<std::string_view> names;
  for (int s = 0; s <= static_cast<int>(ParseStop::MessageLimit); ++s) {
    const std::string_view name = to_string(static_cast<ParseStop>(s));
    EXPECT_FALSE(name.empty());
    EXPECT_NE(name, "unknown");
    for (const auto& other : names) EXPECT_NE(name, other);
    names.push_back(name);
  }
}

}  // namespace
}  // namespace edgetrace::http
