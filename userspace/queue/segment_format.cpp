#include "queue/segment_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "queue/crc32c.h"
#include "queue/unique_fd.h"

namespace edgetrace::queue {
namespace {

constexpr std::uint32_t kRecordMagic = 0x52515445;   // "ETQR"
constexpr std::uint32_t kTrailerMagic = 0x54515445;  // "ETQT"
constexpr std::uint32_t kAckMagic = 0x41515445;      // "ETQA"
constexpr std::uint64_t kSegmentMagic = 0x3130474553515445ull;  // "ETQSEG01"
constexpr std::uint32_t kFormatVersion = 1;

template <typename T>
void put(char* at, T value) {
  std::memcpy(at, &value, sizeof(T));
}
template <typename T>
T get(const char* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

}  // namespace

// Record header: magic u32 | header_crc u32 (over bytes 8..40) | sequence u64 |
// enqueued_unix_nanos u64 | payload_size u32 | span_count u32 | payload_crc u32 | zero u32
RecordHeaderBytes encode(const RecordHeader& header) {
  RecordHeaderBytes bytes{};
  put<std::uint32_t>(bytes.data(), kRecordMagic);
  put<std::uint64_t>(bytes.data() + 8, header.sequence);
  put<std::uint64_t>(bytes.data() + 16, header.enqueued_unix_nanos);
  put<std::uint32_t>(bytes.data() + 24, header.payload_size);
  put<std::uint32_t>(bytes.data() + 28, header.span_count);
  put<std::uint32_t>(bytes.data() + 32, header.payload_crc);
  put<std::uint32_t>(bytes.data() + 4, crc32c(0, bytes.data() + 8, kRecordHeaderSize - 8));
  return bytes;
}

std::optional<RecordHeader> decode_record_header(const char* bytes) {
  if (get<std::uint32_t>(bytes) != kRecordMagic) return std::nullopt;
  if (get<std::uint32_t>(bytes + 4) != crc32c(0, bytes + 8, kRecordHeaderSize - 8)) return std::nullopt;
  if (get<std::uint32_t>(bytes + 36) != 0) return std::nullopt;
  RecordHeader header;
  header.sequence = get<std::uint64_t>(bytes + 8);
  header.enqueued_unix_nanos = get<std::uint64_t>(bytes + 16);
  header.payload_size = get<std::uint32_t>(bytes + 24);
  header.span_count = get<std::uint32_t>(bytes + 28);
  header.payload_crc = get<std::uint32_t>(bytes + 32);
  return header;
}

// Segment header: magic u64 | version u32 | zero u32 | first_sequence u64 | created u32 (seconds,
// informational) | crc u32 (over bytes 0..28)
SegmentHeaderBytes encode(const SegmentHeader& header) {
  SegmentHeaderBytes bytes{};
  put<std::uint64_t>(bytes.data(), kSegmentMagic);
  put<std::uint32_t>(bytes.data() + 8, kFormatVersion);
  put<std::uint64_t>(bytes.data() + 16, header.first_sequence);
  put<std::uint32_t>(bytes.data() + 24, static_cast<std::uint32_t>(header.created_unix_nanos / 1'000'000'000));
  put<std::uint32_t>(bytes.data() + 28, crc32c(0, bytes.data(), 28));
  return bytes;
}

std::optional<SegmentHeader> decode_segment_header(const char* bytes) {
  if (get<std::uint64_t>(bytes) != kSegmentMagic) return std::nullopt;
  if (get<std::uint32_t>(bytes + 8) != kFormatVersion) return std::nullopt;
  if (get<std::uint32_t>(bytes + 28) != crc32c(0, bytes, 28)) return std::nullopt;
  SegmentHeader header;
  header.first_sequence = get<std::uint64_t>(bytes + 16);
  header.created_unix_nanos = std::uint64_t{get<std::uint32_t>(bytes + 24)} * 1'000'000'000;
  return header;
}

// Trailer: magic u32 | crc u32 (over bytes 8..48) | first u64 | last u64 | count u64 |
// spans u64 | data_end u64
TrailerBytes encode(const SegmentTrailer& trailer) {
  TrailerBytes bytes{};
  put<std::uint32_t>(bytes.data(), kTrailerMagic);
  put<std::uint64_t>(bytes.data() + 8, trailer.first_sequence);
  put<std::uint64_t>(bytes.data() + 16, trailer.last_sequence);
  put<std::uint64_t>(bytes.data() + 24, trailer.record_count);
  put<std::uint64_t>(bytes.data() + 32, trailer.span_total);
  put<std::uint64_t>(bytes.data() + 40, trailer.data_end);
  put<std::uint32_t>(bytes.data() + 4, crc32c(0, bytes.data() + 8, kTrailerSize - 8));
  return bytes;
}

std::optional<SegmentTrailer> decode_trailer(const char* bytes) {
  if (get<std::uint32_t>(bytes) != kTrailerMagic) return std::nullopt;
  if (get<std::uint32_t>(bytes + 4) != crc32c(0, bytes + 8, kTrailerSize - 8)) return std::nullopt;
  SegmentTrailer trailer;
  trailer.first_sequence = get<std::uint64_t>(bytes + 8);
  trailer.last_sequence = get<std::uint64_t>(bytes + 16);
  trailer.record_count = get<std::uint64_t>(bytes + 24);
  trailer.span_total = get<std::uint64_t>(bytes + 32);
  trailer.data_end = get<std::uint64_t>(bytes + 40);
  return trailer;
}

// Ack record: magic u32 | crc u32 (over the sequence) | acknowledged sequence u64
AckRecordBytes encode_ack(std::uint64_t acknowledged_sequence) {
  AckRecordBytes bytes{};
  put<std::uint32_t>(bytes.data(), kAckMagic);
  put<std::uint64_t>(bytes.data() + 8, acknowledged_sequence);
  put<std::uint32_t>(bytes.data() + 4, crc32c(0, bytes.data() + 8, 8));
  return bytes;
}

std::optional<std::uint64_t> decode_ack(const char* bytes) {
  if (get<std::uint32_t>(bytes) != kAckMagic) return std::nullopt;
  if (get<std::uint32_t>(bytes + 4) != crc32c(0, bytes + 8, 8)) return std::nullopt;
  return get<std::uint64_t>(bytes + 8);
}

std::string segment_file_name(std::uint64_t first_sequence) {
  std::string digits = std::to_string(first_sequence);
  return "seg-" + std::string(20 - std::min<std::size_t>(20, digits.size()), '0') + digits + ".log";
}

std::optional<std::uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != 4 + 20 + 4 || !name.starts_with("seg-") || !name.ends_with(".log")) return std::nullopt;
  std::uint64_t value = 0;
  const char* begin = name.data() + 4;
  auto [ptr, ec] = std::from_chars(begin, begin + 20, value);
  if (ec != std::errc{} || ptr != begin + 20) return std::nullopt;
  return value;
}

bool pread_fully(int fd, void* buffer, std::size_t size, std::uint64_t offset) {
  auto* at = static_cast<char*>(buffer);
  while (size > 0) {
    const ssize_t got = ::pread(fd, at, size, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {
      errno = 0;
      return false;
    }
    at += got;
    size -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return true;
}

bool pwrite_fully(int fd, const void* buffer, std::size_t size, std::uint64_t offset) {
  const auto* at = static_cast<const char*>(buffer);
  while (size > 0) {
    const ssize_t put_bytes = ::pwrite(fd, at, size, static_cast<off_t>(offset));
    if (put_bytes < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (put_bytes == 0) {
      errno = ENOSPC;
      return false;
    }
    at += put_bytes;
    size -= static_cast<std::size_t>(put_bytes);
    offset += static_cast<std::uint64_t>(put_bytes);
  }
  return true;
}

bool fsync_directory(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return fd && ::fsync(fd.get()) == 0;
}

SegmentReader::Result SegmentReader::read(std::uint64_t offset, std::uint64_t end, std::string* payload) const {
  Result result;
  if (offset + kRecordHeaderSize > end) return result;  // PastEnd
  RecordHeaderBytes bytes;
  if (!pread_fully(fd_, bytes.data(), bytes.size(), offset)) {
    result.status = errno == 0 ? Status::PastEnd : Status::IoError;
    result.error = errno;
    return result;
  }
  auto header = decode_record_header(bytes.data());
  if (!header || offset + kRecordHeaderSize + header->payload_size > end) {
    result.status = Status::BadHeader;
    return result;
  }
  result.header = *header;
  result.next_offset = offset + kRecordHeaderSize + header->payload_size;
  if (payload != nullptr) {
    payload->resize(header->payload_size);
    if (!pread_fully(fd_, payload->data(), payload->size(), offset + kRecordHeaderSize)) {
      result.status = errno == 0 ? Status::BadHeader : Status::IoError;
      result.error = errno;
      return result;
    }
    if (crc32c(0, payload->data(), payload->size()) != header->payload_crc) {
      result.status = Status::BadPayload;
      return result;
    }
  }
  result.status = Status::Ok;
  return result;
}

std::optional<std::uint64_t> SegmentReader::resync(std::uint64_t from, std::uint64_t end,
                                                   std::uint64_t after_sequence) const {
  constexpr std::size_t kWindow = 1 << 20;
  std::vector<char> window(kWindow + kRecordHeaderSize);
  const char magic[4] = {'E', 'T', 'Q', 'R'};
  for (std::uint64_t base = from + 1; base + kRecordHeaderSize <= end; base += kWindow) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kWindow + kRecordHeaderSize, end - base));
    if (!pread_fully(fd_, window.data(), want, base)) return std::nullopt;
    for (std::size_t i = 0; i + kRecordHeaderSize <= want && i < kWindow; ++i) {
      if (std::memcmp(window.data() + i, magic, 4) != 0) continue;
      auto header = decode_record_header(window.data() + i);
      if (!header || header->sequence <= after_sequence) continue;
      if (base + i + kRecordHeaderSize + header->payload_size > end) continue;
      return base + i;
    }
  }
  return std::nullopt;
}

SegmentScan scan_segment(int fd, std::uint64_t data_start, std::uint64_t end, bool verify_payloads) {
  SegmentScan scan;
  scan.valid_end = data_start;
  SegmentReader reader(fd);
  std::string payload;
  std::uint64_t offset = data_start;
  std::uint64_t last_sequence = 0;
  bool in_damage = false;
  while (offset < end) {
    auto result = reader.read(offset, end, verify_payloads ? &payload : nullptr);
    if (result.status == SegmentReader::Status::IoError) {
      scan.io_error = result.error;
      return scan;
    }
    if (result.status == SegmentReader::Status::Ok && result.header.sequence > last_sequence) {
      if (in_damage) ++scan.corrupt_regions;
      in_damage = false;
      if (scan.record_count == 0) scan.first_sequence = result.header.sequence;
      ++scan.record_count;
      scan.span_total += result.header.span_count;
      last_sequence = scan.last_sequence = result.header.sequence;
      offset = scan.valid_end = result.next_offset;
      continue;
    }
    in_damage = true;
    if (result.status == SegmentReader::Status::BadPayload) {
      last_sequence = std::max(last_sequence, result.header.sequence);
      offset = result.next_offset;
      continue;
    }
    auto next = reader.resync(offset, end, last_sequence);
    if (!next) break;  // nothing valid after the damage: a torn tail
    offset = *next;
  }
  // Damage with no valid record after it (including a last record whose payload fails its
  // checksum) is a torn tail: it stays outside valid_end.
  return scan;
}

std::uint64_t read_ack_log(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  std::uint64_t highest = 0;
  AckRecordBytes record;
  std::uint64_t offset = 0;
  while (pread_fully(fd.get(), record.data(), record.size(), offset)) {
    if (auto sequence = decode_ack(record.data())) highest = std::max(highest, *sequence);
    offset += record.size();
  }
  return highest;
}

}  // namespace edgetrace::queue
