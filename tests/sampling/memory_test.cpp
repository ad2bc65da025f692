// Millions of short traces through a sampler with a small byte budget: the process's peak
// RSS must stay within the budget (plus the decision caches and a fixed allowance for the
// in-flight input batch and allocator slack).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <random>
#include <string>

#include "sampling/tail_sampler.h"
#include "sampling_test_support.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;

// A /proc/self/status field in bytes ("VmRSS", "VmHWM").
std::size_t proc_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
  }
  ADD_FAILURE() << field << " not found in /proc/self/status";
  return 0;
}

// VmHWM only ever grows; writing 5 to clear_refs resets it to the current RSS.
void reset_peak_rss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
}

TEST(TailSamplerMemory, MillionsOfShortTracesStayWithinTheByteBudget) {
  constexpr std::size_t kBudget = std::size_t{32} << 20;
  constexpr int kTraces = 2'000'000;
  constexpr int kTracesPerBatch = 1'000;
  const auto config = parse_tail_sampling_config(YAML::Load(R"(
max_bytes: 32MiB
num_traces: 10000000
decision_wait: 10s
early_decision_grace: 200ms
decision_cache: {sampled_cache_size: 50000, non_sampled_cache_size: 50000}
)"));
  testing::ManualClock clock;
  testing::CountingSink sink;
  TailSampler sampler(config, sink, clock.as_clock());
  std::mt19937_64 rng(1);
  auto resource = std::make_shared<Resource>();
  resource->attributes.push_back(Attribute{"service.name", std::string("checkout-service-frontend")});

  const auto build_batch = [&] {
    SpanBatch batch;
    batch.reserve(2 * kTracesPerBatch);
    for (int t = 0; t < kTracesPerBatch; ++t) {
      const auto trace = testing::random_trace_id(rng);
      auto child = testing::make_span(trace, 2, 1, SpanKind::Client, 1, 3);
      child.attributes.push_back(Attribute{"server.address", std::string("inventory.internal.example")});
      child.resource = resource;
      auto root = testing::make_span(trace, 1, 0, SpanKind::Server, 0, 5);
      root.attributes.push_back(Attribute{"url.path", std::string("/api/v1/orders/1234567890/items")});
      root.attributes.push_back(Attribute{"http.response.status_code", std::int64_t{200}});
      root.resource = resource;
      batch.push_back(std::move(child));
      batch.push_back(std::move(root));
    }
    return batch;
  };

  // Warm up allocator and caches so the baseline includes the fixed costs.
  sampler.consume(build_batch());
  const std::size_t baseline = proc_status_bytes("VmRSS");
  reset_peak_rss();

  for (int done = kTracesPerBatch; done < kTraces; done += kTracesPerBatch) {
    sampler.consume(build_batch());
    // First half: arrivals outpace the grace period, so the byte budget has to hold memory
    // down. Second half: time moves on and complete traces leave by early decision.
    clock.advance(done < kTraces / 2 ? 1ms : 50ms);
    if (done % 100'000 == 0) sampler.flush();
    ASSERT_LE(sampler.bytes_in_flight(), kBudget);
  }
  const std::size_t peak = proc_status_bytes("VmHWM");
  sampler.flush_all();

  const auto c = sampler.counters();
  EXPECT_EQ(c.spans_received, 2u * kTraces);
  EXPECT_EQ(c.spans_received, c.spans_forwarded + c.spans_discarded);
  EXPECT_GT(c.decided_early_max_bytes, 0u);  // the budget was what held memory down
  EXPECT_GT(c.decided_complete, 0u);
  EXPECT_LE(c.peak_bytes_in_flight, kBudget);

  const std::size_t cache_allowance =
      (config.decision_cache.sampled_cache_size + config.decision_cache.non_sampled_cache_size) *
      TraceIdLruSet::approximate_bytes_per_entry();
  constexpr std::size_t kBatchAndAllocatorSlack = std::size_t{16} << 20;
  const std::size_t growth = peak > baseline ? peak - baseline : 0;
  RecordProperty("peak_rss_growth_bytes", std::to_string(growth));
  std::printf("baseline RSS %zu KiB, peak %zu KiB, growth %zu KiB, budget %zu KiB + caches %zu KiB\n",
              baseline >> 10, peak >> 10, growth >> 10, kBudget >> 10, cache_allowance >> 10);
  EXPECT_LE(growth, kBudget + cache_allowance + kBatchAndAllocatorSlack);
}

}  // namespace
}  // namespace edgetrace
