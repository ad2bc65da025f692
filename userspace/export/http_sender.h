// OTLP/HTTP with binary protobuf: POST to the traces URL through libcurl, one reused easy
// handle so the connection is kept alive between batches.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <memory>

#include "export/gzip.h"
#include "export/otlp_sender.h"

namespace edgetrace {

class HttpSender final : public OtlpSender {
 public:
  explicit HttpSender(const ExporterConfig& config);
  SendResult send(const std::string& serialized_request) override;
  void cancel() override { cancelled_.store(true); }
  [[nodiscard]] std::string describe() const override { return "otlp/http " + url_; }

 private:
  struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
  };
  struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  };

  std::string url_;
  bool gzip_ = false;
  std::unique_ptr<CURL, CurlDeleter> curl_;
  std::unique_ptr<curl_slist, SlistDeleter> headers_;
  // Fastest zlib level: an agent's CPU is worth more than the last few percent of ratio.
  GzipCompressor compressor_{Z_BEST_SPEED};
  std::string compressed_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace edgetrace
