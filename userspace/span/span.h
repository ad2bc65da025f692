// The span model every userspace stage shares: the stitcher produces it, tail sampling
// decides on it, the OTLP encoder maps it field for field onto opentelemetry.proto.trace.v1.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace edgetrace {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

// Values equal OTLP's Span.SpanKind so the encoder can cast.
enum class SpanKind : std::uint8_t { Unspecified = 0, Internal = 1, Server = 2, Client = 3, Producer = 4, Consumer = 5 };

// Values equal OTLP's Status.StatusCode.
enum class StatusCode : std::uint8_t { Unset = 0, Ok = 1, Error = 2 };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;

// Printable ASCII other than '"' and '\\': text a JSON string carries as it is. Attribute names
// in the code consist of these only (AttributeKey checks it), so writers copy them unescaped.
constexpr bool is_plain_text_char(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

// An attribute's name. Every span gets the same dozen semantic-convention names, most too long
// for std::string's inline buffer; held as views of their string literals they cost no
// allocation per span. Names known only at run time (configuration, the environment) keep
// their own copy.
class AttributeKey {
 public:
  // consteval: only a constant expression, i.e. text with static storage, can be viewed. The
  // check fails the build for a name that is not plain text (is_plain_text_char).
  consteval AttributeKey(const char* literal) : name_(std::string_view(literal)) {
    for (const char c : std::string_view(literal))
      if (!is_plain_text_char(static_cast<unsigned char>(c))) throw "attribute names in code are plain text";
  }
  AttributeKey(std::string name) : name_(std::move(name)) {}
  explicit AttributeKey(std::string_view name) : name_(std::string(name)) {}

  [[nodiscard]] std::string_view view() const {
    if (const auto* literal = std::get_if<std::string_view>(&name_)) return *literal;
    return std::get<std::string>(name_);
  }
  operator std::string_view() const { return view(); }
  [[nodiscard]] const char* data() const { return view().data(); }
  [[nodiscard]] std::size_t size() const { return view().size(); }
  // The copy of a run-time name; nullptr for a literal (which never needs escaping).
  [[nodiscard]] const std::string* owned() const { return std::get_if<std::string>(&name_); }

  friend bool operator==(const AttributeKey& a, const AttributeKey& b) { return a.view() == b.view(); }
  friend bool operator==(const AttributeKey& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const AttributeKey& a, const std::string& b) { return a.view() == b; }
  friend bool operator==(const AttributeKey& a, const char* b) { return a.view() == b; }
  friend std::ostream& operator<<(std::ostream& out, const AttributeKey& key);

 private:
  std::variant<std::string_view, std::string> name_;
};

struct Attribute {
  AttributeKey key;
  AttributeValue value;
};

using Attributes = std::vector<Attribute>;

// One per traced process; spans hold it by shared pointer so batches can group by identity.
struct Resource {
  Attributes attributes;
  std::uint32_t pid = 0;
};

struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero for a root span
  std::string trace_state;  // W3C tracestate, kept verbatim
  std::uint8_t trace_flags = 1;  // W3C flags; bit 0 = sampled

  std::string name;
  SpanKind kind = SpanKind::Unspecified;
  std::uint64_t start_unix_nanos = 0;
  std::uint64_t end_unix_nanos = 0;
  StatusCode status = StatusCode::Unset;
  std::string status_message;
  Attributes attributes;
  std::shared_ptr<const Resource> resource;

  [[nodiscard]] bool is_root() const { return parent_span_id == SpanId{}; }
  [[nodiscard]] std::uint64_t duration_nanos() const {
    return end_unix_nanos > start_unix_nanos ? end_unix_nanos - start_unix_nanos : 0;
  }
  [[nodiscard]] const AttributeValue* find_attribute(std::string_view key) const {
    for (const auto& a : attributes)
      if (a.key == key) return &a.value;
    return nullptr;
  }
};

using SpanBatch = std::vector<Span>;

// A stage that takes spans. Called from one thread (the pipeline's consumer thread) unless
// the implementation says otherwise, so implementations need no locks on this path.
class SpanSink {
 public:
  virtual ~SpanSink() = default;
  virtual void consume(SpanBatch spans) = 0;
  // Push out anything buffered (called on a timer and at shutdown).
  virtual void flush() {}
};

std::string to_hex(const TraceId& id);
std::string to_hex(const SpanId& id);

}  // namespace edgetrace
