// Real OTLP receivers for tests: an OTLP/gRPC server (grpc++) and an OTLP/HTTP server
// (a small HTTP/1.1 server on a loopback socket), each on 127.0.0.1 with an ephemeral
// port, answering each request as scripted and recording what it decoded.
//
//   edgetrace::testing::GrpcOtlpReceiver receiver;       // or HttpOtlpReceiver
//   receiver.start();
//   setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint().c_str(), 1);
//   receiver.script({Reply::unavailable(), Reply::ok()});  // then Reply::ok() forever
//   ASSERT_TRUE(receiver.wait_for_spans(3, 10s));
//   for (const auto& s : receiver.received_spans()) s.span.name(), s.resource, s.scope ...
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace grpc {
class Server;
}

namespace edgetrace::testing {

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  [[nodiscard]] int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

namespace otlp = opentelemetry::proto;

// One scripted answer. Each factory gives the gRPC and the HTTP form the OTLP spec pairs.
struct Reply {
  enum class Kind { Ok, PartialSuccess, Error };
  Kind kind = Kind::Ok;
  int grpc_code = 0;     // grpc::StatusCode for Kind::Error
  int http_status = 200;
  std::optional<std::chrono::milliseconds> retry_info;  // gRPC: RetryInfo detail
  std::optional<std::string> retry_after;               // HTTP: Retry-After header verbatim
  std::int64_t rejected_spans = 0;
  std::string message;
  std::chrono::milliseconds delay{0};  // wait this long before answering (timeouts)

  static Reply ok();
  // Answers like `reply`, but only after `delay`.
  static Reply delayed(Reply reply, std::chrono::milliseconds delay);
  static Reply partial_success(std::int64_t rejected, std::string message);
  // gRPC UNAVAILABLE / HTTP 503.
  static Reply unavailable();
  // gRPC RESOURCE_EXHAUSTED with RetryInfo(delay) / HTTP 429 with "Retry-After: <seconds>".
  static Reply resource_exhausted_with_retry_info(std::chrono::milliseconds delay);
  // gRPC RESOURCE_EXHAUSTED without RetryInfo / HTTP 429 without Retry-After.
  static Reply resource_exhausted();
  // HTTP 429 with this Retry-After value / gRPC RESOURCE_EXHAUSTED (+RetryInfo if seconds).
  static Reply too_many_requests(std::string retry_after);
  // HTTP 503 / gRPC UNAVAILABLE, optionally with a Retry-After (HTTP only).
  static Reply service_unavailable(std::optional<std::string> retry_after = std::nullopt);
  // HTTP 400 / gRPC INVALID_ARGUMENT.
  static Reply bad_request();
  // Any other code, for both forms.
  static Reply error(int grpc_code, int http_status, std::string message = "scripted error");
};

struct ReceivedRequest {
  otlp::collector::trace::v1::ExportTraceServiceRequest request;
  std::multimap<std::string, std::string> headers;  // lowercase names (HTTP headers / gRPC metadata)
  std::string path;                                 // HTTP request target or gRPC method
  bool gzip = false;               // the body arrived gzip-compressed
  std::size_t body_bytes = 0;      // body size as received (compressed, if it was)
  std::size_t decoded_bytes = 0;   // serialized request size
  Reply answer;
  std::chrono::steady_clock::time_point at;

  [[nodiscard]] std::size_t span_count() const;
  [[nodiscard]] std::optional<std::string> header(const std::string& lowercase_name) const;
};

// A span with the resource and scope it arrived under.
struct ReceivedSpan {
  otlp::trace::v1::Span span;
  otlp::resource::v1::Resource resource;
  otlp::common::v1::InstrumentationScope scope;
};

struct ReceiverTls {
  std::string cert_pem;        // server certificate chain
  std::string key_pem;         // server private key
  std::string client_ca_pem;   // if set, clients must present a certificate signed by it
};

class OtlpReceiver {
 public:
  virtual ~OtlpReceiver() = default;
  // Binds 127.0.0.1:0 and serves; throws std::runtime_error on failure.
  virtual void start() = 0;
  virtual void stop() = 0;
  // For ExporterConfig::endpoint / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
  [[nodiscard]] virtual std::string endpoint() const = 0;
  [[nodiscard]] std::uint16_t port() const { return port_; }

  // Answers for the next requests, in order; afterwards the default (Reply::ok()).
  void script(std::vector<Reply> replies);
  void set_default_reply(Reply reply);

  // Spans in requests answered Ok/PartialSuccess (all of a partial request's spans count).
  [[nodiscard]] bool wait_for_spans(std::size_t count, std::chrono::milliseconds timeout) const;
  // Requests received, whatever the answer.
  [[nodiscard]] bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const;

  [[nodiscard]] std::vector<ReceivedRequest> requests() const;
  [[nodiscard]] std::vector<ReceivedSpan> received_spans() const;  // accepted ones only
  [[nodiscard]] std::size_t accepted_span_count() const;
  [[nodiscard]] std::size_t request_count() const;
  void clear();

 protected:
  Reply next_reply();
  void record(ReceivedRequest request);
  std::uint16_t port_ = 0;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::deque<Reply> script_;
  Reply default_reply_ = Reply::ok();
  std::vector<ReceivedRequest> requests_;
  std::size_t accepted_spans_ = 0;
};

class GrpcOtlpReceiver final : public OtlpReceiver {
 public:
  explicit GrpcOtlpReceiver(std::optional<ReceiverTls> tls = std::nullopt);
  ~GrpcOtlpReceiver() override;
  void start() override;
  void stop() override;
  // "http://127.0.0.1:port", or "https://localhost:port" with TLS (the test certificate's name).
  [[nodiscard]] std::string endpoint() const override;

 private:
  class Service;
  std::optional<ReceiverTls> tls_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

class HttpOtlpReceiver final : public OtlpReceiver {
 public:
  // With `tls`, serves HTTPS (OpenSSL); endpoint() then starts with https://.
  explicit HttpOtlpReceiver(std::optional<ReceiverTls> tls = std::nullopt);
  ~HttpOtlpReceiver() override;
  void start() override;
  void stop() override;
  // "http://127.0.0.1:port/v1/traces" (https:// with TLS)
  [[nodiscard]] std::string endpoint() const override;
  [[nodiscard]] std::string base_url() const;  // "http://127.0.0.1:port"
  // TLS handshakes the receiver refused (e.g. no or untrusted client certificate).
  [[nodiscard]] std::size_t failed_handshakes() const { return failed_handshakes_.load(); }

  struct TlsContext;  // OpenSSL state, defined in the .cpp

 private:
  void accept_loop();
  void serve_connection(UniqueFd fd);
  std::optional<ReceiverTls> tls_;
  std::shared_ptr<TlsContext> tls_context_;
  std::atomic<std::size_t> failed_handshakes_{0};
  UniqueFd listen_fd_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex connections_mutex_;
  std::vector<std::thread> connections_;
};

// Helpers for assertions.
const otlp::common::v1::AnyValue* find_attribute(const google::protobuf::RepeatedPtrField<otlp::common::v1::KeyValue>& attrs,
                                                 const std::string& key);
std::string hex_bytes(const std::string& bytes);

}  // namespace edgetrace::testing
