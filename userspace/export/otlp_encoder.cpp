#include "export/otlp_encoder.h"

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#ifndef EDGETRACE_VERSION
#error "EDGETRACE_VERSION must be defined by the build (PROJECT_VERSION)"
#endif

namespace edgetrace {
namespace {

using Coded = google::protobuf::io::CodedOutputStream;

enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

constexpr std::uint32_t tag(std::uint32_t field, WireType type) { return (field << 3) | type; }

// Field numbers from trace.proto / common.proto / resource.proto / trace_service.proto.
namespace field {
constexpr std::uint32_t kRequestResourceSpans = 1;
constexpr std::uint32_t kResourceSpansResource = 1, kResourceSpansScopeSpans = 2;
constexpr std::uint32_t kScopeSpansScope = 1, kScopeSpansSpans = 2;
constexpr std::uint32_t kScopeName = 1, kScopeVersion = 2;
constexpr std::uint32_t kResourceAttributes = 1;
constexpr std::uint32_t kSpanTraceId = 1, kSpanSpanId = 2, kSpanTraceState = 3, kSpanParentSpanId = 4, kSpanName = 5,
                        kSpanKind = 6, kSpanStart = 7, kSpanEnd = 8, kSpanAttributes = 9, kSpanStatus = 15,
                        kSpanFlags = 16;
constexpr std::uint32_t kStatusMessage = 2, kStatusCode = 3;
constexpr std::uint32_t kKeyValueKey = 1, kKeyValueValue = 2;
constexpr std::uint32_t kAnyString = 1, kAnyBool = 2, kAnyInt = 3, kAnyDouble = 4;
}  // namespace field

inline std::size_t varint_size(std::uint64_t v) { return Coded::VarintSize64(v); }
inline std::size_t tag_size(std::uint32_t t) { return Coded::VarintSize32(t); }
// A length-delimited field: tag + length prefix + body.
inline std::size_t len_field_size(std::uint32_t field_number, std::size_t body) {
  return tag_size(tag(field_number, kLen)) + varint_size(body) + body;
}

struct AnyValueSize {
  std::size_t operator()(const std::string& s) const { return len_field_size(field::kAnyString, s.size()); }
  std::size_t operator()(std::int64_t v) const {
    return tag_size(tag(field::kAnyInt, kVarint)) + varint_size(static_cast<std::uint64_t>(v));
  }
  std::size_t operator()(double) const { return tag_size(tag(field::kAnyDouble, kFixed64)) + 8; }
  std::size_t operator()(bool) const { return tag_size(tag(field::kAnyBool, kVarint)) + 1; }
};

inline std::size_t key_value_size(const Attribute& a) {
  const std::size_t any = std::visit(AnyValueSize{}, a.value);
  return len_field_size(field::kKeyValueKey, a.key.size()) + len_field_size(field::kKeyValueValue, any);
}

inline std::size_t attributes_size(std::uint32_t field_number, const Attributes& attrs) {
  std::size_t n = 0;
  for (const auto& a : attrs) n += len_field_size(field_number, key_value_size(a));
  return n;
}

inline std::size_t status_size(const Span& s) {
  std::size_t n = 0;
  if (!s.status_message.empty()) n += len_field_size(field::kStatusMessage, s.status_message.size());
  if (s.status != StatusCode::Unset)
    n += tag_size(tag(field::kStatusCode, kVarint)) + varint_size(static_cast<std::uint64_t>(s.status));
  return n;
}

std::size_t span_size(const Span& s) {
  std::size_t n = len_field_size(field::kSpanTraceId, s.trace_id.size()) + len_field_size(field::kSpanSpanId, s.span_id.size());
  if (!s.trace_state.empty()) n += len_field_size(field::kSpanTraceState, s.trace_state.size());
  if (!s.is_root()) n += len_field_size(field::kSpanParentSpanId, s.parent_span_id.size());
  if (!s.name.empty()) n += len_field_size(field::kSpanName, s.name.size());
  if (s.kind != SpanKind::Unspecified)
    n += tag_size(tag(field::kSpanKind, kVarint)) + varint_size(static_cast<std::uint64_t>(s.kind));
  n += 2 * (1 + 8);  // start and end: one-byte tags, fixed64
  n += attributes_size(field::kSpanAttributes, s.attributes);
  if (const auto st = status_size(s); st != 0) n += len_field_size(field::kSpanStatus, st);
  if (s.trace_flags != 0) n += tag_size(tag(field::kSpanFlags, kFixed32)) + 4;
  return n;
}

// Writes into a buffer whose size was computed by the functions above.
class Writer {
 public:
  explicit Writer(std::uint8_t* p) : p_(p) {}
  std::uint8_t* position() const { return p_; }

