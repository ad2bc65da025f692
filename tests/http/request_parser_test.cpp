#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/parser.h"

namespace edgetrace::http {
namespace {

std::vector<ParsedRequest> parse(std::string_view bytes, ParseStatus& status,
                                 const ParseOptions& options = {}) {
  return parse_requests(bytes, status, options);
}

struct TargetCase {
  std::string name;
  std::string bytes;
  std::string method;
  std::string target;
  TargetForm form;
  std::string scheme;
  std::string authority;
  std::string path;
  std::string query;
  std::string version;
};

class RequestTargetTest : public testing::TestWithParam<TargetCase> {};

TEST_P(RequestTargetTest, SplitsStartLine) {
  const TargetCase& c = GetParam();
  ParseStatus status;
  const auto requests = parse(c.bytes, status);
  ASSERT_EQ(requests.size(), 1u) << to_string(status.stop);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  EXPECT_EQ(status.consumed, c.bytes.size());
  const ParsedRequest& r = requests[0];
  EXPECT_EQ(r.method, c.method);
  EXPECT_EQ(r.target, c.target);
  EXPECT_EQ(r.target_form, c.form);
  EXPECT_EQ(r.scheme, c.scheme);
  EXPECT_EQ(r.authority, c.authority);
  EXPECT_EQ(r.path, c.path);
  EXPECT_EQ(r.query, c.query);
  EXPECT_EQ(r.version, c.version);
  EXPECT_TRUE(r.start_line_complete);
  EXPECT_TRUE(r.head_complete);
  EXPECT_TRUE(r.body_complete);
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.head_length, c.bytes.size());
}

INSTANTIATE_TEST_SUITE_P(
    Targets, RequestTargetTest,
    testing::Values(
        TargetCase{"SimpleGet", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", TargetForm::Origin,
                   "", "", "/", "", "1.1"},
        TargetCase{"QuerySplit", "GET /users/7?x=1&y=%20 HTTP/1.1\r\n\r\n", "GET",
                   "/users/7?x=1&y=%20", TargetForm::Origin, "", "", "/users/7", "x=1&y=%20", "1.1"},
        TargetCase{"EmptyQuery", "GET /a? HTTP/1.1\r\n\r\n", "GET", "/a?", TargetForm::Origin, "",
                   "", "/a", "", "1.1"},
        TargetCase{"SecondQuestionMarkStaysInQuery", "GET /a?b?c HTTP/1.1\r\n\r\n", "GET", "/a?b?c",
                   TargetForm::Origin, "", "", "/a", "b?c", "1.1"},
        TargetCase{"PercentEncodingKept", "GET /caf%C3%A9/%2F HTTP/1.1\r\n\r\n", "GET",
                   "/caf%C3%A9/%2F", TargetForm::Origin, "", "", "/caf%C3%A9/%2F", "", "1.1"},
        TargetCase{"AbsoluteForm", "GET http://example.com:8080/path?q=1 HTTP/1.1\r\n\r\n", "GET",
                   "http://example.com:8080/path?q=1", TargetForm::Absolute, "http",
                   "example.com:8080", "/path", "q=1", "1.1"},
        TargetCase{"AbsoluteFormEmptyPath", "GET http://example.com HTTP/1.1\r\n\r\n", "GET",
                   "http://example.com", TargetForm::Absolute, "http", "example.com", "/", "",
                   "1.1"},
        TargetCase{"AbsoluteFormQueryOnly", "GET http://h?q HTTP/1.1\r\n\r\n", "GET", "http://h?q",
                   TargetForm::Absolute, "http", "h", "/", "q", "1.1"},
        TargetCase{"Http10", "GET /old HTTP/1.0\r\n\r\n", "GET", "/old", TargetForm::Origin, "", "",
                   "/old", "", "1.0"},
        TargetCase{"ConnectAuthorityForm", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", "CONNECT",
                   "example.com:443", TargetForm::Authority, "", "example.com:443", "", "", "1.1"},
        TargetCase{"OptionsAsterisk", "OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS", "*",
                   TargetForm::Asterisk, "", "", "*", "", "1.1"},
        TargetCase{"BareLineFeeds", "DELETE /x HTTP/1.1\nHost: h\n\n", "DELETE", "/x",
                   TargetForm::Origin, "", "", "/x", "", "1.1"},
        TargetCase{"Utf8BytesKept", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", "GET", "/caf\xc3\xa9",
                   TargetForm::Origin, "", "", "/caf\xc3\xa9", "", "1.1"},
        TargetCase{"Put", "PUT /p HTTP/1.1\r\n\r\n", "PUT", "/p", TargetForm::Origin, "", "", "/p",
                   "", "1.1"},
        TargetCase{"Patch", "PATCH /p HTTP/1.1\r\n\r\n", "PATCH", "/p", TargetForm::Origin, "", "",
                   "/p", "", "1.1"},
        TargetCase{"Trace", "TRACE /p HTTP/1.1\r\n\r\n", "TRACE", "/p", TargetForm::Origin, "", "",
                   "/p", "", "1.1"},
        TargetCase{"Head", "HEAD /p HTTP/1.1\r\n\r\n", "HEAD", "/p", TargetForm::Origin, "", "",
                   "/p", "", "1.1"}),
    [](const testing::TestParamInfo<TargetCase>& info) { return info.param.name; });

TEST(RequestParser, ExtractsHeadersOfInterestCaseInsensitively) {
  const std::string bytes =
      "POST /submit HTTP/1.1\r\n"
      "hOsT: api.example.com:8443\r\n"
      "TRACEPARENT:   00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01  \r\n"
      "TraceState: vendor1=a\r\n"
      "user-AGENT: curl/7.88.1\r\n"
      "content-LENGTH: 4\r\n"
      "X-Other: \tvalue with spaces\t\r\n"
      "tracestate: vendor2=b,vendor3=c\r\n"
      "\r\n"
      "body";
  ParseStatus status;
  const auto requests = parse(bytes, status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  const ParsedRequest& r = requests[0];
  EXPECT_EQ(r.host, "api.example.com:8443");
  EXPECT_EQ(r.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_FALSE(r.traceparent_repeated);
  EXPECT_EQ(r.tracestate, "vendor1=a,vendor2=b,vendor3=c");
  EXPECT_EQ(r.user_agent, "curl/7.88.1");
  ASSERT_TRUE(r.content_length.has_value());
  EXPECT_EQ(*r.content_length, 4u);
  EXPECT_FALSE(r.chunked);
  ASSERT_EQ(r.headers.size(), 7u);
  EXPECT_EQ(r.headers[0].name, "hOsT");
  ASSERT_NE(r.find_header("x-other"), nullptr);
  EXPECT_EQ(r.find_header("X-OTHER")->value, "value with spaces");
  EXPECT_EQ(r.find_header("missing"), nullptr);
  EXPECT_TRUE(r.body_complete);
}

TEST(RequestParser, TraceparentKeptRawAndRepeatFlagged) {
  const std::string bytes =
      "GET / HTTP/1.1\r\ntraceparent: not-even-valid\r\ntraceparent: 00-second\r\n\r\n";
  ParseStatus status;
  const auto requests = parse(bytes, status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].traceparent, "not-even-valid");
  EXPECT_TRUE(requests[0].traceparent_repeated);
  EXPECT_TRUE(requests[0].tracestate.empty());
}

TEST(RequestParser, HeaderListIsBoundedAndCountsTheRest) {
  std::string bytes = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 40; ++i) bytes += "X-H" + std::to_string(i) + ": v\r\n";
  bytes += "traceparent: tp\r\n\r\n";
  ParseOptions options;
  options.max_headers = 5;
  ParseStatus status;
  const auto requests = parse(bytes, status, options);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].headers.size(), 5u);
  EXPECT_EQ(requests[0].headers_omitted, 36u);
  // Fields of interest are extracted even beyond the generic list's bound.
  EXPECT_EQ(requests[0].traceparent, "tp");
}

