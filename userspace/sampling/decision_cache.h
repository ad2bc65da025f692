// A fixed-capacity LRU set of trace ids: remembers decisions after the spans are gone so late
// spans share their trace's fate. Nodes live in one vector linked by index and are found
// through a TraceIdIndex: no allocation per insert or touch once full.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sampling/trace_id_index.h"
#include "span/span.h"

namespace edgetrace {

class TraceIdLruSet {
 public:
  explicit TraceIdLruSet(std::size_t capacity);

  // Whether the id is present; a hit becomes the most recently used.
  bool touch(const TraceId& id);
  void insert(const TraceId& id);
  [[nodiscard]] std::size_t size() const { return index_.size(); }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  // What one entry costs at full capacity (node + index slots), for memory budgeting.
  [[nodiscard]] static std::size_t approximate_bytes_per_entry();

 private:
  static constexpr std::uint32_t kNone = 0xffffffffu;
  struct Node {
    TraceId id{};
    std::uint32_t newer = kNone;
    std::uint32_t older = kNone;
  };
  void unlink(std::uint32_t slot);
  void push_newest(std::uint32_t slot);
  [[nodiscard]] auto key_of() const {
    return [this](std::uint32_t slot) -> const TraceId& { return nodes_[slot].id; };
  }

  std::size_t capacity_;
  std::vector<Node> nodes_;
  TraceIdIndex index_;
  std::uint32_t newest_ = kNone;
  std::uint32_t oldest_ = kNone;
};

}  // namespace edgetrace
