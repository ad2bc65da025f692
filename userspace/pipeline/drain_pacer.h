// How long the consumer waits on the ring buffer before draining it again.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace edgetrace {

// The kernel wakes the consumer only once the ring is filling up, so this wait sets how much
// each drain takes in. A fixed 50 ms made every drain at 100 k spans/s a ~4 ms burst of work,
// which the traced server's clients felt: +3.6 ms at p99 (docs/benchmarks.md). The pacer
// aims each drain at about `batch` records: short waits while records flow fast, the long
// one while they trickle or stop, so an idle agent still wakes only 20 times a second.
class DrainPacer {
 public:
  using milliseconds = std::chrono::milliseconds;

  explicit DrainPacer(std::size_t batch = 256, milliseconds shortest = milliseconds(1),
                      milliseconds longest = milliseconds(50))
      : batch_(batch), shortest_(shortest), longest_(longest) {}

  // The wait before the next drain, given the records the last one took in and the time
  // since the one before it.
  [[nodiscard]] milliseconds next_wait(std::size_t records, std::chrono::nanoseconds since_previous) const {
    if (records == 0) return longest_;
    const auto wait = since_previous * static_cast<double>(batch_) / static_cast<double>(records);
    return std::clamp(std::chrono::duration_cast<milliseconds>(wait), shortest_, longest_);
  }

 private:
  std::size_t batch_;
  milliseconds shortest_;
  milliseconds longest_;
};

}  // namespace edgetrace
