// Tail sampling: buffers finished spans per trace, decides each trace once with the configured
// policies, forwards the spans of sampled traces downstream. See docs/tail-sampling.md for the
// decision timing (decision_wait, early decision on a complete local trace), the memory
// bounds and the late-span rules.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sampling/decision_cache.h"
#include "sampling/policy.h"
#include "sampling/trace_id_index.h"
#include "sampling/tail_sampling_config.h"
#include "span/span.h"

namespace edgetrace {

struct PolicyCounters {
  std::string name;
  std::uint64_t sampled = 0;      // traces this policy voted to sample
  std::uint64_t not_sampled = 0;  // traces it did not vote for
  std::uint64_t dropped = 0;      // traces it vetoed (drop policies only)
};

struct TailSamplingCounters {
  std::vector<PolicyCounters> policies;
  std::uint64_t spans_received = 0;
  std::uint64_t spans_forwarded = 0;  // sampled spans handed downstream (late ones included)
  std::uint64_t spans_discarded = 0;  // spans of not-sampled traces (late ones included)
  std::uint64_t traces_sampled = 0;
  std::uint64_t traces_not_sampled = 0;
  // Why each trace was decided when it was.
  std::uint64_t decided_after_wait = 0;        // decision_wait elapsed
  std::uint64_t decided_complete = 0;          // local root ended, nothing open, grace elapsed
  std::uint64_t decided_early_num_traces = 0;  // oldest trace decided: num_traces bound hit
  std::uint64_t decided_early_max_bytes = 0;   // oldest trace decided: max_bytes bound hit
  std::uint64_t decided_early_trace_size = 0;  // trace hit max_spans_per_trace or max_bytes / 8
  std::uint64_t decided_at_shutdown = 0;       // flush_all()
  // Spans of already-decided traces, given their trace's cached decision.
  std::uint64_t late_spans_sampled = 0;
  std::uint64_t late_spans_dropped = 0;
  std::uint64_t traces_in_flight = 0;
  std::uint64_t bytes_in_flight = 0;
  std::uint64_t peak_bytes_in_flight = 0;
};

// One line, key=value pairs, for logs and the CLI.
[[nodiscard]] std::string format_counters(const TailSamplingCounters& counters);

class TailSampler final : public SpanSink {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `downstream` must outlive the sampler. `clock` is read once per consume()/flush() call.
  TailSampler(TailSamplingConfig config, SpanSink& downstream, Clock clock = &std::chrono::steady_clock::now);
  ~TailSampler() override;
  TailSampler(const TailSampler&) = delete;
  TailSampler& operator=(const TailSampler&) = delete;

  void consume(SpanBatch spans) override;
  // Decides the traces that are due (decision_wait or early decision), forwards the sampled
  // spans, then flushes downstream so a pipeline flushing the head of the chain flushes all.
  void flush() override;
  // Shutdown: decides every buffered trace now (counted as decided_at_shutdown), forwards,
  // flushes downstream.
  void flush_all();

  [[nodiscard]] TailSamplingCounters counters() const;
  void log_counters() const;
  [[nodiscard]] std::size_t traces_in_flight() const { return index_.size(); }
  [[nodiscard]] std::size_t bytes_in_flight() const { return bytes_in_flight_; }
  [[nodiscard]] const TailSamplingConfig& config() const { return config_; }

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  enum class DecisionReason : std::uint8_t { Wait, Complete, NumTraces, MaxBytes, TraceSize, Shutdown };

  static constexpr std::uint32_t kNoTrace = 0xffffffffu;

  struct BufferedTrace {
    TraceId id{};
    std::vector<Span> spans;
    TimePoint first_seen{};
    std::size_t heap_bytes = 0;        // strings and vectors the spans own
    std::size_t counted_bytes = 0;     // this trace's share of bytes_in_flight_
    std::uint32_t older = kNoTrace;    // first-seen order, linked by slot
    std::uint32_t newer = kNoTrace;
    TimePoint complete_since{};
    bool complete = false;
    bool may_have_local_root = false;
    bool needs_completeness_check = false;
  };

  std::uint32_t find_trace(const TraceId& id) const;
  std::uint32_t create_trace(const TraceId& id, TimePoint now);
  void accept(Span&& span, TimePoint now);
  void check_completeness(BufferedTrace& trace, TimePoint now);
  void decide_due(TimePoint now);
  void decide(std::uint32_t slot, DecisionReason reason, TimePoint now);
  bool evaluate_policies(const BufferedTrace& trace, TimePoint now);
  void recount_bytes(BufferedTrace& trace);
  void forward_pending();
  [[nodiscard]] auto key_of() const {
    return [this](std::uint32_t slot) -> const TraceId& { return slab_[slot].id; };
  }

  TailSamplingConfig config_;
  SpanSink& downstream_;
  Clock clock_;
  std::vector<std::unique_ptr<SamplingPolicy>> policies_;
  std::size_t max_bytes_per_trace_;

  // Buffered traces live in slab_ slots (reused through free_slots_), found through index_.
  std::vector<BufferedTrace> slab_;
  std::vector<std::uint32_t> free_slots_;
  TraceIdIndex index_;
  std::uint32_t oldest_ = kNoTrace;
  std::uint32_t newest_ = kNoTrace;
  std::size_t bytes_in_flight_ = 0;
  // Moving average of spans per decided trace, so a new trace's span vector is allocated
  // once at about the right size instead of growing (and moving its spans) several times.
  double average_spans_per_trace_ = 4.0;
  // Traces that looked complete, in the order they did; stale entries are skipped.
  std::deque<std::pair<TraceId, TimePoint>> complete_queue_;
  std::vector<TraceId> touched_;
  std::vector<std::uint64_t> scratch_span_ids_;

  TraceIdLruSet sampled_cache_;
  TraceIdLruSet not_sampled_cache_;

  SpanBatch pending_output_;
  TailSamplingCounters counters_;
};

}  // namespace edgetrace
