#include "otlp_test_receivers.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>

#include "export/gzip.h"
#include "google/rpc/status.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

// gRPC core's test-only accessor for the compression of the incoming message: the
// grpc-encoding header is consumed by the transport and never reaches client_metadata().
grpc_compression_algorithm grpc_call_test_only_get_compression_algorithm(grpc_call* call);

namespace edgetrace::testing {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

// ---- Reply ----------------------------------------------------------------------------

Reply Reply::ok() { return Reply{}; }

Reply Reply::delayed(Reply reply, std::chrono::milliseconds delay) {
  reply.delay = delay;
  return reply;
}

Reply Reply::partial_success(std::int64_t rejected, std::string message) {
  Reply r;
  r.kind = Kind::PartialSuccess;
  r.rejected_spans = rejected;
  r.message = std::move(message);
  return r;
}

Reply Reply::error(int grpc_code, int http_status, std::string message) {
  Reply r;
  r.kind = Kind::Error;
  r.grpc_code = grpc_code;
  r.http_status = http_status;
  r.message = std::move(message);
  return r;
}

Reply Reply::unavailable() { return error(grpc::StatusCode::UNAVAILABLE, 503, "scripted unavailable"); }

Reply Reply::resource_exhausted_with_retry_info(std::chrono::milliseconds delay) {
  Reply r = error(grpc::StatusCode::RESOURCE_EXHAUSTED, 429, "scripted throttling");
  r.retry_info = delay;
  r.retry_after = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(delay).count());
  return r;
}

Reply Reply::resource_exhausted() { return error(grpc::StatusCode::RESOURCE_EXHAUSTED, 429, "scripted exhaustion"); }

Reply Reply::too_many_requests(std::string retry_after) {
  Reply r = error(grpc::StatusCode::RESOURCE_EXHAUSTED, 429, "scripted 429");
  if (!retry_after.empty() && std::all_of(retry_after.begin(), retry_after.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    r.retry_info = std::chrono::seconds(std::stoll(retry_after));
  r.retry_after = std::move(retry_after);
  return r;
}

Reply Reply::service_unavailable(std::optional<std::string> retry_after) {
  Reply r = unavailable();
  r.retry_after = std::move(retry_after);
  return r;
}

Reply Reply::bad_request() { return error(grpc::StatusCode::INVALID_ARGUMENT, 400, "scripted bad request"); }

// ---- recording --------------------------------------------------------------------------

std::size_t ReceivedRequest::span_count() const {
  std::size_t n = 0;
  for (const auto& rs : request.resource_spans())
    for (const auto& ss : rs.scope_spans()) n += static_cast<std::size_t>(ss.spans_size());
  return n;
}

std::optional<std::string> ReceivedRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

void OtlpReceiver::script(std::vector<Reply> replies) {
  std::lock_guard lock(mutex_);
  script_.assign(replies.begin(), replies.end());
}

void OtlpReceiver::set_default_reply(Reply reply) {
  std::lock_guard lock(mutex_);
  default_reply_ = std::move(reply);
}

Reply OtlpReceiver::next_reply() {
  std::lock_guard lock(mutex_);
  if (script_.empty()) return default_reply_;
  Reply r = std::move(script_.front());
  script_.pop_front();
  return r;
}

void OtlpReceiver::record(ReceivedRequest request) {
  {
    std::lock_guard lock(mutex_);
    if (request.answer.kind != Reply::Kind::Error) accepted_spans_ += request.span_count();
    requests_.push_back(std::move(request));
  }
  changed_.notify_all();
}

bool OtlpReceiver::wait_for_spans(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return accepted_spans_ >= count; });
}

bool OtlpReceiver::wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

std::vector<ReceivedRequest> OtlpReceiver::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<ReceivedSpan> OtlpReceiver::received_spans() const {
  std::lock_guard lock(mutex_);
  std::vector<ReceivedSpan> out;
  for (const auto& r : requests_) {
    if (r.answer.kind == Reply::Kind::Error) continue;
    for (const auto& rs : r.request.resource_spans())
      for (const auto& ss : rs.scope_spans())
        for (const auto& span : ss.spans()) out.push_back(ReceivedSpan{span, rs.resource(), ss.scope()});
  }
  return out;
}

