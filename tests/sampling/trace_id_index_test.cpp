#include "sampling/trace_id_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

#include "sampling/decision_cache.h"
#include "sampling_test_support.h"

namespace edgetrace {
namespace {

// The index is hand-written (see trace_id_index.h); check it against std::unordered_map under
// random inserts and erases, including runs of colliding probe sequences.
TEST(TraceIdIndex, AgreesWithAReferenceMapUnderChurn) {
  std::mt19937_64 rng(5);
  std::vector<TraceId> keys;  // slot -> id
  for (int i = 0; i < 4'096; ++i) keys.push_back(testing::random_trace_id(rng));
  const auto key_of = [&](std::uint32_t slot) -> const TraceId& { return keys[slot]; };

  TraceIdIndex index(8);  // starts tiny: exercises growth
  std::unordered_map<std::uint32_t, bool> present;
  std::uniform_int_distribution<std::uint32_t> pick(0, static_cast<std::uint32_t>(keys.size() - 1));
  for (int step = 0; step < 200'000; ++step) {
    const std::uint32_t slot = pick(rng);
    const bool is_present = present[slot];
    ASSERT_EQ(index.find(keys[slot], key_of), is_present ? slot : TraceIdIndex::kNotFound) << step;
    if (is_present) {
      ASSERT_TRUE(index.erase(keys[slot], key_of));
      present[slot] = false;
    } else {
      index.insert(keys[slot], slot);
      present[slot] = true;
    }
  }
  std::size_t expected = 0;
  for (const auto& [slot, is_present] : present) {
    expected += is_present ? 1 : 0;
    EXPECT_EQ(index.find(keys[slot], key_of), is_present ? slot : TraceIdIndex::kNotFound);
  }
  EXPECT_EQ(index.size(), expected);
}

TEST(TraceIdIndex, EraseKeepsTheRestReachable) {
  // Sequential, non-random ids at load factor 1/2: probe runs form and erases shift them.
  std::vector<TraceId> keys;
  for (std::uint8_t i = 0; i < 64; ++i) {
    TraceId id{};
    id[0] = i;
    keys.push_back(id);
  }
  const auto key_of = [&](std::uint32_t slot) -> const TraceId& { return keys[slot]; };
  TraceIdIndex index;
  for (std::uint32_t i = 0; i < keys.size(); ++i) index.insert(keys[i], i);
  for (std::uint32_t i = 0; i < keys.size(); i += 2) ASSERT_TRUE(index.erase(keys[i], key_of));
  for (std::uint32_t i = 0; i < keys.size(); ++i)
    EXPECT_EQ(index.find(keys[i], key_of), i % 2 == 0 ? TraceIdIndex::kNotFound : i);
  EXPECT_FALSE(index.erase(keys[0], key_of));
}

TEST(TraceIdLruSet, EvictsTheLeastRecentlyUsed) {
  std::mt19937_64 rng(11);
  const auto a = testing::random_trace_id(rng);
  const auto b = testing::random_trace_id(rng);
  const auto c = testing::random_trace_id(rng);
  TraceIdLruSet set(2);
  set.insert(a);
  set.insert(b);
  EXPECT_TRUE(set.touch(a));
  set.insert(c);  // b is the least recently used
  EXPECT_TRUE(set.touch(a));
  EXPECT_FALSE(set.touch(b));
  EXPECT_TRUE(set.touch(c));
  EXPECT_EQ(set.size(), 2u);

  TraceIdLruSet disabled(0);
  disabled.insert(a);
  EXPECT_FALSE(disabled.touch(a));
}

}  // namespace
}  // namespace edgetrace
