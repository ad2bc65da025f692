#include "export/gzip.h"

#include <stdexcept>

namespace edgetrace {
namespace {
constexpr int kGzipWindowBits = 15 + 16;  // +16 selects the gzip wrapper
}

GzipCompressor::GzipCompressor(int level) {
  if (deflateInit2(&stream_, level, Z_DEFLATED, kGzipWindowBits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
}

GzipCompressor::~GzipCompressor() { deflateEnd(&stream_); }

void GzipCompressor::compress(std::string_view input, std::string& out) {
  if (deflateReset(&stream_) != Z_OK) throw std::runtime_error("deflateReset failed");
  out.resize(deflateBound(&stream_, static_cast<uLong>(input.size())));
  stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream_.avail_in = static_cast<uInt>(input.size());
  stream_.next_out = reinterpret_cast<Bytef*>(out.data());
  stream_.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream_, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  out.resize(stream_.total_out);
}

std::string gunzip(std::string_view input, std::size_t max_size) {
  z_stream s{};
  if (inflateInit2(&s, kGzipWindowBits) != Z_OK) throw std::runtime_error("inflateInit2 failed");
  struct End {
    z_stream* s;
    ~End() { inflateEnd(s); }
  } end{&s};
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  s.avail_in = static_cast<uInt>(input.size());
  std::string out;
  char chunk[64 * 1024];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    s.next_out = reinterpret_cast<Bytef*>(chunk);
    s.avail_out = sizeof chunk;
    rc = inflate(&s, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) throw std::runtime_error("gzip body is corrupt");
    out.append(chunk, sizeof chunk - s.avail_out);
    if (out.size() > max_size) throw std::runtime_error("gzip body too large");
    if (rc == Z_OK && s.avail_in == 0 && s.avail_out != 0) throw std::runtime_error("gzip body is truncated");
  }
  return out;
}

}  // namespace edgetrace
