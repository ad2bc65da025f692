// libFuzzer entry point (optional; see CMakeLists.txt). The first byte picks how the rest is
// split into a request capture and a response capture.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "http/exchange.h"
#include "http/route_matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t split = all.empty() ? 0 : data[0] % (all.size() + 1);
  edgetrace::http::ParseOptions options;
  options.allow_extension_methods = (data[0] & 1) != 0;
  const auto exchange =
      edgetrace::http::parse_exchange(all.substr(0, split), all.substr(split), options);
  if (exchange.pairing.pairs.size() != exchange.requests.size()) std::abort();
  if (exchange.request_status.consumed > split) std::abort();
  static const edgetrace::http::RouteMatcher routes({"/users/{id}", "/api/*/x", "/static/**"});
  for (const auto& request : exchange.requests) (void)routes.match(request.path);
  return 0;
}
