#include "queue/queue_status.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <map>
#include <stdexcept>

#include "queue/segment_format.h"
#include "queue/state_file.h"
#include "queue/unique_fd.h"

namespace edgetrace {
namespace {

using queue::SegmentReader;

std::uint64_t unix_nanos_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::string utc_time(std::uint64_t unix_nanos) {
  const std::time_t seconds = static_cast<std::time_t>(unix_nanos / 1'000'000'000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string duration_text(std::uint64_t nanos) {
  const double seconds = static_cast<double>(nanos) / 1e9;
  if (seconds < 120) return fmt::format("{:.1f} s", seconds);
  if (seconds < 7200) return fmt::format("{:.1f} min", seconds / 60);
  return fmt::format("{:.1f} h", seconds / 3600);
}

void check_lock(const std::filesystem::path& dir, QueueDirectoryStatus& status) {
  const auto path = dir / queue::kLockFileName;
  queue::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return;
  // F_OFD_GETLK asks without taking the lock, so a starting agent is never turned away.
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) {
    status.agent_running = true;
    char pid[32] = {};
    if (::pread(fd.get(), pid, sizeof(pid) - 1, 0) > 0) {
      status.agent_pid = pid;
      while (!status.agent_pid.empty() && (status.agent_pid.back() == '\n' || status.agent_pid.back() == ' '))
        status.agent_pid.pop_back();
    }
  }
}

}  // namespace

QueueDirectoryStatus inspect_queue_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw std::runtime_error("no queue directory at " + dir.string());
  QueueDirectoryStatus status;
  check_lock(dir, status);
  status.acknowledged_sequence = queue::read_ack_log(dir / queue::kAckLogName);
  if (auto state = queue::read_state_file(dir / queue::kStateFileName)) {
    status.dropped_batches = state->dropped_batches;
    status.dropped_spans = state->dropped_spans;
    status.corrupted_records = state->corrupted_records;
    status.write_errors = state->write_errors;
    status.quarantined_segments = state->quarantined_segments;
    status.torn_tails_truncated = state->torn_tails_truncated;
    status.last_error = state->last_error;
    status.last_export_error = state->last_export_error;
    status.counters_updated_unix_nanos = state->updated_unix_nanos;
  }
  std::map<std::uint64_t, std::filesystem::path> segments;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (auto first = queue::parse_segment_file_name(entry.path().filename().string()))
      segments.emplace(*first, entry.path());
  if (ec) throw std::runtime_error("cannot list " + dir.string() + ": " + ec.message());
  const auto quarantine_dir = dir / queue::kQuarantineDirName;
  if (std::filesystem::is_directory(quarantine_dir, ec))
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(quarantine_dir, ec))
      ++status.quarantined_files;

  const std::uint64_t acked = status.acknowledged_sequence;
  for (const auto& [first, path] : segments) {
    queue::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat info {};
    queue::SegmentHeaderBytes header;
    if (!fd || ::fstat(fd.get(), &info) != 0 || !queue::pread_fully(fd.get(), header.data(), header.size(), 0) ||
        !queue::decode_segment_header(header.data())) {
      ++status.unreadable_segments;
      continue;
    }
    const auto size = static_cast<std::uint64_t>(info.st_size);
    ++status.segments;
    status.disk_bytes += size;
    std::optional<queue::SegmentTrailer> trailer;
    if (size >= queue::kSegmentHeaderSize + queue::kTrailerSize) {
      queue::TrailerBytes bytes;
      if (queue::pread_fully(fd.get(), bytes.data(), bytes.size(), size - queue::kTrailerSize))
        trailer = queue::decode_trailer(bytes.data());
      if (trailer && trailer->data_end != size - queue::kTrailerSize) trailer.reset();
    }
    const std::uint64_t data_end = trailer ? trailer->data_end : size;
    if (trailer && (trailer->record_count == 0 || trailer->last_sequence <= acked)) continue;
    if (trailer && trailer->first_sequence > acked && status.oldest_enqueued_unix_nanos) {
      // Entirely unacknowledged and not the oldest: the trailer is enough.
      status.depth_batches += trailer->record_count;
      status.depth_spans += trailer->span_total;
      status.depth_bytes += data_end - queue::kSegmentHeaderSize;
      continue;
    }
    // The segment the read position is in (or one being written): walk its headers.
    SegmentReader reader(fd.get());
    std::uint64_t offset = queue::kSegmentHeaderSize;
    std::uint64_t last = 0;
    while (offset < data_end) {
      auto result = reader.read(offset, data_end, nullptr);
      if (result.status != SegmentReader::Status::Ok || result.header.sequence <= last) {
        auto next = reader.resync(offset, data_end, last);
        if (!next) break;
        offset = *next;
        continue;
      }
      last = result.header.sequence;
      if (result.header.sequence > acked) {
        ++status.depth_batches;
        status.depth_spans += result.header.span_count;
        status.depth_bytes += result.next_offset - offset;
        if (!status.oldest_enqueued_unix_nanos) status.oldest_enqueued_unix_nanos = result.header.enqueued_unix_nanos;
      }
      offset = result.next_offset;
    }
  }
  return status;
}

