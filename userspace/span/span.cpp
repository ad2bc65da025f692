#include "span/span.h"

#include <ostream>

namespace edgetrace {
namespace {
template <std::size_t N>
std::string hex(const std::array<std::uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(N * 2, '0');
  for (std::size_t i = 0; i < N; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  return out;
}
}  // namespace

std::string to_hex(const TraceId& id) { return hex(id); }
std::string to_hex(const SpanId& id) { return hex(id); }

std::ostream& operator<<(std::ostream& out, const AttributeKey& key) { return out << key.view(); }

}  // namespace edgetrace
