#include "sampling/tail_sampler.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <random>

#include "sampling/consistent_probability.h"
#include "sampling_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using testing::make_span;
using testing::ManualClock;
using testing::random_trace_id;
using testing::RecordingSink;

TailSamplingConfig config_from(const std::string& yaml) { return parse_tail_sampling_config(YAML::Load(yaml)); }

SpanBatch batch_of(std::initializer_list<Span> spans) { return spans; }

class TailSamplerTest : public ::testing::Test {
 protected:
  TraceId next_trace() { return random_trace_id(rng_); }

  // A root server span and `children` client children, children first (they end first).
  SpanBatch whole_trace(const TraceId& trace, int children, StatusCode root_status = StatusCode::Unset,
                        std::uint64_t duration_ms = 10) {
    SpanBatch spans;
    for (int i = 0; i < children; ++i)
      spans.push_back(make_span(trace, 100 + i, 1, SpanKind::Client, 1, duration_ms - 1));
    spans.push_back(make_span(trace, 1, 0, SpanKind::Server, 0, duration_ms, root_status));
    return spans;
  }

  std::mt19937_64 rng_{2024};
  ManualClock clock_;
  RecordingSink sink_;
};

TEST_F(TailSamplerTest, WaitsForDecisionWaitWithoutALocalRoot) {
  TailSampler sampler(config_from("decision_wait: 10s\npolicies: [{name: all, type: always_sample}]"), sink_,
                      clock_.as_clock());
  const auto trace = next_trace();
  // Two children whose parent (span 1) has not ended: not complete.
  sampler.consume(batch_of({make_span(trace, 2, 1, SpanKind::Client), make_span(trace, 3, 1, SpanKind::Client)}));
  clock_.advance(10s - 1ns);
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  EXPECT_EQ(sampler.traces_in_flight(), 1u);
  clock_.advance(1ns);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(trace), 2u);
  EXPECT_EQ(sampler.counters().decided_after_wait, 1u);
  EXPECT_EQ(sampler.traces_in_flight(), 0u);
  EXPECT_EQ(sampler.bytes_in_flight(), 0u);
}

TEST_F(TailSamplerTest, DecidesEarlyOnceTheLocalRootEndedAndGraceElapsed) {
  TailSampler sampler(config_from("early_decision_grace: 200ms\npolicies: [{name: all, type: always_sample}]"), sink_,
                      clock_.as_clock());
  const auto trace = next_trace();
  sampler.consume(whole_trace(trace, 3));
  clock_.advance(199ms);
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  clock_.advance(1ms);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(trace), 4u);
  const auto c = sampler.counters();
  EXPECT_EQ(c.decided_complete, 1u);
  EXPECT_EQ(c.decided_after_wait, 0u);
}

TEST_F(TailSamplerTest, ServerSpanWithRemoteParentIsALocalRoot) {
  TailSampler sampler(config_from("policies: [{name: all, type: always_sample}]"), sink_, clock_.as_clock());
  const auto trace = next_trace();
  // Parent 0xfeed lives in another host's process.
  sampler.consume(batch_of({make_span(trace, 2, 1, SpanKind::Internal), make_span(trace, 1, 0xfeed, SpanKind::Server)}));
  clock_.advance(200ms);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(trace), 2u);
  EXPECT_EQ(sampler.counters().decided_complete, 1u);
}

TEST_F(TailSamplerTest, ASpanWithAnUnseenParentBlocksTheEarlyDecision) {
  TailSampler sampler(config_from("policies: [{name: all, type: always_sample}]"), sink_, clock_.as_clock());
  const auto trace = next_trace();
  // Span 7's parent (span 5) is still open somewhere below the root.
  sampler.consume(batch_of({make_span(trace, 7, 5, SpanKind::Client), make_span(trace, 1, 0, SpanKind::Server)}));
  clock_.advance(5s);
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  // Its parent arrives: now complete, and the grace period starts from here.
  sampler.consume(batch_of({make_span(trace, 5, 1, SpanKind::Internal)}));
  clock_.advance(199ms);
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  clock_.advance(1ms);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(trace), 3u);
  EXPECT_EQ(sampler.counters().decided_complete, 1u);
}

TEST_F(TailSamplerTest, ANewSpanRestartsTheGracePeriod) {
  TailSampler sampler(config_from("policies: [{name: all, type: always_sample}]"), sink_, clock_.as_clock());
  const auto trace = next_trace();
  sampler.consume(whole_trace(trace, 1));
  clock_.advance(150ms);
  sampler.consume(batch_of({make_span(trace, 50, 1, SpanKind::Client)}));  // a straggler child
  clock_.advance(150ms);  // 300 ms after the root, 150 ms after the straggler
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  clock_.advance(50ms);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(trace), 3u);
}

