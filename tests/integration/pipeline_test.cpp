// The whole userspace path behind the real kernel capture: OTLP export to real receivers
// (decoded and checked field by field), the disk spill queue through an outage and an agent
// restart, and tail sampling on real traced servers.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "harness.h"
#include "otlp_test_receivers.h"

namespace edgetrace::testing {
namespace {

using otlp::trace::v1::Span;

const otlp::common::v1::AnyValue* attribute(const google::protobuf::RepeatedPtrField<otlp::common::v1::KeyValue>& list,
                                            const std::string& key) {
  for (const auto& kv : list)
    if (kv.key() == key) return &kv.value();
  return nullptr;
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("edgetrace-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

CommandResult get(int port, const std::string& path) {
  auto result = run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                             "http://127.0.0.1:" + std::to_string(port) + path});
  while (!result.output.empty() && result.output.back() == '\n') result.output.pop_back();
  return result;
}

TEST(OtlpExport, ChainArrivesDecodedWithAttributesResourceIdsAndParents) {
  GrpcOtlpReceiver grpc_receiver;
  HttpOtlpReceiver http_receiver;
  grpc_receiver.start();
  http_receiver.start();
  const auto queues = scratch_dir("otlp-queues");
  const int port_a = free_tcp_port(), port_b = free_tcp_port();
  // A exports over gRPC (generic endpoint variable), B over HTTP/protobuf (signal variable).
  TracedRun b({"python3", PYTHON_SERVER, std::to_string(port_b)}, {"--service-name", "service-b", "--output", "otlp", "--queue-dir", (queues / "b").string()},
              {.environment = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + http_receiver.endpoint(),
                               "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=edge"}});
  TracedRun a({"python3", PYTHON_PROXY, std::to_string(port_a)}, {"--output", "otlp", "--queue-dir", (queues / "a").string()},
              {.environment = {"OTEL_EXPORTER_OTLP_ENDPOINT=" + grpc_receiver.endpoint(), "OTEL_SERVICE_NAME=service-a"}});
  ASSERT_TRUE(wait_for_port(port_a, 20s) && wait_for_port(port_b, 20s)) << a.process().stderr_text() << b.process().stderr_text();
  ASSERT_EQ(get(port_a, "/proxy?port=" + std::to_string(port_b) + "&path=/status/503").output, "503");
  ASSERT_TRUE(grpc_receiver.wait_for_spans(2, 20s)) << a.process().stderr_text();
  ASSERT_TRUE(http_receiver.wait_for_spans(1, 20s)) << b.process().stderr_text();
  ASSERT_EQ(a.stop(), 0);
  ASSERT_EQ(b.stop(), 0);
  EXPECT_TRUE(a.spans().empty()) << "OTLP output replaces the console";

  const auto a_spans = grpc_receiver.received_spans();
  const auto b_spans = http_receiver.received_spans();
  ASSERT_EQ(a_spans.size(), 2u);
  ASSERT_EQ(b_spans.size(), 1u);
  const auto& server = a_spans[0].span.kind() == Span::SPAN_KIND_SERVER ? a_spans[0] : a_spans[1];
  const auto& client = a_spans[0].span.kind() == Span::SPAN_KIND_CLIENT ? a_spans[0] : a_spans[1];
  ASSERT_EQ(server.span.kind(), Span::SPAN_KIND_SERVER);
  ASSERT_EQ(client.span.kind(), Span::SPAN_KIND_CLIENT);

  EXPECT_EQ(server.span.trace_id().size(), 16u);
  EXPECT_EQ(server.span.span_id().size(), 8u);
  EXPECT_TRUE(server.span.parent_span_id().empty());
  EXPECT_EQ(client.span.trace_id(), server.span.trace_id());
  EXPECT_EQ(client.span.parent_span_id(), server.span.span_id());
  EXPECT_EQ(b_spans[0].span.trace_id(), server.span.trace_id());
  EXPECT_EQ(b_spans[0].span.parent_span_id(), client.span.span_id());