  void tag_len(std::uint32_t field_number, std::size_t len) {
    p_ = Coded::WriteVarint32ToArray(tag(field_number, kLen), p_);
    p_ = Coded::WriteVarint64ToArray(len, p_);
  }
  void bytes(std::uint32_t field_number, const void* data, std::size_t len) {
    tag_len(field_number, len);
    std::memcpy(p_, data, len);
    p_ += len;
  }
  void varint(std::uint32_t field_number, std::uint64_t v) {
    p_ = Coded::WriteVarint32ToArray(tag(field_number, kVarint), p_);
    p_ = Coded::WriteVarint64ToArray(v, p_);
  }
  void fixed64(std::uint32_t field_number, std::uint64_t v) {
    p_ = Coded::WriteVarint32ToArray(tag(field_number, kFixed64), p_);
    p_ = Coded::WriteLittleEndian64ToArray(v, p_);
  }
  void fixed32(std::uint32_t field_number, std::uint32_t v) {
    p_ = Coded::WriteVarint32ToArray(tag(field_number, kFixed32), p_);
    p_ = Coded::WriteLittleEndian32ToArray(v, p_);
  }
  void raw(const std::string& data) {
    std::memcpy(p_, data.data(), data.size());
    p_ += data.size();
  }

  void attribute(std::uint32_t field_number, const Attribute& a) {
    const std::size_t any = std::visit(AnyValueSize{}, a.value);
    tag_len(field_number, len_field_size(field::kKeyValueKey, a.key.size()) + len_field_size(field::kKeyValueValue, any));
    bytes(field::kKeyValueKey, a.key.data(), a.key.size());
    tag_len(field::kKeyValueValue, any);
    std::visit(
        [this](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>)
            bytes(field::kAnyString, v.data(), v.size());
          else if constexpr (std::is_same_v<T, std::int64_t>)
            varint(field::kAnyInt, static_cast<std::uint64_t>(v));
          else if constexpr (std::is_same_v<T, double>) {
            std::uint64_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            fixed64(field::kAnyDouble, bits);
          } else
            varint(field::kAnyBool, v ? 1 : 0);
        },
        a.value);
  }

  void span(const Span& s, std::size_t body_size) {
    tag_len(field::kScopeSpansSpans, body_size);
    bytes(field::kSpanTraceId, s.trace_id.data(), s.trace_id.size());
    bytes(field::kSpanSpanId, s.span_id.data(), s.span_id.size());
    if (!s.trace_state.empty()) bytes(field::kSpanTraceState, s.trace_state.data(), s.trace_state.size());
    if (!s.is_root()) bytes(field::kSpanParentSpanId, s.parent_span_id.data(), s.parent_span_id.size());
    if (!s.name.empty()) bytes(field::kSpanName, s.name.data(), s.name.size());
    if (s.kind != SpanKind::Unspecified) varint(field::kSpanKind, static_cast<std::uint64_t>(s.kind));
    fixed64(field::kSpanStart, s.start_unix_nanos);
    fixed64(field::kSpanEnd, s.end_unix_nanos);
    for (const auto& a : s.attributes) attribute(field::kSpanAttributes, a);
    if (const auto st = status_size(s); st != 0) {
      tag_len(field::kSpanStatus, st);
      if (!s.status_message.empty()) bytes(field::kStatusMessage, s.status_message.data(), s.status_message.size());
      if (s.status != StatusCode::Unset) varint(field::kStatusCode, static_cast<std::uint64_t>(s.status));
    }
    if (s.trace_flags != 0) fixed32(field::kSpanFlags, s.trace_flags);
  }

 private:
  std::uint8_t* p_;
};

Attributes resource_attributes(const Resource* r, const Attributes& defaults) {
  Attributes attrs;
  if (r != nullptr) attrs = r->attributes;
  auto has = [&attrs](std::string_view key) {
    return std::any_of(attrs.begin(), attrs.end(), [key](const Attribute& a) { return a.key == key; });
  };
  if (r != nullptr && r->pid != 0 && !has("process.pid"))
    attrs.push_back(Attribute{"process.pid", AttributeValue{static_cast<std::int64_t>(r->pid)}});
  for (const auto& d : defaults)
    if (!has(d.key)) attrs.push_back(d);
  return attrs;
}

}  // namespace

