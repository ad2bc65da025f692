#include "sampling/tail_sampler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <iterator>

namespace edgetrace {
namespace {

// glibc malloc keeps a header per block; counting it keeps the estimate close to RSS.
constexpr std::size_t kMallocOverhead = 16;
// libstdc++ keeps strings up to this length inline.
constexpr std::size_t kInlineStringCapacity = 15;
constexpr std::size_t kMaxInitialSpansPerTrace = 32;

std::size_t heap_bytes_of(const std::string& text) {
  return text.capacity() > kInlineStringCapacity ? text.capacity() + 1 + kMallocOverhead : 0;
}

// What a span owns beyond sizeof(Span). The resource is shared by every span of a process and
// is not counted here.
std::size_t span_heap_bytes(const Span& span) {
  std::size_t bytes = heap_bytes_of(span.trace_state) + heap_bytes_of(span.name) + heap_bytes_of(span.status_message);
  if (span.attributes.capacity() > 0) bytes += span.attributes.capacity() * sizeof(Attribute) + kMallocOverhead;
  for (const auto& attribute : span.attributes) {
    if (const auto* name = attribute.key.owned()) bytes += heap_bytes_of(*name);
    if (const auto* text = std::get_if<std::string>(&attribute.value)) bytes += heap_bytes_of(*text);
  }
  return bytes;
}

std::uint64_t as_u64(const SpanId& id) {
  std::uint64_t value = 0;
  std::memcpy(&value, id.data(), sizeof(value));
  return value;
}

bool may_be_local_root(const Span& span) {
  return span.is_root() || span.kind == SpanKind::Server || span.kind == SpanKind::Consumer;
}

}  // namespace

TailSampler::TailSampler(TailSamplingConfig config, SpanSink& downstream, Clock clock)
    : config_(std::move(config)),
      downstream_(downstream),
      clock_(std::move(clock)),
      max_bytes_per_trace_(std::max<std::size_t>(config_.max_bytes / 8, 1)),
      // Sized for the expected traces in flight when told, else grown as needed.
      index_(std::min<std::size_t>(
          config_.num_traces,
          config_.expected_new_traces_per_sec == 0
              ? std::size_t{1} << 16
              : config_.expected_new_traces_per_sec *
                    static_cast<std::size_t>(
                        std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::seconds>(config_.decision_wait).count())))),
      sampled_cache_(config_.decision_cache.sampled_cache_size),
      not_sampled_cache_(config_.decision_cache.non_sampled_cache_size) {
  if (config_.policies.empty()) config_.policies = default_tail_sampling_policies();
  for (const auto& policy : config_.policies) {
    policies_.push_back(make_sampling_policy(policy));
    counters_.policies.push_back(PolicyCounters{policy.name, 0, 0, 0});
  }
}

TailSampler::~TailSampler() {
  if (index_.size() != 0) {
    std::size_t spans = 0;
    for (auto slot = oldest_; slot != kNoTrace; slot = slab_[slot].newer) spans += slab_[slot].spans.size();
    spdlog::warn("tail sampling: destroyed with {} undecided traces ({} spans) buffered; flush_all() was not called",
                 index_.size(), spans);
  }
}

void TailSampler::consume(SpanBatch spans) {
  const TimePoint now = clock_();
  counters_.spans_received += spans.size();
  for (auto& span : spans) accept(std::move(span), now);
  for (const auto& id : touched_) {
    const auto slot = find_trace(id);
    if (slot == kNoTrace || !slab_[slot].needs_completeness_check) continue;
    BufferedTrace& trace = slab_[slot];
    trace.needs_completeness_check = false;
    if (trace.may_have_local_root) check_completeness(trace, now);
  }
  touched_.clear();
  decide_due(now);
  forward_pending();
}

void TailSampler::flush() {
  decide_due(clock_());
  forward_pending();
  downstream_.flush();
}

void TailSampler::flush_all() {
  const TimePoint now = clock_();
  while (oldest_ != kNoTrace) decide(oldest_, DecisionReason::Shutdown, now);
  complete_queue_.clear();
  forward_pending();
  downstream_.flush();
}

std::uint32_t TailSampler::find_trace(const TraceId& id) const {
  const auto slot = index_.find(id, key_of());
  return slot == TraceIdIndex::kNotFound ? kNoTrace : slot;
}

