#include "export/otlp_sender.h"

#include <curl/curl.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include "config/config_error.h"
#include "export/grpc_sender.h"
#include "export/http_sender.h"
#include "google/rpc/status.pb.h"

namespace edgetrace {

std::string_view to_string(SendResult::Outcome outcome) {
  switch (outcome) {
    case SendResult::Outcome::Success: return "success";
    case SendResult::Outcome::Retryable: return "retryable";
    case SendResult::Outcome::Permanent: return "permanent";
  }
  return "?";
}

std::unique_ptr<OtlpSender> make_sender(const ExporterConfig& config) {
  if (config.protocol == OtlpProtocol::Grpc) return std::make_unique<GrpcSender>(config);
  return std::make_unique<HttpSender>(config);
}

std::optional<std::chrono::milliseconds> retry_info_delay(std::string_view status_details_bin) {
  if (status_details_bin.empty()) return std::nullopt;
  google::rpc::Status status;
  if (!status.ParseFromArray(status_details_bin.data(), static_cast<int>(status_details_bin.size()))) return std::nullopt;
  for (const auto& detail : status.details()) {
    if (!detail.Is<google::rpc::RetryInfo>()) continue;
    google::rpc::RetryInfo info;
    if (!detail.UnpackTo(&info)) continue;
    const auto& d = info.retry_delay();
    const auto ms = std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1'000'000);
    return ms < std::chrono::milliseconds::zero() ? std::chrono::milliseconds::zero() : ms;
  }
  return std::nullopt;
}

SendResult classify_grpc_status(int code, std::string_view message, std::string_view status_details_bin) {
  // Numeric values of grpc::StatusCode, spelled out so this rule table reads like the spec.
  enum : int { kOk = 0, kCancelled = 1, kDeadlineExceeded = 4, kResourceExhausted = 8, kAborted = 10, kOutOfRange = 11,
               kUnavailable = 14, kDataLoss = 15 };
  const std::string text = "grpc status " + std::to_string(code) + ": " + std::string(message);
  switch (code) {
    case kOk: return SendResult::success();
    case kCancelled:
    case kDeadlineExceeded:
    case kAborted:
    case kOutOfRange:
    case kUnavailable:
    case kDataLoss: return SendResult::retry(text, retry_info_delay(status_details_bin));
    case kResourceExhausted:
      // Only a server that says when to come back is signalling a transient overload.
      if (auto delay = retry_info_delay(status_details_bin)) return SendResult::retry(text, delay);
      return SendResult::permanent(text + " (no RetryInfo)");
    default: return SendResult::permanent(text);
  }
}

SendResult classify_http_status(long status, std::optional<std::chrono::milliseconds> retry_after, std::string message) {
  std::string text = "http status " + std::to_string(status) + (message.empty() ? "" : ": " + message);
  if (status >= 200 && status < 300) return SendResult::success();
  if (status == 429 || status == 502 || status == 503 || status == 504) return SendResult::retry(std::move(text), retry_after);
  return SendResult::permanent(std::move(text));
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' || value.back() == '\n'))
    value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  std::uint64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc{} && end == value.data() + value.size())
    return std::chrono::milliseconds(std::min<std::uint64_t>(seconds, 86400) * 1000);
  // curl_getdate understands the RFC 9110 HTTP-date forms.
  const std::string date(value);
  const time_t when = curl_getdate(date.c_str(), nullptr);
  if (when < 0) return std::nullopt;
  const auto delta = std::chrono::system_clock::from_time_t(when) - now;
  return std::max(std::chrono::milliseconds::zero(), std::chrono::duration_cast<std::chrono::milliseconds>(delta));
}

std::string read_file_or_throw(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(std::string(what) + ": cannot read '" + path + "'");
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace edgetrace
