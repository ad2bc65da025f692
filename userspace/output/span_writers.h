// Human-readable and JSON-lines span output, for `run` without an OTLP endpoint.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <unordered_map>

#include "span/span.h"

namespace edgetrace {

// One readable line per span: ids, kind, name, duration, status and the key attributes.
class ConsoleSpanWriter : public SpanSink {
 public:
  explicit ConsoleSpanWriter(std::FILE* out = stdout) : out_(out) {}
  void consume(SpanBatch spans) override;
  void flush() override { std::fflush(out_); }

 private:
  std::FILE* out_;
};

// One JSON object per line, with every attribute and the resource.
class JsonSpanWriter : public SpanSink {
 public:
  explicit JsonSpanWriter(std::FILE* out = stdout) : out_(out) {}
  void consume(SpanBatch spans) override;
  void flush() override { std::fflush(out_); }

 private:
  // Lines are written out in pieces of about this size: large writes, a buffer that stays in cache.
  static constexpr std::size_t kWriteChunkBytes = 64 * 1024;
  static constexpr std::size_t kMaxCachedResources = 1024;
  struct CachedResource {
    std::shared_ptr<const Resource> resource;  // held so its address cannot name another resource
    std::string json;
  };

  // The "resource" object of a span: the same for every span of a process, so formatted once.
  const std::string& resource_json_for(const std::shared_ptr<const Resource>& resource);
  void write_buffer();

  // Bytes of JSON lines not yet written. Unlike a std::string, room for a line can be taken
  // without filling it first: a line is written into its worst-case size, then trimmed.
  class LineBuffer {
   public:
    // At least `bytes` writable bytes at the end of the content (their address).
    char* make_room(std::size_t bytes);
    // Extends the content to `end`, within the room make_room gave.
    void grow_to(const char* end) { size_ = static_cast<std::size_t>(end - data_.get()); }
    [[nodiscard]] const char* data() const { return data_.get(); }
    [[nodiscard]] std::size_t size() const { return size_; }
    void clear() { size_ = 0; }

   private:
    std::unique_ptr<char[]> data_;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
  };

  std::FILE* out_;
  LineBuffer buffer_;  // kept across batches so its memory is reused
  std::unordered_map<const Resource*, CachedResource> resource_json_;
};

std::string format_console_line(const Span& span);
std::string format_json_line(const Span& span);

}  // namespace edgetrace