TEST(RequestParser, ObsFoldIsToleratedButNotMerged) {
  const std::string bytes = "GET / HTTP/1.1\r\nX-Long: a\r\n  continued\r\nHost: h\r\n\r\n";
  ParseStatus status;
  const auto requests = parse(bytes, status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  EXPECT_EQ(requests[0].host, "h");
  EXPECT_EQ(requests[0].find_header("x-long")->value, "a");
}

struct BodyCase {
  std::string name;
  std::string bytes;
  std::vector<std::string> paths;  // of the requests reported
  ParseStop stop;
};

class RequestBodyTest : public testing::TestWithParam<BodyCase> {};

TEST_P(RequestBodyTest, SkipsBodiesToTheNextRequest) {
  const BodyCase& c = GetParam();
  ParseStatus status;
  const auto requests = parse(c.bytes, status);
  std::vector<std::string> paths;
  for (const auto& r : requests) paths.push_back(r.path);
  EXPECT_EQ(paths, c.paths);
  EXPECT_EQ(status.stop, c.stop) << to_string(status.stop);
  if (c.stop == ParseStop::Complete) {
    EXPECT_EQ(status.consumed, c.bytes.size());
    for (const auto& r : requests) EXPECT_TRUE(r.body_complete);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, RequestBodyTest,
    testing::Values(
        BodyCase{"ContentLength", "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ContentLengthZero", "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"BodyThatLooksLikeARequest",
                 "POST /a HTTP/1.1\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n", {"/a"},
                 ParseStop::Complete},
        BodyCase{"ContentLengthListOfSameValue",
                 "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ConflictingContentLengths",
                 "POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n",
                 {"/a"}, ParseStop::InvalidFraming},
        BodyCase{"NonNumericContentLength",
                 "POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", {"/a"},
                 ParseStop::InvalidFraming},
        BodyCase{"HugeContentLength",
                 "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nhello", {"/a"},
                 ParseStop::InvalidFraming},
        BodyCase{"ContentLengthPastCapture", "POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\nhello",
                 {"/a"}, ParseStop::TruncatedBody},
        BodyCase{"Chunked",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ChunkedWithExtensionsAndTrailers",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                 "A;name=value;flag\r\n0123456789\r\n1 ; ext=\"q\"\r\nx\r\n0;last\r\n"
                 "Checksum: abc\r\nX-Trailer: 1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ChunkedUppercaseHexAndLeadingZeros",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "00B\r\nhello world\r\n000\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ChunkedWinsOverContentLength",
                 "POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\nhi\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"ChunkedBodyPastCapture",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhello", {"/a"},
                 ParseStop::TruncatedBody},
        BodyCase{"ChunkedTrailerPastCapture",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n", {"/a"},
                 ParseStop::TruncatedBody},
        BodyCase{"InvalidChunkSize",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                 {"/a"}, ParseStop::InvalidChunk},
        BodyCase{"ChunkDataNotFollowedByCrlf",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX\r\n0\r\n\r\n", {"/a"},
                 ParseStop::InvalidChunk},
        BodyCase{"ChunkSizeOverflow",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", {"/a"},
                 ParseStop::InvalidChunk},
        BodyCase{"TransferEncodingNotEndingInChunked",
                 "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxxxx", {"/a"},
                 ParseStop::InvalidFraming},
        BodyCase{"PipelinedTwo", "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"PipelinedThreeMixed",
                 "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                 "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
                 {"/a", "/b", "/c"}, ParseStop::Complete},
        BodyCase{"ExtraCrlfBetweenRequests",
                 "POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n\r\nGET /b HTTP/1.1\r\n\r\n\r\n",
                 {"/a", "/b"}, ParseStop::Complete},
        BodyCase{"GarbageAfterFirst", "GET /a HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00", {"/a"},
                 ParseStop::NotHttp},
        BodyCase{"SecondRequestLineCut", "GET /a HTTP/1.1\r\n\r\nGE", {"/a"},
                 ParseStop::TruncatedStartLine},
        BodyCase{"SecondRequestTargetCut", "GET /a HTTP/1.1\r\n\r\nGET /very/lo", {"/a", "/very/lo"},
                 ParseStop::TruncatedStartLine},
        BodyCase{"SecondRequestHeadCut", "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: exa",
                 {"/a", "/b"}, ParseStop::TruncatedHead},
        BodyCase{"MalformedHeaderLine", "GET /a HTTP/1.1\r\nNoColonHere\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
                 {"/a"}, ParseStop::MalformedHeader},
        BodyCase{"SpaceBeforeColon", "GET /a HTTP/1.1\r\nHost : h\r\n\r\n", {"/a"},
                 ParseStop::MalformedHeader},
        BodyCase{"ControlByteInValue", "GET /a HTTP/1.1\r\nX: a\x01z\r\n\r\n", {"/a"},
                 ParseStop::MalformedHeader},
        BodyCase{"FoldAsFirstLine", "GET /a HTTP/1.1\r\n folded\r\n\r\n", {"/a"},
                 ParseStop::MalformedHeader}),
    [](const testing::TestParamInfo<BodyCase>& info) { return info.param.name; });

// Header names and values are checked several bytes at a time: every byte value, at every
// position of a name and of a value longer than a word, must still be judged on its own.
TEST(RequestParser, EveryByteAtEveryPositionOfAFieldLine) {
  const auto is_tchar = [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  };
  const auto stop_for = [](const std::string& field_line) {
    ParseStatus status;
    parse("GET /a HTTP/1.1\r\n" + field_line + "\r\n\r\n", status);
    return status.stop;
  };
  const std::string name = "X-A-Rather-Long-Name";
  const std::string value = "a-value-longer-than-two-words";
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<unsigned char>(b);
    if (c == '\n') continue;  // would end the line
    for (std::size_t i = 0; i < value.size(); ++i) {
      std::string v = value;
      v[i] = static_cast<char>(c);
      const bool valid = c == '\t' || (c >= 0x20 && c != 0x7f);
      EXPECT_EQ(stop_for(name + ": " + v), valid ? ParseStop::Complete : ParseStop::MalformedHeader)
          << "byte " << b << " at value position " << i;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
      std::string n = name;
      n[i] = static_cast<char>(c);
      // A colon inside the name ends it early; the rest joins the (valid) value.
      const bool valid = is_tchar(c) || (c == ':' && i > 0);
      EXPECT_EQ(stop_for(n + ": " + value), valid ? ParseStop::Complete : ParseStop::MalformedHeader)
          << "byte " << b << " at name position " << i;
    }
  }
}

TEST(RequestParser, TruncatedHeadersStillReportTheRequest) {
  const std::string bytes =
      "GET /items?page=2 HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad";
  ParseStatus status;
  const auto requests = parse(bytes, status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::TruncatedHead);
  EXPECT_TRUE(status.rest_unknown());
  EXPECT_EQ(status.consumed, 0u);
  const ParsedRequest& r = requests[0];
  EXPECT_TRUE(r.start_line_complete);
  EXPECT_FALSE(r.head_complete);
  EXPECT_FALSE(r.body_complete);
  EXPECT_EQ(r.path, "/items");
  EXPECT_EQ(r.query, "page=2");
  EXPECT_EQ(r.host, "shop");
  // A cut-off value is not reported: it would be wrong.
  EXPECT_TRUE(r.traceparent.empty());
  EXPECT_EQ(r.head_length, bytes.size());
}

TEST(RequestParser, CutRequestLineReportsWhatIsKnown) {
  ParseStatus status;
  auto requests = parse("GET /search?q=a-very-long-que", status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::TruncatedStartLine);
  EXPECT_FALSE(requests[0].start_line_complete);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, "/search");
  EXPECT_EQ(requests[0].query, "q=a-very-long-que");
  EXPECT_TRUE(requests[0].version.empty());

  requests = parse("POST /x HTTP/1.1\r", status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].version, "1.1");
  EXPECT_FALSE(requests[0].start_line_complete);

  requests = parse("POST /x HTT", status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(requests[0].version.empty());

  // Nothing reportable before "METHOD SP".
  requests = parse("DELE", status);
  EXPECT_TRUE(requests.empty());
  EXPECT_EQ(status.stop, ParseStop::TruncatedStartLine);
  requests = parse("DELETE", status);
  EXPECT_TRUE(requests.empty());
  EXPECT_EQ(status.stop, ParseStop::TruncatedStartLine);
}

