#include "export/exporter_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <limits>

#include "config/config_error.h"
#include "export/resource.h"

namespace edgetrace {
namespace {

constexpr std::string_view kSection = "exporter";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// OpenTelemetry treats an empty variable as unset.
std::optional<std::string> env(const GetEnv& getenv, std::string_view name) {
  auto v = getenv(name);
  if (v && trim(*v).empty()) return std::nullopt;
  return v;
}

// The signal-specific variable wins over the generic one; returns the value and its name.
struct EnvValue {
  std::string value;
  std::string name;
};
std::optional<EnvValue> signal_env(const GetEnv& getenv, std::string_view suffix) {
  const std::string specific = "OTEL_EXPORTER_OTLP_TRACES_" + std::string(suffix);
  if (auto v = env(getenv, specific)) return EnvValue{std::string(trim(*v)), specific};
  const std::string generic = "OTEL_EXPORTER_OTLP_" + std::string(suffix);
  if (auto v = env(getenv, generic)) return EnvValue{std::string(trim(*v)), generic};
  return std::nullopt;
}

[[noreturn]] void fail(std::string_view where, std::string_view what) {
  throw ConfigError(std::string(where) + ": " + std::string(what));
}

std::string key_path(std::string_view parent, std::string_view key) {
  return std::string(parent) + "." + std::string(key);
}

void reject_unknown_keys(const YAML::Node& map, std::string_view path, std::initializer_list<std::string_view> known) {
  if (!map.IsMap()) fail(path, "expected a mapping");
  for (const auto& entry : map) {
    const auto key = entry.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(key_path(path, key), "unknown key (expected one of: " + list + ")");
    }
  }
}

std::string yaml_string(const YAML::Node& node, std::string_view path) {
  if (!node.IsScalar()) fail(path, "expected a string");
  return node.as<std::string>();
}

std::uint64_t parse_unsigned(std::string_view text, std::string_view where, std::uint64_t min,
                             std::uint64_t max = std::numeric_limits<std::int64_t>::max()) {
  text = trim(text);
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    fail(where, "expected a non-negative integer, got '" + std::string(text) + "'");
  if (value < min || value > max)
    fail(where, "value " + std::to_string(value) + " out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return value;
}

std::uint64_t yaml_unsigned(const YAML::Node& node, std::string_view path, std::uint64_t min,
                            std::uint64_t max = std::numeric_limits<std::int64_t>::max()) {
  if (!node.IsScalar()) fail(path, "expected an integer");
  return parse_unsigned(node.Scalar(), path, min, max);
}

bool parse_bool(std::string_view text, std::string_view where) {
  const auto v = lower(trim(text));
  if (v == "true") return true;
  if (v == "false") return false;
  fail(where, "expected true or false, got '" + std::string(text) + "'");
}

OtlpProtocol parse_protocol(std::string_view text, std::string_view where) {
  const auto v = lower(trim(text));
  if (v == "grpc") return OtlpProtocol::Grpc;
  if (v == "http/protobuf") return OtlpProtocol::HttpProtobuf;
  if (v == "http/json") fail(where, "http/json is not supported (use grpc or http/protobuf)");
  fail(where, "expected grpc or http/protobuf, got '" + std::string(text) + "'");
}

OtlpCompression parse_compression(std::string_view text, std::string_view where) {
  const auto v = lower(trim(text));
  if (v == "gzip") return OtlpCompression::Gzip;
  if (v == "none") return OtlpCompression::None;
  fail(where, "expected gzip or none, got '" + std::string(text) + "'");
}

bool has_scheme(std::string_view url, std::string_view scheme) {
  return url.size() > scheme.size() + 3 && lower(url.substr(0, scheme.size() + 3)) == std::string(scheme) + "://";
}

void validate_endpoint(const std::string& endpoint, OtlpProtocol protocol, std::string_view where) {
  if (endpoint.empty()) fail(where, "endpoint is empty");
  if (protocol == OtlpProtocol::HttpProtobuf && !has_scheme(endpoint, "http") && !has_scheme(endpoint, "https"))
    fail(where, "an http/protobuf endpoint must be an http:// or https:// URL, got '" + endpoint + "'");
  if (protocol == OtlpProtocol::Grpc && endpoint.find("://") != std::string::npos && !has_scheme(endpoint, "http") &&
      !has_scheme(endpoint, "https")) {
    // Other URIs are gRPC resolver targets; accept the resolvers gRPC ships.
    const auto l = lower(endpoint);
    const bool resolver = l.starts_with("dns:") || l.starts_with("unix:") || l.starts_with("unix-abstract:") ||
                          l.starts_with("ipv4:") || l.starts_with("ipv6:");
    if (!resolver)
      fail(where, "a grpc endpoint takes http://, https://, host:port or a gRPC target (dns:, unix:, ipv4:, ipv6:), got '" +
                      endpoint + "'");
  }
  for (char c : endpoint)
    if (std::isspace(static_cast<unsigned char>(c))) fail(where, "endpoint contains whitespace");
}

// HTTP field-name token characters (RFC 9110); gRPC additionally wants lowercase, which
// the gRPC sender applies.
void validate_header_name(std::string_view name, std::string_view where) {
  if (name.empty()) fail(where, "empty header name");
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) fail(where, "header name '" + std::string(name) + "' has an invalid character");
  }
}

