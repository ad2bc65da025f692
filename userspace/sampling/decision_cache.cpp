#include "sampling/decision_cache.h"

#include <algorithm>

namespace edgetrace {

// Up-front reservation is capped so a very large configured cache costs memory only as it fills.
TraceIdLruSet::TraceIdLruSet(std::size_t capacity)
    : capacity_(capacity), index_(std::min<std::size_t>(capacity, std::size_t{1} << 16)) {
  nodes_.reserve(std::min<std::size_t>(capacity, std::size_t{1} << 16));
}

std::size_t TraceIdLruSet::approximate_bytes_per_entry() {
  // Index load factor is at most 1/2 and at least 1/4: up to four slots per entry.
  return sizeof(Node) + 4 * TraceIdIndex::bytes_per_slot();
}

void TraceIdLruSet::unlink(std::uint32_t slot) {
  Node& node = nodes_[slot];
  if (node.newer != kNone) nodes_[node.newer].older = node.older;
  else newest_ = node.older;
  if (node.older != kNone) nodes_[node.older].newer = node.newer;
  else oldest_ = node.newer;
  node.newer = node.older = kNone;
}

void TraceIdLruSet::push_newest(std::uint32_t slot) {
  Node& node = nodes_[slot];
  node.older = newest_;
  node.newer = kNone;
  if (newest_ != kNone) nodes_[newest_].newer = slot;
  newest_ = slot;
  if (oldest_ == kNone) oldest_ = slot;
}

bool TraceIdLruSet::touch(const TraceId& id) {
  if (capacity_ == 0) return false;
  const std::uint32_t slot = index_.find(id, key_of());
  if (slot == TraceIdIndex::kNotFound) return false;
  if (slot != newest_) {
    unlink(slot);
    push_newest(slot);
  }
  return true;
}

void TraceIdLruSet::insert(const TraceId& id) {
  if (capacity_ == 0 || touch(id)) return;
  std::uint32_t slot = 0;
  if (nodes_.size() < capacity_) {
    slot = static_cast<std::uint32_t>(nodes_.size());
    nodes_.push_back(Node{});
  } else {
    slot = oldest_;
    unlink(slot);
    index_.erase(nodes_[slot].id, key_of());
  }
  nodes_[slot].id = id;
  push_newest(slot);
  index_.insert(id, slot);
}

}  // namespace edgetrace
