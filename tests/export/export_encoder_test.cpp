#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "export/otlp_encoder.h"
#include "export_test_support.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace edgetrace {
namespace {

using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
namespace otrace = opentelemetry::proto::trace::v1;
using testing::make_http_span;
using testing::make_resource;

ExportTraceServiceRequest decode(const std::string& bytes) {
  ExportTraceServiceRequest req;
  EXPECT_TRUE(req.ParseFromString(bytes));
  // Re-serializing with the generated code must give the same bytes: our hand layout
  // follows the canonical field order and omits defaults exactly like protobuf does.
  EXPECT_EQ(req.SerializeAsString(), bytes);
  return req;
}

std::string raw(const auto& id) { return std::string(reinterpret_cast<const char*>(id.data()), id.size()); }

TEST(OtlpEncoder, EncodesEveryFieldWithItsType) {
  auto resource = make_resource("checkout", 4242);
  Span s = make_http_span(7, resource, /*root=*/false);
  s.trace_state = "vendor=abc,other=1";
  s.trace_flags = 0x01;
  s.kind = SpanKind::Client;
  s.status = StatusCode::Error;
  s.status_message = "upstream timed out";
  s.attributes.push_back({"negative", std::int64_t{-5}});
  s.attributes.push_back({"ratio", 0.25});
  s.attributes.push_back({"cached", true});
  s.attributes.push_back({"empty", std::string()});
  s.attributes.push_back({"big", std::numeric_limits<std::int64_t>::max()});

  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));

  ASSERT_EQ(req.resource_spans_size(), 1);
  const auto& rs = req.resource_spans(0);
  ASSERT_EQ(rs.resource().attributes_size(), 3);
  EXPECT_EQ(rs.resource().attributes(0).key(), "service.name");
  EXPECT_EQ(rs.resource().attributes(0).value().string_value(), "checkout");
  EXPECT_EQ(rs.resource().attributes(1).key(), "host.name");
  EXPECT_EQ(rs.resource().attributes(2).key(), "process.pid");
  EXPECT_EQ(rs.resource().attributes(2).value().int_value(), 4242);
  ASSERT_EQ(rs.scope_spans_size(), 1);
  EXPECT_EQ(rs.scope_spans(0).scope().name(), "edgetrace");
  EXPECT_EQ(rs.scope_spans(0).scope().version(), EDGETRACE_VERSION);
  ASSERT_EQ(rs.scope_spans(0).spans_size(), 1);

  const auto& span = rs.scope_spans(0).spans(0);
  EXPECT_EQ(span.trace_id(), raw(s.trace_id));
  EXPECT_EQ(span.trace_id().size(), 16u);
  EXPECT_EQ(span.span_id(), raw(s.span_id));
  EXPECT_EQ(span.span_id().size(), 8u);
  EXPECT_EQ(span.parent_span_id(), raw(s.parent_span_id));
  EXPECT_EQ(span.trace_state(), "vendor=abc,other=1");
  EXPECT_EQ(span.flags(), 0x01u);
  EXPECT_EQ(span.name(), "GET /api/items/{id}");
  EXPECT_EQ(span.kind(), otrace::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(span.start_time_unix_nano(), s.start_unix_nanos);
  EXPECT_EQ(span.end_time_unix_nano(), s.end_unix_nanos);
  EXPECT_EQ(span.status().code(), otrace::Status::STATUS_CODE_ERROR);
  EXPECT_EQ(span.status().message(), "upstream timed out");

  ASSERT_EQ(span.attributes_size(), static_cast<int>(s.attributes.size()));
  for (int i = 0; i < span.attributes_size(); ++i) {
    const auto& kv = span.attributes(i);
    const auto& want = s.attributes[static_cast<std::size_t>(i)];
    EXPECT_EQ(kv.key(), want.key);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            EXPECT_EQ(kv.value().value_case(), opentelemetry::proto::common::v1::AnyValue::kStringValue) << want.key;
            EXPECT_EQ(kv.value().string_value(), v);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            EXPECT_EQ(kv.value().value_case(), opentelemetry::proto::common::v1::AnyValue::kIntValue) << want.key;
            EXPECT_EQ(kv.value().int_value(), v);
          } else if constexpr (std::is_same_v<T, double>) {
            EXPECT_EQ(kv.value().value_case(), opentelemetry::proto::common::v1::AnyValue::kDoubleValue) << want.key;
            EXPECT_EQ(kv.value().double_value(), v);
          } else {
            EXPECT_EQ(kv.value().value_case(), opentelemetry::proto::common::v1::AnyValue::kBoolValue) << want.key;
            EXPECT_EQ(kv.value().bool_value(), v);
          }
        },
        want.value);
  }
}

TEST(OtlpEncoder, RootSpanHasEmptyParentAndUnsetStatusIsOmitted) {
  Span s = make_http_span(1, make_resource("a", 1), /*root=*/true);
  s.trace_flags = 0;
  s.kind = SpanKind::Unspecified;
  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));
  const auto& span = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_TRUE(span.parent_span_id().empty());
  EXPECT_FALSE(span.has_status());
  EXPECT_EQ(span.flags(), 0u);
  EXPECT_EQ(span.kind(), otrace::Span::SPAN_KIND_UNSPECIFIED);
}

