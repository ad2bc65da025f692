// OTLP exporter settings: the `exporter` YAML section merged with the standard OTEL_*
// environment variables (which win over YAML, as OpenTelemetry users expect).
// See docs/export.md for every key, default and rule.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "span/span.h"

namespace YAML {
class Node;
}

namespace edgetrace {

enum class OtlpProtocol { Grpc, HttpProtobuf };
enum class OtlpCompression { None, Gzip };

std::string_view to_string(OtlpProtocol protocol);
std::string_view to_string(OtlpCompression compression);

struct OtlpTlsConfig {
  std::string ca_file;    // PEM bundle trusted for the receiver's certificate; empty = system roots
  std::string cert_file;  // client certificate (mTLS), together with key_file
  std::string key_file;
  // gRPC only, for an endpoint without http:// or https://: true = plaintext.
  bool insecure = false;
};

struct OtlpBatchConfig {
  std::size_t max_spans = 512;
  std::chrono::milliseconds max_delay{1000};
};

struct OtlpRetryConfig {
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  // Give up on one batch after retrying it this long (it is then dropped and counted);
  // zero retries forever.
  std::chrono::milliseconds max_elapsed{300000};
};

struct MemoryQueueConfig {
  std::size_t max_bytes = 64 * 1024 * 1024;
  std::size_t max_batches = 0;  // 0 = bounded by bytes only
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ExporterConfig {
  OtlpProtocol protocol = OtlpProtocol::Grpc;
  // The final URL: for http/protobuf the full POST target (…/v1/traces); for grpc the
  // target as given (scheme decides TLS; no scheme → tls.insecure decides).
  std::string endpoint;
  HeaderList headers;
  OtlpCompression compression = OtlpCompression::Gzip;
  std::chrono::milliseconds timeout{10000};
  OtlpTlsConfig tls;
  OtlpBatchConfig batch;
  OtlpRetryConfig retry;
  MemoryQueueConfig memory_queue;
  // Added to every exported resource that lacks the key: OTEL_RESOURCE_ATTRIBUTES and
  // OTEL_SERVICE_NAME (see resource.h).
  Attributes resource_attributes;
  // How long Deliverer::stop() keeps delivering queued batches before it leaves the rest
  // in the queue.
  std::chrono::milliseconds drain_timeout{5000};
};

using GetEnv = std::function<std::optional<std::string>(std::string_view)>;

// The process environment, for production callers.
std::optional<std::string> process_getenv(std::string_view name);

std::string default_endpoint(OtlpProtocol protocol);

// `exporter_section` may be null/undefined (all defaults). Throws ConfigError naming the
// YAML key (e.g. "exporter.batch.max_spans") or the environment variable.
ExporterConfig parse_exporter_config(const YAML::Node& exporter_section, const GetEnv& getenv);

// True when YAML or the environment names an endpoint explicitly, so the CLI can pick OTLP
// output instead of stdout.
bool otlp_endpoint_configured(const YAML::Node& exporter_section, const GetEnv& getenv);

// `base` is OTEL_EXPORTER_OTLP_ENDPOINT: the traces URL is base path + "/v1/traces".
std::string http_traces_url_from_base(std::string_view base);

// W3C-baggage-like "k=v,k2=v2" with percent-decoded keys and values, surrounding blanks
// trimmed. Throws ConfigError naming `source` on an entry without '=' or with an empty key.
HeaderList parse_key_value_list(std::string_view text, std::string_view source);

// Throws ConfigError naming `source` on a malformed escape.
std::string percent_decode(std::string_view text, std::string_view source);

}  // namespace edgetrace