std::uint32_t TailSampler::create_trace(const TraceId& id, TimePoint now) {
  std::uint32_t slot = 0;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slab_.size());
    slab_.emplace_back();
  }
  BufferedTrace& trace = slab_[slot];
  trace.id = id;
  trace.first_seen = now;
  trace.heap_bytes = 0;
  trace.counted_bytes = 0;
  trace.complete = false;
  trace.may_have_local_root = false;
  trace.needs_completeness_check = false;
  trace.spans.reserve(std::min(kMaxInitialSpansPerTrace, static_cast<std::size_t>(average_spans_per_trace_ + 0.5)));
  trace.newer = kNoTrace;
  trace.older = newest_;
  if (newest_ != kNoTrace) slab_[newest_].newer = slot;
  else oldest_ = slot;
  newest_ = slot;
  index_.insert(id, slot);
  return slot;
}

void TailSampler::accept(Span&& span, TimePoint now) {
  const TraceId id = span.trace_id;
  auto slot = find_trace(id);
  if (slot == kNoTrace) {
    if (sampled_cache_.touch(id)) {
      ++counters_.late_spans_sampled;
      ++counters_.spans_forwarded;
      pending_output_.push_back(std::move(span));
      return;
    }
    if (not_sampled_cache_.touch(id)) {
      ++counters_.late_spans_dropped;
      ++counters_.spans_discarded;
      return;
    }
    if (index_.size() >= config_.num_traces && oldest_ != kNoTrace) decide(oldest_, DecisionReason::NumTraces, now);
    slot = create_trace(id, now);
  }
  BufferedTrace& trace = slab_[slot];
  trace.heap_bytes += span_heap_bytes(span);
  trace.may_have_local_root = trace.may_have_local_root || may_be_local_root(span);
  trace.spans.push_back(std::move(span));
  recount_bytes(trace);
  if (!trace.needs_completeness_check) {
    trace.needs_completeness_check = true;
    touched_.push_back(id);
  }
  if (trace.spans.size() >= config_.max_spans_per_trace || trace.counted_bytes >= max_bytes_per_trace_)
    decide(slot, DecisionReason::TraceSize, now);
  while (bytes_in_flight_ > config_.max_bytes && oldest_ != kNoTrace) decide(oldest_, DecisionReason::MaxBytes, now);
  counters_.peak_bytes_in_flight = std::max<std::uint64_t>(counters_.peak_bytes_in_flight, bytes_in_flight_);
}

void TailSampler::recount_bytes(BufferedTrace& trace) {
  // The slab slot, its index entries (load factor 1/4..1/2) and the vector's malloc header.
  static constexpr std::size_t kPerTrace = sizeof(BufferedTrace) + 4 * TraceIdIndex::bytes_per_slot() + kMallocOverhead;
  const std::size_t bytes = kPerTrace + trace.spans.capacity() * sizeof(Span) + trace.heap_bytes;
  bytes_in_flight_ = bytes_in_flight_ - trace.counted_bytes + bytes;
  trace.counted_bytes = bytes;
}

// A trace is complete when it has a local root and every other span's parent is in the
// buffer: a span whose parent we have not seen means that parent is still open (we only ever
// see finished spans). Local roots are spans without a parent, and Server/Consumer spans
// whose parent is elsewhere (another host, or a process edgetrace does not trace).
void TailSampler::check_completeness(BufferedTrace& trace, TimePoint now) {
  scratch_span_ids_.clear();
  for (const auto& span : trace.spans) scratch_span_ids_.push_back(as_u64(span.span_id));
  std::sort(scratch_span_ids_.begin(), scratch_span_ids_.end());
  bool has_local_root = false;
  for (const auto& span : trace.spans) {
    if (span.is_root()) {
      has_local_root = true;
      continue;
    }
    if (std::binary_search(scratch_span_ids_.begin(), scratch_span_ids_.end(), as_u64(span.parent_span_id))) continue;
    if (span.kind == SpanKind::Server || span.kind == SpanKind::Consumer) {
      has_local_root = true;
      continue;
    }
    trace.complete = false;
    return;
  }
  trace.complete = has_local_root;
  if (!trace.complete) return;
  // The grace period restarts with every new span: the trace must stay complete and quiet.
  trace.complete_since = now;
  complete_queue_.emplace_back(trace.id, now);
}

void TailSampler::decide_due(TimePoint now) {
  while (oldest_ != kNoTrace && slab_[oldest_].first_seen + config_.decision_wait <= now)
    decide(oldest_, DecisionReason::Wait, now);
  while (!complete_queue_.empty() && complete_queue_.front().second + config_.early_decision_grace <= now) {
    const auto [id, stamp] = complete_queue_.front();
    complete_queue_.pop_front();
    const auto slot = find_trace(id);
    if (slot == kNoTrace || !slab_[slot].complete || slab_[slot].complete_since != stamp) continue;
    decide(slot, DecisionReason::Complete, now);
  }
}