TEST_F(TailSamplerTest, NumTracesBoundDecidesTheOldestEarly) {
  TailSampler sampler(config_from("num_traces: 3\npolicies: [{name: all, type: always_sample}]"), sink_,
                      clock_.as_clock());
  std::vector<TraceId> traces;
  for (int i = 0; i < 4; ++i) {
    traces.push_back(next_trace());
    sampler.consume(batch_of({make_span(traces.back(), 2, 1, SpanKind::Client)}));
    clock_.advance(1ms);
  }
  EXPECT_EQ(sampler.traces_in_flight(), 3u);
  EXPECT_EQ(sink_.count_of(traces[0]), 1u);  // decided, not lost
  EXPECT_EQ(sink_.count_of(traces[1]), 0u);
  EXPECT_EQ(sampler.counters().decided_early_num_traces, 1u);
}

TEST_F(TailSamplerTest, MaxBytesBoundDecidesOldestTracesEarly) {
  TailSampler sampler(config_from("max_bytes: 64KiB\nnum_traces: 1000000\npolicies: [{name: all, type: always_sample}]"),
                      sink_, clock_.as_clock());
  std::vector<TraceId> traces;
  for (int i = 0; i < 2'000; ++i) {
    traces.push_back(next_trace());
    auto span = make_span(traces.back(), 2, 1, SpanKind::Client);
    span.attributes.push_back(Attribute{"url.full", std::string(200, 'x')});
    sampler.consume(batch_of({std::move(span)}));
    ASSERT_LE(sampler.bytes_in_flight(), std::size_t{64} << 10);
  }
  const auto c = sampler.counters();
  EXPECT_GT(c.decided_early_max_bytes, 0u);
  EXPECT_EQ(c.decided_early_max_bytes + c.traces_in_flight, 2'000u);
  EXPECT_EQ(sink_.count_of(traces.front()), 1u);  // the oldest went first
  EXPECT_EQ(sink_.count_of(traces.back()), 0u);
  EXPECT_EQ(c.spans_received, c.spans_forwarded + c.traces_in_flight);
}

TEST_F(TailSamplerTest, AHugeTraceIsDecidedAloneWithoutStallingOthers) {
  TailSampler sampler(
      config_from("num_traces: 100\nmax_spans_per_trace: 100\npolicies: [{name: all, type: always_sample}]"), sink_,
      clock_.as_clock());
  const auto huge = next_trace();
  std::vector<TraceId> small;
  for (int i = 0; i < 50; ++i) small.push_back(next_trace());
  // Interleave: 1000 spans of the huge trace with one open span for each small trace.
  for (int round = 0; round < 10; ++round) {
    SpanBatch batch;
    for (int i = 0; i < 100; ++i) batch.push_back(make_span(huge, 1000 + round * 100 + i, 1, SpanKind::Client));
    for (int i = 0; i < 5; ++i) batch.push_back(make_span(small[round * 5 + i], 2, 1, SpanKind::Client));
    sampler.consume(std::move(batch));
  }
  const auto c = sampler.counters();
  EXPECT_EQ(c.decided_early_trace_size, 1u);
  EXPECT_EQ(c.decided_early_num_traces, 0u);
  EXPECT_EQ(c.decided_early_max_bytes, 0u);
  // After the first 100 spans the rest follow the cached decision, straight through.
  EXPECT_EQ(sink_.count_of(huge), 1000u);
  EXPECT_EQ(c.late_spans_sampled, 900u);
  EXPECT_EQ(sampler.traces_in_flight(), 50u);  // every small trace is still waiting its turn
  for (const auto& id : small) EXPECT_EQ(sink_.count_of(id), 0u);
}

TEST_F(TailSamplerTest, LateSpansGetTheCachedDecision) {
  TailSampler sampler(config_from(R"(
decision_cache: {sampled_cache_size: 10, non_sampled_cache_size: 10}
policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]
)"),
                      sink_, clock_.as_clock());
  const auto kept = next_trace();
  const auto dropped = next_trace();
  sampler.consume(whole_trace(kept, 1, StatusCode::Error));
  sampler.consume(whole_trace(dropped, 1));
  clock_.advance(1s);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(kept), 2u);
  EXPECT_EQ(sink_.count_of(dropped), 0u);

  // Late spans: no errors of their own, yet they share their trace's fate.
  sampler.consume(batch_of({make_span(kept, 9, 1, SpanKind::Client), make_span(dropped, 9, 1, SpanKind::Client)}));
  EXPECT_EQ(sink_.count_of(kept), 3u);
  EXPECT_EQ(sink_.count_of(dropped), 0u);
  EXPECT_EQ(sampler.traces_in_flight(), 0u);
  const auto c = sampler.counters();
  EXPECT_EQ(c.late_spans_sampled, 1u);
  EXPECT_EQ(c.late_spans_dropped, 1u);
  EXPECT_EQ(c.spans_received, c.spans_forwarded + c.spans_discarded);
}

