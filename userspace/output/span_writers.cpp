#include "output/span_writers.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
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

// Which bytes JsonCursor::put_string must escape: '"', '\\', controls, DEL and everything >= 0x80
// (captured bytes need not be UTF-8, so they are written as \u00XX to keep the JSON valid).
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = !is_plain_text_char(static_cast<unsigned char>(c));
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

// JSON text goes through a cursor into memory already sized for the line's worst case
// (json_line_bound): one size check per span instead of one per append, which was most of the
// writer's time when it appended to a std::string piece by piece.
class JsonCursor {
 public:
  explicit JsonCursor(char* at) : at_(at) {}
  [[nodiscard]] char* position() const { return at_; }

  void put(char c) { *at_++ = c; }
  void put(std::string_view text) {
    std::memcpy(at_, text.data(), text.size());
    at_ += text.size();
  }

  // Writes at most 6 * text.size() + 2 bytes (every byte escaped as \u00XX, and the quotes).
  void put_string(std::string_view text) {
    put('"');
    const char* p = text.data();
    const char* const end = p + text.size();
    while (true) {
      while (end - p >= 8 && !may_need_escape(p)) {
        std::memcpy(at_, p, 8);
        at_ += 8;
        p += 8;
      }
      const char* const word_end = p + std::min<std::ptrdiff_t>(8, end - p);
      while (p < word_end && !kNeedsEscape[static_cast<unsigned char>(*p)]) *at_++ = *p++;
      if (p == end) break;
      if (p == word_end) continue;  // nothing to escape in this word after all
      const auto c = static_cast<unsigned char>(*p++);
      switch (c) {
        case '"': put("\\\""); break;
        case '\\': put("\\\\"); break;
        case '\n': put("\\n"); break;
        case '\r': put("\\r"); break;
        case '\t': put("\\t"); break;
        default:
          put("\\u00");
          put(kHexDigits[c >> 4]);
          put(kHexDigits[c & 0xf]);
      }
    }
    put('"');
  }

  // Writes at most kMaxIntegerChars bytes.
  template <std::integral T>
  void put_integer(T value) {
    at_ = std::to_chars(at_, at_ + kMaxIntegerChars, value).ptr;
  }

  template <std::size_t N>
  void put_hex(const std::array<std::uint8_t, N>& bytes) {
    for (const std::uint8_t b : bytes) {
      *at_++ = kHexDigits[b >> 4];
      *at_++ = kHexDigits[b & 0xf];
    }
  }

  void put_value(const AttributeValue& value) {
    std::visit(
        [this](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) put_string(v);
          else if constexpr (std::is_same_v<T, bool>) put(v ? "true" : "false");
          else if constexpr (std::is_same_v<T, std::int64_t>) put_integer(v);
          else at_ = fmt::format_to_n(at_, kMaxDoubleChars, "{}", v).out;
        },
        value);
  }

  void put_attributes(const Attributes& attributes) {
    put('{');
    bool first = true;
    for (const auto& a : attributes) {
      if (!first) put(',');
      first = false;
      if (a.key.owned()) {
        put_string(a.key);
      } else {  // a name from the code: nothing to escape (AttributeKey checks it)
        put('"');
        put(a.key.view());
        put('"');
      }
      put(':');
      put_value(a.value);
    }
    put('}');
  }

  static constexpr std::size_t kMaxIntegerChars = 20;  // "-9223372036854775808", UINT64_MAX
  // fmt's shortest round-trip form is at most 24 ("-1.7976931348623157e+308"); room to spare.
  static constexpr std::size_t kMaxDoubleChars = 32;

 private:
  static constexpr char kHexDigits[] = "0123456789abcdef";
  char* at_;
};

constexpr std::size_t escaped_bound(std::size_t text_size) { return 6 * text_size + 2; }

