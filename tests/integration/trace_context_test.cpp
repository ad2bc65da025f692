// Trace context across processes: client -> A -> B, where A and B are each traced by their
// own `edgetrace run` (two agents standing in for two hosts), joined only by the header the
// kernel injects into A's outgoing request.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "harness.h"

namespace edgetrace::testing {
namespace {

struct Chain {
  int port_a = free_tcp_port();
  int port_b = free_tcp_port();
  std::unique_ptr<TracedRun> b;
  std::unique_ptr<TracedRun> a;

  // B echoes the headers it received; A is the python proxy, or nginx when `nginx_dir` is set.
  explicit Chain(std::vector<std::string> a_environment = {}, std::vector<std::string> b_environment = {},
                 std::vector<std::string> a_flags = {}) {
    b = std::make_unique<TracedRun>(std::vector<std::string>{"python3", PYTHON_SERVER, std::to_string(port_b)},
                                    std::vector<std::string>{"--service-name", "service-b"},
                                    SpawnOptions{.environment = b_environment});
    a_flags.insert(a_flags.begin(), {"--service-name", "service-a"});
    a = std::make_unique<TracedRun>(std::vector<std::string>{"python3", PYTHON_PROXY, std::to_string(port_a)}, a_flags,
                                    SpawnOptions{.environment = a_environment});
  }
  bool ready() const { return wait_for_port(port_a, 20s) && wait_for_port(port_b, 20s); }
  std::string url(const std::string& route = "/proxy", const std::string& path = "/headers") const {
    return "http://127.0.0.1:" + std::to_string(port_a) + route + "?port=" + std::to_string(port_b) + "&path=" + path;
  }
};

CommandResult fetch(const std::string& url, std::vector<std::string> headers = {}) {
  std::vector<std::string> argv{"curl", "-sS", "--max-time", "10"};
  for (const auto& h : headers) {
    argv.push_back("-H");
    argv.push_back(h);
  }
  argv.push_back(url);
  return run_command(argv);
}

// The traceparent lines B saw, from its /headers echo.
std::vector<std::string> traceparents_seen(const std::string& echoed) {
  std::vector<std::string> values;
  const std::regex line(R"((?:^|\n)traceparent: ([^\n]*))", std::regex::icase);
  for (auto it = std::sregex_iterator(echoed.begin(), echoed.end(), line); it != std::sregex_iterator(); ++it)
    values.push_back((*it)[1]);
  return values;
}

std::vector<nlohmann::json> of_kind(const std::vector<nlohmann::json>& spans, const std::string& kind) {
  std::vector<nlohmann::json> out;
  for (const auto& s : spans)
    if (s["kind"] == kind) out.push_back(s);
  return out;
}

TEST(TraceContext, ChainBecomesOneTraceWithTheRightParents) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  const auto answer = fetch(chain.url());
  ASSERT_EQ(answer.exit_code, 0);
  const auto seen = traceparents_seen(answer.output);
  ASSERT_EQ(seen.size(), 1u) << "B received exactly one traceparent:\n" << answer.output;

  ASSERT_TRUE(chain.a->wait_for_spans(2));
  ASSERT_TRUE(chain.b->wait_for_spans(1));
  ASSERT_EQ(chain.a->stop(), 0);
  ASSERT_EQ(chain.b->stop(), 0);
  const auto a_spans = chain.a->spans();
  const auto b_spans = chain.b->spans();
  ASSERT_EQ(a_spans.size(), 2u);
  ASSERT_EQ(b_spans.size(), 1u);
  const auto a_server = of_kind(a_spans, "SERVER").at(0);
  const auto a_client = of_kind(a_spans, "CLIENT").at(0);
  const auto b_server = b_spans[0];

  EXPECT_EQ(a_server["parent_span_id"], nullptr) << "the chain starts at A";
  EXPECT_EQ(a_client["trace_id"], a_server["trace_id"]);
  EXPECT_EQ(a_client["parent_span_id"], a_server["span_id"]);
  EXPECT_EQ(b_server["trace_id"], a_server["trace_id"]);
  EXPECT_EQ(b_server["parent_span_id"], a_client["span_id"]) << "B's parent is A's client span";
  EXPECT_EQ(seen[0], "00-" + a_server["trace_id"].get<std::string>() + "-" + a_client["span_id"].get<std::string>() + "-01");
  EXPECT_EQ(a_client["attributes"]["server.port"], chain.port_b);
  EXPECT_EQ(a_client["attributes"]["http.response.status_code"], 200);
  EXPECT_EQ(b_server["resource"]["service.name"], "service-b");
}

TEST(TraceContext, IncomingParentIsJoinedAcrossTheChain) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const auto answer = fetch(chain.url(), {"traceparent: 00-" + trace + "-00f067aa0ba902b7-01", "tracestate: vendor=value"});
  ASSERT_EQ(answer.exit_code, 0);
  ASSERT_TRUE(chain.b->wait_for_spans(1));
  ASSERT_TRUE(chain.a->wait_for_spans(2));
  chain.a->stop();
  chain.b->stop();
  const auto a_server = of_kind(chain.a->spans(), "SERVER").at(0);
  EXPECT_EQ(a_server["trace_id"], trace);
  EXPECT_EQ(a_server["parent_span_id"], "00f067aa0ba902b7");
  EXPECT_EQ(a_server["trace_state"], "vendor=value");
  EXPECT_EQ(chain.b->spans().at(0)["trace_id"], trace);
}

