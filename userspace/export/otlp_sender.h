// Sending one serialized ExportTraceServiceRequest, and the OTLP retry rules that classify
// each answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "export/exporter_config.h"

namespace edgetrace {

struct SendResult {
  enum class Outcome { Success, Retryable, Permanent };

  Outcome outcome = Outcome::Success;
  // A delay the receiver asked for (gRPC RetryInfo, HTTP Retry-After); only for Retryable.
  std::optional<std::chrono::milliseconds> retry_after;
  // partial_success from a successful response: spans the receiver refused. Not retried.
  std::int64_t rejected_spans = 0;
  // Error text, or the partial-success error_message.
  std::string message;

  [[nodiscard]] bool ok() const { return outcome == Outcome::Success; }
  [[nodiscard]] bool retryable() const { return outcome == Outcome::Retryable; }
  static SendResult success(std::int64_t rejected = 0, std::string message = {}) {
    return SendResult{Outcome::Success, std::nullopt, rejected, std::move(message)};
  }
  static SendResult retry(std::string message, std::optional<std::chrono::milliseconds> after = std::nullopt) {
    return SendResult{Outcome::Retryable, after, 0, std::move(message)};
  }
  static SendResult permanent(std::string message) { return SendResult{Outcome::Permanent, std::nullopt, 0, std::move(message)}; }
};

std::string_view to_string(SendResult::Outcome outcome);

class OtlpSender {
 public:
  virtual ~OtlpSender() = default;
  // Blocking; bounded by the configured timeout. Thread-compatible: one caller at a time.
  virtual SendResult send(const std::string& serialized_request) = 0;
  // From any thread: abort the send in flight (it returns Retryable) and make later sends
  // return Retryable at once. Used to stop promptly without losing the batch.
  virtual void cancel() = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
};

// The sender for config.protocol. Throws ConfigError if a TLS file cannot be read.
std::unique_ptr<OtlpSender> make_sender(const ExporterConfig& config);

// OTLP/gRPC rules: UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE and
// DATA_LOSS are retryable; RESOURCE_EXHAUSTED only when the google.rpc.Status in
// `status_details_bin` (the grpc-status-details-bin trailer) carries a RetryInfo;
// everything else is permanent. A RetryInfo delay is returned as retry_after.
SendResult classify_grpc_status(int code, std::string_view message, std::string_view status_details_bin);

// OTLP/HTTP rules: 429, 502, 503, 504 are retryable (with Retry-After), the rest of the
// non-2xx codes permanent.
SendResult classify_http_status(long status, std::optional<std::chrono::milliseconds> retry_after, std::string message);

// Retry-After: delay-seconds or an HTTP-date (relative to `now`). nullopt if unparseable.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

// The RetryInfo delay inside a serialized google.rpc.Status, if any.
std::optional<std::chrono::milliseconds> retry_info_delay(std::string_view status_details_bin);

std::string read_file_or_throw(const std::string& path, std::string_view what);

}  // namespace edgetrace