struct GarbageCase {
  std::string name;
  std::string bytes;
  ParseStop stop;
};

class RequestGarbageTest : public testing::TestWithParam<GarbageCase> {};

TEST_P(RequestGarbageTest, ReportsNoRequest) {
  ParseStatus status;
  const auto requests = parse(GetParam().bytes, status);
  EXPECT_TRUE(requests.empty());
  EXPECT_EQ(status.stop, GetParam().stop) << to_string(status.stop);
  EXPECT_EQ(status.consumed, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, RequestGarbageTest,
    testing::Values(
        GarbageCase{"Empty", "", ParseStop::Complete},
        GarbageCase{"Http2Preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"TlsClientHello",
                    std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + std::string(32, 'r'),
                    ParseStop::NotHttp},
        GarbageCase{"LowercaseMethod", "get / HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"UnknownMethod", "PROPFIND / HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"Http2Version", "GET / HTTP/2.0\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"Http09", "GET /\r\n", ParseStop::NotHttp},
        GarbageCase{"LowercaseVersion", "GET / http/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"TwoSpaces", "GET  / HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"TrailingSpace", "GET / HTTP/1.1 \r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"TabSeparator", "GET\t/ HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"NulInTarget", std::string("GET /a\0b HTTP/1.1\r\n\r\n", 22), ParseStop::NotHttp},
        GarbageCase{"BareCrInStartLine", "GET /a\rb HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"RelativeTarget", "GET index.html HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"AsteriskForGet", "GET * HTTP/1.1\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"MidStreamJoin", "d\": 42, \"name\": \"x\"}\r\n", ParseStop::NotHttp},
        GarbageCase{"MidStreamJoinInHeaders", "Accept: */*\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"ResponseOnRequestSide", "HTTP/1.1 200 OK\r\n\r\n", ParseStop::NotHttp},
        GarbageCase{"PartialLowercase", "ge", ParseStop::NotHttp},
        GarbageCase{"PartialPrefixOfKnownMethod", "OPTIO", ParseStop::TruncatedStartLine},
        GarbageCase{"LoneCr", "\r", ParseStop::TruncatedStartLine}),
    [](const testing::TestParamInfo<GarbageCase>& info) { return info.param.name; });

TEST(RequestParser, ExtensionMethodsOnlyWhenAllowed) {
  const std::string bytes = "PROPFIND /dav HTTP/1.1\r\nDepth: 1\r\n\r\n";
  ParseStatus status;
  EXPECT_TRUE(parse(bytes, status).empty());
  ParseOptions options;
  options.allow_extension_methods = true;
  const auto requests = parse(bytes, status, options);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "PROPFIND");
  // HTTP/2's preface stays rejected: its version is not HTTP/1.x.
  EXPECT_TRUE(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status, options).empty());
  EXPECT_EQ(status.stop, ParseStop::NotHttp);
  // Still letters only, and bounded.
  EXPECT_TRUE(parse("M-SEARCH * HTTP/1.1\r\n\r\n", status, options).empty());
  EXPECT_TRUE(parse(std::string(21, 'A') + " / HTTP/1.1\r\n\r\n", status, options).empty());
}

TEST(RequestParser, MessageLimitStopsAndSaysSo) {
  std::string bytes;
  for (int i = 0; i < 10; ++i) bytes += "GET /" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
  ParseOptions options;
  options.max_messages = 4;
  ParseStatus status;
  const auto requests = parse(bytes, status, options);
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[3].path, "/3");
  EXPECT_EQ(status.stop, ParseStop::MessageLimit);
  EXPECT_TRUE(status.rest_unknown());
  EXPECT_EQ(status.consumed, requests[3].offset + requests[3].head_length);
}

