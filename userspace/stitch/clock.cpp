#include "stitch/clock.h"

#include <time.h>

namespace edgetrace {
namespace {
std::int64_t nanos(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

MonotonicToUnix::MonotonicToUnix() {
  // Bracket the realtime read between two monotonic reads and keep the tightest of a few
  // tries, so the offset is accurate to well under a microsecond.
  std::int64_t best_width = INT64_MAX;
  offset_nanos_ = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const auto before = nanos(CLOCK_MONOTONIC);
    const auto real = nanos(CLOCK_REALTIME);
    const auto after = nanos(CLOCK_MONOTONIC);
    if (after - before < best_width) {
      best_width = after - before;
      offset_nanos_ = real - (before + (after - before) / 2);
    }
  }
}

}  // namespace edgetrace
