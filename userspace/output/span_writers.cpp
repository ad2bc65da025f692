#include "output/span_writers.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace edgetrace {
namespace {

std::string_view kind_name(SpanKind kind) {
  switch (kind) {
    case SpanKind::Server: return "SERVER";
    case SpanKind::Client: return "CLIENT";
    case SpanKind::Internal: return "INTERNAL";
    case SpanKind::Producer: return "PRODUCER";
    case SpanKind::Consumer: return "CONSUMER";
    case SpanKind::Unspecified: break;
  }
  return "UNSPECIFIED";
}

std::string_view status_name(StatusCode status) {
  switch (status) {
    case StatusCode::Ok: return "OK";
    case StatusCode::Error: return "ERROR";
    case StatusCode::Unset: break;
  }
  return "UNSET";
}

// Which bytes append_json_string must escape: '"', '\\', controls, DEL and everything >= 0x80
// (captured bytes need not be UTF-8, so they are written as \u00XX to keep the JSON valid).
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x7f;
  return table;
}();

// True when some byte of these eight may need escaping (never false when one does): text
// nearly never holds such bytes, so most of it is skipped a word at a time.
bool may_need_escape(const char* eight_bytes) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t high_bits = 0x8080808080808080ULL;
  std::uint64_t word;
  std::memcpy(&word, eight_bytes, sizeof(word));
  const auto has_zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & high_bits; };
  const std::uint64_t below_space = (word - ones * 0x20) & ~word & high_bits;
  const std::uint64_t del_or_high = ((word + ones) | word) & high_bits;  // a byte >= 0x7f
  return (below_space | del_or_high | has_zero_byte(word ^ (ones * '"')) | has_zero_byte(word ^ (ones * '\\'))) != 0;
}

void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  std::size_t run_start = 0;
  std::size_t i = 0;
  while (true) {
    while (i + 8 <= text.size() && !may_need_escape(text.data() + i)) i += 8;
    const std::size_t word_end = std::min(i + 8, text.size());
    while (i < word_end && !kNeedsEscape[static_cast<unsigned char>(text[i])]) ++i;
    if (i == text.size()) break;
    if (i == word_end) continue;  // nothing to escape in this word after all
    const auto c = static_cast<unsigned char>(text[i]);
    out.append(text.data() + run_start, i - run_start);
    run_start = ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(text.data() + run_start, text.size() - run_start);
  out.push_back('"');
}

template <std::integral T>
void append_integer(std::string& out, T value) {
  const fmt::format_int text(value);
  out.append(text.data(), text.size());
}

template <std::size_t N>
void append_hex(std::string& out, const std::array<std::uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  const auto at = out.size();
  out.resize(at + 2 * N);
  for (std::size_t i = 0; i < N; ++i) {
    out[at + 2 * i] = digits[bytes[i] >> 4];
    out[at + 2 * i + 1] = digits[bytes[i] & 0xf];
  }
}

void append_json_value(std::string& out, const AttributeValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) append_json_string(out, v);
        else if constexpr (std::is_same_v<T, bool>) out += v ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::int64_t>) append_integer(out, v);
        else fmt::format_to(std::back_inserter(out), "{}", v);
      },
      value);
}

void append_json_attributes(std::string& out, const Attributes& attributes) {
  out.push_back('{');
  bool first = true;
  for (const auto& a : attributes) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, a.key);
    out.push_back(':');
    append_json_value(out, a.value);
  }
  out.push_back('}');
}

std::string resource_json(const Resource* resource) {
  std::string out;
  append_json_attributes(out, resource ? resource->attributes : Attributes{});
  return out;
}

// One span as a JSON object (no newline); `resource` is the span's resource already in JSON.
void append_json_line(std::string& out, const Span& span, std::string_view resource) {
  out += "{\"trace_id\":\"";
  append_hex(out, span.trace_id);
  out += "\",\"span_id\":\"";
  append_hex(out, span.span_id);
  out += "\",\"parent_span_id\":";
  if (span.is_root()) {
    out += "null";
  } else {
    out.push_back('"');
    append_hex(out, span.parent_span_id);
    out.push_back('"');
  }
  out += ",\"name\":";
  append_json_string(out, span.name);
  out += ",\"kind\":\"";
  out += kind_name(span.kind);
  out += "\",\"start_unix_nano\":";
  append_integer(out, span.start_unix_nanos);
  out += ",\"end_unix_nano\":";
  append_integer(out, span.end_unix_nanos);
  out += ",\"duration_ns\":";
  append_integer(out, span.duration_nanos());
  out += ",\"status\":\"";
  out += status_name(span.status);
  out.push_back('"');
  if (!span.status_message.empty()) {
    out += ",\"status_message\":";
    append_json_string(out, span.status_message);
  }
  out += ",\"trace_flags\":";
  append_integer(out, static_cast<unsigned>(span.trace_flags));
  if (!span.trace_state.empty()) {
    out += ",\"trace_state\":";
    append_json_string(out, span.trace_state);
  }
  out += ",\"attributes\":";
  append_json_attributes(out, span.attributes);
  out += ",\"resource\":";
  out += resource;
  out.push_back('}');
}

std::string attribute_text(const AttributeValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) return v;
        else return fmt::format("{}", v);
      },
      value);
}

}  // namespace

std::string format_console_line(const Span& span) {
  std::string line = fmt::format("{} {} parent={} {:<6} {:<22} {:>10.3f}ms {:<5}", to_hex(span.trace_id),
                                 to_hex(span.span_id), span.is_root() ? std::string(16, '-') : to_hex(span.parent_span_id),
                                 kind_name(span.kind), span.name, static_cast<double>(span.duration_nanos()) / 1e6,
                                 status_name(span.status));
  if (span.resource)
    if (const auto* service = [&]() -> const AttributeValue* {
          for (const auto& a : span.resource->attributes)
            if (a.key == "service.name") return &a.value;
          return nullptr;
        }())
      line += " service=" + attribute_text(*service);
  for (const auto* key : {"http.response.status_code", "url.path", "url.query", "server.address", "server.port",
                          "client.address", "network.peer.address", "network.peer.port"})
    if (const auto* value = span.find_attribute(key)) line += fmt::format(" {}={}", key, attribute_text(*value));
  return line;
}

std::string format_json_line(const Span& span) {
  std::string out;
  append_json_line(out, span, resource_json(span.resource.get()));
  return out;
}

void ConsoleSpanWriter::consume(SpanBatch spans) {
  std::string text;
  for (const auto& span : spans) (text += format_console_line(span)) += '\n';
  std::fwrite(text.data(), 1, text.size(), out_);
}

const std::string& JsonSpanWriter::resource_json_for(const std::shared_ptr<const Resource>& resource) {
  auto found = resource_json_.find(resource.get());
  if (found != resource_json_.end()) return found->second.json;
  // Resources live as long as their process is traced; a bound keeps a long run with many
  // short-lived processes from growing this without end.
  if (resource_json_.size() >= kMaxCachedResources) resource_json_.clear();
  return resource_json_.emplace(resource.get(), CachedResource{resource, resource_json(resource.get())}).first->second.json;
}

void JsonSpanWriter::consume(SpanBatch spans) {
  for (const auto& span : spans) {
    append_json_line(buffer_, span, resource_json_for(span.resource));
    buffer_.push_back('\n');
    if (buffer_.size() >= kWriteChunkBytes) write_buffer();
  }
  write_buffer();
}

void JsonSpanWriter::write_buffer() {
  std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
  buffer_.clear();
}

}  // namespace edgetrace
