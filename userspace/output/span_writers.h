// Human-readable and JSON-lines span output, for `run` without an OTLP endpoint.
#pragma once

#include <cstdio>
#include <string>

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
  std::FILE* out_;
};

std::string format_console_line(const Span& span);
std::string format_json_line(const Span& span);

}  // namespace edgetrace
