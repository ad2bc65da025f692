#include "pipeline/drain_pacer.h"

#include <gtest/gtest.h>

namespace edgetrace {
namespace {

using std::chrono::milliseconds;

TEST(DrainPacer, IdleWaitsTheLongest) {
  const DrainPacer pacer(256, milliseconds(1), milliseconds(50));
  EXPECT_EQ(pacer.next_wait(0, milliseconds(50)), milliseconds(50));
  EXPECT_EQ(pacer.next_wait(0, milliseconds(1)), milliseconds(50));
}

TEST(DrainPacer, AFastFlowIsDrainedInBatchesOfAboutTheTarget) {
  const DrainPacer pacer(256, milliseconds(1), milliseconds(50));
  // 100 k records/s: 5,000 in 50 ms, so 256 arrive in ~2.56 ms.
  EXPECT_EQ(pacer.next_wait(5000, milliseconds(50)), milliseconds(2));
  // The same rate seen over a short wait gives the same answer.
  EXPECT_EQ(pacer.next_wait(256, milliseconds(2) + std::chrono::microseconds(560)), milliseconds(2));
  // 20 k records/s: 256 in 12.8 ms.
  EXPECT_EQ(pacer.next_wait(1000, milliseconds(50)), milliseconds(12));
}

TEST(DrainPacer, WaitsStayWithinTheirBounds) {
  const DrainPacer pacer(256, milliseconds(1), milliseconds(50));
  EXPECT_EQ(pacer.next_wait(1'000'000, milliseconds(50)), milliseconds(1)) << "20 M/s";
  EXPECT_EQ(pacer.next_wait(10, milliseconds(50)), milliseconds(50)) << "a trickle waits the longest";
  EXPECT_EQ(pacer.next_wait(256, milliseconds(50)), milliseconds(50)) << "exactly a batch per long wait";
}

}  // namespace
}  // namespace edgetrace
