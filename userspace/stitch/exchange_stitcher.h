// Turns the kernel's HTTP/1.x exchange records into server and client spans.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "edgetrace.h"
#include "http/message.h"
#include "http/parser.h"
#include "http/route_matcher.h"
#include "span/span.h"
#include "stitch/clock.h"
#include "stitch/process_resources.h"

namespace edgetrace {

struct StitchCounters {
  std::uint64_t records = 0;
  std::uint64_t malformed_records = 0;    // wrong size or type: a kernel/userspace mismatch
  std::uint64_t unparsable_exchanges = 0;  // captured bytes were not HTTP/1.x
  std::uint64_t spans = 0;
  std::uint64_t responses_unknown = 0;     // request with no response we could attribute
  std::uint64_t truncated_request_captures = 0;  // request bytes past the capture may hold more requests
  std::uint64_t requests_beyond_capture = 0;  // pipelined request past the capture: span kept, request unknown
};

class ExchangeStitcher {
 public:
  ExchangeStitcher(ProcessResources& resources, MonotonicToUnix clock, http::RouteMatcher routes, SpanSink& sink);

  // One ring-buffer record; its spans are held until deliver().
  void on_record(std::span<const std::byte> record);
  // Hands every span made since the last call to the sink as one batch, in the order their
  // exchanges completed.
  void deliver();
  [[nodiscard]] const StitchCounters& counters() const { return counters_; }

 private:
  // Requests of pipelined exchanges whose responses come in later records.
  struct PendingRequests {
    std::vector<http::ParsedRequest> requests;  // a handful at most; answered ones leave from the front
  };

  void emit(const et_http_exchange& exchange, const http::ParsedRequest& request,
            const http::ParsedResponse* response, SpanBatch& out);
  void emit_unanswered(const et_http_exchange& exchange, PendingRequests& pending, SpanBatch& out);
  SpanId random_span_id();
  TraceId random_trace_id();

  ProcessResources& resources_;
  MonotonicToUnix clock_;
  http::RouteMatcher routes_;
  SpanSink& sink_;
  // The stitcher reads only the fields of interest the parser extracts, never the header list.
  static constexpr http::ParseOptions kParseOptions{.max_headers = 0};
  static constexpr std::size_t kMaxBatchReserve = 4096;

  std::unordered_map<std::uint64_t, PendingRequests> pending_by_connection_;
  PendingRequests unpending_;  // the requests of a connection with none in the map; empty between records
  std::vector<http::ParsedResponse> responses_;  // the current record's, kept for its memory
  SpanBatch batch_;
  std::mt19937_64 random_;
  StitchCounters counters_;
};

// "127.0.0.1", "::1", "::ffff:10.0.0.1" → the address as text (IPv4-mapped IPv6 as IPv4).
std::string format_address(std::uint16_t family, const std::uint8_t (&address)[16]);

}  // namespace edgetrace
