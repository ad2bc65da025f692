#include "stitch/exchange_stitcher.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>

#include "http/exchange.h"
#include "http/parser.h"

namespace edgetrace {
namespace {

bool is_ipv4_mapped(const std::uint8_t (&a)[16]) {
  static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, prefix, sizeof(prefix)) == 0;
}

// A Host header value split into host and port ("[::1]:8080", "example.com", "a:80").
struct HostAndPort {
  std::string_view name;
  std::optional<std::int64_t> port;
};

HostAndPort split_host(std::string_view host) {
  std::string_view name = host;
  std::optional<std::int64_t> port;
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return {host, std::nullopt};
    name = host.substr(1, close - 1);
    host.remove_prefix(close + 1);
    if (host.starts_with(':')) host.remove_prefix(1);
    else host = {};
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    host.remove_prefix(colon + 1);
  } else {
    host = {};
  }
  if (!host.empty() && host.size() <= 5 && std::all_of(host.begin(), host.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t value = 0;
    std::from_chars(host.data(), host.data() + host.size(), value);
    port = value;
  }
  return {name, port};
}

// Dotted decimal, as inet_ntop writes it; inet_ntop goes through sprintf for IPv4, which cost
// more than the rest of a span's addresses and ports together.
std::string format_ipv4(const std::uint8_t* address) {
  std::string text;
  text.reserve(15);
  for (int i = 0; i < 4; ++i) {
    if (i > 0) text.push_back('.');
    char digits[3];
    const auto end = std::to_chars(digits, digits + sizeof(digits), address[i]).ptr;
    text.append(digits, end);
  }
  return text;
}

}  // namespace

std::string format_address(std::uint16_t family, const std::uint8_t (&address)[16]) {
  if (family == AF_INET) return format_ipv4(address);
  if (is_ipv4_mapped(address)) return format_ipv4(address + 12);
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, address, text, sizeof(text));
  return text;
}

ExchangeStitcher::ExchangeStitcher(ProcessResources& resources, MonotonicToUnix clock, http::RouteMatcher routes, SpanSink& sink)
    : resources_(resources), clock_(clock), routes_(std::move(routes)), sink_(sink), random_(std::random_device{}()) {}

TraceId ExchangeStitcher::random_trace_id() {
  TraceId id{};
  // All 128 bits random, so the low 56 bits satisfy W3C level-2 randomness.
  const auto high = random_(), low = random_();
  std::memcpy(id.data(), &high, 8);
  std::memcpy(id.data() + 8, &low, 8);
  if (id == TraceId{}) id[15] = 1;
  return id;
}

SpanId ExchangeStitcher::random_span_id() {
  SpanId id{};
  const auto value = random_();
  std::memcpy(id.data(), &value, 8);
  if (id == SpanId{}) id[7] = 1;
  return id;
}