TEST(RequestParser, OffsetsLocateEachMessage) {
  const std::string first = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  const std::string second = "GET /b HTTP/1.1\r\n\r\n";
  ParseStatus status;
  const auto requests = parse(first + second, status);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].offset, 0u);
  EXPECT_EQ(requests[0].head_length, first.size() - 3);
  EXPECT_EQ(requests[1].offset, first.size());
  EXPECT_EQ(requests[1].head_length, second.size());
}

TEST(LooksLikeStart, MatchesTheKernelPrefixes) {
  for (const std::string_view m : known_methods()) {
    EXPECT_TRUE(looks_like_http_request_start(std::string(m) + " /")) << m;
    EXPECT_TRUE(looks_like_http_request_start(std::string(m) + " ")) << m;
    EXPECT_FALSE(looks_like_http_request_start(m)) << m;
    EXPECT_FALSE(looks_like_http_request_start(std::string(m) + "/")) << m;
  }
  EXPECT_EQ(known_methods().size(), 9u);
  EXPECT_FALSE(looks_like_http_request_start("get / HTTP/1.1"));
  EXPECT_FALSE(looks_like_http_request_start("PRI * HTTP/2.0"));
  EXPECT_FALSE(looks_like_http_request_start("GETX /"));
  EXPECT_FALSE(looks_like_http_request_start(""));
  EXPECT_FALSE(looks_like_http_request_start("\x16\x03\x01"));
  EXPECT_TRUE(looks_like_http_response_start("HTTP/1.1 200 OK"));
  EXPECT_TRUE(looks_like_http_response_start("HTTP/1.0 404"));
  EXPECT_TRUE(looks_like_http_response_start("HTTP/1."));
  EXPECT_FALSE(looks_like_http_response_start("HTTP/1"));
  EXPECT_FALSE(looks_like_http_response_start("HTTP/2 200"));
  EXPECT_FALSE(looks_like_http_response_start("http/1.1 200"));
}