TEST(OtlpEncoder, OkStatusWithoutMessage) {
  Span s = make_http_span(1, make_resource("a", 1));
  s.status = StatusCode::Ok;
  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));
  const auto& span = req.resource_spans(0).scope_spans(0).spans(0);
  ASSERT_TRUE(span.has_status());
  EXPECT_EQ(span.status().code(), otrace::Status::STATUS_CODE_OK);
  EXPECT_TRUE(span.status().message().empty());
}

TEST(OtlpEncoder, GroupsByResourceIdentityInFirstSeenOrder) {
  auto a = make_resource("svc", 10);
  auto b = make_resource("svc", 20);  // equal content, different process: stays separate
  SpanBatch batch{make_http_span(1, a), make_http_span(2, b), make_http_span(3, a), make_http_span(4, nullptr),
                  make_http_span(5, b), make_http_span(6, a)};
  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(batch));
  ASSERT_EQ(req.resource_spans_size(), 3);

  auto seeds_of = [&](int i) {
    std::vector<std::string> ids;
    for (const auto& sp : req.resource_spans(i).scope_spans(0).spans()) ids.push_back(sp.span_id());
    return ids;
  };
  EXPECT_EQ(seeds_of(0), (std::vector<std::string>{raw(batch[0].span_id), raw(batch[2].span_id), raw(batch[5].span_id)}));
  EXPECT_EQ(seeds_of(1), (std::vector<std::string>{raw(batch[1].span_id), raw(batch[4].span_id)}));
  EXPECT_EQ(seeds_of(2), (std::vector<std::string>{raw(batch[3].span_id)}));
  EXPECT_EQ(req.resource_spans(0).resource().attributes(2).value().int_value(), 10);
  EXPECT_EQ(req.resource_spans(1).resource().attributes(2).value().int_value(), 20);
  EXPECT_FALSE(req.resource_spans(2).has_resource());
  for (const auto& rs : req.resource_spans()) {
    ASSERT_EQ(rs.scope_spans_size(), 1);
    EXPECT_EQ(rs.scope_spans(0).scope().name(), "edgetrace");
  }
}

TEST(OtlpEncoder, ExplicitProcessPidAttributeIsNotDuplicated) {
  auto r = std::make_shared<Resource>();
  r->pid = 99;
  r->attributes = {{"process.pid", std::int64_t{99}}};
  Span s = make_http_span(1, r);
  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));
  EXPECT_EQ(req.resource_spans(0).resource().attributes_size(), 1);
}

TEST(OtlpEncoder, ReusedEncoderGivesIdenticalBytesAndHandlesEmptyBatch) {
  auto r = make_resource("svc", 1);
  SpanBatch big;
  for (int i = 0; i < 300; ++i) big.push_back(make_http_span(static_cast<std::uint64_t>(i), i % 3 ? r : make_resource("x", 2)));
  SpanBatch small{make_http_span(1, r)};
  OtlpEncoder reused;
  const auto first = reused.encode(small);
  (void)reused.encode(big);
  EXPECT_EQ(reused.encode(small), first);
  EXPECT_EQ(OtlpEncoder{}.encode(small), first);
  EXPECT_TRUE(reused.encode(SpanBatch{}).empty());
  const auto req = decode(reused.encode(big));
  std::size_t n = 0;
  for (const auto& rs : req.resource_spans()) n += static_cast<std::size_t>(rs.scope_spans(0).spans_size());
  EXPECT_EQ(n, big.size());
}

TEST(OtlpEncoder, LongStringsUseMultiByteLengths) {
  Span s = make_http_span(1, make_resource("svc", 1));
  s.name = std::string(70'000, 'n');
  s.attributes.push_back({"body", std::string(200'000, 'b')});
  OtlpEncoder encoder;
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));
  const auto& span = req.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_EQ(span.name().size(), 70'000u);
  EXPECT_EQ(span.attributes(span.attributes_size() - 1).value().string_value().size(), 200'000u);
}

TEST(OtlpEncoder, ResourceDefaultsFillOnlyMissingKeys) {
  Span known = make_http_span(1, make_resource("checkout", 5));  // has service.name and host.name
  Span orphan = make_http_span(2, nullptr);
  SpanBatch batch{known, orphan};
  OtlpEncoder encoder("edgetrace", "1", Attributes{{"service.name", std::string("from-env")},
                                                   {"deployment.environment", std::string("prod")}});
  const auto req = decode(encoder.encode(batch));
  ASSERT_EQ(req.resource_spans_size(), 2);
  const auto& first = req.resource_spans(0).resource();
  ASSERT_EQ(first.attributes_size(), 4);  // service.name, host.name, process.pid, deployment.environment
  EXPECT_EQ(first.attributes(0).value().string_value(), "checkout");
  EXPECT_EQ(first.attributes(3).key(), "deployment.environment");
  const auto& second = req.resource_spans(1).resource();
  ASSERT_EQ(second.attributes_size(), 2);
  EXPECT_EQ(second.attributes(0).value().string_value(), "from-env");
}

TEST(OtlpEncoder, CustomScope) {
  Span s = make_http_span(1, make_resource("svc", 1));
  OtlpEncoder encoder("custom", "");
  const auto req = decode(encoder.encode(std::span<const Span>(&s, 1)));
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).scope().name(), "custom");
  EXPECT_TRUE(req.resource_spans(0).scope_spans(0).scope().version().empty());
}

}  // namespace
}  // namespace edgetrace
