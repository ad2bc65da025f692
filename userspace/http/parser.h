// Parsing of the bounded byte-stream prefixes the kernel captures for one HTTP/1.x exchange
// record. Never throws on input, never reads outside the given view, allocates at most in
// proportion to the input (and max_messages / max_headers).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace edgetrace::http {

struct ParseOptions {
  // Stop (ParseStop::MessageLimit) after this many messages.
  std::size_t max_messages = 64;
  // Header lines kept per message in `headers`; later ones are only counted.
  std::size_t max_headers = 16;
  // By default a request method must be one the kernel recognises (see
  // looks_like_http_request_start). When true, any token of 1-20 letters A-Z is accepted for
  // the second and later pipelined requests too (e.g. WebDAV's PROPFIND).
  bool allow_extension_methods = false;
};

// Parses as many requests as the capture holds. `status` says why parsing ended.
std::vector<ParsedRequest> parse_requests(std::string_view captured, ParseStatus& status,
                                          const ParseOptions& options = {});

// As parse_requests, into `requests` (cleared first): a caller parsing record after record
// reuses the vector's memory instead of allocating a new one each time.
void parse_requests_into(std::string_view captured, ParseStatus& status, std::vector<ParsedRequest>& requests,
                         const ParseOptions& options = {});

// Responses are framed by their request (a response to HEAD has no body whatever its
// Content-Length says; a 2xx to CONNECT opens a tunnel), so pass the requests parsed from the
// other side of the same record: the n-th final response belongs to requests[n]. Responses
// beyond the known requests are framed as answers to a non-HEAD, non-CONNECT request.
std::vector<ParsedResponse> parse_responses(std::string_view captured, ParseStatus& status,
                                            std::span<const ParsedRequest> requests = {},
                                            const ParseOptions& options = {});
// As parse_responses, into `responses` (cleared first).
void parse_responses_into(std::string_view captured, ParseStatus& status, std::vector<ParsedResponse>& responses,
                          std::span<const ParsedRequest> requests = {}, const ParseOptions& options = {});

// The checks the kernel applies to the first bytes of a stream before it captures it; true
// iff `bytes` starts with one of "GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "PATCH ",
// "OPTIONS ", "CONNECT ", "TRACE " (case-sensitive). A shorter view is never a start.
[[nodiscard]] bool looks_like_http_request_start(std::string_view bytes);
// True iff `bytes` starts with "HTTP/1.".
[[nodiscard]] bool looks_like_http_response_start(std::string_view bytes);

// The methods of looks_like_http_request_start, without the trailing space.
[[nodiscard]] std::span<const std::string_view> known_methods();

}  // namespace edgetrace::http