bool TailSampler::evaluate_policies(const BufferedTrace& trace, TimePoint now) {
  bool any_sampled = false;
  bool any_dropped = false;
  for (std::size_t i = 0; i < policies_.size(); ++i) {
    switch (policies_[i]->evaluate(trace.id, trace.spans, now)) {
      case SamplingDecision::Sampled:
        any_sampled = true;
        ++counters_.policies[i].sampled;
        break;
      case SamplingDecision::NotSampled: ++counters_.policies[i].not_sampled; break;
      case SamplingDecision::Dropped:
        any_dropped = true;
        ++counters_.policies[i].dropped;
        break;
    }
  }
  return any_sampled && !any_dropped;
}

void TailSampler::decide(std::uint32_t slot, DecisionReason reason, TimePoint now) {
  switch (reason) {
    case DecisionReason::Wait: ++counters_.decided_after_wait; break;
    case DecisionReason::Complete: ++counters_.decided_complete; break;
    case DecisionReason::NumTraces: ++counters_.decided_early_num_traces; break;
    case DecisionReason::MaxBytes: ++counters_.decided_early_max_bytes; break;
    case DecisionReason::TraceSize: ++counters_.decided_early_trace_size; break;
    case DecisionReason::Shutdown: ++counters_.decided_at_shutdown; break;
  }
  BufferedTrace& trace = slab_[slot];
  average_spans_per_trace_ += (static_cast<double>(trace.spans.size()) - average_spans_per_trace_) / 64.0;
  if (evaluate_policies(trace, now)) {
    ++counters_.traces_sampled;
    counters_.spans_forwarded += trace.spans.size();
    if (pending_output_.empty()) {
      pending_output_.swap(trace.spans);
    } else {
      pending_output_.insert(pending_output_.end(), std::make_move_iterator(trace.spans.begin()),
                             std::make_move_iterator(trace.spans.end()));
    }
    sampled_cache_.insert(trace.id);
  } else {
    ++counters_.traces_not_sampled;
    counters_.spans_discarded += trace.spans.size();
    not_sampled_cache_.insert(trace.id);
  }
  // Give the memory back now: a free slot keeps no span storage.
  std::vector<Span>().swap(trace.spans);
  if (trace.older != kNoTrace) slab_[trace.older].newer = trace.newer;
  else oldest_ = trace.newer;
  if (trace.newer != kNoTrace) slab_[trace.newer].older = trace.older;
  else newest_ = trace.older;
  bytes_in_flight_ -= trace.counted_bytes;
  trace.counted_bytes = 0;
  trace.complete = false;
  index_.erase(trace.id, key_of());
  free_slots_.push_back(slot);
}

void TailSampler::forward_pending() {
  if (pending_output_.empty()) return;
  SpanBatch batch;
  batch.swap(pending_output_);
  downstream_.consume(std::move(batch));
}

TailSamplingCounters TailSampler::counters() const {
  TailSamplingCounters snapshot = counters_;
  snapshot.traces_in_flight = index_.size();
  snapshot.bytes_in_flight = bytes_in_flight_;
  return snapshot;
}

void TailSampler::log_counters() const { spdlog::info("tail sampling: {}", format_counters(counters())); }

std::string format_counters(const TailSamplingCounters& c) {
  std::string out = fmt::format(
      "spans_received={} spans_forwarded={} spans_discarded={} traces_sampled={} traces_not_sampled={} "
      "decided_after_wait={} decided_complete={} decided_early_num_traces={} decided_early_max_bytes={} "
      "decided_early_trace_size={} decided_at_shutdown={} late_spans_sampled={} late_spans_dropped={} "
      "traces_in_flight={} bytes_in_flight={} peak_bytes_in_flight={}",
      c.spans_received, c.spans_forwarded, c.spans_discarded, c.traces_sampled, c.traces_not_sampled,
      c.decided_after_wait, c.decided_complete, c.decided_early_num_traces, c.decided_early_max_bytes,
      c.decided_early_trace_size, c.decided_at_shutdown, c.late_spans_sampled, c.late_spans_dropped,
      c.traces_in_flight, c.bytes_in_flight, c.peak_bytes_in_flight);
  for (const auto& policy : c.policies) {
    fmt::format_to(std::back_inserter(out), " policy[{}].sampled={} policy[{}].not_sampled={}", policy.name,
                   policy.sampled, policy.name, policy.not_sampled);
    if (policy.dropped != 0) fmt::format_to(std::back_inserter(out), " policy[{}].dropped={}", policy.name, policy.dropped);
  }
  return out;
}

}  // namespace edgetrace
