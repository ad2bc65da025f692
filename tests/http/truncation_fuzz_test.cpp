// Truncation at every offset and random inputs: the parser must never crash, never claim more
// than the bytes make certain, and pairing must never move a response onto another request.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "http/exchange.h"

namespace edgetrace::http {
namespace {

const std::string kRequests =
    "GET /users/42?expand=1 HTTP/1.1\r\n"
    "Host: api.internal\r\n"
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    "tracestate: congo=t61rcWkgMzE\r\n"
    "\r\n"
    "POST /upload HTTP/1.1\r\n"
    "Host: api.internal\r\n"
    "Expect: 100-continue\r\n"
    "Content-Length: 11\r\n"
    "\r\n"
    "hello world"
    "HEAD /health HTTP/1.1\r\n"
    "\r\n"
    "PUT /items/7 HTTP/1.1\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "4;ext=1\r\nabcd\r\n"
    "0\r\nX-Checksum: 9\r\n\r\n"
    "DELETE /items/7 HTTP/1.0\r\n"
    "\r\n";

const std::string kResponses =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 14\r\n"
    "\r\n"
    "{\"id\": 42}\r\n\r\n"
    "HTTP/1.1 100 Continue\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "2\r\nok\r\n0\r\n\r\n"
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 5000\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "\r\n"
    "HTTP/1.0 410 Gone\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "gone";

void expect_same_start(const ParsedRequest& cut, const ParsedRequest& full, std::size_t len) {
  EXPECT_EQ(cut.offset, full.offset) << "prefix " << len;
  EXPECT_EQ(cut.method, full.method) << "prefix " << len;
  if (cut.start_line_complete) {
    EXPECT_EQ(cut.target, full.target) << "prefix " << len;
    EXPECT_EQ(cut.path, full.path) << "prefix " << len;
    EXPECT_EQ(cut.query, full.query) << "prefix " << len;
    EXPECT_EQ(cut.version, full.version) << "prefix " << len;
  } else {
    // What was captured of the target is a prefix of the real one.
    EXPECT_EQ(full.target.substr(0, cut.target.size()), cut.target) << "prefix " << len;
    EXPECT_EQ(full.path.substr(0, cut.path.size()), cut.path) << "prefix " << len;
  }
  if (cut.head_complete) {
    EXPECT_EQ(cut.traceparent, full.traceparent) << "prefix " << len;
    EXPECT_EQ(cut.tracestate, full.tracestate) << "prefix " << len;
    EXPECT_EQ(cut.host, full.host) << "prefix " << len;
    EXPECT_EQ(cut.content_length, full.content_length) << "prefix " << len;
    EXPECT_EQ(cut.chunked, full.chunked) << "prefix " << len;
  } else {
    // Only complete header lines are reported, so what is there is right.
    if (!cut.traceparent.empty()) { EXPECT_EQ(cut.traceparent, full.traceparent) << "prefix " << len; }
    if (!cut.host.empty()) { EXPECT_EQ(cut.host, full.host) << "prefix " << len; }
  }
}

// End of the i-th message of the full parse (where the next one starts, or the end).
template <typename Message>
std::size_t message_end(const std::vector<Message>& all, std::size_t i, std::size_t total) {
  return i + 1 < all.size() ? all[i + 1].offset : total;
}

TEST(Truncation, RequestsAtEveryOffset) {
  ParseStatus full_status;
  const auto full = parse_requests(kRequests, full_status);
  ASSERT_EQ(full.size(), 5u);
  ASSERT_EQ(full_status.stop, ParseStop::Complete);

  for (std::size_t len = 0; len <= kRequests.size(); ++len) {
    const std::string_view prefix = std::string_view(kRequests).substr(0, len);
    ParseStatus status;
    const auto cut = parse_requests(prefix, status);
    ASSERT_LE(cut.size(), full.size()) << "prefix " << len;
    ASSERT_LE(status.consumed, len);
    for (std::size_t i = 0; i < cut.size(); ++i) {
      expect_same_start(cut[i], full[i], len);
      if (i + 1 < cut.size()) { EXPECT_TRUE(cut[i].body_complete) << "prefix " << len; }
    }
    // Every message wholly inside the prefix is reported complete.
    std::size_t wholly_inside = 0;
    while (wholly_inside < full.size() &&
           message_end(full, wholly_inside, kRequests.size()) <= len)
      ++wholly_inside;
    ASSERT_GE(cut.size(), wholly_inside) << "prefix " << len;
    for (std::size_t i = 0; i < wholly_inside; ++i) EXPECT_TRUE(cut[i].body_complete) << len;
    const bool on_boundary = len == 0 || (wholly_inside > 0 &&
                                          message_end(full, wholly_inside - 1, kRequests.size()) == len);
    if (on_boundary) {
      EXPECT_EQ(status.stop, ParseStop::Complete) << "prefix " << len;
      EXPECT_EQ(cut.size(), wholly_inside) << "prefix " << len;
      EXPECT_EQ(status.consumed, len);
    } else {
      EXPECT_TRUE(status.rest_unknown()) << "prefix " << len << ": " << to_string(status.stop);
    }
  }
}

TEST(Truncation, ResponsesAtEveryOffset) {
  ParseStatus request_status;
  const auto requests = parse_requests(kRequests, request_status);
  ParseStatus full_status;
  const auto full = parse_responses(kResponses, full_status, requests);
  ASSERT_EQ(full.size(), 6u);
  ASSERT_EQ(full_status.stop, ParseStop::Complete);

  for (std::size_t len = 0; len <= kResponses.size(); ++len) {
    const std::string_view prefix = std::string_view(kResponses).substr(0, len);
    ParseStatus status;
    const auto cut = parse_responses(prefix, status, requests);
    ASSERT_LE(cut.size(), full.size()) << "prefix " << len;
    for (std::size_t i = 0; i < cut.size(); ++i) {
      EXPECT_EQ(cut[i].offset, full[i].offset) << "prefix " << len;
      EXPECT_EQ(cut[i].status_code, full[i].status_code) << "prefix " << len;
      EXPECT_EQ(cut[i].version, full[i].version) << "prefix " << len;
      if (cut[i].start_line_complete) { EXPECT_EQ(cut[i].reason, full[i].reason) << "prefix " << len; }
    }
    std::size_t wholly_inside = 0;
    while (wholly_inside < full.size() && message_end(full, wholly_inside, kResponses.size()) <= len)
      ++wholly_inside;
    ASSERT_GE(cut.size(), wholly_inside) << "prefix " << len;
    const bool on_boundary =
        len == 0 || (wholly_inside > 0 && message_end(full, wholly_inside - 1, kResponses.size()) == len);
    if (on_boundary) {
      EXPECT_EQ(status.stop, ParseStop::Complete) << "prefix " << len;
      EXPECT_EQ(cut.size(), wholly_inside) << "prefix " << len;
    } else {
      EXPECT_TRUE(status.rest_unknown()) << "prefix " << len << ": " << to_string(status.stop);
    }
  }
}

// For every pair of prefix lengths, the pairing of the cut captures agrees with the pairing of
// the whole captures wherever it pairs at all.
TEST(Truncation, PairingNeverShiftsAResponse) {
  const ParsedExchange full = parse_exchange(kRequests, kResponses);
  ASSERT_EQ(full.pairing.pairs.size(), 5u);
  ASSERT_EQ(full.pairing.unpaired_requests, 0u);
  std::vector<std::size_t> full_response_offset;
  for (const auto& p : full.pairing.pairs) full_response_offset.push_back(full.responses[*p.response_index].offset);
  // 200, (100) 201, 200 (HEAD), 204, 410
  ASSERT_EQ(full.responses[*full.pairing.pairs[4].response_index].status_code, 410);

  std::size_t checked_pairs = 0;
  for (std::size_t req_len = 0; req_len <= kRequests.size(); req_len += 3) {
    for (std::size_t resp_len = 0; resp_len <= kResponses.size(); ++resp_len) {
      const ParsedExchange cut = parse_exchange(std::string_view(kRequests).substr(0, req_len),
                                                std::string_view(kResponses).substr(0, resp_len));
      ASSERT_LE(cut.pairing.pairs.size(), full.pairing.pairs.size());
      for (const auto& p : cut.pairing.pairs) {
        if (!p.response_index) continue;
        ++checked_pairs;
        ASSERT_EQ(cut.responses[*p.response_index].offset, full_response_offset[p.request_index])
            << "request prefix " << req_len << ", response prefix " << resp_len;
      }
    }
  }
  EXPECT_GT(checked_pairs, 10000u);
}

// ---- Random inputs ----------------------------------------------------------------------

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

// Fragments that make random buffers reach deep parser states instead of failing at byte 0.
const std::vector<std::string> kFragments = {
    "GET ", "POST ", "HEAD ", "CONNECT ", "OPTIONS ", "/", "/a?b", "*", "http://h/p", " ",
    "HTTP/1.1", "HTTP/1.0", "HTTP/1.1 ", "HTTP/2", "200 ", "100 ", "101 ", "204 ", "304 ",
    "OK", "\r\n", "\n", "\r", "\r\n\r\n", ":", ": ", "Content-Length: ", "Transfer-Encoding: ",
    "chunked", "0", "1", "5", "a", "ff", ";x=y", "traceparent: ", "Host: ", "\t", "\x00",
    "\x80", "\xff", "10", "99999999999999999999", ",", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
};

std::string random_buffer(std::mt19937_64& rng) {
  std::string out;
  const std::size_t target = rng() % 600;
  const bool structured = rng() % 4 != 0;
  while (out.size() < target) {
    if (structured && rng() % 3 != 0) {
      out += kFragments[rng() % kFragments.size()];
    } else {
      out.push_back(static_cast<char>(rng() & 0xff));
    }
  }
  return out;
}

std::string mutate(std::string bytes, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !bytes.empty(); ++e) {
    const std::size_t at = rng() % bytes.size();
    switch (rng() % 4) {
      case 0: bytes[at] = static_cast<char>(rng() & 0xff); break;
      case 1: bytes.erase(at, 1 + rng() % 8); break;
      case 2: bytes.insert(at, kFragments[rng() % kFragments.size()]); break;
      case 3: bytes[at] = "0123456789\r\n :;aF"[rng() % 18]; break;
    }
  }
  return bytes;
}

void check_requests(std::string_view bytes, const std::vector<ParsedRequest>& reqs,
                    const ParseStatus& status, const ParseOptions& options) {
  ASSERT_LE(reqs.size(), options.max_messages);
  ASSERT_LE(status.consumed, bytes.size());
  std::size_t previous_end = 0;
  for (const auto& r : reqs) {
    ASSERT_GE(r.offset, previous_end);
    ASSERT_LE(r.offset + r.head_length, bytes.size());
    ASSERT_LE(r.headers.size(), options.max_headers);
    ASSERT_FALSE(r.method.empty());
    if (r.start_line_complete) { ASSERT_TRUE(r.version == "1.0" || r.version == "1.1"); }
    previous_end = r.offset + r.head_length;
  }
}

void check_responses(std::string_view bytes, const std::vector<ParsedResponse>& resps,
                     const ParseStatus& status, const ParseOptions& options) {
  ASSERT_LE(resps.size(), options.max_messages);
  ASSERT_LE(status.consumed, bytes.size());
  std::size_t previous_end = 0;
  for (const auto& r : resps) {
    ASSERT_GE(r.offset, previous_end);
    ASSERT_LE(r.offset + r.head_length, bytes.size());
    ASSERT_GE(r.status_code, 100);
    ASSERT_LE(r.status_code, 999);
    ASSERT_TRUE(r.version == "1.0" || r.version == "1.1");
    previous_end = r.offset + r.head_length;
  }
}

// Messages reported for a prefix are certain: the whole buffer reports them too (the last one
// only if its start line was complete, since a cut start line may turn out invalid).
void check_prefix_certainty(std::string_view bytes, std::size_t len) {
  ParseStatus s_full;
  ParseStatus s_cut;
  const auto full = parse_requests(bytes, s_full);
  const auto cut = parse_requests(bytes.substr(0, len), s_cut);
  for (std::size_t i = 0; i < cut.size(); ++i) {
    if (i + 1 == cut.size() && !cut[i].start_line_complete) break;
    ASSERT_LT(i, full.size()) << "len " << len;
    ASSERT_EQ(cut[i].offset, full[i].offset);
    ASSERT_EQ(cut[i].method, full[i].method);
    ASSERT_EQ(cut[i].target, full[i].target);
  }
  const auto full_resp = parse_responses(bytes, s_full);
  const auto cut_resp = parse_responses(bytes.substr(0, len), s_cut);
  for (std::size_t i = 0; i < cut_resp.size(); ++i) {
    if (i + 1 == cut_resp.size() && !cut_resp[i].start_line_complete) break;
    ASSERT_LT(i, full_resp.size()) << "len " << len;
    ASSERT_EQ(cut_resp[i].offset, full_resp[i].offset);
    ASSERT_EQ(cut_resp[i].status_code, full_resp[i].status_code);
  }
}

TEST(RandomInput, NeverCrashesAndStaysConsistent) {
  const std::uint64_t seed = env_or("HTTP_FUZZ_SEED", 20261121);
  const std::uint64_t iterations = env_or("HTTP_FUZZ_ITERATIONS", 300000);
  SCOPED_TRACE("HTTP_FUZZ_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ParseOptions options;
  options.max_messages = 8;
  options.max_headers = 4;
  std::size_t requests_seen = 0;
  std::size_t responses_seen = 0;
  for (std::uint64_t it = 0; it < iterations; ++it) {
    std::string bytes;
    switch (it % 3) {
      case 0: bytes = random_buffer(rng); break;
      case 1: bytes = mutate(kRequests, rng); break;
      default: bytes = mutate(kResponses, rng); break;
    }
    options.allow_extension_methods = it % 5 == 0;
    ParseStatus req_status;
    const auto reqs = parse_requests(bytes, req_status, options);
    ASSERT_NO_FATAL_FAILURE(check_requests(bytes, reqs, req_status, options)) << "iteration " << it;
    ParseStatus resp_status;
    const auto resps = parse_responses(bytes, resp_status, reqs, options);
    ASSERT_NO_FATAL_FAILURE(check_responses(bytes, resps, resp_status, options)) << "iteration " << it;
    const Pairing pairing = pair_exchange(reqs, resps);
    ASSERT_EQ(pairing.pairs.size(), reqs.size());
    std::optional<std::size_t> last;
    for (const auto& p : pairing.pairs) {
      if (!p.response_index) continue;
      ASSERT_FALSE(resps[*p.response_index].interim());
      if (last) { ASSERT_GT(*p.response_index, *last); }
      last = p.response_index;
    }
    if (it % 16 == 0 && !bytes.empty()) {
      ASSERT_NO_FATAL_FAILURE(check_prefix_certainty(bytes, rng() % bytes.size())) << "iteration " << it;
    }
    requests_seen += reqs.size();
    responses_seen += resps.size();
  }
  // The generator must actually reach the parser's deeper states.
  EXPECT_GT(requests_seen, iterations / 10);
  EXPECT_GT(responses_seen, iterations / 10);
}

TEST(RandomInput, TlsClientHelloAndHttp2AreNotHttp1) {
  // Start of a real TLS 1.2/1.3 ClientHello record as sent by curl.
  const unsigned char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                                 0x5b, 0x8e, 0x1a, 0x27, 0x00, 0x20, 0xc0, 0x2c, 0x13, 0x02};
  const std::string_view tls(reinterpret_cast<const char*>(hello), sizeof hello);
  EXPECT_FALSE(looks_like_http_request_start(tls));
  EXPECT_FALSE(looks_like_http_response_start(tls));
  const ParsedExchange e = parse_exchange(tls, tls);
  EXPECT_TRUE(e.requests.empty());
  EXPECT_TRUE(e.responses.empty());
  EXPECT_EQ(e.request_status.stop, ParseStop::NotHttp);
  EXPECT_EQ(e.response_status.stop, ParseStop::NotHttp);

  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  EXPECT_FALSE(looks_like_http_request_start(preface));
  for (std::size_t len = 0; len <= preface.size(); ++len) {
    ParseStatus status;
    EXPECT_TRUE(parse_requests(std::string_view(preface).substr(0, len), status).empty());
  }
}

}  // namespace
}  // namespace edgetrace::http