// Whatever the parser accepts as a first request, the kernel would have captured, and every
// kernel-accepted start that continues as a valid request line is parsed.
TEST(LooksLikeStart, ConsistentWithParser) {
  for (const std::string_view m : known_methods()) {
    const std::string line = std::string(m) + (m == "CONNECT" ? " h:1" : " /") + " HTTP/1.1\r\n\r\n";
    ParseStatus status;
    EXPECT_EQ(parse(line, status).size(), 1u) << m;
    EXPECT_TRUE(looks_like_http_request_start(line)) << m;
  }
}

}  // namespace
}  // namespace edgetrace::http

namespace edgetrace::http {
namespace {

TEST(RequestParser, EmptyAndWhitespaceOnlyValues) {
  const std::string bytes = "GET / HTTP/1.1\r\nX-Empty:\r\nX-Blank:   \t \r\nHost:h\r\n\r\n";
  ParseStatus status;
  const auto requests = parse_requests(bytes, status);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(status.stop, ParseStop::Complete);
  ASSERT_EQ(requests[0].headers.size(), 3u);
  EXPECT_EQ(requests[0].headers[0].value, "");
  EXPECT_EQ(requests[0].headers[1].value, "");
  EXPECT_EQ(requests[0].host, "h");
}

}  // namespace
}  // namespace edgetrace::http

namespace edgetrace::http {
namespace {

TEST(RequestParser, EffectiveAuthorityPrefersTheTarget) {
  ParseStatus status;
  auto requests = parse_requests("GET http://origin.example:81/x HTTP/1.1\r\nHost: proxy\r\n\r\n"
                                 "CONNECT db:5432 HTTP/1.1\r\nHost: other\r\n\r\n"
                                 "GET /y HTTP/1.1\r\nHost: plain\r\n\r\n",
                                 status);
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].effective_authority(), "origin.example:81");
  EXPECT_EQ(requests[0].host, "proxy");
  EXPECT_EQ(requests[1].effective_authority(), "db:5432");
  EXPECT_EQ(requests[2].effective_authority(), "plain");
}

}  // namespace
}  // namespace edgetrace::http