void validate_header_value(std::string_view value, std::string_view where) {
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') fail(where, "header value contains a control character");
}

void merge_headers(HeaderList& into, const HeaderList& from) {
  for (const auto& [k, v] : from) {
    auto it = std::find_if(into.begin(), into.end(), [&](const auto& h) { return lower(h.first) == lower(k); });
    if (it != into.end())
      it->second = v;
    else
      into.emplace_back(k, v);
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view to_string(OtlpProtocol protocol) {
  return protocol == OtlpProtocol::Grpc ? "grpc" : "http/protobuf";
}
std::string_view to_string(OtlpCompression compression) {
  return compression == OtlpCompression::Gzip ? "gzip" : "none";
}

std::optional<std::string> process_getenv(std::string_view name) {
  const std::string key(name);
  if (const char* v = std::getenv(key.c_str())) return std::string(v);
  return std::nullopt;
}

std::string default_endpoint(OtlpProtocol protocol) {
  return protocol == OtlpProtocol::Grpc ? "http://localhost:4317" : "http://localhost:4318/v1/traces";
}

std::string http_traces_url_from_base(std::string_view base) {
  // Query and fragment are not part of the base path the spec builds on; drop them.
  if (auto cut = base.find_first_of("?#"); cut != std::string_view::npos) base = base.substr(0, cut);
  std::string url(base);
  if (!url.empty() && url.back() == '/') url.pop_back();
  return url + "/v1/traces";
}

std::string percent_decode(std::string_view text, std::string_view source) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    const int hi = i + 1 < text.size() ? hex_digit(text[i + 1]) : -1;
    const int lo = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) fail(source, "malformed percent escape in '" + std::string(text) + "'");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

HeaderList parse_key_value_list(std::string_view text, std::string_view source) {
  HeaderList out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (item.empty()) continue;
    // W3C baggage allows ";property" metadata after a value; OTel does not use it.
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      fail(source, "entry '" + std::string(item) + "' is not key=value");
    auto key = percent_decode(trim(item.substr(0, eq)), source);
    auto value = percent_decode(trim(item.substr(eq + 1)), source);
    if (key.empty()) fail(source, "entry '" + std::string(item) + "' has an empty key");
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

ExporterConfig parse_exporter_config(const YAML::Node& section, const GetEnv& getenv) {
  ExporterConfig cfg;
  const bool have_yaml = section.IsDefined() && !section.IsNull();
  std::optional<std::string> yaml_endpoint;
  HeaderList yaml_headers;

  if (have_yaml) {
    reject_unknown_keys(section, kSection,
                        {"protocol", "endpoint", "headers", "compression", "timeout_ms", "tls", "batch", "retry",
                         "memory_queue", "drain_timeout_ms"});
    const auto path = [](std::string_view k) { return key_path(kSection, k); };
    if (auto n = section["protocol"]) cfg.protocol = parse_protocol(yaml_string(n, path("protocol")), path("protocol"));
    if (auto n = section["endpoint"]) yaml_endpoint = yaml_string(n, path("endpoint"));
    if (auto n = section["headers"]) {
      if (!n.IsMap()) fail(path("headers"), "expected a mapping of header name to value");
      for (const auto& h : n) {
        const auto name = h.first.as<std::string>();
        const auto where = key_path(path("headers"), name);
        auto value = yaml_string(h.second, where);
        validate_header_name(name, where);
        validate_header_value(value, where);
        yaml_headers.emplace_back(name, std::move(value));
      }
    }
    if (auto n = section["compression"])
      cfg.compression = parse_compression(yaml_string(n, path("compression")), path("compression"));
    if (auto n = section["timeout_ms"])
      cfg.timeout = std::chrono::milliseconds(yaml_unsigned(n, path("timeout_ms"), 1));
    if (auto n = section["drain_timeout_ms"])
      cfg.drain_timeout = std::chrono::milliseconds(yaml_unsigned(n, path("drain_timeout_ms"), 0));
    if (auto tls = section["tls"]) {
      const auto tp = path("tls");
      reject_unknown_keys(tls, tp, {"ca_file", "cert_file", "key_file", "insecure"});
      if (auto n = tls["ca_file"]) cfg.tls.ca_file = yaml_string(n, key_path(tp, "ca_file"));
      if (auto n = tls["cert_file"]) cfg.tls.cert_file = yaml_string(n, key_path(tp, "cert_file"));
      if (auto n = tls["key_file"]) cfg.tls.key_file = yaml_string(n, key_path(tp, "key_file"));
      if (auto n = tls["insecure"]) cfg.tls.insecure = parse_bool(yaml_string(n, key_path(tp, "insecure")), key_path(tp, "insecure"));
    }
    if (auto batch = section["batch"]) {
      const auto bp = path("batch");
      reject_unknown_keys(batch, bp, {"max_spans", "max_delay_ms"});
      if (auto n = batch["max_spans"]) cfg.batch.max_spans = yaml_unsigned(n, key_path(bp, "max_spans"), 1, 1'000'000);
      if (auto n = batch["max_delay_ms"])
        cfg.batch.max_delay = std::chrono::milliseconds(yaml_unsigned(n, key_path(bp, "max_delay_ms"), 1));
    }
    if (auto retry = section["retry"]) {
      const auto rp = path("retry");
      reject_unknown_keys(retry, rp, {"initial_backoff_ms", "max_backoff_ms", "max_elapsed_ms"});
      if (auto n = retry["initial_backoff_ms"])
        cfg.retry.initial_backoff = std::chrono::milliseconds(yaml_unsigned(n, key_path(rp, "initial_backoff_ms"), 1));
      if (auto n = retry["max_backoff_ms"])
        cfg.retry.max_backoff = std::chrono::milliseconds(yaml_unsigned(n, key_path(rp, "max_backoff_ms"), 1));
      if (auto n = retry["max_elapsed_ms"])
        cfg.retry.max_elapsed = std::chrono::milliseconds(yaml_unsigned(n, key_path(rp, "max_elapsed_ms"), 0));
      if (cfg.retry.max_backoff < cfg.retry.initial_backoff)
        fail(key_path(rp, "max_backoff_ms"), "must be >= initial_backoff_ms");
    }
    if (auto q = section["memory_queue"]) {
      const auto qp = path("memory_queue");
      reject_unknown_keys(q, qp, {"max_bytes", "max_batches"});
      if (auto n = q["max_bytes"]) cfg.memory_queue.max_bytes = yaml_unsigned(n, key_path(qp, "max_bytes"), 1);
      if (auto n = q["max_batches"]) cfg.memory_queue.max_batches = yaml_unsigned(n, key_path(qp, "max_batches"), 0);
    }
  }

  // Environment variables override YAML. The protocol comes first: it decides how the
  // generic endpoint variable is read.
  if (auto v = signal_env(getenv, "PROTOCOL")) cfg.protocol = parse_protocol(v->value, v->name);

  if (auto v = env(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
    cfg.endpoint = std::string(trim(*v));
    validate_endpoint(cfg.endpoint, cfg.protocol, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  } else if (auto g = env(getenv, "OTEL_EXPORTER_OTLP_ENDPOINT")) {
    const std::string base(trim(*g));
    cfg.endpoint = cfg.protocol == OtlpProtocol::HttpProtobuf ? http_traces_url_from_base(base) : base;
    validate_endpoint(cfg.endpoint, cfg.protocol, "OTEL_EXPORTER_OTLP_ENDPOINT");
  } else if (yaml_endpoint) {
    cfg.endpoint = *yaml_endpoint;
    validate_endpoint(cfg.endpoint, cfg.protocol, key_path(kSection, "endpoint"));
  } else {
    cfg.endpoint = default_endpoint(cfg.protocol);
  }

  cfg.headers = std::move(yaml_headers);
  if (auto v = signal_env(getenv, "HEADERS")) {
    auto env_headers = parse_key_value_list(v->value, v->name);
    for (const auto& [k, val] : env_headers) {
      validate_header_name(k, v->name);
      validate_header_value(val, v->name);
    }
    merge_headers(cfg.headers, env_headers);
  }
  if (auto v = signal_env(getenv, "COMPRESSION")) cfg.compression = parse_compression(v->value, v->name);
  if (auto v = signal_env(getenv, "TIMEOUT")) cfg.timeout = std::chrono::milliseconds(parse_unsigned(v->value, v->name, 1));
  if (auto v = signal_env(getenv, "INSECURE")) cfg.tls.insecure = parse_bool(v->value, v->name);
  if (auto v = signal_env(getenv, "CERTIFICATE")) cfg.tls.ca_file = v->value;
  if (auto v = signal_env(getenv, "CLIENT_CERTIFICATE")) cfg.tls.cert_file = v->value;
  if (auto v = signal_env(getenv, "CLIENT_KEY")) cfg.tls.key_file = v->value;

  cfg.resource_attributes = resource_attributes_from_env(getenv);

  if (cfg.tls.cert_file.empty() != cfg.tls.key_file.empty())
    fail(key_path(kSection, "tls"), "cert_file and key_file (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE / _CLIENT_KEY) must be given together");
  return cfg;
}

bool otlp_endpoint_configured(const YAML::Node& section, const GetEnv& getenv) {
  if (env(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || env(getenv, "OTEL_EXPORTER_OTLP_ENDPOINT")) return true;
  return section.IsDefined() && section.IsMap() && section["endpoint"] && section["endpoint"].IsScalar() &&
         !section["endpoint"].Scalar().empty();
}

}  // namespace edgetrace