void ExchangeStitcher::on_record(std::span<const std::byte> record) {
  ++counters_.records;
  if (record.size() < ET_EXCHANGE_HEADER_SIZE) {
    ++counters_.malformed_records;
    return;
  }
  // Only the fixed header is copied out (the ring buffer need not keep it aligned); the
  // captured bytes are read where they are, and `data` of this copy is never touched.
  et_http_exchange exchange;
  std::memcpy(&exchange, record.data(), ET_EXCHANGE_HEADER_SIZE);
  const std::size_t response_offset = exchange.response_offset;
  if (exchange.record_type != ET_RECORD_HTTP1_EXCHANGE || exchange.request_captured > ET_MAX_CAPTURE ||
      exchange.response_captured > ET_MAX_CAPTURE || exchange.request_captured > response_offset ||
      response_offset > ET_MAX_CAPTURE ||
      record.size() < ET_EXCHANGE_HEADER_SIZE + response_offset + exchange.response_captured) {
    ++counters_.malformed_records;
    return;
  }
  const auto* data = reinterpret_cast<const char*>(record.data()) + ET_EXCHANGE_HEADER_SIZE;
  const std::string_view request_capture(data, exchange.request_captured);
  const std::string_view response_capture(data + response_offset, exchange.response_captured);

  SpanBatch& out = batch_;
  const auto spans_before = out.size();
  // Most records hold one request answered in the same record, on a connection with nothing
  // pending before or after: their requests go through a reused list instead of a map entry
  // made and erased again for every record.
  const auto pending_entry = pending_by_connection_.find(exchange.connection_id);
  const bool had_pending = pending_entry != pending_by_connection_.end();
  PendingRequests& pending = had_pending ? pending_entry->second : unpending_;
  if (!(exchange.flags & ET_EXCHANGE_PIPELINED)) {
    // A new request read: whatever earlier pipelined requests never got a response.
    emit_unanswered(exchange, pending, out);
    http::ParseStatus status;
    http::parse_requests_into(request_capture, status, pending.requests, kParseOptions);
    spdlog::debug("connection {:x} exchange {}: {} request(s) in {} captured bytes ({})", exchange.connection_id,
                  exchange.sequence, pending.requests.size(), request_capture.size(), http::to_string(status.stop));
    if (pending.requests.empty() && exchange.request_captured > 0) {
      ++counters_.unparsable_exchanges;
      spdlog::debug("exchange on connection {:x} is not HTTP/1.x ({}), ignored", exchange.connection_id,
                    http::to_string(status.stop));
    }
    // A full capture that stopped short of the request bytes seen may hide more pipelined
    // requests than it shows: their spans cannot be made, so say how often that happens.
    if (status.rest_unknown() && exchange.request_bytes > exchange.request_captured) ++counters_.truncated_request_captures;
  }

  if (pending.requests.empty() && ((exchange.flags & ET_EXCHANGE_PIPELINED) || exchange.request_captured == 0)) {
    // A response whose request was not captured: a pipelined request beyond the captured
    // bytes, or the first exchange of a connection joined mid-stream. Keep the span with
    // what is known rather than lose it or guess its request.
    http::ParseStatus response_status;
    http::parse_responses_into(response_capture, response_status, responses_, {}, kParseOptions);
    static const http::ParsedRequest unknown_request{.method = "_OTHER"};
    for (const auto& response : responses_) {
      if (response.interim()) continue;
      emit(exchange, unknown_request, &response, out);
      out.back().name = "HTTP";
      out.back().attributes.push_back({"edgetrace.request.unknown", true});
      ++counters_.requests_beyond_capture;
    }
  } else if (!pending.requests.empty()) {
    const auto& expected = pending.requests;
    http::ParseStatus response_status;
    http::parse_responses_into(response_capture, response_status, responses_, expected, kParseOptions);
    const auto pairing = http::pair_exchange(expected, responses_);
    std::size_t answered = 0;
    for (const auto& pair : pairing.pairs) {
      if (!pair.response_index) break;
      emit(exchange, expected[pair.request_index], &responses_[*pair.response_index], out);
      ++answered;
    }
    pending.requests.erase(pending.requests.begin(), pending.requests.begin() + static_cast<std::ptrdiff_t>(answered));
    // The first request of a non-pipelined record must be reported now even without a
    // parsable response: the kernel only sends a record once the exchange is over.
    if (answered == 0 && !pending.requests.empty() && !(exchange.flags & ET_EXCHANGE_PIPELINED)) {
      emit(exchange, pending.requests.front(), nullptr, out);
      pending.requests.erase(pending.requests.begin());
    }
  }
  if (exchange.flags & ET_EXCHANGE_CLOSED) emit_unanswered(exchange, pending, out);
  if (had_pending && pending.requests.empty()) {
    pending_by_connection_.erase(pending_entry);
  } else if (!had_pending && !pending.requests.empty()) {
    // Requests still waiting for responses in later records of this connection.
    pending_by_connection_.emplace(exchange.connection_id, PendingRequests{std::move(unpending_.requests)});
    unpending_.requests.clear();
  }
  counters_.spans += out.size() - spans_before;
}

void ExchangeStitcher::deliver() {
  if (batch_.empty()) return;
  const auto delivered = batch_.size();
  sink_.consume(std::move(batch_));
  batch_ = SpanBatch{};
  // The next drain is likely about as large: room for it up front saves moving every span
  // each time the batch would have doubled.
  batch_.reserve(std::min<std::size_t>(delivered, kMaxBatchReserve));
}