int print_queue_status(const std::filesystem::path& dir, std::ostream& out) {
  QueueDirectoryStatus status;
  try {
    status = inspect_queue_directory(dir);
  } catch (const std::exception& error) {
    out << "edgetrace queue status: " << error.what() << '\n';
    std::error_code ec;
    return std::filesystem::exists(dir, ec) ? 1 : 2;
  }
  const std::uint64_t now = unix_nanos_now();
  out << "queue directory:      " << dir.string() << '\n';
  out << "agent:                "
      << (status.agent_running ? "running" + (status.agent_pid.empty() ? "" : " (pid " + status.agent_pid + ")") +
                                     ", figures below are as of its last flush"
                               : std::string("stopped"))
      << '\n';
  out << "depth:                " << status.depth_batches << " batches, " << status.depth_spans << " spans, "
      << status.depth_bytes << " bytes\n";
  if (status.oldest_enqueued_unix_nanos) {
    const std::uint64_t enqueued = *status.oldest_enqueued_unix_nanos;
    out << "oldest batch:         " << duration_text(now > enqueued ? now - enqueued : 0) << " old (enqueued "
        << utc_time(enqueued) << ")\n";
  } else {
    out << "oldest batch:         none (empty)\n";
  }
  out << "disk:                 " << status.segments << " segments, " << status.disk_bytes << " bytes\n";
  out << "acknowledged through: sequence " << status.acknowledged_sequence << '\n';
  out << "dropped:              " << status.dropped_batches << " batches, " << status.dropped_spans << " spans\n";
  out << "corrupted records:    " << status.corrupted_records << '\n';
  out << "write errors:         " << status.write_errors << '\n';
  if (status.unreadable_segments > 0)
    out << "unreadable segments:  " << status.unreadable_segments << " (moved to quarantine/ on the next start)\n";
  if (status.quarantined_files > 0 || status.quarantined_segments > 0)
    out << "quarantined segments: " << status.quarantined_segments << " (" << status.quarantined_files
        << " files in quarantine/)\n";
  if (status.torn_tails_truncated > 0)
    out << "torn tails truncated: " << status.torn_tails_truncated << " (records whose write was cut short)\n";
  out << "last error:           " << (status.last_error.empty() ? "none" : status.last_error) << '\n';
  out << "last export error:    " << (status.last_export_error.empty() ? "none" : status.last_export_error) << '\n';
  out << "counters as of:       "
      << (status.counters_updated_unix_nanos ? utc_time(status.counters_updated_unix_nanos) : std::string("never written"))
      << '\n';
  return 0;
}

}  // namespace edgetrace
