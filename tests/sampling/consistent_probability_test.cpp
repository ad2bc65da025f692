#include "sampling/consistent_probability.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "sampling_test_support.h"

namespace edgetrace {
namespace {

using testing::random_trace_id;
using testing::trace_id_with_randomness;

constexpr std::uint64_t kMaxRandomness = kRandomnessSpace - 1;

TEST(ConsistentProbability, ProbabilityOneHasThresholdZeroAndKeepsEveryTrace) {
  EXPECT_EQ(rejection_threshold_for_probability(1.0), 0u);
  EXPECT_TRUE(consistent_sampled(trace_id_with_randomness(0), rejection_threshold_for_probability(1.0)));
  EXPECT_TRUE(consistent_sampled(trace_id_with_randomness(kMaxRandomness), 0));
}

TEST(ConsistentProbability, ProbabilityZeroRejectsEveryTrace) {
  const auto threshold = rejection_threshold_for_probability(0.0);
  EXPECT_EQ(threshold, std::uint64_t{1} << 56);
  EXPECT_FALSE(consistent_sampled(trace_id_with_randomness(kMaxRandomness), threshold));
  EXPECT_FALSE(consistent_sampled(trace_id_with_randomness(0), threshold));
}

TEST(ConsistentProbability, HalfSplitsTheRandomnessSpaceExactly) {
  const auto threshold = rejection_threshold_for_probability(0.5);
  EXPECT_EQ(threshold, std::uint64_t{1} << 55);
  EXPECT_FALSE(consistent_sampled(trace_id_with_randomness((std::uint64_t{1} << 55) - 1), threshold));
  EXPECT_TRUE(consistent_sampled(trace_id_with_randomness(std::uint64_t{1} << 55), threshold));
}

TEST(ConsistentProbability, ThresholdsMatchTheOtelRoundingForOddProbabilities) {
  // 2^56 - round(p * 2^56), as the collector's pkg/sampling computes it.
  EXPECT_EQ(rejection_threshold_for_probability(0.01), 71337018097548657u);  // 0xfd70a3d70a3d71
  EXPECT_EQ(rejection_threshold_for_probability(1.0 / 3.0), 48038396025285292u);
  EXPECT_EQ(rejection_threshold_for_probability(0.25), 0xc0000000000000u);
  // The smallest representable probability keeps exactly one randomness value.
  EXPECT_EQ(rejection_threshold_for_probability(std::ldexp(1.0, -56)), kMaxRandomness);
}

TEST(ConsistentProbability, OutOfRangeInputIsClamped) {
  EXPECT_EQ(rejection_threshold_for_probability(-0.5), kNeverSampleThreshold);
  EXPECT_EQ(rejection_threshold_for_probability(std::numeric_limits<double>::quiet_NaN()), kNeverSampleThreshold);
  EXPECT_EQ(rejection_threshold_for_probability(1.5), kAlwaysSampleThreshold);
  EXPECT_EQ(rejection_threshold_for_probability(std::ldexp(1.0, -60)), kNeverSampleThreshold);
}

TEST(ConsistentProbability, RandomnessIsBytesNineToFifteenBigEndian) {
  TraceId id{};
  id[8] = 0xff;  // not part of the randomness
  id[9] = 0x01;
  id[15] = 0x02;
  EXPECT_EQ(trace_randomness(id), 0x01000000000002u);
  EXPECT_EQ(trace_randomness(trace_id_with_randomness(0x123456789abcdeu)), 0x123456789abcdeu);
}

TEST(ConsistentProbability, ThresholdRoundTripsToProbability) {
  for (const double p : {1.0, 0.5, 0.25, 0.1, 0.05, 0.001}) {
    EXPECT_NEAR(probability_for_rejection_threshold(rejection_threshold_for_probability(p)), p, 1e-15) << p;
  }
  EXPECT_EQ(probability_for_rejection_threshold(kNeverSampleThreshold), 0.0);
}

TEST(ConsistentProbability, SampledFractionIsCloseToTheProbability) {
  std::mt19937_64 rng(12345);
  constexpr int kIds = 200'000;
  std::vector<TraceId> ids;
  ids.reserve(kIds);
  for (int i = 0; i < kIds; ++i) ids.push_back(random_trace_id(rng));
  for (const double p : {0.01, 0.05, 0.25, 0.5, 0.9}) {
    const auto threshold = rejection_threshold_for_probability(p);
    int kept = 0;
    for (const auto& id : ids) kept += consistent_sampled(id, threshold) ? 1 : 0;
    const double sigma = std::sqrt(kIds * p * (1 - p));
    EXPECT_NEAR(kept, kIds * p, 5 * sigma) << "p=" << p;
  }
}

TEST(ConsistentProbability, KeptAtLowerProbabilityImpliesKeptAtHigher) {
  std::mt19937_64 rng(99);
  const auto low = rejection_threshold_for_probability(0.05);
  const auto high = rejection_threshold_for_probability(0.2);
  int kept_low = 0;
  for (int i = 0; i < 50'000; ++i) {
    const auto id = random_trace_id(rng);
    if (consistent_sampled(id, low)) {
      ++kept_low;
      EXPECT_TRUE(consistent_sampled(id, high));
    }
  }
  EXPECT_GT(kept_low, 0);
}

}  // namespace
}  // namespace edgetrace
