#include <gtest/gtest.h>

#include <thread>

#include "export/batcher.h"
#include "export/memory_batch_queue.h"
#include "export_test_support.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using testing::make_http_span;
using testing::make_resource;

TEST(MemoryBatchQueue, FifoPeekAcknowledgeAndStats) {
  MemoryBatchQueue q({.max_bytes = 0, .max_batches = 0});
  EXPECT_FALSE(q.peek(0ms));
  ASSERT_TRUE(q.push("aaa", 3));
  ASSERT_TRUE(q.push("bbbb", 4));
  auto s = q.stats();
  EXPECT_EQ(s.depth_batches, 2u);
  EXPECT_EQ(s.depth_spans, 7u);
  EXPECT_EQ(s.depth_bytes, 7u);

  auto first = q.peek(0ms);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->payload, "aaa");
  EXPECT_EQ(first->span_count, 3u);
  EXPECT_GT(first->enqueued_unix_nanos, 0u);
  // Peeking again without acknowledging yields the same batch (retry path).
  EXPECT_EQ(q.peek(0ms)->sequence, first->sequence);
  q.acknowledge(first->sequence + 100);  // not the oldest: ignored
  EXPECT_EQ(q.stats().depth_batches, 2u);
  q.acknowledge(first->sequence);
  auto second = q.peek(0ms);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->payload, "bbbb");
  EXPECT_GT(second->sequence, first->sequence);
  q.acknowledge(second->sequence);
  EXPECT_EQ(q.stats().depth_batches, 0u);
  EXPECT_EQ(q.stats().depth_bytes, 0u);
}

TEST(MemoryBatchQueue, BoundsRefuseAndCount) {
  MemoryBatchQueue by_bytes({.max_bytes = 10, .max_batches = 0});
  EXPECT_TRUE(by_bytes.push(std::string(6, 'x'), 1));
  EXPECT_FALSE(by_bytes.push(std::string(5, 'y'), 2));
  EXPECT_TRUE(by_bytes.push(std::string(4, 'z'), 3));
  EXPECT_EQ(by_bytes.stats().dropped_batches, 1u);
  EXPECT_EQ(by_bytes.stats().dropped_spans, 2u);
  EXPECT_EQ(by_bytes.stats().depth_spans, 4u);

  MemoryBatchQueue by_count({.max_bytes = 0, .max_batches = 2});
  EXPECT_TRUE(by_count.push("a", 1));
  EXPECT_TRUE(by_count.push("b", 1));
  EXPECT_FALSE(by_count.push("c", 5));
  EXPECT_EQ(by_count.stats().dropped_spans, 5u);
}

TEST(MemoryBatchQueue, PeekWaitsForPushAndCloseWakes) {
  MemoryBatchQueue q({});
  std::thread producer([&] {
    std::this_thread::sleep_for(50ms);
    q.push("late", 1);
  });
  auto b = q.peek(10s);
  producer.join();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->payload, "late");
  q.acknowledge(b->sequence);

  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    q.close();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(q.peek(10s));
  closer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_TRUE(q.push("after close", 1));  // shutdown loses nothing
  EXPECT_TRUE(q.peek(0ms));
}

TEST(MemoryBatchQueue, OneProducerOneConsumerKeepsOrder) {
  MemoryBatchQueue q({.max_bytes = 0, .max_batches = 64});
  constexpr int kBatches = 5000;
  std::thread producer([&] {
    for (int i = 0; i < kBatches;) {
      if (q.push(std::to_string(i), 1))
        ++i;
      else
        std::this_thread::yield();
    }
  });
  int expected = 0;
  while (expected < kBatches) {
    auto b = q.peek(5s);
    ASSERT_TRUE(b);
    ASSERT_EQ(b->payload, std::to_string(expected));
    q.acknowledge(b->sequence);
    ++expected;
  }
  producer.join();
  EXPECT_EQ(q.stats().depth_batches, 0u);
}

std::size_t spans_in(const std::string& payload) {
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(payload));
  std::size_t n = 0;
  for (const auto& rs : req.resource_spans())
    for (const auto& ss : rs.scope_spans()) n += static_cast<std::size_t>(ss.spans_size());
  return n;
}

TEST(Batcher, CutsFullBatchesAndFlushesTheRest) {
  MemoryBatchQueue q({});
  ExportCounters counters;
  Batcher batcher(q, counters, {.max_spans = 4, .max_delay = 1h});
  auto r = make_resource("svc", 1);
  SpanBatch spans;
  for (int i = 0; i < 10; ++i) spans.push_back(make_http_span(static_cast<std::uint64_t>(i), r));
  batcher.consume(spans);
  EXPECT_EQ(q.stats().depth_batches, 2u);
  EXPECT_EQ(q.stats().depth_spans, 8u);
  batcher.consume(SpanBatch{make_http_span(11, r)});
  EXPECT_EQ(q.stats().depth_batches, 2u);  // 3 pending, under max_spans and max_delay
  batcher.flush();
  EXPECT_EQ(q.stats().depth_batches, 3u);
  batcher.flush();  // nothing pending: no empty batch
  EXPECT_EQ(q.stats().depth_batches, 3u);

  std::vector<std::size_t> sizes;
  while (auto b = q.peek(0ms)) {
    sizes.push_back(spans_in(b->payload));
    EXPECT_EQ(b->span_count, sizes.back());
    q.acknowledge(b->sequence);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{4, 4, 3}));
  EXPECT_EQ(counters.encoded_spans.load(), 11u);
}

TEST(Batcher, PartialBatchLeavesOnConsumeAfterMaxDelay) {
  MemoryBatchQueue q({});
  ExportCounters counters;
  Batcher batcher(q, counters, {.max_spans = 100, .max_delay = 30ms});
  auto r = make_resource("svc", 1);
  batcher.consume(SpanBatch{make_http_span(1, r)});
  EXPECT_EQ(q.stats().depth_batches, 0u);
  std::this_thread::sleep_for(60ms);
  batcher.consume(SpanBatch{make_http_span(2, r)});
  EXPECT_EQ(q.stats().depth_batches, 1u);
  EXPECT_EQ(q.stats().depth_spans, 2u);
}

TEST(Batcher, QueueRefusalCountsDroppedSpans) {
  MemoryBatchQueue q({.max_bytes = 0, .max_batches = 1});
  ExportCounters counters;
  Batcher batcher(q, counters, {.max_spans = 2, .max_delay = 1h});
  auto r = make_resource("svc", 1);
  SpanBatch spans;
  for (int i = 0; i < 6; ++i) spans.push_back(make_http_span(static_cast<std::uint64_t>(i), r));
  batcher.consume(spans);
  EXPECT_EQ(q.stats().depth_spans, 2u);
  EXPECT_EQ(counters.dropped_spans.load(), 4u);
  EXPECT_EQ(q.stats().dropped_spans, 4u);
}

}  // namespace
}  // namespace edgetrace
