#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/config_error.h"
#include "export/deliverer.h"
#include "export/exporter_config.h"
#include "export/otlp_sender.h"
#include "export/resource.h"
#include "export_test_support.h"
#include "google/rpc/status.pb.h"

namespace edgetrace {
namespace {

using testing::env_from;
using namespace std::chrono_literals;

ExporterConfig parse(const std::string& yaml, std::map<std::string, std::string> env = {}) {
  return parse_exporter_config(YAML::Load(yaml), env_from(std::move(env)));
}

ExporterConfig from_env(std::map<std::string, std::string> env) {
  return parse_exporter_config(YAML::Node(), env_from(std::move(env)));
}

// Expects a ConfigError whose message names `needle`.
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected ConfigError mentioning " << needle;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ExporterConfig, Defaults) {
  const auto c = from_env({});
  EXPECT_EQ(c.protocol, OtlpProtocol::Grpc);
  EXPECT_EQ(c.endpoint, "http://localhost:4317");
  EXPECT_EQ(c.compression, OtlpCompression::Gzip);
  EXPECT_EQ(c.timeout, 10s);
  EXPECT_EQ(c.batch.max_spans, 512u);
  EXPECT_EQ(c.batch.max_delay, 1000ms);
  EXPECT_EQ(c.retry.initial_backoff, 1s);
  EXPECT_EQ(c.retry.max_backoff, 30s);
  EXPECT_EQ(c.retry.max_elapsed, 300s);
  EXPECT_EQ(c.memory_queue.max_bytes, 64u * 1024 * 1024);
  EXPECT_FALSE(c.tls.insecure);
  EXPECT_EQ(from_env({{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}}).endpoint, "http://localhost:4318/v1/traces");
}

TEST(ExporterConfig, AllYamlKeys) {
  const auto c = parse(R"(
protocol: http/protobuf
endpoint: https://collector.example:4318/custom/path
headers: {api-key: secret, x-tenant: "a b"}
compression: none
timeout_ms: 2500
tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure: true}
batch: {max_spans: 100, max_delay_ms: 250}
retry: {initial_backoff_ms: 50, max_backoff_ms: 800, max_elapsed_ms: 0}
memory_queue: {max_bytes: 1000000, max_batches: 10}
drain_timeout_ms: 1500
)");
  EXPECT_EQ(c.protocol, OtlpProtocol::HttpProtobuf);
  EXPECT_EQ(c.endpoint, "https://collector.example:4318/custom/path");  // YAML endpoint is used as-is
  ASSERT_EQ(c.headers.size(), 2u);
  EXPECT_EQ(c.headers[0], (std::pair<std::string, std::string>{"api-key", "secret"}));
  EXPECT_EQ(c.headers[1], (std::pair<std::string, std::string>{"x-tenant", "a b"}));
  EXPECT_EQ(c.compression, OtlpCompression::None);
  EXPECT_EQ(c.timeout, 2500ms);
  EXPECT_EQ(c.tls.ca_file, "/ca.pem");
  EXPECT_EQ(c.tls.cert_file, "/c.pem");
  EXPECT_EQ(c.tls.key_file, "/k.pem");
  EXPECT_TRUE(c.tls.insecure);
  EXPECT_EQ(c.batch.max_spans, 100u);
  EXPECT_EQ(c.batch.max_delay, 250ms);
  EXPECT_EQ(c.retry.initial_backoff, 50ms);
  EXPECT_EQ(c.retry.max_backoff, 800ms);
  EXPECT_EQ(c.retry.max_elapsed, 0ms);
  EXPECT_EQ(c.memory_queue.max_bytes, 1000000u);
  EXPECT_EQ(c.memory_queue.max_batches, 10u);
  EXPECT_EQ(c.drain_timeout, 1500ms);
}

