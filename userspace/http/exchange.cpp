#include "http/exchange.h"

namespace edgetrace::http {

Pairing pair_exchange(std::span<const ParsedRequest> requests,
                      std::span<const ParsedResponse> responses) {
  Pairing pairing;
  pairing.pairs.reserve(requests.size());
  std::size_t next_response = 0;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    while (next_response < responses.size() && responses[next_response].interim()) {
      ++pairing.interim_responses;
      ++next_response;
    }
    ExchangePair pair{.request_index = r, .response_index = std::nullopt};
    if (next_response < responses.size()) {
      pair.response_index = next_response++;
    } else {
      ++pairing.unpaired_requests;
    }
    pairing.pairs.push_back(pair);
  }
  for (; next_response < responses.size(); ++next_response) {
    if (responses[next_response].interim()) {
      ++pairing.interim_responses;
    } else {
      ++pairing.unpaired_responses;
    }
  }
  return pairing;
}

ParsedExchange parse_exchange(std::string_view request_capture, std::string_view response_capture,
                              const ParseOptions& options) {
  ParsedExchange exchange;
  exchange.requests = parse_requests(request_capture, exchange.request_status, options);
  exchange.responses =
      parse_responses(response_capture, exchange.response_status, exchange.requests, options);
  exchange.pairing = pair_exchange(exchange.requests, exchange.responses);
  return exchange;
}

}  // namespace edgetrace::http