TEST_F(TailSamplerTest, WithoutADecisionCacheALateSpanStartsAFreshTrace) {
  TailSampler sampler(config_from(R"(
decision_cache: {sampled_cache_size: 0, non_sampled_cache_size: 0}
policies: [{name: all, type: always_sample}]
)"),
                      sink_, clock_.as_clock());
  const auto trace = next_trace();
  sampler.consume(whole_trace(trace, 1));
  clock_.advance(1s);
  sampler.flush();
  sampler.consume(batch_of({make_span(trace, 9, 1, SpanKind::Client)}));
  EXPECT_EQ(sampler.traces_in_flight(), 1u);
  EXPECT_EQ(sampler.counters().late_spans_sampled, 0u);
}

TEST_F(TailSamplerTest, DecisionCacheIsLeastRecentlyUsed) {
  TailSampler sampler(config_from(R"(
decision_cache: {sampled_cache_size: 2, non_sampled_cache_size: 2}
policies: [{name: all, type: always_sample}]
)"),
                      sink_, clock_.as_clock());
  const auto a = next_trace();
  const auto b = next_trace();
  const auto c = next_trace();
  for (const auto& id : {a, b}) sampler.consume(whole_trace(id, 0));
  clock_.advance(1s);
  sampler.flush();
  sampler.consume(batch_of({make_span(a, 9, 1, SpanKind::Client)}));  // touches a: b is now the oldest
  sampler.consume(whole_trace(c, 0));
  clock_.advance(1s);
  sampler.flush();  // c decided: evicts b
  sampler.consume(batch_of({make_span(a, 10, 1, SpanKind::Client), make_span(b, 10, 1, SpanKind::Client)}));
  EXPECT_EQ(sampler.counters().late_spans_sampled, 2u);  // a twice; b forgotten
  EXPECT_EQ(sampler.traces_in_flight(), 1u);
}

TEST_F(TailSamplerTest, CombiningDropVetoesAndAnySampleKeeps) {
  TailSampler sampler(config_from(R"(
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: checkout, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}
  - name: no-health
    type: drop
    drop: {drop_sub_policy: [{name: health, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}]}
)"),
                      sink_, clock_.as_clock());
  const auto with_route = [&](const TraceId& trace, const std::string& route, StatusCode status) {
    auto spans = whole_trace(trace, 0, status);
    spans.back().attributes.push_back(Attribute{"http.route", route});
    return spans;
  };
  const auto error_checkout = next_trace();  // two policies sample
  const auto plain_checkout = next_trace();  // one samples
  const auto error_health = next_trace();    // one samples, drop vetoes
  const auto plain_orders = next_trace();    // none samples
  sampler.consume(with_route(error_checkout, "/checkout", StatusCode::Error));
  sampler.consume(with_route(plain_checkout, "/checkout", StatusCode::Ok));
  sampler.consume(with_route(error_health, "/health", StatusCode::Error));
  sampler.consume(with_route(plain_orders, "/orders", StatusCode::Ok));
  sampler.flush_all();
  EXPECT_EQ(sink_.count_of(error_checkout), 1u);
  EXPECT_EQ(sink_.count_of(plain_checkout), 1u);
  EXPECT_EQ(sink_.count_of(error_health), 0u);
  EXPECT_EQ(sink_.count_of(plain_orders), 0u);
  const auto c = sampler.counters();
  ASSERT_EQ(c.policies.size(), 3u);
  EXPECT_EQ(c.policies[0].sampled, 2u);
  EXPECT_EQ(c.policies[0].not_sampled, 2u);
  EXPECT_EQ(c.policies[1].sampled, 2u);
  EXPECT_EQ(c.policies[2].dropped, 1u);
  EXPECT_EQ(c.policies[2].not_sampled, 3u);
  EXPECT_EQ(c.traces_sampled, 2u);
  EXPECT_EQ(c.traces_not_sampled, 2u);
}