TEST(ExporterConfig, BadYamlNamesTheKey) {
  expect_error([] { parse("protocol: http/json"); }, "exporter.protocol");
  expect_error([] { parse("protocol: udp"); }, "exporter.protocol");
  expect_error([] { parse("compression: zstd"); }, "exporter.compression");
  expect_error([] { parse("timeout_ms: -3"); }, "exporter.timeout_ms");
  expect_error([] { parse("timeout_ms: 0"); }, "exporter.timeout_ms");
  expect_error([] { parse("timeout_ms: 10s"); }, "exporter.timeout_ms");
  expect_error([] { parse("batch: {max_spans: 0}"); }, "exporter.batch.max_spans");
  expect_error([] { parse("batch: {max_span: 5}"); }, "exporter.batch.max_span");
  expect_error([] { parse("retry: {initial_backoff_ms: 500, max_backoff_ms: 100}"); }, "exporter.retry.max_backoff_ms");
  expect_error([] { parse("tls: {insecure: maybe}"); }, "exporter.tls.insecure");
  expect_error([] { parse("tls: {cert_file: /c.pem}"); }, "exporter.tls");
  expect_error([] { parse("headers: [a, b]"); }, "exporter.headers");
  expect_error([] { parse("headers: {\"bad name\": v}"); }, "exporter.headers.bad name");
  expect_error([] { parse("endpont: http://x"); }, "exporter.endpont");
  expect_error([] { parse("protocol: http/protobuf\nendpoint: collector:4318"); }, "exporter.endpoint");
  expect_error([] { parse("endpoint: ftp://collector:21"); }, "exporter.endpoint");
}

