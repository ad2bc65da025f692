// HTTP/1.x messages as recovered from the bounded prefixes the kernel captures of each side
// of a connection. Every field is copied out of the capture, so results outlive the record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrace::http {

// Why parsing of one side's capture ended. The messages reported before the stop are certain:
// each one starts exactly where the previous one ended, so the n-th reported message is the
// n-th message on the wire (given the capture started at a message boundary).
enum class ParseStop : std::uint8_t {
  Complete,            // every captured byte belongs to a reported, complete message
  TruncatedStartLine,  // capture ends inside what still looks like a start line
  TruncatedHead,       // the last reported message's header section is cut off
  TruncatedBody,       // the last reported message's body runs past the end of the capture
  NotHttp,             // where a message should start, the bytes are not HTTP/1.0 or HTTP/1.1
  MalformedHeader,     // a header line of the last reported message is not a valid field line
  InvalidFraming,      // the last reported message's body length cannot be determined
  InvalidChunk,        // the chunked framing of the last reported message is broken
  BodyUntilClose,      // response body delimited by connection close: no message can follow
  ProtocolSwitched,    // after 101 or a 2xx to CONNECT the connection no longer speaks HTTP/1
  MessageLimit,        // ParseOptions::max_messages reached
};

[[nodiscard]] std::string_view to_string(ParseStop stop);

struct ParseStatus {
  ParseStop stop = ParseStop::Complete;
  // Bytes from the start of the capture covered by the reported messages that are complete
  // (head and body). Bytes past this point were not attributed to a complete message.
  std::size_t consumed = 0;

  // True when bytes after the last reported message could hold messages we cannot see:
  // the caller must not assume it knows how many messages this side carried.
  [[nodiscard]] bool rest_unknown() const {
    return stop != ParseStop::Complete && stop != ParseStop::BodyUntilClose &&
           stop != ParseStop::ProtocolSwitched;
  }

  // With the kernel's count of bytes seen on this side (request_bytes / response_bytes): true
  // when no message of this side can be missing from the result, because parsing ended for a
  // reason that rules out further messages or the capture held every byte and all of it parsed.
  [[nodiscard]] bool all_messages_known(std::uint64_t total_bytes_seen) const {
    if (stop == ParseStop::BodyUntilClose || stop == ParseStop::ProtocolSwitched) return true;
    return stop == ParseStop::Complete && consumed >= total_bytes_seen;
  }
};

struct Header {
  std::string name;   // as sent (case preserved)
  std::string value;  // leading and trailing whitespace removed
};

enum class TargetForm : std::uint8_t {
  Origin,     // "/path?query"
  Absolute,   // "http://host:port/path?query" (proxies)
  Authority,  // "host:port" (CONNECT)
  Asterisk,   // "*" (server-wide OPTIONS)
};

struct ParsedRequest {
  std::string method;   // "GET", ... (always one of the accepted methods)
  std::string target;   // request-target exactly as sent
  TargetForm target_form = TargetForm::Origin;
  std::string scheme;     // absolute-form only, e.g. "http"
  std::string authority;  // absolute-form and authority-form: "host[:port]"
  std::string path;       // not percent-decoded (url.path is kept as sent)
  std::string query;      // without the '?'; empty when absent
  std::string version;    // "1.0" or "1.1"; empty when the start line is truncated

  // Headers of interest (names matched case-insensitively). Empty = absent.
  std::string host;
  std::string traceparent;          // raw value of the first traceparent field
  bool traceparent_repeated = false;  // more than one traceparent field (W3C: invalid)
  std::string tracestate;           // all tracestate fields joined with ","
  std::string user_agent;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;  // Transfer-Encoding's final coding is "chunked"

  // Every complete header line in order, up to ParseOptions::max_headers.
  std::vector<Header> headers;
  std::size_t headers_omitted = 0;  // complete header lines beyond max_headers

  // A request whose request line was cut off after "METHOD SP" is still reported (the kernel
  // caps the capture, long targets are common); path/query/target are then what was captured.
  bool start_line_complete = false;
  bool head_complete = false;  // saw the empty line ending the header section
  bool body_complete = false;  // the whole body (possibly empty) lies inside the capture

  std::size_t offset = 0;       // where the message starts in the capture
  std::size_t head_length = 0;  // bytes of start line + headers + empty line (if complete)

  // Case-insensitive lookup among `headers` (so only finds what fit under max_headers).
  [[nodiscard]] const Header* find_header(std::string_view name) const;

  // The authority the request was addressed to: the target's for absolute-form (a recipient
  // must then ignore Host, RFC 9112 3.2.2) and authority-form, else the Host field.
  [[nodiscard]] std::string_view effective_authority() const {
    return authority.empty() ? std::string_view(host) : std::string_view(authority);
  }
};

struct ParsedResponse {
  std::string version;  // "1.0" or "1.1"
  std::uint16_t status_code = 0;
  std::string reason;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;

  std::vector<Header> headers;
  std::size_t headers_omitted = 0;

  bool start_line_complete = false;  // false: the reason phrase was cut off
  bool head_complete = false;
  bool body_complete = false;

  std::size_t offset = 0;
  std::size_t head_length = 0;

  // Any 1xx status (including 101).
  [[nodiscard]] bool informational() const { return status_code >= 100 && status_code < 200; }
  // A 1xx that precedes the final response to the same request (100 Continue, 103 Early
  // Hints...). 101 is final: the request's answer is the protocol switch.
  [[nodiscard]] bool interim() const { return informational() && status_code != 101; }
  [[nodiscard]] const Header* find_header(std::string_view name) const;
};

// ASCII case-insensitive equality, as header field names compare.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b);

}  // namespace edgetrace::http
