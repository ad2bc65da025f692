#include "queue/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace edgetrace::queue {
namespace {

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) appendix B.4 and the classic check value.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(Crc32c, PortableAndHardwareAgreeAtEveryLengthAndAlignment) {
  std::mt19937 random(7);
  std::string data(4096 + 16, '\0');
  for (char& c : data) c = static_cast<char>(random());
  for (std::size_t offset = 0; offset < 9; ++offset)
    for (std::size_t length : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 1000u, 4096u}) {
      const auto portable = crc32c_portable(0, data.data() + offset, length);
      EXPECT_EQ(portable, crc32c_hardware(0, data.data() + offset, length)) << offset << "+" << length;
      EXPECT_EQ(portable, crc32c(0, data.data() + offset, length));
    }
}

TEST(Crc32c, ExtendingEqualsOneShot) {
  const std::string text = "the quick brown fox jumps over the lazy dog";
  const auto whole = crc32c(text);
  for (std::size_t split = 0; split <= text.size(); ++split)
    EXPECT_EQ(crc32c(crc32c(0, text.data(), split), text.data() + split, text.size() - split), whole);
}

TEST(Crc32c, DetectsASingleFlippedBit) {
  std::string data(20000, 'x');
  const auto original = crc32c(data);
  data[12345] ^= 0x10;
  EXPECT_NE(crc32c(data), original);
}

}  // namespace
}  // namespace edgetrace::queue
