// gzip (RFC 1952) compression with zlib, reusing one deflate stream across calls.
#pragma once

#include <zlib.h>

#include <string>
#include <string_view>

namespace edgetrace {

class GzipCompressor {
 public:
  explicit GzipCompressor(int level = Z_DEFAULT_COMPRESSION);
  ~GzipCompressor();
  GzipCompressor(const GzipCompressor&) = delete;
  GzipCompressor& operator=(const GzipCompressor&) = delete;

  // Overwrites `out` with the gzip member holding `input`.
  void compress(std::string_view input, std::string& out);

 private:
  z_stream stream_{};
};

// Inflates a gzip body; throws std::runtime_error on corrupt input or if the result would
// exceed `max_size`.
std::string gunzip(std::string_view input, std::size_t max_size = 256 * 1024 * 1024);

}  // namespace edgetrace