std::string_view edgetrace_version() { return EDGETRACE_VERSION; }

OtlpEncoder::OtlpEncoder(std::string scope_name, std::string scope_version, Attributes resource_defaults)
    : resource_defaults_(std::move(resource_defaults)) {
  const std::size_t size = len_field_size(field::kScopeName, scope_name.size()) +
                           (scope_version.empty() ? 0 : len_field_size(field::kScopeVersion, scope_version.size()));
  scope_bytes_.resize(size);
  Writer w(reinterpret_cast<std::uint8_t*>(scope_bytes_.data()));
  w.bytes(field::kScopeName, scope_name.data(), scope_name.size());
  if (!scope_version.empty()) w.bytes(field::kScopeVersion, scope_version.data(), scope_version.size());
}

std::string OtlpEncoder::encode(std::span<const Span> spans) {
  std::string out;
  encode_into(spans, out);
  return out;
}

void OtlpEncoder::encode_into(std::span<const Span> spans, std::string& out) {
  groups_.clear();
  group_of_.clear();
  group_index_.resize(spans.size());
  span_sizes_.resize(spans.size());
  order_.resize(spans.size());

  // Pass 1: group by resource identity and size every span.
  const Resource* last_resource = nullptr;
  std::uint32_t last_group = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Resource* r = spans[i].resource.get();
    if (groups_.empty() || r != last_resource) {
      auto [it, inserted] = group_of_.try_emplace(r, static_cast<std::uint32_t>(groups_.size()));
      if (inserted) groups_.push_back(Group{r});
      last_resource = r;
      last_group = it->second;
    }
    group_index_[i] = last_group;
    ++groups_[last_group].count;
    span_sizes_[i] = static_cast<std::uint32_t>(span_size(spans[i]));
  }

  std::uint32_t offset = 0;
  for (auto& g : groups_) {
    g.first = offset;
    offset += g.count;
    g.count = 0;
  }
  for (std::size_t i = 0; i < spans.size(); ++i) {
    auto& g = groups_[group_index_[i]];
    order_[g.first + g.count++] = static_cast<std::uint32_t>(i);
  }

  // Resources are few per batch: encode each once into a scratch buffer.
  if (resource_bytes_.size() < groups_.size()) resource_bytes_.resize(groups_.size());
  std::size_t total = 0;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    const Attributes attrs = resource_attributes(g.resource, resource_defaults_);
    g.has_resource = g.resource != nullptr || !attrs.empty();
    g.resource_size = attributes_size(field::kResourceAttributes, attrs);
    auto& rb = resource_bytes_[gi];
    rb.resize(g.resource_size);
    Writer w(reinterpret_cast<std::uint8_t*>(rb.data()));
    for (const auto& a : attrs) w.attribute(field::kResourceAttributes, a);

    std::size_t spans_bytes = 0;
    for (std::uint32_t k = 0; k < g.count; ++k) spans_bytes += len_field_size(field::kScopeSpansSpans, span_sizes_[order_[g.first + k]]);
    g.scope_spans_size = len_field_size(field::kScopeSpansScope, scope_bytes_.size()) + spans_bytes;
    g.resource_spans_size = (g.has_resource ? len_field_size(field::kResourceSpansResource, g.resource_size) : 0) +
                            len_field_size(field::kResourceSpansScopeSpans, g.scope_spans_size);
    total += len_field_size(field::kRequestResourceSpans, g.resource_spans_size);
  }

  // Pass 2: write.
  out.resize(total);
  Writer w(reinterpret_cast<std::uint8_t*>(out.data()));
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& g = groups_[gi];
    w.tag_len(field::kRequestResourceSpans, g.resource_spans_size);
    if (g.has_resource) {
      w.tag_len(field::kResourceSpansResource, g.resource_size);
      w.raw(resource_bytes_[gi]);
    }
    w.tag_len(field::kResourceSpansScopeSpans, g.scope_spans_size);
    w.tag_len(field::kScopeSpansScope, scope_bytes_.size());
    w.raw(scope_bytes_);
    for (std::uint32_t k = 0; k < g.count; ++k) {
      const auto i = order_[g.first + k];
      w.span(spans[i], span_sizes_[i]);
    }
  }
  if (w.position() != reinterpret_cast<std::uint8_t*>(out.data()) + out.size())
    throw std::logic_error("OtlpEncoder: size pass and write pass disagree");
}

}  // namespace edgetrace