TEST(TraceContext, ChildThreadOfTheServingThreadKeepsTheParent) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  ASSERT_EQ(fetch(chain.url("/proxy-thread")).exit_code, 0);
  ASSERT_TRUE(chain.a->wait_for_spans(2));
  ASSERT_TRUE(chain.b->wait_for_spans(1));
  chain.a->stop();
  chain.b->stop();
  const auto a_server = of_kind(chain.a->spans(), "SERVER").at(0);
  const auto a_client = of_kind(chain.a->spans(), "CLIENT").at(0);
  EXPECT_EQ(a_client["parent_span_id"], a_server["span_id"]) << a_server.dump() << "\n" << a_client.dump();
  EXPECT_EQ(chain.b->spans().at(0)["parent_span_id"], a_client["span_id"]);
}

TEST(TraceContext, UnsampledIncomingFlagIsHonouredAndPropagated) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  const auto answer = fetch(chain.url(), {"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"});
  ASSERT_EQ(answer.exit_code, 0);
  const auto seen = traceparents_seen(answer.output);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")) << seen[0];
  EXPECT_TRUE(seen[0].ends_with("-00")) << "the not-sampled flag travels on: " << seen[0];
  std::this_thread::sleep_for(1s);
  chain.a->stop();
  chain.b->stop();
  EXPECT_EQ(chain.a->spans().size(), 0u);
  EXPECT_EQ(chain.b->spans().size(), 0u);
  EXPECT_NE(chain.a->process().stderr_text().find("unsampled=2"), std::string::npos) << chain.a->process().stderr_text();
}