TEST_F(TailSamplerTest, DefaultPoliciesKeepErrorsSlowTracesAndFivePercent) {
  TailSampler sampler(default_tail_sampling_config(), sink_, clock_.as_clock());
  const auto error = next_trace();
  const auto slow = next_trace();
  sampler.consume(whole_trace(error, 2, StatusCode::Error, 5));
  sampler.consume(whole_trace(slow, 2, StatusCode::Ok, 250));
  const auto threshold = rejection_threshold_for_probability(0.05);
  std::vector<TraceId> fast;
  for (int i = 0; i < 4'000; ++i) {
    fast.push_back(next_trace());
    sampler.consume(whole_trace(fast.back(), 2, StatusCode::Ok, 20));
  }
  clock_.advance(1s);
  sampler.flush();
  EXPECT_EQ(sink_.count_of(error), 3u);
  EXPECT_EQ(sink_.count_of(slow), 3u);
  std::size_t kept = 0;
  for (const auto& id : fast) {
    const bool forwarded = sink_.count_of(id) == 3;
    EXPECT_EQ(forwarded, consistent_sampled(id, threshold));
    kept += forwarded ? 1 : 0;
  }
  EXPECT_NEAR(static_cast<double>(kept), 200.0, 5 * std::sqrt(4'000 * 0.05 * 0.95));
}

TEST_F(TailSamplerTest, FlushAllDecidesEverythingAndFlushesDownstream) {
  TailSampler sampler(config_from("policies: [{name: all, type: always_sample}]"), sink_, clock_.as_clock());
  for (int i = 0; i < 10; ++i) sampler.consume(batch_of({make_span(next_trace(), 2, 1, SpanKind::Client)}));
  sampler.flush();
  EXPECT_TRUE(sink_.received.empty());
  EXPECT_EQ(sink_.flushes, 1u);
  sampler.flush_all();
  EXPECT_EQ(sink_.received.size(), 10u);
  EXPECT_EQ(sink_.flushes, 2u);
  EXPECT_EQ(sampler.counters().decided_at_shutdown, 10u);
  EXPECT_EQ(sampler.bytes_in_flight(), 0u);
  const auto text = format_counters(sampler.counters());
  EXPECT_NE(text.find("decided_at_shutdown=10"), std::string::npos) << text;
  EXPECT_NE(text.find("policy[all].sampled=10"), std::string::npos) << text;
}

TEST_F(TailSamplerTest, ForwardsOneBatchPerCallNotOnePerTrace) {
  TailSampler sampler(config_from("policies: [{name: all, type: always_sample}]"), sink_, clock_.as_clock());
  for (int i = 0; i < 20; ++i) sampler.consume(whole_trace(next_trace(), 2));
  clock_.advance(1s);
  sampler.flush();
  EXPECT_EQ(sink_.batches, 1u);
  EXPECT_EQ(sink_.received.size(), 60u);
}

TEST_F(TailSamplerTest, NothingIsLostUnderChurn) {
  TailSampler sampler(config_from("num_traces: 64\nmax_bytes: 256KiB\nmax_spans_per_trace: 30\n"
                                  "decision_cache: {sampled_cache_size: 100, non_sampled_cache_size: 100}"),
                      sink_, clock_.as_clock());
  std::uniform_int_distribution<int> pick(0, 199);
  std::vector<TraceId> pool;
  for (int i = 0; i < 200; ++i) pool.push_back(next_trace());
  for (int step = 0; step < 2'000; ++step) {
    SpanBatch batch;
    for (int i = 0; i < 10; ++i) {
      const auto& id = pool[static_cast<std::size_t>(pick(rng_))];
      batch.push_back(make_span(id, 10'000 + step * 10 + i, 1, (step + i) % 7 == 0 ? SpanKind::Server : SpanKind::Client,
                                0, static_cast<std::uint64_t>(step % 300), i == 0 ? StatusCode::Error : StatusCode::Ok));
    }
    sampler.consume(std::move(batch));
    clock_.advance(7ms);
    if (step % 50 == 0) sampler.flush();
  }
  sampler.flush_all();
  const auto c = sampler.counters();
  EXPECT_EQ(c.spans_received, 20'000u);
  EXPECT_EQ(c.spans_received, c.spans_forwarded + c.spans_discarded);
  EXPECT_EQ(sink_.received.size(), c.spans_forwarded);
  EXPECT_EQ(c.traces_in_flight, 0u);
  EXPECT_EQ(c.bytes_in_flight, 0u);
}

}  // namespace
}  // namespace edgetrace
