// The JSON line writer writes through a cursor into room sized for the line's worst case, so
// these tests feed it the worst: every byte value in every string field, long strings, the
// extremes of every attribute type, and batches of varying size through one writer. Each
// line must parse as JSON and give back exactly what went in.
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "output/span_writers.h"

namespace edgetrace {
namespace {

// What a JSON reader gives back for a string the writer was handed: bytes below 0x80 as
// they are, each byte from 0x80 up as the code point of the same value (the writer escapes
// them as \u00XX so the line stays valid whatever the captured bytes were).
std::string as_read_back(const std::string& bytes) {
  std::string out;
  for (const unsigned char c : bytes) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

std::string every_byte_value() {
  std::string bytes;
  for (int c = 0; c < 256; ++c) bytes.push_back(static_cast<char>(c));
  return bytes;
}

Span hostile_span(const std::string& text) {
  Span span;
  span.trace_id[0] = 0xab;
  span.span_id[7] = 0xcd;
  span.parent_span_id[0] = 1;
  span.name = text;
  span.kind = SpanKind::Client;
  span.start_unix_nanos = 1;
  span.end_unix_nanos = std::numeric_limits<std::uint64_t>::max();
  span.status = StatusCode::Error;
  span.status_message = text + text;
  span.trace_state = text;
  span.attributes.push_back({"url.path", text});
  span.attributes.push_back({std::string("key\"with\\odd\x01") + text, std::string(4000, '\x1f')});
  span.attributes.push_back({"min", std::numeric_limits<std::int64_t>::min()});
  span.attributes.push_back({"max", std::numeric_limits<std::int64_t>::max()});
  span.attributes.push_back({"tiny", -std::numeric_limits<double>::denorm_min()});
  span.attributes.push_back({"huge", -std::numeric_limits<double>::max()});
  span.attributes.push_back({"yes", true});
  span.attributes.push_back({"empty", std::string()});
  auto resource = std::make_shared<Resource>();
  resource->attributes.push_back({"service.name", text});
  span.resource = resource;
  return span;
}

TEST(JsonSpanWriter, EveryByteValueInEveryStringFieldComesBackExactly) {
  const std::string text = every_byte_value();
  const auto line = format_json_line(hostile_span(text));
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), std::string::npos) << "no raw newline: the writer ends each line with the only one";
  const auto json = nlohmann::json::parse(line);
  const auto expected = as_read_back(text);
  EXPECT_EQ(json["name"], expected);
  EXPECT_EQ(json["status_message"], expected + expected);
  EXPECT_EQ(json["trace_state"], expected);
  EXPECT_EQ(json["attributes"]["url.path"], expected);
  EXPECT_EQ(json["attributes"][as_read_back("key\"with\\odd\x01" + text)], std::string(4000, '\x1f'));
  EXPECT_EQ(json["attributes"]["min"], std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(json["attributes"]["max"], std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(json["attributes"]["tiny"], -std::numeric_limits<double>::denorm_min());
  EXPECT_EQ(json["attributes"]["huge"], -std::numeric_limits<double>::max());
  EXPECT_EQ(json["attributes"]["yes"], true);
  EXPECT_EQ(json["attributes"]["empty"], "");
  EXPECT_EQ(json["resource"]["service.name"], expected);
  EXPECT_EQ(json["end_unix_nano"], std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(json["trace_id"], "ab000000000000000000000000000000");
  EXPECT_EQ(json["parent_span_id"], "0100000000000000");
  EXPECT_EQ(json["kind"], "CLIENT");
  EXPECT_EQ(json["status"], "ERROR");
}

TEST(JsonSpanWriter, BatchesOfAnySizeThroughOneWriterGiveOneValidLinePerSpan) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> file(std::tmpfile(), &std::fclose);
  ASSERT_TRUE(file);
  std::mt19937 random(7);
  std::vector<std::string> names;
  {
    JsonSpanWriter writer(file.get());
    for (const std::size_t batch_size : {1u, 300u, 2u, 1000u, 0u, 17u}) {
      SpanBatch batch;
      for (std::size_t i = 0; i < batch_size; ++i) {
        std::string name(random() % 3000, '\0');
        for (auto& c : name) c = static_cast<char>(random());
        names.push_back(name);
        batch.push_back(hostile_span(name));
      }
      writer.consume(std::move(batch));
    }
    writer.flush();
  }
  std::rewind(file.get());
  std::string all;
  char chunk[65536];
  for (std::size_t n; (n = std::fread(chunk, 1, sizeof(chunk), file.get())) > 0;) all.append(chunk, n);
  std::size_t line_start = 0, index = 0;
  for (std::size_t end; (end = all.find('\n', line_start)) != std::string::npos; line_start = end + 1, ++index) {
    ASSERT_LT(index, names.size());
    const auto json = nlohmann::json::parse(all.substr(line_start, end - line_start));
    ASSERT_EQ(json["name"], as_read_back(names[index])) << "line " << index;
  }
  EXPECT_EQ(index, names.size());
  EXPECT_EQ(line_start, all.size()) << "nothing after the last newline";
}

}  // namespace
}  // namespace edgetrace
