// The on-disk format of the spill queue (documented in docs/queue.md). All integers are
// little-endian. A segment file is:
//   SegmentHeader (32 B) · Record* · [SegmentTrailer (48 B), written when the segment is sealed]
// and a record is RecordHeader (40 B) followed by the payload bytes.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace edgetrace::queue {

static_assert(std::endian::native == std::endian::little, "the queue format is written little-endian");

inline constexpr std::size_t kSegmentHeaderSize = 32;
inline constexpr std::size_t kRecordHeaderSize = 40;
inline constexpr std::size_t kTrailerSize = 48;
inline constexpr std::size_t kAckRecordSize = 16;
inline constexpr std::uint32_t kMaxPayloadBytes = 0xFFFF'FFFFu;

inline constexpr std::string_view kLockFileName = "lock";
inline constexpr std::string_view kAckLogName = "acks.log";
inline constexpr std::string_view kStateFileName = "state";
inline constexpr std::string_view kQuarantineDirName = "quarantine";

struct RecordHeader {
  std::uint64_t sequence = 0;
  std::uint64_t enqueued_unix_nanos = 0;
  std::uint32_t payload_size = 0;
  std::uint32_t span_count = 0;
  std::uint32_t payload_crc = 0;
};

struct SegmentHeader {
  std::uint64_t first_sequence = 0;
  std::uint64_t created_unix_nanos = 0;
};

// Summary written at the end of a sealed segment so that opening a large backlog reads
// 48 bytes per segment instead of every record.
struct SegmentTrailer {
  std::uint64_t first_sequence = 0;  // of the first record (the segment's name if empty)
  std::uint64_t last_sequence = 0;   // of the last record; record_count == 0 means none
  std::uint64_t record_count = 0;
  std::uint64_t span_total = 0;
  std::uint64_t data_end = 0;  // file offset where the trailer starts
};

using RecordHeaderBytes = std::array<char, kRecordHeaderSize>;
using SegmentHeaderBytes = std::array<char, kSegmentHeaderSize>;
using TrailerBytes = std::array<char, kTrailerSize>;
using AckRecordBytes = std::array<char, kAckRecordSize>;

RecordHeaderBytes encode(const RecordHeader& header);
SegmentHeaderBytes encode(const SegmentHeader& header);
TrailerBytes encode(const SegmentTrailer& trailer);
AckRecordBytes encode_ack(std::uint64_t acknowledged_sequence);

// nullopt when the magic or the checksum does not match.
std::optional<RecordHeader> decode_record_header(const char* bytes);
std::optional<SegmentHeader> decode_segment_header(const char* bytes);
std::optional<SegmentTrailer> decode_trailer(const char* bytes);
std::optional<std::uint64_t> decode_ack(const char* bytes);

std::string segment_file_name(std::uint64_t first_sequence);
std::optional<std::uint64_t> parse_segment_file_name(std::string_view name);

// Reads records of one segment through pread (safe to use while another thread appends).
class SegmentReader {
 public:
  enum class Status { Ok, BadHeader, BadPayload, PastEnd, IoError };
  struct Result {
    Status status = Status::PastEnd;
    RecordHeader header;
    std::uint64_t next_offset = 0;  // valid for Ok and BadPayload
    int error = 0;                   // errno for IoError
  };

  explicit SegmentReader(int fd) : fd_(fd) {}

  // Reads the record at `offset`, which must end at or before `end`. With a payload pointer
  // the payload is read and its CRC checked; without, only the header is checked.
  Result read(std::uint64_t offset, std::uint64_t end, std::string* payload) const;

  // First offset in (from, end) holding a record header with a valid checksum whose
  // sequence is > `after_sequence` and whose payload fits before `end`.
  std::optional<std::uint64_t> resync(std::uint64_t from, std::uint64_t end, std::uint64_t after_sequence) const;

 private:
  int fd_;
};

struct SegmentScan {
  std::uint64_t first_sequence = 0;  // of the first valid record
  std::uint64_t last_sequence = 0;
  std::uint64_t record_count = 0;    // valid records (corrupt ones in between are not counted)
  std::uint64_t span_total = 0;
  std::uint64_t valid_end = 0;       // offset just after the last valid record
  std::uint64_t corrupt_regions = 0; // damaged stretches followed by a valid record
  int io_error = 0;
};

// Walks every record from `data_start` to `end` checking checksums (payloads too when
// `verify_payloads`). A damaged stretch followed by a valid record is a corrupt region; a
// damaged stretch reaching `end` is a torn tail and excluded from valid_end.
SegmentScan scan_segment(int fd, std::uint64_t data_start, std::uint64_t end, bool verify_payloads);

// Reads `size` bytes at `offset` fully; false with errno set on error or EOF.
bool pread_fully(int fd, void* buffer, std::size_t size, std::uint64_t offset);
bool pwrite_fully(int fd, const void* buffer, std::size_t size, std::uint64_t offset);
bool fsync_directory(const std::filesystem::path& dir);

// The highest acknowledged sequence recorded in an ack log (0 when none), reading the
// whole file and ignoring torn or damaged records.
std::uint64_t read_ack_log(const std::filesystem::path& path);

}  // namespace edgetrace::queue
