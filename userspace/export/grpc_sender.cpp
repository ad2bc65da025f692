#include "export/grpc_sender.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <future>

#include "config/config_error.h"
#include "export/otlp_encoder.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace edgetrace {

GrpcSender::Target GrpcSender::parse_target(const std::string& endpoint, bool insecure) {
  Target t;
  std::string rest = endpoint;
  auto lower_prefix = [&](std::string_view p) {
    if (rest.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(rest[i])) != p[i]) return false;
    return true;
  };
  bool url = true;
  if (lower_prefix("https://")) {
    rest.erase(0, 8);
    t.secure = true;
  } else if (lower_prefix("http://")) {
    rest.erase(0, 7);
    t.secure = false;
  } else {
    // Any other form (host:port, dns:///host:port, unix:…) goes to gRPC's resolver untouched.
    url = false;
    t.secure = !insecure;
  }
  // A gRPC target has no path; a URL-style endpoint may carry a trailing "/".
  if (url) {
    if (auto slash = rest.find('/'); slash != std::string::npos) rest.erase(slash);
  }
  t.authority = rest;
  return t;
}

GrpcSender::GrpcSender(const ExporterConfig& config)
    : timeout_(config.timeout), gzip_(config.compression == OtlpCompression::Gzip) {
  const auto target = parse_target(config.endpoint, config.tls.insecure);
  target_ = target.authority;
  secure_ = target.secure;

  for (const auto& [k, v] : config.headers) {
    std::string key = k;
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    // gRPC fails every call carrying an invalid metadata entry; refuse it at start instead.
    const bool key_ok = !key.empty() && !key.starts_with("grpc-") && std::all_of(key.begin(), key.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'z') || c == '-' || c == '_' || c == '.';
    });
    if (!key_ok) throw ConfigError("exporter.headers." + k + ": not a valid gRPC metadata key ([0-9a-z-_.], not grpc-*)");
    const bool value_ok = key.ends_with("-bin") || std::all_of(v.begin(), v.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    if (!value_ok) throw ConfigError("exporter.headers." + k + ": gRPC metadata values must be printable ASCII");
    metadata_.emplace_back(std::move(key), v);
  }

  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (secure_) {
    grpc::SslCredentialsOptions ssl;
    if (!config.tls.ca_file.empty()) ssl.pem_root_certs = read_file_or_throw(config.tls.ca_file, "exporter.tls.ca_file");
    if (!config.tls.cert_file.empty()) {
      ssl.pem_cert_chain = read_file_or_throw(config.tls.cert_file, "exporter.tls.cert_file");
      ssl.pem_private_key = read_file_or_throw(config.tls.key_file, "exporter.tls.key_file");
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }

  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "edgetrace/" + std::string(edgetrace_version()));
  // A collector that comes back should be reachable again within seconds, not the
  // two-minute default cap of gRPC's reconnect backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  channel_ = grpc::CreateCustomChannel(target_, creds, args);
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
}

void GrpcSender::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  if (active_ != nullptr) active_->TryCancel();
}

SendResult GrpcSender::send(const std::string& serialized_request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  if (gzip_) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  for (const auto& [k, v] : metadata_) context.AddMetadata(k, v);

  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return SendResult::retry("grpc sender cancelled");
    active_ = &context;
  }
  struct ClearActive {
    GrpcSender* self;
    ~ClearActive() {
      std::lock_guard lock(self->mutex_);
      self->active_ = nullptr;
    }
  } clear_active{this};

  grpc::Slice slice(serialized_request);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  auto status_future = done.get_future();
  stub_->UnaryCall(&context, kExportMethod, grpc::StubOptions{}, &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = status_future.get();

  if (!status.ok())
    return classify_grpc_status(static_cast<int>(status.error_code()), status.error_message(), status.error_details());

  opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse parsed;
  std::vector<grpc::Slice> slices;
  if (response.Dump(&slices).ok()) {
    std::string body;
    for (const auto& s : slices) body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    if (!parsed.ParseFromString(body)) spdlog::warn("otlp/grpc: could not decode ExportTraceServiceResponse");
  }
  if (parsed.has_partial_success())
    return SendResult::success(parsed.partial_success().rejected_spans(), parsed.partial_success().error_message());
  return SendResult::success();
}

}  // namespace edgetrace
