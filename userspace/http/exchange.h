// Pairing requests with responses of one kernel exchange record.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http/parser.h"

namespace edgetrace::http {

struct ExchangePair {
  std::size_t request_index = 0;
  // Index into the responses; nullopt when the response is not known (status unknown).
  std::optional<std::size_t> response_index;
};

struct Pairing {
  // One entry per request, in order.
  std::vector<ExchangePair> pairs;
  std::size_t unpaired_requests = 0;
  // Final responses with no request to pair with (the request side stopped earlier).
  std::size_t unpaired_responses = 0;
  // 1xx interim responses (100 Continue, 103 Early Hints) that were skipped.
  std::size_t interim_responses = 0;
};

// Pairs the n-th request with the n-th final (non-interim) response. Both lists must come from
// parse_requests / parse_responses, which only report messages whose position on the wire is
// certain, so a response is never shifted onto another request: when the response capture
// could not be parsed to its end, the later requests stay unpaired instead of guessed.
[[nodiscard]] Pairing pair_exchange(std::span<const ParsedRequest> requests,
                                    std::span<const ParsedResponse> responses);

// Everything the stitcher needs from one record's two captures.
struct ParsedExchange {
  std::vector<ParsedRequest> requests;
  ParseStatus request_status;
  std::vector<ParsedResponse> responses;
  ParseStatus response_status;
  Pairing pairing;
};

[[nodiscard]] ParsedExchange parse_exchange(std::string_view request_capture,
                                            std::string_view response_capture,
                                            const ParseOptions& options = {});

}  // namespace edgetrace::http
