// Helpers shared by the sampling suites: span builders, a downstream that records what it
// receives, and a clock the test moves by hand.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sampling/tail_sampler.h"
#include "span/span.h"

namespace edgetrace::testing {

using namespace std::chrono_literals;

inline TraceId random_trace_id(std::mt19937_64& rng) {
  TraceId id{};
  for (std::size_t i = 0; i < id.size(); i += 8) {
    const std::uint64_t word = rng();
    for (std::size_t b = 0; b < 8; ++b) id[i + b] = static_cast<std::uint8_t>(word >> (8 * b));
  }
  return id;
}

// A trace id whose randomness (bytes 9..15, big-endian) is exactly `randomness`.
inline TraceId trace_id_with_randomness(std::uint64_t randomness, std::uint8_t filler = 0xab) {
  TraceId id{};
  for (std::size_t i = 0; i < 9; ++i) id[i] = filler;
  for (std::size_t i = 0; i < 7; ++i) id[15 - i] = static_cast<std::uint8_t>(randomness >> (8 * i));
  return id;
}

inline SpanId span_id(std::uint64_t value) {
  SpanId id{};
  for (std::size_t i = 0; i < 8; ++i) id[7 - i] = static_cast<std::uint8_t>(value >> (8 * i));
  return id;
}

inline Span make_span(const TraceId& trace, std::uint64_t id, std::uint64_t parent, SpanKind kind,
                      std::uint64_t start_ms = 0, std::uint64_t end_ms = 1, StatusCode status = StatusCode::Unset) {
  Span span;
  span.trace_id = trace;
  span.span_id = span_id(id);
  span.parent_span_id = parent == 0 ? SpanId{} : span_id(parent);
  span.kind = kind;
  span.name = "GET /items";
  span.start_unix_nanos = 1'700'000'000'000'000'000ULL + start_ms * 1'000'000ULL;
  span.end_unix_nanos = 1'700'000'000'000'000'000ULL + end_ms * 1'000'000ULL;
  span.status = status;
  return span;
}

class RecordingSink final : public SpanSink {
 public:
  void consume(SpanBatch spans) override {
    ++batches;
    for (auto& span : spans) received.push_back(std::move(span));
  }
  void flush() override { ++flushes; }

  [[nodiscard]] std::size_t count_of(const TraceId& trace) const {
    std::size_t count = 0;
    for (const auto& span : received)
      if (span.trace_id == trace) ++count;
    return count;
  }

  std::vector<Span> received;
  std::size_t batches = 0;
  std::size_t flushes = 0;
};

// Counts and forgets: for volume tests where keeping spans would distort memory.
class CountingSink final : public SpanSink {
 public:
  void consume(SpanBatch spans) override { spans_received += spans.size(); }
  std::uint64_t spans_received = 0;
};

struct ManualClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1000)};
  TailSampler::Clock as_clock() {
    return [this] { return now; };
  }
  void advance(std::chrono::nanoseconds by) { now += by; }
};

}  // namespace edgetrace::testing
