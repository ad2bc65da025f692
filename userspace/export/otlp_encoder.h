// Span structs → serialized opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest.
//
// This is the export hot path, so it writes the protobuf wire format directly (two passes:
// sizes, then bytes into one exactly-sized buffer) instead of building generated message
// objects: that avoids copying every string and allocating a message per attribute. The
// layout follows proto/opentelemetry/proto/trace/v1/trace.proto; the tests decode the
// output with the generated classes to keep the two in step.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "span/span.h"

namespace edgetrace {

inline constexpr std::string_view kScopeName = "edgetrace";
std::string_view edgetrace_version();

class OtlpEncoder {
 public:
  // `resource_defaults` (e.g. from OTEL_RESOURCE_ATTRIBUTES) are added to every resource
  // that lacks the key: what the stitcher knows about a process wins.
  explicit OtlpEncoder(std::string scope_name = std::string(kScopeName),
                       std::string scope_version = std::string(edgetrace_version()), Attributes resource_defaults = {});

  // One ResourceSpans per distinct Span::resource pointer (in first-seen order), each with
  // one ScopeSpans for this encoder's scope.
  [[nodiscard]] std::string encode(std::span<const Span> spans);
  // Same, reusing `out`'s capacity (it is overwritten).
  void encode_into(std::span<const Span> spans, std::string& out);

 private:
  struct Group {
    const Resource* resource = nullptr;
    std::uint32_t first = 0;  // offset into order_
    std::uint32_t count = 0;
    std::size_t resource_size = 0;
    bool has_resource = false;
    std::size_t scope_spans_size = 0;
    std::size_t resource_spans_size = 0;
  };

  std::string scope_bytes_;  // the encoded InstrumentationScope message body
  Attributes resource_defaults_;
  // Scratch state reused across calls so steady-state encoding does not allocate.
  std::vector<Group> groups_;
  std::unordered_map<const Resource*, std::uint32_t> group_of_;
  std::vector<std::uint32_t> group_index_;  // per span
  std::vector<std::uint32_t> order_;        // span indices grouped by resource
  std::vector<std::uint32_t> span_sizes_;   // per span, encoded Span body size
  std::vector<std::string> resource_bytes_;  // per group, encoded Resource body
};

}  // namespace edgetrace
