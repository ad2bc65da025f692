// Kernel timestamps are CLOCK_MONOTONIC; spans carry Unix time. The offset between the two
// is measured once at start-up, so a wall-clock step later does not tear a span in two.
#pragma once

#include <cstdint>

namespace edgetrace {

class MonotonicToUnix {
 public:
  MonotonicToUnix();  // measures the offset now
  explicit MonotonicToUnix(std::int64_t offset_nanos) : offset_nanos_(offset_nanos) {}
  [[nodiscard]] std::uint64_t to_unix(std::uint64_t monotonic_nanos) const {
    return monotonic_nanos == 0 ? 0 : static_cast<std::uint64_t>(static_cast<std::int64_t>(monotonic_nanos) + offset_nanos_);
  }
  [[nodiscard]] std::int64_t offset_nanos() const { return offset_nanos_; }

 private:
  std::int64_t offset_nanos_;
};

}  // namespace edgetrace
