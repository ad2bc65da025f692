// OTLP/gRPC: unary TraceService/Export through a generic stub, so the already-serialized
// request goes out without being parsed back into messages.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "export/otlp_sender.h"

namespace edgetrace {

class GrpcSender final : public OtlpSender {
 public:
  static constexpr const char* kExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

  explicit GrpcSender(const ExporterConfig& config);
  SendResult send(const std::string& serialized_request) override;
  void cancel() override;
  [[nodiscard]] std::string describe() const override { return "otlp/grpc " + target_ + (secure_ ? " (tls)" : " (plaintext)"); }

  // "http://host:port/…" → {"host:port", plaintext}; "https://…" → TLS; no scheme → TLS
  // unless `insecure`.
  struct Target {
    std::string authority;
    bool secure = true;
  };
  static Target parse_target(const std::string& endpoint, bool insecure);

 private:
  std::string target_;
  bool secure_ = true;
  std::chrono::milliseconds timeout_;
  bool gzip_ = false;
  HeaderList metadata_;  // keys lowercased, as gRPC requires
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;

  std::mutex mutex_;
  grpc::ClientContext* active_ = nullptr;
  bool cancelled_ = false;
};

}  // namespace edgetrace