TEST(TraceContext, InvalidTraceparentsStartANewTrace) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  const std::vector<std::string> invalid{
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  // uppercase
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   // short
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 with extra
  };
  for (const auto& value : invalid) ASSERT_EQ(fetch(chain.url(), {"traceparent: " + value}).exit_code, 0);
  ASSERT_TRUE(chain.a->wait_for_spans(2 * invalid.size()));
  chain.a->stop();
  chain.b->stop();
  const auto servers = of_kind(chain.a->spans(), "SERVER");
  ASSERT_EQ(servers.size(), invalid.size());
  for (const auto& s : servers) {
    EXPECT_EQ(s["parent_span_id"], nullptr) << s.dump();
    EXPECT_NE(s["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  }
}

TEST(TraceContext, RequestThatAlreadyCarriesATraceparentArrivesUnchanged) {
  Chain chain;
  ASSERT_TRUE(chain.ready());
  const auto answer = fetch(chain.url("/proxy-own"));
  ASSERT_EQ(answer.exit_code, 0);
  const auto seen = traceparents_seen(answer.output);
  ASSERT_EQ(seen.size(), 1u) << answer.output;
  EXPECT_EQ(seen[0], "00-11111111111111111111111111111111-2222222222222222-01");
  ASSERT_TRUE(chain.b->wait_for_spans(1));
  chain.a->stop();
  chain.b->stop();
  EXPECT_EQ(chain.b->spans().at(0)["parent_span_id"], "2222222222222222");
}

TEST(TraceContext, NoInjectLeavesRequestsUntouched) {
  Chain chain({}, {}, {"--no-inject"});
  ASSERT_TRUE(chain.ready());
  const auto answer = fetch(chain.url());
  ASSERT_EQ(answer.exit_code, 0);
  EXPECT_EQ(traceparents_seen(answer.output).size(), 0u) << answer.output;
  chain.a->stop();
  chain.b->stop();
}

// Flags at A's ratio 0, 1 and 0.1, seen in what B received and what B exported.
std::pair<std::size_t, std::size_t> sampled_through_chain(const std::string& ratio, int requests) {
  Chain chain({"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=" + ratio});
  EXPECT_TRUE(chain.ready());
  const auto result = run_command({TEST_HTTP_CLIENT, std::to_string(chain.port_a), "keepalive", std::to_string(requests),
                                   "/proxy?port=" + std::to_string(chain.port_b) + "&path=/status/200"},
                                  120s);
  EXPECT_EQ(result.exit_code, 0);
  std::this_thread::sleep_for(1500ms);
  chain.a->stop();
  chain.b->stop();
  const auto a_log = chain.a->process().stderr_text();
  EXPECT_NE(a_log.find("head sampler: traceidratio"), std::string::npos) << a_log;
  return {of_kind(chain.a->spans(), "SERVER").size(), chain.b->spans().size()};
}

TEST(TraceContext, HeadSamplingRatioZeroAndOne) {
  const auto none = sampled_through_chain("0", 50);
  EXPECT_EQ(none.first, 0u);
  EXPECT_EQ(none.second, 0u) << "B follows A's not-sampled flag";
  const auto all = sampled_through_chain("1", 50);
  EXPECT_EQ(all.first, 50u);
  EXPECT_EQ(all.second, 50u);
}

TEST(TraceContext, HeadSamplingRatioTenPercentAgreesAcrossAgents) {
  constexpr int requests = 2000;
  const auto [a, b] = sampled_through_chain("0.1", requests);
  // Binomial(2000, 0.1): mean 200, sd 13.4; +-5 sd.
  EXPECT_GT(a, 133u);
  EXPECT_LT(a, 267u);
  EXPECT_EQ(a, b) << "B (parent-based) keeps exactly the traces A sampled";
}

TEST(TraceContext, NginxReverseProxyInjectsAndParents) {
  const auto dir = std::filesystem::temp_directory_path() / ("edgetrace-nginx-proxy-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const int port_a = free_tcp_port();
  const int port_b = free_tcp_port();
  std::ofstream(dir / "nginx.conf") << "worker_processes 1;\nerror_log stderr;\npid " << (dir / "nginx.pid").string()
                                    << ";\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n"
                                    << "  client_body_temp_path " << dir.string() << "/body;\n  proxy_temp_path "
                                    << dir.string() << "/proxy;\n  fastcgi_temp_path " << dir.string()
                                    << "/fcgi;\n  uwsgi_temp_path " << dir.string() << "/uwsgi;\n  scgi_temp_path "
                                    << dir.string() << "/scgi;\n  server {\n    listen 127.0.0.1:" << port_a
                                    << ";\n    location / { proxy_pass http://127.0.0.1:" << port_b << "; }\n  }\n}\n";
  TracedRun b({"python3", PYTHON_SERVER, std::to_string(port_b)}, {"--service-name", "service-b"});
  TracedRun a({"nginx", "-p", dir.string(), "-c", (dir / "nginx.conf").string(), "-g", "daemon off;"},
              {"--service-name", "nginx-proxy"});
  ASSERT_TRUE(wait_for_port(port_a, 20s));
  ASSERT_TRUE(wait_for_port(port_b, 20s));
  const auto answer = fetch("http://127.0.0.1:" + std::to_string(port_a) + "/headers");
  ASSERT_EQ(answer.exit_code, 0);
  const auto seen = traceparents_seen(answer.output);
  ASSERT_EQ(seen.size(), 1u) << answer.output;
  ASSERT_TRUE(a.wait_for_spans(2));
  ASSERT_TRUE(b.wait_for_spans(1));
  a.stop();
  b.stop();
  const auto a_server = of_kind(a.spans(), "SERVER").at(0);
  const auto a_client = of_kind(a.spans(), "CLIENT").at(0);
  EXPECT_EQ(a_client["trace_id"], a_server["trace_id"]);
  EXPECT_EQ(a_client["parent_span_id"], a_server["span_id"]);
  EXPECT_EQ(b.spans().at(0)["parent_span_id"], a_client["span_id"]);
  EXPECT_EQ(seen[0], "00-" + a_server["trace_id"].get<std::string>() + "-" + a_client["span_id"].get<std::string>() + "-01");
  std::filesystem::remove_all(dir);
}

TEST(TraceContext, InjectionKeepsEveryByteOfTenThousandRequests) {
  const int port = free_tcp_port();
  Subprocess server({TEST_HTTP_SERVER, std::to_string(port)});
  ASSERT_TRUE(wait_for_port(port));
  const auto summary_file = std::filesystem::temp_directory_path() / ("edgetrace-integrity-" + std::to_string(::getpid()));
  // The client's own report goes to a file: its stdout is shared with the agent's spans.
  TracedRun client({TEST_HTTP_CLIENT, std::to_string(port), "integrity", "10000", "20261121", summary_file.string()});
  ASSERT_EQ(client.process().wait(180s), 0) << client.process().stderr_text();
  std::ifstream in(summary_file);
  std::string word;
  int requests = 0, injected = 0;
  in >> word >> requests >> word >> injected;
  std::filesystem::remove(summary_file);
  EXPECT_EQ(requests, 10000);
  // Pipelined requests after the first of a write are not injected; everything else is.
  EXPECT_GT(injected, 6000) << "injected " << injected;
}

}  // namespace
}  // namespace edgetrace::testing
