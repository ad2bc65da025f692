#include "export/http_sender.h"

#include <spdlog/spdlog.h>

#include <mutex>

#include "config/config_error.h"
#include "export/otlp_encoder.h"
#include "google/rpc/status.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace edgetrace {
namespace {

struct Exchange {
  std::string body;
  std::optional<std::string> retry_after;
  const std::atomic<bool>* cancelled = nullptr;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  // A misbehaving receiver must not make us buffer without bound.
  if (ex->body.size() + size * count > 4 * 1024 * 1024) return 0;
  ex->body.append(data, size * count);
  return size * count;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  std::string_view line(data, size * count);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (std::size_t i = 0; i < kName.size() && match; ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    if (match) ex->retry_after = std::string(line.substr(kName.size()));
  }
  // A new status line (after a 100 Continue or a redirect) starts a new header block.
  if (line.starts_with("HTTP/")) ex->retry_after.reset();
  return size * count;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* ex = static_cast<Exchange*>(user);
  return ex->cancelled->load() ? 1 : 0;
}

void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

template <typename T>
void setopt(CURL* c, CURLoption option, T value) {
  if (const auto rc = curl_easy_setopt(c, option, value); rc != CURLE_OK)
    throw ConfigError(std::string("exporter: libcurl option failed: ") + curl_easy_strerror(rc));
}

}  // namespace

HttpSender::HttpSender(const ExporterConfig& config)
    : url_(config.endpoint), gzip_(config.compression == OtlpCompression::Gzip) {
  curl_global();
  curl_.reset(curl_easy_init());
  if (!curl_) throw ConfigError("exporter: curl_easy_init failed");
  CURL* c = curl_.get();

  auto append = [this](const std::string& line) {
    curl_slist* next = curl_slist_append(headers_.get(), line.c_str());
    if (next == nullptr) throw ConfigError("exporter: out of memory building headers");
    (void)headers_.release();
    headers_.reset(next);
  };
  append("Content-Type: application/x-protobuf");
  // curl would otherwise wait for "100 Continue" before sending larger bodies.
  append("Expect:");
  if (gzip_) append("Content-Encoding: gzip");
  for (const auto& [k, v] : config.headers) append(k + ": " + v);

  setopt(c, CURLOPT_URL, url_.c_str());
  setopt(c, CURLOPT_HTTPHEADER, headers_.get());
  setopt(c, CURLOPT_POST, 1L);
  setopt(c, CURLOPT_NOSIGNAL, 1L);
  setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config.timeout.count()));
  setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config.timeout.count()));
  setopt(c, CURLOPT_USERAGENT, ("edgetrace/" + std::string(edgetrace_version())).c_str());
  setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  setopt(c, CURLOPT_NOPROGRESS, 0L);
  setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  if (!config.tls.ca_file.empty()) {
    (void)read_file_or_throw(config.tls.ca_file, "exporter.tls.ca_file");
    setopt(c, CURLOPT_CAINFO, config.tls.ca_file.c_str());
  }
  if (!config.tls.cert_file.empty()) {
    (void)read_file_or_throw(config.tls.cert_file, "exporter.tls.cert_file");
    (void)read_file_or_throw(config.tls.key_file, "exporter.tls.key_file");
    setopt(c, CURLOPT_SSLCERT, config.tls.cert_file.c_str());
    setopt(c, CURLOPT_SSLKEY, config.tls.key_file.c_str());
  }
}

SendResult HttpSender::send(const std::string& serialized_request) {
  if (cancelled_.load()) return SendResult::retry("http sender cancelled");
  CURL* c = curl_.get();
  const std::string* body = &serialized_request;
  if (gzip_) {
    compressor_.compress(serialized_request, compressed_);
    body = &compressed_;
  }
  Exchange ex;
  ex.cancelled = &cancelled_;
  setopt(c, CURLOPT_POSTFIELDS, body->data());
  setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  setopt(c, CURLOPT_WRITEDATA, &ex);
  setopt(c, CURLOPT_HEADERDATA, &ex);
  setopt(c, CURLOPT_XFERINFODATA, &ex);

  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    std::string text = std::string("http transport: ") + curl_easy_strerror(rc);
    // A URL curl cannot use never becomes deliverable; every other transport failure
    // (refused, reset, timeout, TLS) may clear up, so the batch is kept for a retry.
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) return SendResult::permanent(std::move(text));
    return SendResult::retry(std::move(text));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);

  if (status >= 200 && status < 300) {
    opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse response;
    if (!ex.body.empty() && !response.ParseFromString(ex.body))
      spdlog::warn("otlp/http: could not decode ExportTraceServiceResponse ({} bytes)", ex.body.size());
    if (response.has_partial_success())
      return SendResult::success(response.partial_success().rejected_spans(), response.partial_success().error_message());
    return SendResult::success();
  }

  std::optional<std::chrono::milliseconds> retry_after;
  if (ex.retry_after) retry_after = parse_retry_after(*ex.retry_after, std::chrono::system_clock::now());
  std::string message;
  google::rpc::Status rpc_status;
  if (!ex.body.empty() && rpc_status.ParseFromString(ex.body) && !rpc_status.message().empty())
    message = rpc_status.message();
  else
    message = ex.body.substr(0, 200);
  return classify_http_status(status, retry_after, std::move(message));
}

}  // namespace edgetrace