std::size_t OtlpReceiver::accepted_span_count() const {
  std::lock_guard lock(mutex_);
  return accepted_spans_;
}

std::size_t OtlpReceiver::request_count() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

void OtlpReceiver::clear() {
  std::lock_guard lock(mutex_);
  requests_.clear();
  accepted_spans_ = 0;
}

const otlp::common::v1::AnyValue* find_attribute(const google::protobuf::RepeatedPtrField<otlp::common::v1::KeyValue>& attrs,
                                                 const std::string& key) {
  for (const auto& kv : attrs)
    if (kv.key() == key) return &kv.value();
  return nullptr;
}

std::string hex_bytes(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

namespace {
std::string rpc_status_bytes(const Reply& reply) {
  google::rpc::Status status;
  status.set_code(reply.grpc_code);
  status.set_message(reply.message);
  if (reply.retry_info) {
    google::rpc::RetryInfo info;
    const auto ms = reply.retry_info->count();
    info.mutable_retry_delay()->set_seconds(ms / 1000);
    info.mutable_retry_delay()->set_nanos(static_cast<int>((ms % 1000) * 1'000'000));
    status.add_details()->PackFrom(info);
  }
  return status.SerializeAsString();
}
}  // namespace

// ---- gRPC -----------------------------------------------------------------------------

class GrpcOtlpReceiver::Service final : public otlp::collector::trace::v1::TraceService::Service {
 public:
  explicit Service(GrpcOtlpReceiver& owner) : owner_(owner) {}

  grpc::Status Export(grpc::ServerContext* context, const otlp::collector::trace::v1::ExportTraceServiceRequest* request,
                      otlp::collector::trace::v1::ExportTraceServiceResponse* response) override {
    ReceivedRequest r;
    r.request = *request;
    r.at = std::chrono::steady_clock::now();
    r.path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    for (const auto& [k, v] : context->client_metadata()) r.headers.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    r.gzip = grpc_call_test_only_get_compression_algorithm(context->c_call()) == GRPC_COMPRESS_GZIP;
    r.decoded_bytes = request->ByteSizeLong();
    r.answer = owner_.next_reply();
    const Reply answer = r.answer;
    owner_.record(std::move(r));
    if (answer.delay.count() > 0) std::this_thread::sleep_for(answer.delay);
    switch (answer.kind) {
      case Reply::Kind::Ok: return grpc::Status::OK;
      case Reply::Kind::PartialSuccess:
        response->mutable_partial_success()->set_rejected_spans(answer.rejected_spans);
        response->mutable_partial_success()->set_error_message(answer.message);
        return grpc::Status::OK;
      case Reply::Kind::Error:
        return grpc::Status(static_cast<grpc::StatusCode>(answer.grpc_code), answer.message, rpc_status_bytes(answer));
    }
    return grpc::Status::OK;
  }

 private:
  GrpcOtlpReceiver& owner_;
};

GrpcOtlpReceiver::GrpcOtlpReceiver(std::optional<ReceiverTls> tls) : tls_(std::move(tls)) {}
GrpcOtlpReceiver::~GrpcOtlpReceiver() { stop(); }

void GrpcOtlpReceiver::start() {
  service_ = std::make_unique<Service>(*this);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls_) {
    grpc::SslServerCredentialsOptions options(tls_->client_ca_pem.empty()
                                                  ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                  : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    options.pem_key_cert_pairs.push_back({tls_->key_pem, tls_->cert_pem});
    options.pem_root_certs = tls_->client_ca_pem;
    creds = grpc::SslServerCredentials(options);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", creds, &port);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) throw std::runtime_error("GrpcOtlpReceiver: could not listen on 127.0.0.1");
  port_ = static_cast<std::uint16_t>(port);
}

void GrpcOtlpReceiver::stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
}

std::string GrpcOtlpReceiver::endpoint() const {
  return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
}

// ---- HTTP -----------------------------------------------------------------------------
// Hand-written because no HTTP/1.1 server library is among the project's dependencies and
// a test receiver needs only POST with Content-Length or chunked bodies.

struct HttpOtlpReceiver::TlsContext {
  struct Free {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  std::unique_ptr<SSL_CTX, Free> ctx;
};

namespace {
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::unique_ptr<X509, X509Free> pem_certificate(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) throw std::runtime_error("HttpOtlpReceiver: bad certificate PEM");
  return cert;
}

std::shared_ptr<HttpOtlpReceiver::TlsContext> make_tls_context(const ReceiverTls& tls);
}  // namespace

HttpOtlpReceiver::HttpOtlpReceiver(std::optional<ReceiverTls> tls) : tls_(std::move(tls)) {}
HttpOtlpReceiver::~HttpOtlpReceiver() { stop(); }

namespace {
std::shared_ptr<HttpOtlpReceiver::TlsContext> make_tls_context(const ReceiverTls& tls) {
  auto context = std::make_shared<HttpOtlpReceiver::TlsContext>();
  context->ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!context->ctx) throw std::runtime_error("HttpOtlpReceiver: SSL_CTX_new failed");
  SSL_CTX* ctx = context->ctx.get();
  auto cert = pem_certificate(tls.cert_pem);
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new_mem_buf(tls.key_pem.data(), static_cast<int>(tls.key_pem.size())));
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key || SSL_CTX_use_certificate(ctx, cert.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1)
    throw std::runtime_error("HttpOtlpReceiver: unusable certificate/key");
  if (!tls.client_ca_pem.empty()) {
    auto ca = pem_certificate(tls.client_ca_pem);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca.get());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return context;
}
}  // namespace

