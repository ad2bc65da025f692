// An open-addressing index from trace id to a 32-bit slot number in storage the caller owns.
//
// Hand-written rather than std::unordered_map because it sits on the per-span path: the
// standard map allocates a node per trace and walks pointer chains; this table is one flat
// array of {32 hash bits, slot} pairs (linear probing, backward-shift deletion, no
// tombstones), so a miss costs one cache line and an insert costs no allocation. Keys are not
// duplicated: the caller's `key_of(slot)` returns the id stored with the slot.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "span/span.h"

namespace edgetrace {

// Trace ids are random (W3C level 2), so mixing the two halves with a multiply-xorshift is
// plenty; it also keeps synthetic, sequential ids from clustering.
inline std::uint64_t trace_id_hash(const TraceId& id) noexcept {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  std::memcpy(&high, id.data(), 8);
  std::memcpy(&low, id.data() + 8, 8);
  std::uint64_t h = low ^ (high * 0x9E3779B97F4A7C15ULL);
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ULL;
  h ^= h >> 32;
  return h;
}

inline bool same_trace_id(const TraceId& a, const TraceId& b) noexcept {
  std::uint64_t a_words[2];
  std::uint64_t b_words[2];
  std::memcpy(a_words, a.data(), 16);
  std::memcpy(b_words, b.data(), 16);
  return ((a_words[0] ^ b_words[0]) | (a_words[1] ^ b_words[1])) == 0;
}

class TraceIdIndex {
 public:
  static constexpr std::uint32_t kNotFound = 0xffffffffu;

  explicit TraceIdIndex(std::size_t expected_entries = 0) { rehash(capacity_for(expected_entries)); }

  template <typename KeyOf>
  [[nodiscard]] std::uint32_t find(const TraceId& id, KeyOf&& key_of) const {
    const auto hash = static_cast<std::uint32_t>(trace_id_hash(id));
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Entry& entry = table_[i];
      if (entry.slot == kEmpty) return kNotFound;
      if (entry.hash == hash && same_trace_id(key_of(entry.slot), id)) return entry.slot;
    }
  }

  // The id must not be present already.
  void insert(const TraceId& id, std::uint32_t slot) {
    if ((size_ + 1) * 2 > table_.size()) rehash(table_.size() * 2);
    place(Entry{static_cast<std::uint32_t>(trace_id_hash(id)), slot});
    ++size_;
  }

  template <typename KeyOf>
  bool erase(const TraceId& id, KeyOf&& key_of) {
    const auto hash = static_cast<std::uint32_t>(trace_id_hash(id));
    std::size_t hole = hash & mask_;
    for (;; hole = (hole + 1) & mask_) {
      const Entry& entry = table_[hole];
      if (entry.slot == kEmpty) return false;
      if (entry.hash == hash && same_trace_id(key_of(entry.slot), id)) break;
    }
    // Backward shift: pull later entries of the probe run into the hole when their home
    // bucket allows, so lookups never need tombstones.
    for (std::size_t next = (hole + 1) & mask_;; next = (next + 1) & mask_) {
      const Entry& entry = table_[next];
      if (entry.slot == kEmpty) break;
      const std::size_t home = entry.hash & mask_;
      const bool movable = hole <= next ? (home <= hole || home > next) : (home <= hole && home > next);
      if (movable) {
        table_[hole] = entry;
        hole = next;
      }
    }
    table_[hole] = Entry{};
    --size_;
    return true;
  }

  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] std::size_t memory_bytes() const { return table_.capacity() * sizeof(Entry); }
  static constexpr std::size_t bytes_per_slot() { return sizeof(Entry); }

 private:
  static constexpr std::uint32_t kEmpty = 0xffffffffu;
  struct Entry {
    std::uint32_t hash = 0;
    std::uint32_t slot = kEmpty;
  };

  static std::size_t capacity_for(std::size_t entries) {
    std::size_t capacity = 16;
    while (capacity < entries * 2) capacity *= 2;
    return capacity;
  }

  void place(Entry entry) {
    std::size_t i = entry.hash & mask_;
    while (table_[i].slot != kEmpty) i = (i + 1) & mask_;
    table_[i] = entry;
  }

  void rehash(std::size_t capacity) {
    std::vector<Entry> old;
    old.swap(table_);
    table_.assign(capacity, Entry{});
    mask_ = capacity - 1;
    for (const auto& entry : old)
      if (entry.slot != kEmpty) place(entry);
  }

  std::vector<Entry> table_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace edgetrace
