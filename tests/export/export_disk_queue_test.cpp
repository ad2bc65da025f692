// The Deliverer works with the persistent DiskBatchQueue exactly as with the memory queue:
// what a dead collector could not take survives a restart and is delivered in order.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

#include "export/deliverer.h"
#include "export/otlp_exporter.h"
#include "export/otlp_encoder.h"
#include "export/otlp_sender.h"
#include "export_test_support.h"
#include "otlp_test_receivers.h"
#include "queue/disk_batch_queue.h"

namespace edgetrace {
namespace {

using namespace std::chrono_literals;
using testing::Reply;

TEST(DelivererWithDiskQueue, UndeliveredBatchesSurviveARestart) {
  testing::TempDir dir;
  QueueConfig qc;
  qc.dir = dir.path() / "queue";
  qc.max_bytes = 8 * 1024 * 1024;
  qc.segment_bytes = 1024 * 1024;
  qc.fsync = FsyncMode::Never;

  // A bound, never-listening loopback socket: connections are refused.
  testing::UniqueFd refusing(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(refusing.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(refusing.get(), reinterpret_cast<sockaddr*>(&addr), &len);

  ExporterConfig cfg;
  cfg.protocol = OtlpProtocol::HttpProtobuf;
  cfg.retry = {.initial_backoff = 10ms, .max_backoff = 40ms, .max_elapsed = 0ms};
  cfg.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1/traces";

  std::vector<std::string> first_span_ids;
  {
    DiskBatchQueue queue(qc);
    OtlpEncoder encoder;
    auto resource = testing::make_resource("svc", 5);
    for (int b = 0; b < 3; ++b) {
      SpanBatch spans;
      for (int i = 0; i < 4; ++i) spans.push_back(testing::make_http_span(static_cast<std::uint64_t>(b * 10 + i), resource));
      first_span_ids.emplace_back(reinterpret_cast<const char*>(spans[0].span_id.data()), 8);
      ASSERT_TRUE(queue.push(encoder.encode(spans), 4));
    }
    ExportCounters counters;
    auto sender = make_sender(cfg);
    std::string last_error;
    Deliverer deliverer(queue, *sender, counters, cfg.retry, 100ms);
    deliverer.set_error_observer([&](const std::string& m) { queue.set_last_export_error(last_error = m); });
    deliverer.start();
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (counters.retries.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    deliverer.stop();
    EXPECT_GE(counters.retries.load(), 2u);
    EXPECT_EQ(counters.exported_spans.load(), 0u);
    EXPECT_EQ(queue.stats().depth_batches, 3u);
    EXPECT_FALSE(last_error.empty());
  }

  testing::HttpOtlpReceiver receiver;
  receiver.start();
  cfg.endpoint = receiver.endpoint();
  DiskBatchQueue reopened(qc);
  EXPECT_EQ(reopened.stats().depth_batches, 3u);
  ExportCounters counters;
  auto sender = make_sender(cfg);
  Deliverer deliverer(reopened, *sender, counters, cfg.retry, 2s);
  deliverer.start();
  ASSERT_TRUE(receiver.wait_for_spans(12, 10s));
  deliverer.stop();
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(requests[i].request.resource_spans(0).scope_spans(0).spans(0).span_id(), first_span_ids[i]);
  EXPECT_EQ(counters.exported_spans.load(), 12u);
  EXPECT_EQ(reopened.stats().depth_batches, 0u);
}

TEST(DelivererWithDiskQueue, OtlpExporterReportsErrorsToTheDiskQueue) {
  testing::TempDir dir;
  QueueConfig qc;
  qc.dir = dir.path() / "queue";
  qc.max_bytes = 8 * 1024 * 1024;
  qc.segment_bytes = 1024 * 1024;
  qc.fsync = FsyncMode::Never;
  testing::GrpcOtlpReceiver receiver;
  receiver.start();
  receiver.script({Reply::unavailable()});
  ExporterConfig cfg;
  cfg.endpoint = receiver.endpoint();
  cfg.retry = {.initial_backoff = 10ms, .max_backoff = 40ms, .max_elapsed = 0ms};
  auto queue = std::make_unique<DiskBatchQueue>(qc);
  DiskBatchQueue* disk = queue.get();
  OtlpExporter exporter(cfg, std::move(queue), std::chrono::milliseconds::zero(),
                        [disk](const std::string& m) { disk->set_last_export_error(m); });
  exporter.consume(SpanBatch{testing::make_http_span(1, testing::make_resource("svc", 1))});
  exporter.shutdown();
  EXPECT_EQ(receiver.accepted_span_count(), 1u);
  EXPECT_NE(disk->disk_stats().last_export_error.find("scripted unavailable"), std::string::npos)
      << disk->disk_stats().last_export_error;
}

}  // namespace
}  // namespace edgetrace
