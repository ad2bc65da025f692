// The one definition of consistent probability sampling in edgetrace, shared by the kernel
// head sampler and the tail sampler's `probabilistic` policy (OpenTelemetry's TraceState
// probability sampling: randomness R is the least-significant 56 bits of the trace id, a
// span is kept iff R >= the rejection threshold T).
//
// Userspace computes T once from the configured probability and hands the kernel only the
// 64-bit integer T; the comparison below is a byte loop, shifts and one compare so the BPF
// side is a line-for-line transcription (no floating point, no library calls).
#pragma once

#include <cmath>
#include <cstdint>

#include "span/span.h"

namespace edgetrace {

// 2^56: the size of the randomness space. A threshold of this value rejects every trace
// (R is at most 2^56 - 1), which is how probability 0 ("never") is represented.
inline constexpr std::uint64_t kRandomnessSpace = std::uint64_t{1} << 56;
inline constexpr std::uint64_t kAlwaysSampleThreshold = 0;
inline constexpr std::uint64_t kNeverSampleThreshold = kRandomnessSpace;

// T = 2^56 - round(p * 2^56), which is round((1 - p) * 2^56) in exact arithmetic. Scaling p
// (rather than 1 - p) keeps full precision for small probabilities: p * 2^56 is exact in
// binary floating point, whereas 1 - p would drop p's low bits. This is the formula of the
// OpenTelemetry Collector's pkg/sampling ProbabilityToThreshold, so thresholds agree bit
// for bit with other OTel consistent samplers. Out-of-range input is clamped: p <= 0 or NaN
// never samples, p >= 1 always samples.
[[nodiscard]] inline std::uint64_t rejection_threshold_for_probability(double probability) {
  if (!(probability > 0.0)) return kNeverSampleThreshold;
  if (probability >= 1.0) return kAlwaysSampleThreshold;
  const double kept = std::round(std::ldexp(probability, 56));
  return kRandomnessSpace - static_cast<std::uint64_t>(kept);
}

// The probability a threshold keeps, for logs and docs.
[[nodiscard]] inline double probability_for_rejection_threshold(std::uint64_t threshold) {
  if (threshold >= kRandomnessSpace) return 0.0;
  return std::ldexp(static_cast<double>(kRandomnessSpace - threshold), -56);
}

// R: trace id bytes 9..15 as a big-endian 56-bit integer (W3C Trace Context level 2 puts the
// random bits there).
[[nodiscard]] inline std::uint64_t trace_randomness(const TraceId& trace_id) {
  std::uint64_t randomness = 0;
  for (unsigned i = 9; i < 16; ++i) randomness = (randomness << 8) | trace_id[i];
  return randomness;
}

[[nodiscard]] inline bool consistent_sampled(const TraceId& trace_id, std::uint64_t threshold) {
  return trace_randomness(trace_id) >= threshold;
}

}  // namespace edgetrace
