#include "output/span_writers.h"

#include <fmt/format.h>

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

bool needs_escape(unsigned char c) { return c == '"' || c == '\\' || c < 0x20 || c >= 0x7f; }

void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  std::size_t run_start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (!needs_escape(c)) continue;
    out.append(text.data() + run_start, i - run_start);
    run_start = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:  // captured bytes need not be UTF-8: keep the JSON valid
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(text.data() + run_start, text.size() - run_start);
  out.push_back('"');
}

void append_json_value(std::string& out, const AttributeValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) append_json_string(out, v);
        else if constexpr (std::is_same_v<T, bool>) out += v ? "true" : "false";
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
  out.reserve(512);
  out += "{\"trace_id\":\"" + to_hex(span.trace_id) + "\",\"span_id\":\"" + to_hex(span.span_id) + "\"";
  out += ",\"parent_span_id\":";
  out += span.is_root() ? "null" : "\"" + to_hex(span.parent_span_id) + "\"";
  out += ",\"name\":";
  append_json_string(out, span.name);
  fmt::format_to(std::back_inserter(out), ",\"kind\":\"{}\",\"start_unix_nano\":{},\"end_unix_nano\":{},\"duration_ns\":{}",
                 kind_name(span.kind), span.start_unix_nanos, span.end_unix_nanos, span.duration_nanos());
  fmt::format_to(std::back_inserter(out), ",\"status\":\"{}\"", status_name(span.status));
  if (!span.status_message.empty()) {
    out += ",\"status_message\":";
    append_json_string(out, span.status_message);
  }
  fmt::format_to(std::back_inserter(out), ",\"trace_flags\":{}", span.trace_flags);
  if (!span.trace_state.empty()) {
    out += ",\"trace_state\":";
    append_json_string(out, span.trace_state);
  }
  out += ",\"attributes\":";
  append_json_attributes(out, span.attributes);
  out += ",\"resource\":";
  append_json_attributes(out, span.resource ? span.resource->attributes : Attributes{});
  out += "}";
  return out;
}

void ConsoleSpanWriter::consume(SpanBatch spans) {
  std::string text;
  for (const auto& span : spans) (text += format_console_line(span)) += '\n';
  std::fwrite(text.data(), 1, text.size(), out_);
}

void JsonSpanWriter::consume(SpanBatch spans) {
  std::string text;
  for (const auto& span : spans) (text += format_json_line(span)) += '\n';
  std::fwrite(text.data(), 1, text.size(), out_);
}

}  // namespace edgetrace