void ExchangeStitcher::emit_unanswered(const et_http_exchange& exchange, PendingRequests& pending, SpanBatch& out) {
  for (const auto& request : pending.requests) emit(exchange, request, nullptr, out);
  pending.requests.clear();
}

void ExchangeStitcher::emit(const et_http_exchange& exchange, const http::ParsedRequest& request,
                            const http::ParsedResponse* response, SpanBatch& out) {
  const bool server = exchange.role == ET_ROLE_SERVER;
  Span& span = out.emplace_back();
  span.kind = server ? SpanKind::Server : SpanKind::Client;
  span.resource = resources_.for_process(exchange.tgid);

  const TraceId kernel_trace_id = std::to_array(exchange.trace_id);
  if (kernel_trace_id != TraceId{}) {
    span.trace_id = kernel_trace_id;
    span.span_id = std::to_array(exchange.span_id);
    if (exchange.flags & ET_EXCHANGE_HAS_PARENT) span.parent_span_id = std::to_array(exchange.parent_span_id);
    span.trace_flags = exchange.trace_flags;
  } else {
    span.trace_id = random_trace_id();
    span.span_id = random_span_id();
  }
  span.trace_state = request.tracestate;

  const auto route = routes_.match(request.path);
  span.name = request.method;
  if (route) (span.name += ' ') += *route;

  span.start_unix_nanos = clock_.to_unix(exchange.request_start_ns);
  const auto end = exchange.response_end_ns ? exchange.response_end_ns : exchange.request_end_ns;
  span.end_unix_nanos = clock_.to_unix(std::max(end, exchange.request_start_ns));

  auto& attributes = span.attributes;
  attributes.reserve(14);
  // Built in place: a temporary Attribute would cost a move and a destruction of two variants.
  const auto add = [&attributes](AttributeKey key, auto&& value) {
    attributes.emplace_back(std::move(key), std::forward<decltype(value)>(value));
  };
  add("http.request.method", request.method);
  add("url.path", request.path);
  if (!request.query.empty()) add("url.query", request.query);
  add("url.scheme", std::string("http"));
  if (!request.version.empty()) add("network.protocol.version", request.version);
  if (route) add("http.route", std::string(*route));

  auto remote = format_address(exchange.family, exchange.remote_addr);
  // Absolute-form targets (requests to proxies) name the server themselves.
  const std::string_view authority = request.effective_authority();
  const auto host = split_host(authority);
  if (server) {
    add("server.address",
        host.name.empty() ? format_address(exchange.family, exchange.local_addr) : std::string(host.name));
    add("server.port", host.port.value_or(exchange.local_port));
    add("client.address", remote);
    add("client.port", static_cast<std::int64_t>(exchange.remote_port));
  } else {
    add("server.address", host.name.empty() ? remote : std::string(host.name));
    add("server.port", host.port.value_or(exchange.remote_port));
    if (request.target_form == http::TargetForm::Absolute) {
      add("url.full", request.target);
    } else {
      const std::string_view url_authority = authority.empty() ? std::string_view(remote) : authority;
      std::string url;
      url.reserve(7 + url_authority.size() + request.target.size());
      ((url += "http://") += url_authority) += request.target;
      add("url.full", std::move(url));
    }
  }
  add("network.peer.address", std::move(remote));
  add("network.peer.port", static_cast<std::int64_t>(exchange.remote_port));
  if (!request.user_agent.empty()) add("user_agent.original", request.user_agent);
  add("thread.id", static_cast<std::int64_t>(exchange.tid));

  if (response) {
    add("http.response.status_code", static_cast<std::int64_t>(response->status_code));
    // Semantic conventions: 5xx is an error on both sides, 4xx only on the client side.
    if (response->status_code >= 500 || (!server && response->status_code >= 400)) span.status = StatusCode::Error;
  } else {
    ++counters_.responses_unknown;
    if (exchange.flags & ET_EXCHANGE_NO_RESPONSE) {
      span.status = StatusCode::Error;
      span.status_message = "connection closed before a response";
      add("error.type", std::string("connection_closed"));
    } else {
      add("edgetrace.response.unknown", true);
    }
  }
}

}  // namespace edgetrace