void HttpOtlpReceiver::start() {
  if (tls_) tls_context_ = make_tls_context(*tls_);
  listen_fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_) throw std::runtime_error("HttpOtlpReceiver: socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_.get(), 64) != 0)
    throw std::runtime_error(std::string("HttpOtlpReceiver: bind/listen failed: ") + std::strerror(errno));
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  stopping_ = false;
  acceptor_ = std::thread([this] { accept_loop(); });
}

void HttpOtlpReceiver::stop() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(connections_mutex_);
    connections.swap(connections_);
  }
  for (auto& t : connections) t.join();
  listen_fd_ = UniqueFd();
}

std::string HttpOtlpReceiver::base_url() const {
  return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
}
std::string HttpOtlpReceiver::endpoint() const { return base_url() + "/v1/traces"; }

void HttpOtlpReceiver::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    std::lock_guard lock(connections_mutex_);
    connections_.emplace_back([this, fd = std::move(conn)]() mutable { serve_connection(std::move(fd)); });
  }
}

namespace {

// A plaintext or TLS connection (blocking socket; readiness checked with poll so stop() is
// noticed between requests).
class Connection {
 public:
  Connection(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}

  // Reads more bytes into `buffer`; false on EOF, error or stop.
  bool read_more(std::string& buffer, const std::atomic<bool>& stopping) {
    char chunk[64 * 1024];
    for (;;) {
      if (stopping) return false;
      if (ssl_ == nullptr || SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, 50);
        if (ready < 0) return false;
        if (ready == 0) continue;
      }
      const ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, chunk, sizeof chunk) : ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
  }

  bool write_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ssl_ != nullptr ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                                        : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