// The examples of the OTLP exporter specification ("Endpoint URLs for OTLP/HTTP").
TEST(ExporterConfig, HttpEndpointFromGenericVariableAppendsSignalPath) {
  const std::map<std::string, std::string> http = {{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}};
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(http.begin(), http.end());
    return from_env(extra).endpoint;
  };
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"}}), "http://collector:4318/v1/traces");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"}}), "http://collector:4318/v1/traces");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/mycollector/"}}),
            "http://collector:4318/mycollector/v1/traces");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/mycollector"}}),
            "http://collector:4318/mycollector/v1/traces");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://my-api-endpoint/"}}), "https://my-api-endpoint/v1/traces");
  // The signal-specific variable is used as-is, with or without a path, and wins.
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces"}}), "http://collector:4318/v1/traces");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318"}}), "http://collector:4318");
  EXPECT_EQ(with({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom/traces"},
                  {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"}}),
            "http://collector:4318/custom/traces");
}

TEST(ExporterConfig, GrpcEndpointAcceptsResolverTargets) {
  EXPECT_EQ(parse("endpoint: dns:///collector:4317").endpoint, "dns:///collector:4317");
  EXPECT_EQ(parse("endpoint: unix:///run/otel.sock").endpoint, "unix:///run/otel.sock");
  expect_error([] { parse("endpoint: gopher://collector:70"); }, "exporter.endpoint");
}

TEST(ExporterConfig, GrpcEndpointIsUsedAsIs) {
  EXPECT_EQ(from_env({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"}}).endpoint, "http://collector:4317");
  EXPECT_EQ(from_env({{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317/"}}).endpoint, "https://collector:4317/");
  EXPECT_EQ(from_env({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317"}}).endpoint, "collector:4317");
}

TEST(ExporterConfig, EnvironmentOverridesYamlAndSignalSpecificOverridesGeneric) {
  const std::string yaml = "protocol: grpc\nendpoint: http://yaml:4317\ncompression: gzip\ntimeout_ms: 100\nheaders: {a: yaml, b: yaml}\n";
  const auto c = parse(yaml, {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"},
                              {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
                              {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"},
                              {"OTEL_EXPORTER_OTLP_TIMEOUT", "7000"},
                              {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000"},
                              {"OTEL_EXPORTER_OTLP_HEADERS", "b=generic,c=generic"},
                              {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=traces"},
                              {"OTEL_EXPORTER_OTLP_INSECURE", "false"},
                              {"OTEL_EXPORTER_OTLP_TRACES_INSECURE", "TRUE"},
                              {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic-ca.pem"},
                              {"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/ca.pem"},
                              {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"},
                              {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/client.key"}});
  EXPECT_EQ(c.endpoint, "http://generic:4317");
  EXPECT_EQ(c.compression, OtlpCompression::None);
  EXPECT_EQ(c.timeout, 3000ms);
  // The traces header variable replaces the generic one; YAML headers are overridden key by key.
  EXPECT_EQ(c.headers, (HeaderList{{"a", "yaml"}, {"b", "traces"}}));
  EXPECT_TRUE(c.tls.insecure);
  EXPECT_EQ(c.tls.ca_file, "/ca.pem");
  EXPECT_EQ(c.tls.cert_file, "/client.pem");
  EXPECT_EQ(c.tls.key_file, "/client.key");
  // Without environment the YAML stands.
  EXPECT_EQ(parse(yaml).endpoint, "http://yaml:4317");
  EXPECT_EQ(parse(yaml).timeout, 100ms);
}

TEST(ExporterConfig, ProtocolVariableDecidesHowTheGenericEndpointIsRead) {
  const auto c = parse("protocol: grpc", {{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"},
                                          {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
                                          {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}});
  EXPECT_EQ(c.protocol, OtlpProtocol::HttpProtobuf);
  EXPECT_EQ(c.endpoint, "http://c:4318/v1/traces");
}

TEST(ExporterConfig, EmptyVariablesAreUnset) {
  const auto c = parse("endpoint: http://yaml:4317", {{"OTEL_EXPORTER_OTLP_ENDPOINT", ""}, {"OTEL_EXPORTER_OTLP_TIMEOUT", " "}});
  EXPECT_EQ(c.endpoint, "http://yaml:4317");
  EXPECT_EQ(c.timeout, 10s);
}

TEST(ExporterConfig, HeadersArePercentDecoded) {
  const auto c = from_env({{"OTEL_EXPORTER_OTLP_HEADERS", " api-key = a%20b%2Cc , x-empty=,Authorization=Basic%20dXNlcjpwYXNz"}});
  EXPECT_EQ(c.headers, (HeaderList{{"api-key", "a b,c"}, {"x-empty", ""}, {"Authorization", "Basic dXNlcjpwYXNz"}}));
}

TEST(ExporterConfig, BadVariablesNameTheVariable) {
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_TIMEOUT", "ten"}}); }, "OTEL_EXPORTER_OTLP_TIMEOUT");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1"}}); }, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"}}); }, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_COMPRESSION", "br"}}); }, "OTEL_EXPORTER_OTLP_COMPRESSION");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}}); }, "OTEL_EXPORTER_OTLP_HEADERS");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_HEADERS", "k=%zz"}}); }, "OTEL_EXPORTER_OTLP_HEADERS");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_HEADERS", "k=a%2"}}); }, "OTEL_EXPORTER_OTLP_HEADERS");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=v"}}); }, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_INSECURE", "yes"}}); }, "OTEL_EXPORTER_OTLP_INSECURE");
  expect_error([] { from_env({{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"}}); },
               "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
}

TEST(ExporterConfig, ResourceAttributesFromEnvironment) {
  const auto c = from_env({{"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,k8s.cluster.name=c%201"},
                           {"OTEL_SERVICE_NAME", "agent-default"}});
  ASSERT_EQ(c.resource_attributes.size(), 3u);
  EXPECT_EQ(c.resource_attributes[1].key, "k8s.cluster.name");
  EXPECT_EQ(std::get<std::string>(c.resource_attributes[1].value), "c 1");
  EXPECT_EQ(c.resource_attributes[2].key, "service.name");
  expect_error([] { from_env({{"OTEL_RESOURCE_ATTRIBUTES", "x"}}); }, "OTEL_RESOURCE_ATTRIBUTES");
}

TEST(ExporterConfig, EndpointConfiguredDetection) {
  EXPECT_FALSE(otlp_endpoint_configured(YAML::Node(), env_from({})));
  EXPECT_FALSE(otlp_endpoint_configured(YAML::Load("compression: gzip"), env_from({})));
  EXPECT_FALSE(otlp_endpoint_configured(YAML::Node(), env_from({{"OTEL_EXPORTER_OTLP_ENDPOINT", ""}})));
  EXPECT_TRUE(otlp_endpoint_configured(YAML::Load("endpoint: http://c:4317"), env_from({})));
  EXPECT_TRUE(otlp_endpoint_configured(YAML::Node(), env_from({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"}})));
  EXPECT_TRUE(otlp_endpoint_configured(YAML::Node(), env_from({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"}})));
}

TEST(ResourceFromEnv, ParsesAndServiceNameWins) {
  const auto attrs = resource_attributes_from_env(env_from(
      {{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=prod%20eu,team=a%3Db"},
       {"OTEL_SERVICE_NAME", "checkout"}}));
  ASSERT_EQ(attrs.size(), 3u);
  EXPECT_EQ(attrs[0].key, "service.name");
  EXPECT_EQ(std::get<std::string>(attrs[0].value), "checkout");
  EXPECT_EQ(std::get<std::string>(attrs[1].value), "prod eu");
  EXPECT_EQ(attrs[2].key, "team");
  EXPECT_EQ(std::get<std::string>(attrs[2].value), "a=b");
  expect_error([] { resource_attributes_from_env(env_from({{"OTEL_RESOURCE_ATTRIBUTES", "a=1,broken"}})); },
               "OTEL_RESOURCE_ATTRIBUTES");
  EXPECT_TRUE(resource_attributes_from_env(env_from({})).empty());
}

TEST(RetryRules, GrpcCodes) {
  for (int code : {1, 4, 10, 11, 14, 15}) EXPECT_TRUE(classify_grpc_status(code, "x", "").retryable()) << code;
  for (int code : {2, 3, 5, 6, 7, 9, 12, 13, 16}) EXPECT_EQ(classify_grpc_status(code, "x", "").outcome, SendResult::Outcome::Permanent) << code;
  EXPECT_TRUE(classify_grpc_status(0, "", "").ok());

  google::rpc::Status with_retry;
  with_retry.set_code(8);
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(2);
  info.mutable_retry_delay()->set_nanos(500'000'000);
  with_retry.add_details()->PackFrom(info);
  const auto r = classify_grpc_status(8, "slow down", with_retry.SerializeAsString());
  EXPECT_TRUE(r.retryable());
  ASSERT_TRUE(r.retry_after);
  EXPECT_EQ(*r.retry_after, 2500ms);

  google::rpc::Status without;
  without.set_code(8);
  EXPECT_EQ(classify_grpc_status(8, "quota", without.SerializeAsString()).outcome, SendResult::Outcome::Permanent);
  EXPECT_EQ(classify_grpc_status(8, "quota", "").outcome, SendResult::Outcome::Permanent);
  EXPECT_EQ(classify_grpc_status(8, "quota", "garbage\xff").outcome, SendResult::Outcome::Permanent);
}

TEST(RetryRules, HttpCodes) {
  for (long code : {429L, 502L, 503L, 504L}) EXPECT_TRUE(classify_http_status(code, std::nullopt, "").retryable()) << code;
  for (long code : {400L, 401L, 403L, 404L, 413L, 500L, 501L}) EXPECT_EQ(classify_http_status(code, std::nullopt, "").outcome, SendResult::Outcome::Permanent) << code;
  EXPECT_TRUE(classify_http_status(200, std::nullopt, "").ok());
  EXPECT_EQ(classify_http_status(503, 3000ms, "").retry_after, std::optional(3000ms));
}

TEST(RetryRules, BackoffIsExponentialCappedAndJittered) {
  const OtlpRetryConfig retry{.initial_backoff = 1000ms, .max_backoff = 30000ms, .max_elapsed = 0ms};
  std::mt19937_64 rng(42);
  auto range = [&](unsigned attempt) {
    std::chrono::milliseconds lo = 1h, hi = 0ms;
    for (int i = 0; i < 200; ++i) {
      const auto d = Deliverer::backoff_delay(retry, attempt, rng);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    return std::pair{lo, hi};
  };
  auto [lo0, hi0] = range(0);
  EXPECT_GE(lo0, 500ms);
  EXPECT_LE(hi0, 1000ms);
  EXPECT_LT(lo0, hi0);  // jittered
  auto [lo3, hi3] = range(3);
  EXPECT_GE(lo3, 4000ms);
  EXPECT_LE(hi3, 8000ms);
  auto [lo20, hi20] = range(20);
  EXPECT_GE(lo20, 15000ms);
  EXPECT_LE(hi20, 30000ms);
}

TEST(RetryRules, RetryAfterSecondsAndHttpDate) {
  const auto now = std::chrono::system_clock::from_time_t(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(parse_retry_after("120", now), std::optional(120000ms));
  EXPECT_EQ(parse_retry_after(" 0 ", now), std::optional(0ms));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), std::optional(30000ms));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), std::optional(0ms));  // in the past
  EXPECT_EQ(parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);
}

}  // namespace
}  // namespace edgetrace