  EXPECT_EQ(server.span.name(), "GET");
  EXPECT_EQ(attribute(server.span.attributes(), "http.request.method")->string_value(), "GET");
  EXPECT_EQ(attribute(server.span.attributes(), "url.path")->string_value(), "/proxy");
  EXPECT_EQ(attribute(server.span.attributes(), "http.response.status_code")->int_value(), 503);
  EXPECT_EQ(attribute(server.span.attributes(), "server.port")->int_value(), port_a);
  EXPECT_EQ(server.span.status().code(), otlp::trace::v1::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(attribute(client.span.attributes(), "server.port")->int_value(), port_b);
  EXPECT_EQ(attribute(client.span.attributes(), "url.path")->string_value(), "/status/503");
  EXPECT_EQ(client.span.status().code(), otlp::trace::v1::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(attribute(b_spans[0].span.attributes(), "http.response.status_code")->int_value(), 503);

  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LT(server.span.start_time_unix_nano(), server.span.end_time_unix_nano());
  EXPECT_LE(server.span.start_time_unix_nano(), client.span.start_time_unix_nano());
  EXPECT_GE(server.span.end_time_unix_nano(), client.span.end_time_unix_nano());
  EXPECT_LT(std::llabs(static_cast<long long>(server.span.start_time_unix_nano()) - now), 60'000'000'000LL);

  EXPECT_EQ(attribute(server.resource.attributes(), "service.name")->string_value(), "service-a");
  EXPECT_GT(attribute(server.resource.attributes(), "process.pid")->int_value(), 0);
  EXPECT_NE(attribute(server.resource.attributes(), "host.name"), nullptr);
  EXPECT_EQ(attribute(b_spans[0].resource.attributes(), "service.name")->string_value(), "service-b");
  EXPECT_EQ(attribute(b_spans[0].resource.attributes(), "deployment.environment")->string_value(), "edge");
  EXPECT_EQ(server.scope.name(), "edgetrace");
  EXPECT_FALSE(server.scope.version().empty());
  std::filesystem::remove_all(queues);
}

TEST(SpillQueue, OutageAndAgentRestartLoseNothing) {
  HttpOtlpReceiver receiver;
  receiver.start();
  receiver.set_default_reply(Reply::service_unavailable());  // the link is down
  const auto queue = scratch_dir("outage-queue");
  const int port = free_tcp_port();
  const std::vector<std::string> environment{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + receiver.endpoint(),
                                             "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"};
  {
    TracedRun run({"python3", PYTHON_SERVER, std::to_string(port)}, {"--output", "otlp", "--queue-dir", queue.string()}, {.environment = environment});
    ASSERT_TRUE(wait_for_port(port, 20s));
    for (int i = 0; i < 30; ++i) ASSERT_EQ(get(port, "/before-restart?i=" + std::to_string(i)).output, "200");
    ASSERT_TRUE(receiver.wait_for_requests(1, 20s));
    ASSERT_EQ(run.stop(), 0);
  }
  EXPECT_EQ(receiver.accepted_span_count(), 0u);
  const auto status = run_command({edgetrace_binary().string(), "queue", "status", "--dir", queue.string()});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_NE(status.output.find("30"), std::string::npos) << "the backlog survives the stop:\n" << status.output;

  receiver.set_default_reply(Reply::ok());  // the link is back
  TracedRun run({"python3", PYTHON_SERVER, std::to_string(port)}, {"--output", "otlp", "--queue-dir", queue.string()}, {.environment = environment});
  ASSERT_TRUE(wait_for_port(port, 20s));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(get(port, "/after-restart?i=" + std::to_string(i)).output, "200");
  ASSERT_TRUE(receiver.wait_for_spans(35, 30s)) << run.process().stderr_text();
  ASSERT_EQ(run.stop(), 0);
  std::map<std::string, int> by_path;
  for (const auto& s : receiver.received_spans()) ++by_path[attribute(s.span.attributes(), "url.path")->string_value()];
  EXPECT_EQ(by_path["/before-restart"], 30);
  EXPECT_EQ(by_path["/after-restart"], 5);
  std::filesystem::remove_all(queue);
}

TEST(TailSampling, DefaultPoliciesKeepErrorsAndSlowTracesAndABaseRate) {
  const auto dir = scratch_dir("tail");
  std::ofstream(dir / "config.yaml") << "tail_sampling:\n  decision_wait: 3s\n";
  const int port = free_tcp_port();
  TracedRun run({TEST_HTTP_SERVER, std::to_string(port)}, {"--config", (dir / "config.yaml").string()});
  ASSERT_TRUE(wait_for_port(port, 20s));
  const auto errors = run_command({TEST_HTTP_CLIENT, std::to_string(port), "keepalive", "20", "/status/500"});
  const auto slow = run_command({TEST_HTTP_CLIENT, std::to_string(port), "keepalive", "8", "/slow?ms=250"});
  const auto fast = run_command({TEST_HTTP_CLIENT, std::to_string(port), "keepalive", "600", "/fast"}, 60s);
  ASSERT_EQ(slow.exit_code, 0);
  ASSERT_EQ(fast.exit_code, 0);
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(run.stop(), 0);
  const auto spans = run.spans();
  EXPECT_EQ(with_path(spans, "/status/500").size(), 20u) << "every error is kept";
  EXPECT_EQ(with_path(spans, "/slow").size(), 8u) << "every trace over 200 ms is kept";
  // 5% of 600: mean 30, sd 5.3; +-4 sd.
  const auto kept_fast = with_path(spans, "/fast").size();
  EXPECT_GE(kept_fast, 9u);
  EXPECT_LE(kept_fast, 51u);
  EXPECT_NE(run.process().stderr_text().find("tail"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgetrace::testing