 private:
  int fd_;
  SSL* ssl_;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 411: return "Length Required";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

std::string http_response(int status, const std::string& body, const std::optional<std::string>& retry_after, bool close) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  out += "Content-Type: application/x-protobuf\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (retry_after) out += "Retry-After: " + *retry_after + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace

void HttpOtlpReceiver::serve_connection(UniqueFd fd) {
  std::unique_ptr<SSL, SslFree> ssl;
  if (tls_context_) {
    ssl.reset(SSL_new(tls_context_->ctx.get()));
    SSL_set_fd(ssl.get(), fd.get());
    if (SSL_accept(ssl.get()) != 1) {
      ++failed_handshakes_;
      return;
    }
  }
  Connection conn(fd.get(), ssl.get());
  std::string buffer;
  while (!stopping_) {
    std::size_t head_end;
    while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos)
      if (!conn.read_more(buffer, stopping_)) return;
    const std::string head = buffer.substr(0, head_end);
    buffer.erase(0, head_end + 4);

    ReceivedRequest r;
    r.at = std::chrono::steady_clock::now();
    std::size_t line_end = head.find("\r\n");
    const std::string request_line = head.substr(0, line_end);
    const auto sp1 = request_line.find(' ');
    const auto sp2 = request_line.find(' ', sp1 + 1);
    const std::string method = request_line.substr(0, sp1);
    r.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      auto next = head.find("\r\n", pos);
      if (next == std::string::npos) next = head.size();
      const std::string line = head.substr(pos, next - pos);
      if (auto colon = line.find(':'); colon != std::string::npos)
        r.headers.emplace(lower(line.substr(0, colon)), trim(std::string_view(line).substr(colon + 1)));
      pos = next + 2;
    }
    const bool close = lower(r.header("connection").value_or("")) == "close";
    if (lower(r.header("expect").value_or("")) == "100-continue" && !conn.write_all("HTTP/1.1 100 Continue\r\n\r\n")) return;

    std::string body;
    if (auto length = r.header("content-length")) {
      const auto n = static_cast<std::size_t>(std::stoull(*length));
      while (buffer.size() < n)
        if (!conn.read_more(buffer, stopping_)) return;
      body = buffer.substr(0, n);
      buffer.erase(0, n);
    } else if (lower(r.header("transfer-encoding").value_or("")) == "chunked") {
      for (;;) {
        std::size_t eol;
        while ((eol = buffer.find("\r\n")) == std::string::npos)
          if (!conn.read_more(buffer, stopping_)) return;
        const auto size = static_cast<std::size_t>(std::stoull(buffer.substr(0, eol), nullptr, 16));
        while (buffer.size() < eol + 2 + size + 2)
          if (!conn.read_more(buffer, stopping_)) return;
        body.append(buffer, eol + 2, size);
        buffer.erase(0, eol + 2 + size + 2);
        if (size == 0) break;
      }
    } else if (method == "POST") {
      conn.write_all(http_response(411, "", std::nullopt, true));
      return;
    }

    r.body_bytes = body.size();
    r.gzip = lower(r.header("content-encoding").value_or("")) == "gzip";
    std::string decoded;
    bool valid = method == "POST";
    if (valid && r.gzip) {
      try {
        decoded = gunzip(body);
      } catch (const std::exception&) {
        valid = false;
      }
    } else {
      decoded = std::move(body);
    }
    valid = valid && r.request.ParseFromString(decoded);
    r.decoded_bytes = decoded.size();

    std::string response;
    if (!valid) {
      r.answer = Reply::bad_request();
      r.answer.message = "undecodable request";
      response = http_response(400, rpc_status_bytes(r.answer), std::nullopt, close);
    } else {
      r.answer = next_reply();
      switch (r.answer.kind) {
        case Reply::Kind::Ok: response = http_response(200, "", std::nullopt, close); break;
        case Reply::Kind::PartialSuccess: {
          otlp::collector::trace::v1::ExportTraceServiceResponse ok;
          ok.mutable_partial_success()->set_rejected_spans(r.answer.rejected_spans);
          ok.mutable_partial_success()->set_error_message(r.answer.message);
          response = http_response(200, ok.SerializeAsString(), std::nullopt, close);
          break;
        }
        case Reply::Kind::Error:
          response = http_response(r.answer.http_status, rpc_status_bytes(r.answer), r.answer.retry_after, close);
          break;
      }
    }
    const auto delay = r.answer.delay;
    record(std::move(r));
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    if (!conn.write_all(response) || close) return;
  }
}

}  // namespace edgetrace::testing