std::size_t attributes_bound(const Attributes& attributes) {
  std::size_t bound = 2;  // braces
  for (const auto& a : attributes) {
    bound += 2 + escaped_bound(a.key.size());  // comma and colon
    bound += std::visit(
        [](const auto& v) -> std::size_t {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) return escaped_bound(v.size());
          else if constexpr (std::is_same_v<T, bool>) return 5;
          else if constexpr (std::is_same_v<T, std::int64_t>) return JsonCursor::kMaxIntegerChars;
          else return JsonCursor::kMaxDoubleChars;
        },
        a.value);
  }
  return bound;
}

std::string resource_json(const Resource* resource) {
  static const Attributes none;
  const Attributes& attributes = resource ? resource->attributes : none;
  std::string out(attributes_bound(attributes), '\0');
  JsonCursor cursor(out.data());
  cursor.put_attributes(attributes);
  out.resize(static_cast<std::size_t>(cursor.position() - out.data()));
  return out;
}

// The most bytes write_json_line can write for this span, newline included.
std::size_t json_line_bound(const Span& span, std::string_view resource) {
  // Field names, punctuation, kind and status names (under 250 bytes), 64 hex digits, four integers.
  constexpr std::size_t fixed = 512;
  return fixed + escaped_bound(span.name.size()) + escaped_bound(span.status_message.size()) +
         escaped_bound(span.trace_state.size()) + attributes_bound(span.attributes) + resource.size();
}

// One span as a JSON object followed by a newline, into memory of at least json_line_bound
// bytes; `resource` is the span's resource already in JSON. Returns the end of what it wrote.
char* write_json_line(char* at, const Span& span, std::string_view resource) {
  JsonCursor out(at);
  out.put("{\"trace_id\":\"");
  out.put_hex(span.trace_id);
  out.put("\",\"span_id\":\"");
  out.put_hex(span.span_id);
  out.put("\",\"parent_span_id\":");
  if (span.is_root()) {
    out.put("null");
  } else {
    out.put('"');
    out.put_hex(span.parent_span_id);
    out.put('"');
  }
  out.put(",\"name\":");
  out.put_string(span.name);
  out.put(",\"kind\":\"");
  out.put(kind_name(span.kind));
  out.put("\",\"start_unix_nano\":");
  out.put_integer(span.start_unix_nanos);
  out.put(",\"end_unix_nano\":");
  out.put_integer(span.end_unix_nanos);
  out.put(",\"duration_ns\":");
  out.put_integer(span.duration_nanos());
  out.put(",\"status\":\"");
  out.put(status_name(span.status));
  out.put('"');
  if (!span.status_message.empty()) {
    out.put(",\"status_message\":");
    out.put_string(span.status_message);
  }
  out.put(",\"trace_flags\":");
  out.put_integer(static_cast<unsigned>(span.trace_flags));
  if (!span.trace_state.empty()) {
    out.put(",\"trace_state\":");
    out.put_string(span.trace_state);
  }
  out.put(",\"attributes\":");
  out.put_attributes(span.attributes);
  out.put(",\"resource\":");
  out.put(resource);
  out.put('}');
  out.put('\n');
  return out.position();
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
  const std::string resource = resource_json(span.resource.get());
  std::string out(json_line_bound(span, resource), '\0');
  const char* end = write_json_line(out.data(), span, resource);
  out.resize(static_cast<std::size_t>(end - out.data()) - 1);  // without the newline
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
    const std::string& resource = resource_json_for(span.resource);
    char* at = buffer_.make_room(json_line_bound(span, resource));
    buffer_.grow_to(write_json_line(at, span, resource));
    if (buffer_.size() >= kWriteChunkBytes) write_buffer();
  }
  write_buffer();
}

void JsonSpanWriter::write_buffer() {
  std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
  buffer_.clear();
}

char* JsonSpanWriter::LineBuffer::make_room(std::size_t bytes) {
  if (capacity_ - size_ < bytes) {
    const std::size_t capacity = std::max(2 * capacity_, size_ + bytes);
    auto data = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) std::memcpy(data.get(), data_.get(), size_);
    data_ = std::move(data);
    capacity_ = capacity;
  }
  return data_.get() + size_;
}

}  // namespace edgetrace
