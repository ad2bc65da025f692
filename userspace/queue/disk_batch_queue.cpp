#include "queue/disk_batch_queue.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "queue/crc32c.h"
#include "queue/segment_format.h"
#include "queue/state_file.h"

namespace edgetrace {

using queue::kRecordHeaderSize;
using queue::kSegmentHeaderSize;
using queue::kTrailerSize;
using queue::SegmentReader;

namespace {

constexpr std::uint64_t kAckLogCompactBytes = 64 * 1024;

std::uint64_t unix_nanos_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::string errno_text(int error) { return std::strerror(error); }

std::uint64_t saturating_sub(std::uint64_t value, std::uint64_t minus) { return value > minus ? value - minus : 0; }

}  // namespace

struct DiskBatchQueue::SegmentFile {
  queue::UniqueFd fd;
  std::filesystem::path path;
  std::atomic<bool> dirty{false};  // written since the last fdatasync
};

struct DiskBatchQueue::Segment {
  std::uint64_t first_sequence = 0;  // from the file name
  std::shared_ptr<SegmentFile> file;
  // Guarded by mutex_ (the producer also reads its active segment's fields without it).
  std::uint64_t data_end = kSegmentHeaderSize;  // end of the published records
  std::uint64_t file_bytes = kSegmentHeaderSize;
  std::uint64_t first_record_sequence = 0;
  std::uint64_t last_sequence = 0;
  std::uint64_t record_count = 0;
  std::uint64_t span_total = 0;
  std::uint64_t remaining_records = 0;  // not yet consumed
  std::uint64_t remaining_spans = 0;
  std::uint64_t remaining_bytes = 0;
  bool sealed = false;
};

DiskBatchQueue::DiskBatchQueue(QueueConfig config) : config_(std::move(config)) {
  validate_queue_config(config_);
  segment_dir_ = config_.dir;
  recover();
  flusher_ = std::thread([this] { flusher_loop(); });
}

DiskBatchQueue::~DiskBatchQueue() {
  close();
  {
    std::lock_guard lock(flusher_mutex_);
    stop_flusher_ = true;
  }
  flusher_wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  sync();
}

// ---------------------------------------------------------------------------------------
// Recovery

void DiskBatchQueue::recover() {
  std::error_code ec;
  std::filesystem::create_directories(segment_dir_, ec);
  if (ec) throw QueueOpenError("queue directory " + segment_dir_.string() + ": cannot create: " + ec.message());

  const auto lock_path = segment_dir_ / queue::kLockFileName;
  lock_fd_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640));
  if (!lock_fd_) throw QueueOpenError("queue lock file " + lock_path.string() + ": " + errno_text(errno));
  struct flock request {};
  request.l_type = F_WRLCK;
  request.l_whence = SEEK_SET;
  if (::fcntl(lock_fd_.get(), F_OFD_SETLK, &request) != 0) {
    const int error = errno;
    char holder[32] = {};
    [[maybe_unused]] auto got = ::pread(lock_fd_.get(), holder, sizeof(holder) - 1, 0);
    std::string pid(holder);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (error == EAGAIN || error == EACCES)
      throw QueueOpenError("queue directory " + segment_dir_.string() + " is in use by another edgetrace agent" +
                           (pid.empty() ? std::string() : " (pid " + pid + ")") + "; lock held on " +
                           lock_path.string());
    throw QueueOpenError("queue lock file " + lock_path.string() + ": " + errno_text(error));
  }
  const std::string pid_text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_.get(), 0) != 0 || !queue::pwrite_fully(lock_fd_.get(), pid_text.data(), pid_text.size(), 0))
    spdlog::warn("queue: cannot record pid in {}: {}", lock_path.string(), errno_text(errno));

  if (auto state = queue::read_state_file(segment_dir_ / queue::kStateFileName)) {
    dropped_batches_ = state->dropped_batches;
    dropped_spans_ = state->dropped_spans;
    corrupted_records_ = state->corrupted_records;
    write_errors_ = state->write_errors;
    quarantined_segments_ = state->quarantined_segments;
    torn_tails_truncated_ = state->torn_tails_truncated;
    last_error_ = state->last_error;
    last_export_error_ = state->last_export_error;
  }
  consumed_through_ = queue::read_ack_log(segment_dir_ / queue::kAckLogName);

  std::map<std::uint64_t, std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator(segment_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (auto first = queue::parse_segment_file_name(name)) found.emplace(*first, entry.path());
    else if (name.ends_with(".tmp")) std::filesystem::remove(entry.path(), ec);
  }
  if (ec) throw QueueOpenError("queue directory " + segment_dir_.string() + ": cannot list: " + ec.message());

  std::vector<std::shared_ptr<Segment>> recovered;
  const std::uint64_t newest_name = found.empty() ? 0 : found.rbegin()->first;
  for (const auto& [first_sequence, path] : found) {
    if (first_sequence == newest_name && std::filesystem::file_size(path, ec) < kSegmentHeaderSize && !ec) {
      // Killed while creating the segment: it never held a record.
      spdlog::warn("queue: {}: removing a segment whose creation was interrupted", path.string());
      std::filesystem::remove(path, ec);
      ++torn_tails_truncated_;
      continue;
    }
    auto file = std::make_shared<SegmentFile>();
    file->path = path;
    file->fd.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!file->fd) {
      quarantine(path, "cannot open: " + errno_text(errno));
      continue;
    }
    struct stat info {};
    queue::SegmentHeaderBytes header_bytes;
    if (::fstat(file->fd.get(), &info) != 0 || static_cast<std::uint64_t>(info.st_size) < kSegmentHeaderSize ||
        !queue::pread_fully(file->fd.get(), header_bytes.data(), header_bytes.size(), 0)) {
      quarantine(path, "unreadable segment header");
      continue;
    }
    auto header = queue::decode_segment_header(header_bytes.data());
    if (!header || header->first_sequence != first_sequence) {
      quarantine(path, "bad segment header");
      continue;
    }
    const auto size = static_cast<std::uint64_t>(info.st_size);
    auto segment = std::make_shared<Segment>();
    segment->first_sequence = first_sequence;
    segment->file = file;

    std::optional<queue::SegmentTrailer> trailer;
    if (size >= kSegmentHeaderSize + kTrailerSize) {
      queue::TrailerBytes trailer_bytes;
      if (queue::pread_fully(file->fd.get(), trailer_bytes.data(), trailer_bytes.size(), size - kTrailerSize))
        trailer = queue::decode_trailer(trailer_bytes.data());
      if (trailer && trailer->data_end != size - kTrailerSize) trailer.reset();
    }
    if (trailer) {
      segment->sealed = true;
      segment->data_end = trailer->data_end;
      segment->file_bytes = size;
      segment->first_record_sequence = trailer->first_sequence;
      segment->last_sequence = trailer->last_sequence;
      segment->record_count = trailer->record_count;
      segment->span_total = trailer->span_total;
    } else {
      // Not sealed: the segment that was being written. Check every record; cut a torn tail.
      auto scan = queue::scan_segment(file->fd.get(), kSegmentHeaderSize, size, true);
      if (scan.io_error != 0) {
        quarantine(path, "read error: " + errno_text(scan.io_error));
        continue;
      }
      if (scan.valid_end < size) {
        if (::ftruncate(file->fd.get(), static_cast<off_t>(scan.valid_end)) != 0) {
          quarantine(path, "cannot truncate torn tail: " + errno_text(errno));
          continue;
        }
        ++torn_tails_truncated_;
        spdlog::warn("queue: {}: truncated a torn tail of {} bytes at offset {}", path.string(), size - scan.valid_end,
                     scan.valid_end);
      }
      if (scan.corrupt_regions > 0)
        spdlog::warn("queue: {}: {} damaged stretch(es) between valid records; skipped when reached", path.string(),
                     scan.corrupt_regions);
      segment->data_end = segment->file_bytes = scan.valid_end;
      segment->first_record_sequence = scan.first_sequence;
      segment->last_sequence = scan.last_sequence;
      segment->record_count = scan.record_count;
      segment->span_total = scan.span_total;
    }
    segment->remaining_records = segment->record_count;
    segment->remaining_spans = segment->span_total;
    segment->remaining_bytes = segment->data_end - kSegmentHeaderSize;
    recovered.push_back(std::move(segment));
  }

  // Sequences never go backwards: past every record, past every acknowledgement, and at
  // least the name of the newest segment.
  next_sequence_ = consumed_through_ + 1;
  for (const auto& segment : recovered) {
    next_sequence_ = std::max(next_sequence_, segment->first_sequence);
    if (segment->record_count > 0) next_sequence_ = std::max(next_sequence_, segment->last_sequence + 1);
  }

  for (std::size_t i = 0; i < recovered.size(); ++i) {
    auto& segment = recovered[i];
    const bool newest = i + 1 == recovered.size();
    if (!segment->sealed && !newest) {
      // A crash between writing records and sealing: seal it now so the next start is cheap.
      queue::SegmentTrailer trailer{segment->record_count ? segment->first_record_sequence : segment->first_sequence,
                                    segment->last_sequence, segment->record_count, segment->span_total,
                                    segment->data_end};
      const auto bytes = queue::encode(trailer);
      if (queue::pwrite_fully(segment->file->fd.get(), bytes.data(), bytes.size(), segment->data_end) &&
          ::fdatasync(segment->file->fd.get()) == 0)
        segment->file_bytes += kTrailerSize;
      segment->sealed = true;
    }
    const bool fully_consumed = segment->record_count == 0 || segment->last_sequence <= consumed_through_;
    if (segment->sealed && fully_consumed) {
      std::filesystem::remove(segment->file->path, ec);
      continue;
    }
    disk_bytes_ += segment->file_bytes;
    segments_.push_back(segment);
  }
  if (!segments_.empty() && !segments_.back()->sealed) active_ = segments_.back();

  {
    std::lock_guard lock(mutex_);
    position_consumer_locked();
  }
  if (!active_) active_ = create_segment(next_sequence_);

  if (torn_tails_truncated_ != 0 || quarantined_segments_ != 0) write_state_file(true);  // repairs are news

  std::uint64_t backlog = 0;
  for (const auto& segment : segments_) backlog += segment->remaining_records;
  spdlog::info("queue: opened {} ({} segments, {} bytes, {} unacknowledged batches, next sequence {})",
               segment_dir_.string(), segments_.size(), disk_bytes_, backlog, next_sequence_);
  ack_fd_.reset(::open((segment_dir_ / queue::kAckLogName).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640));
  if (ack_fd_) {
    struct stat info {};
    if (::fstat(ack_fd_.get(), &info) == 0) ack_log_bytes_ = static_cast<std::uint64_t>(info.st_size);
    ack_log_bytes_ -= ack_log_bytes_ % queue::kAckRecordSize;  // overwrite a torn last record
  } else {
    std::lock_guard lock(mutex_);
    record_error_locked("ack log: " + errno_text(errno));
  }
}

// Puts the read position on the first record after consumed_through_ in the front segment.
void DiskBatchQueue::position_consumer_locked() {
  ++front_generation_;
  peeked_.reset();
  if (segments_.empty()) return;
  auto& front = *segments_.front();
  read_offset_ = kSegmentHeaderSize;
  read_last_sequence_ = front.first_sequence > 0 ? front.first_sequence - 1 : 0;
  if (front.record_count == 0 || front.first_record_sequence > consumed_through_) return;
  SegmentReader reader(front.file->fd.get());
  while (read_offset_ < front.data_end) {
    auto result = reader.read(read_offset_, front.data_end, nullptr);
    if (result.status != SegmentReader::Status::Ok || result.header.sequence > consumed_through_) break;
    consume_record_locked(result.header.sequence, result.header.span_count, result.next_offset - read_offset_,
                          result.next_offset);
  }
}

void DiskBatchQueue::quarantine(const std::filesystem::path& path, const std::string& why) {
  std::error_code ec;
  const auto quarantine_dir = segment_dir_ / queue::kQuarantineDirName;
  std::filesystem::create_directories(quarantine_dir, ec);
  auto target = quarantine_dir / path.filename();
  for (int suffix = 1; std::filesystem::exists(target, ec); ++suffix)
    target = quarantine_dir / (path.filename().string() + "." + std::to_string(suffix));
  std::filesystem::rename(path, target, ec);
  std::lock_guard lock(mutex_);
  ++quarantined_segments_;
  record_error_locked("segment " + path.filename().string() + " moved to " + target.string() + ": " + why +
                      (ec ? " (rename failed: " + ec.message() + ")" : ""));
}

// ---------------------------------------------------------------------------------------
// Producer

std::shared_ptr<DiskBatchQueue::Segment> DiskBatchQueue::create_segment(std::uint64_t first_sequence) {
  auto file = std::make_shared<SegmentFile>();
  file->path = segment_dir_ / queue::segment_file_name(first_sequence);
  file->fd.reset(::open(file->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  const auto header = queue::encode(queue::SegmentHeader{first_sequence, unix_nanos_now()});
  bool ok = file->fd && queue::pwrite_fully(file->fd.get(), header.data(), header.size(), 0);
  if (ok && config_.fsync == FsyncMode::Always)
    ok = ::fdatasync(file->fd.get()) == 0 && queue::fsync_directory(segment_dir_);
  if (!ok) {
    const int error = errno;
    if (file->fd) ::unlink(file->path.c_str());
    std::lock_guard lock(mutex_);
    ++write_errors_;
    record_error_locked("cannot create segment " + file->path.string() + ": " + errno_text(error));
    return nullptr;
  }
  if (config_.fsync == FsyncMode::Interval) {
    file->dirty = true;
    directory_dirty_ = true;  // the new name must be durable too, not just the file's data
  }
  auto segment = std::make_shared<Segment>();
  segment->first_sequence = first_sequence;
  segment->file = std::move(file);
  std::lock_guard lock(mutex_);
  segments_.push_back(segment);
  disk_bytes_ += kSegmentHeaderSize;
  if (segments_.size() == 1) position_consumer_locked();
  return segment;
}

bool DiskBatchQueue::roll_active_segment() {
  auto sealing = active_;
  active_.reset();
  std::uint64_t first_record = 0, last = 0, count = 0, spans = 0, data_end = 0;
  {
    std::lock_guard lock(mutex_);
    first_record = sealing->first_record_sequence;
    last = sealing->last_sequence;
    count = sealing->record_count;
    spans = sealing->span_total;
    data_end = sealing->data_end;
  }
  const auto trailer = queue::encode(
      queue::SegmentTrailer{count ? first_record : sealing->first_sequence, last, count, spans, data_end});
  const int fd = sealing->file->fd.get();
  bool trailer_written = queue::pwrite_fully(fd, trailer.data(), trailer.size(), data_end);
  if (!trailer_written) {
    // Not a loss: an unsealed segment is scanned on the next start instead.
    spdlog::warn("queue: cannot seal {}: {}", sealing->file->path.string(), errno_text(errno));
    [[maybe_unused]] int ignored = ::ftruncate(fd, static_cast<off_t>(data_end));
  }
  if (config_.fsync == FsyncMode::Always && ::fdatasync(fd) != 0) {
    std::lock_guard lock(mutex_);
    ++write_errors_;
    record_error_locked("fdatasync " + sealing->file->path.string() + ": " + errno_text(errno));
  }
  std::vector<std::filesystem::path> to_delete;
  {
    std::lock_guard lock(mutex_);
    sealing->sealed = true;
    if (trailer_written) {
      sealing->file_bytes += kTrailerSize;
      disk_bytes_ += kTrailerSize;
      if (config_.fsync == FsyncMode::Interval) sealing->file->dirty = true;
    }
    if (config_.fsync == FsyncMode::Interval) pending_sync_.push_back(sealing->file);
    reap_consumed_front_locked(to_delete);
  }
  delete_files(to_delete);
  active_ = create_segment(next_sequence_);
  return active_ != nullptr;
}

bool DiskBatchQueue::push(std::string payload, std::uint32_t span_count) {
  std::lock_guard producer(producer_mutex_);
  const std::uint64_t record_bytes = kRecordHeaderSize + payload.size();
  std::vector<std::filesystem::path> to_delete;

  if (payload.size() > queue::kMaxPayloadBytes ||
      record_bytes + kSegmentHeaderSize + 2 * kTrailerSize > config_.max_bytes) {
    std::lock_guard lock(mutex_);
    record_drop_locked(1, span_count);
    record_error_locked("batch of " + std::to_string(payload.size()) + " bytes can never fit in queue.max_bytes");
    return false;
  }

  // Bound check first, counting what a roll would add, so the disk never exceeds max_bytes.
  for (int attempt = 0;; ++attempt) {
    const bool will_roll = active_ && active_->record_count > 0 &&
                           active_->data_end + record_bytes + kTrailerSize > config_.segment_bytes;
    const std::uint64_t needed = record_bytes + kTrailerSize + (will_roll ? kTrailerSize + kSegmentHeaderSize : 0) +
                                 (active_ ? 0 : kSegmentHeaderSize);
    bool must_roll_to_drop = false;
    {
      std::lock_guard lock(mutex_);
      while (disk_bytes_ + needed > config_.max_bytes) {
        if (config_.overflow == OverflowPolicy::DropNewest) {
          record_drop_locked(1, span_count);
          record_error_locked("queue full (queue.max_bytes " + std::to_string(config_.max_bytes) +
                              "): refusing new batches (overflow: drop_newest)");
          return false;
        }
        if (segments_.empty() || !segments_.front()->sealed) {
          must_roll_to_drop = true;
          break;
        }
        drop_front_segment_locked(to_delete);
      }
    }
    delete_files(to_delete);
    to_delete.clear();
    if (!must_roll_to_drop) break;
    // Only the active segment is left and it is too big: seal it so it can be dropped.
    if (attempt > 0 || !active_ || active_->record_count == 0 || !roll_active_segment()) {
      std::lock_guard lock(mutex_);
      record_drop_locked(1, span_count);
      return false;
    }
  }

  if (active_ && active_->record_count > 0 &&
      active_->data_end + record_bytes + kTrailerSize > config_.segment_bytes)
    roll_active_segment();
  if (!active_) active_ = create_segment(next_sequence_);
  if (!active_) {
    std::lock_guard lock(mutex_);
    record_drop_locked(1, span_count);
    return false;
  }

  const std::uint64_t sequence = next_sequence_;
  const std::uint64_t enqueued = unix_nanos_now();
  const auto header = queue::encode(queue::RecordHeader{sequence, enqueued, static_cast<std::uint32_t>(payload.size()),
                                                        span_count, queue::crc32c(payload)});
  const int fd = active_->file->fd.get();
  const std::uint64_t offset = active_->data_end;
  iovec parts[2] = {{const_cast<char*>(header.data()), header.size()}, {payload.data(), payload.size()}};
  std::uint64_t written = 0;
  int write_error = 0;
  while (written < record_bytes) {
    int part = written < header.size() ? 0 : 1;
    iovec remaining[2];
    int count = 0;
    if (part == 0) {
      remaining[count++] = {const_cast<char*>(header.data()) + written, header.size() - written};
      remaining[count++] = parts[1];
    } else {
      const std::uint64_t into_payload = written - header.size();
      remaining[count++] = {payload.data() + into_payload, payload.size() - into_payload};
    }
    const ssize_t put = ::pwritev(fd, remaining, count, static_cast<off_t>(offset + written));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      write_error = put < 0 ? errno : ENOSPC;
      break;
    }
    written += static_cast<std::uint64_t>(put);
  }
  if (write_error != 0) {
    // Leave no partial record behind; if even that fails, the next record overwrites it
    // and a restart cuts whatever is left as a torn tail.
    [[maybe_unused]] int ignored = ::ftruncate(fd, static_cast<off_t>(offset));
    std::lock_guard lock(mutex_);
    ++write_errors_;
    record_drop_locked(1, span_count);
    record_error_locked("write to " + active_->file->path.string() + ": " + errno_text(write_error));
    return false;
  }
  if (config_.fsync == FsyncMode::Always) {
    if (::fdatasync(fd) != 0) {
      // The record stays queued (it is readable), but its durability is unknown: say so.
      std::lock_guard lock(mutex_);
      ++write_errors_;
      record_error_locked("fdatasync " + active_->file->path.string() + ": " + errno_text(errno));
    }
  } else if (config_.fsync == FsyncMode::Interval) {
    active_->file->dirty = true;
  }
  {
    std::lock_guard lock(mutex_);
    auto& segment = *active_;
    if (segment.record_count == 0) segment.first_record_sequence = sequence;
    segment.data_end += record_bytes;
    segment.file_bytes += record_bytes;
    segment.last_sequence = sequence;
    ++segment.record_count;
    segment.span_total += span_count;
    ++segment.remaining_records;
    segment.remaining_spans += span_count;
    segment.remaining_bytes += record_bytes;
    disk_bytes_ += record_bytes;
    ++next_sequence_;
  }
  records_available_.notify_all();
  return true;
}

void DiskBatchQueue::drop_front_segment_locked(std::vector<std::filesystem::path>& to_delete) {
  auto front = segments_.front();
  record_drop_locked(front->remaining_records, front->remaining_spans);
  spdlog::warn("queue: full ({} of {} bytes): dropped the oldest segment {} ({} batches, {} spans)", disk_bytes_,
               config_.max_bytes, front->file->path.filename().string(), front->remaining_records,
               front->remaining_spans);
  if (front->record_count > 0) consumed_through_ = std::max(consumed_through_, front->last_sequence);
  disk_bytes_ = saturating_sub(disk_bytes_, front->file_bytes);
  to_delete.push_back(front->file->path);
  segments_.pop_front();
  position_consumer_locked();
}

void DiskBatchQueue::reap_consumed_front_locked(std::vector<std::filesystem::path>& to_delete) {
  while (!segments_.empty()) {
    auto& front = *segments_.front();
    if (!front.sealed || read_offset_ < front.data_end) return;
    disk_bytes_ = saturating_sub(disk_bytes_, front.file_bytes);
    to_delete.push_back(front.file->path);
    segments_.pop_front();
    position_consumer_locked();
  }
}

void DiskBatchQueue::delete_files(const std::vector<std::filesystem::path>& paths) {
  for (const auto& path : paths)
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      spdlog::warn("queue: cannot delete {}: {}", path.string(), errno_text(errno));
}

void DiskBatchQueue::record_error_locked(const std::string& message) {
  if (message != last_error_) spdlog::warn("queue: {}", message);
  last_error_ = message;
  ++state_version_;
}

void DiskBatchQueue::record_drop_locked(std::uint64_t batches, std::uint64_t spans) {
  dropped_batches_ += batches;
  dropped_spans_ += spans;
  ++state_version_;
}

// ---------------------------------------------------------------------------------------
// Consumer

void DiskBatchQueue::consume_record_locked(std::uint64_t sequence, std::uint32_t span_count,
                                           std::uint64_t record_bytes, std::uint64_t next_offset) {
  auto& front = *segments_.front();
  front.remaining_records = saturating_sub(front.remaining_records, 1);
  front.remaining_spans = saturating_sub(front.remaining_spans, span_count);
  front.remaining_bytes = saturating_sub(front.remaining_bytes, record_bytes);
  read_offset_ = next_offset;
  read_last_sequence_ = std::max(read_last_sequence_, sequence);
  consumed_through_ = std::max(consumed_through_, sequence);
}

std::optional<QueuedBatch> DiskBatchQueue::peek(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(mutex_);
  std::vector<std::filesystem::path> to_delete;
  for (;;) {
    if (peeked_ && peeked_->sequence > consumed_through_) return peeked_;
    peeked_.reset();
    reap_consumed_front_locked(to_delete);
    if (!to_delete.empty()) {
      lock.unlock();
      delete_files(to_delete);
      to_delete.clear();
      lock.lock();
      continue;
    }
    if (!segments_.empty() && read_offset_ < segments_.front()->data_end) {
      auto segment = segments_.front();
      const std::uint64_t generation = front_generation_;
      const std::uint64_t offset = read_offset_;
      const std::uint64_t end = segment->data_end;
      const std::uint64_t after_sequence = read_last_sequence_;
      lock.unlock();
      SegmentReader reader(segment->file->fd.get());
      QueuedBatch batch;
      auto result = reader.read(offset, end, &batch.payload);
      std::optional<std::uint64_t> resync_at;
      if (result.status == SegmentReader::Status::BadHeader) resync_at = reader.resync(offset, end, after_sequence);
      std::optional<queue::RecordHeader> resync_header;
      if (resync_at) {
        queue::RecordHeaderBytes bytes;
        if (queue::pread_fully(segment->file->fd.get(), bytes.data(), bytes.size(), *resync_at))
          resync_header = queue::decode_record_header(bytes.data());
      }
      lock.lock();
      if (generation != front_generation_ || offset != read_offset_) continue;  // dropped meanwhile

      switch (result.status) {
        case SegmentReader::Status::Ok:
          if (result.header.sequence <= consumed_through_) {
            consume_record_locked(result.header.sequence, result.header.span_count, result.next_offset - offset,
                                  result.next_offset);
            continue;
          }
          batch.sequence = result.header.sequence;
          batch.span_count = result.header.span_count;
          batch.enqueued_unix_nanos = result.header.enqueued_unix_nanos;
          peeked_ = std::move(batch);
          peeked_next_offset_ = result.next_offset;
          return peeked_;
        case SegmentReader::Status::BadPayload:
          if (result.header.sequence > consumed_through_) {
            ++corrupted_records_;
            ++state_version_;
            record_error_locked("segment " + segment->file->path.filename().string() + ": record " +
                                std::to_string(result.header.sequence) + " failed its checksum; skipped");
          }
          consume_record_locked(result.header.sequence, result.header.span_count, result.next_offset - offset,
                                result.next_offset);
          continue;
        case SegmentReader::Status::BadHeader: {
          // Damaged header: the records up to the next valid header are lost.
          const std::uint64_t next_offset = resync_at.value_or(end);
          std::uint64_t next_sequence = 0;
          if (resync_header) next_sequence = resync_header->sequence;
          else if (segment->sealed && segment->record_count > 0) next_sequence = segment->last_sequence + 1;
          // Count only records not already consumed; an unknown extent counts as one.
          const std::uint64_t lower = std::max(read_last_sequence_, consumed_through_);
          std::uint64_t lost = 1;
          std::uint64_t in_region = 1;
          if (next_sequence != 0) {
            lost = next_sequence > lower + 1 ? next_sequence - lower - 1 : 0;
            in_region = next_sequence > read_last_sequence_ + 1 ? next_sequence - read_last_sequence_ - 1 : 0;
          }
          corrupted_records_ += lost;
          ++state_version_;
          record_error_locked("segment " + segment->file->path.filename().string() + ": damaged record header at offset " +
                              std::to_string(offset) + "; skipped " + std::to_string(next_offset - offset) + " bytes");
          segment->remaining_records = saturating_sub(segment->remaining_records, in_region);
          segment->remaining_bytes = saturating_sub(segment->remaining_bytes, next_offset - offset);
          read_offset_ = next_offset;
          if (next_sequence > 0) {
            read_last_sequence_ = std::max(read_last_sequence_, next_sequence - 1);
            consumed_through_ = std::max(consumed_through_, next_sequence - 1);
          }
          continue;
        }
        case SegmentReader::Status::IoError: {
          const std::string what = errno_text(result.error);
          if (!segment->sealed) {
            ++write_errors_;
            record_error_locked("read " + segment->file->path.string() + ": " + what);
            return std::nullopt;
          }
          corrupted_records_ += segment->remaining_records;
          if (segment->record_count > 0) consumed_through_ = std::max(consumed_through_, segment->last_sequence);
          disk_bytes_ = saturating_sub(disk_bytes_, segment->file_bytes);
          segments_.pop_front();
          position_consumer_locked();
          lock.unlock();
          quarantine(segment->file->path, "read error: " + what);
          lock.lock();
          continue;
        }
        case SegmentReader::Status::PastEnd:
          // Cannot happen for offset < end unless the file shrank: treat the rest as damaged.
          read_offset_ = end;
          continue;
      }
    }
    if (closed_) return std::nullopt;
    if (records_available_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (!segments_.empty() && read_offset_ < segments_.front()->data_end) continue;
      return std::nullopt;
    }
  }
}

void DiskBatchQueue::acknowledge(std::uint64_t sequence) {
  std::vector<std::filesystem::path> to_delete;
  std::uint64_t acknowledged = 0;
  {
    std::unique_lock lock(mutex_);
    if (sequence <= consumed_through_) return;
    for (;;) {
      if (peeked_ && peeked_->sequence <= sequence && !segments_.empty()) {
        consume_record_locked(peeked_->sequence, peeked_->span_count, kRecordHeaderSize + peeked_->payload.size(),
                              peeked_next_offset_);
        peeked_.reset();
      }
      if (consumed_through_ >= sequence) break;
      // Acknowledging past the peeked batch (unusual): read forward to it.
      lock.unlock();
      auto next = peek(std::chrono::milliseconds(0));
      lock.lock();
      if (!next || next->sequence > sequence) break;
    }
    reap_consumed_front_locked(to_delete);
    acknowledged = consumed_through_;
  }
  // The acknowledgement is on record before any file goes, so a crash in between can never
  // leave the read position behind a deleted record.
  append_ack_record(acknowledged);
  delete_files(to_delete);
}

void DiskBatchQueue::append_ack_record(std::uint64_t sequence) {
  std::lock_guard ack_lock(ack_mutex_);
  const auto path = segment_dir_ / queue::kAckLogName;
  if (ack_log_bytes_ >= kAckLogCompactBytes || !ack_fd_) {
    // Start a fresh log holding just this acknowledgement, swapped in atomically.
    auto temporary = path;
    temporary += ".tmp";
    const auto record = queue::encode_ack(sequence);
    queue::UniqueFd fresh(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (fresh && queue::pwrite_fully(fresh.get(), record.data(), record.size(), 0) && ::fdatasync(fresh.get()) == 0 &&
        ::rename(temporary.c_str(), path.c_str()) == 0) {
      queue::fsync_directory(segment_dir_);
      ack_fd_ = std::move(fresh);
      ack_log_bytes_ = record.size();
      ack_dirty_ = false;
      return;
    }
    std::lock_guard lock(mutex_);
    ++write_errors_;
    record_error_locked("cannot rewrite " + path.string() + ": " + errno_text(errno));
    if (!ack_fd_) return;
  }
  const auto record = queue::encode_ack(sequence);
  if (!queue::pwrite_fully(ack_fd_.get(), record.data(), record.size(), ack_log_bytes_)) {
    const int error = errno;
    [[maybe_unused]] int ignored = ::ftruncate(ack_fd_.get(), static_cast<off_t>(ack_log_bytes_));
    std::lock_guard lock(mutex_);
    ++write_errors_;
    record_error_locked("append to " + path.string() + ": " + errno_text(error) +
                        " (read position may repeat after a restart)");
    return;
  }
  ack_log_bytes_ += record.size();
  // Even with fsync: always the ack log is synced by the flusher, not here: losing the last
  // acknowledgements to a power cut only repeats batches (at-least-once), and a per-ack
  // fdatasync would cap draining at the disk's sync rate (~150/s on a VM disk).
  ack_dirty_ = true;
}

QueueStats DiskBatchQueue::stats() const { return disk_stats(); }

DiskQueueStats DiskBatchQueue::disk_stats() const {
  DiskQueueStats stats;
  std::lock_guard lock(mutex_);
  for (const auto& segment : segments_) {
    stats.depth_batches += segment->remaining_records;
    stats.depth_spans += segment->remaining_spans;
    stats.depth_bytes += segment->remaining_bytes;
  }
  if (peeked_ && peeked_->sequence > consumed_through_) {
    stats.oldest_age_nanos = saturating_sub(unix_nanos_now(), peeked_->enqueued_unix_nanos);
  } else if (!segments_.empty()) {
    // Oldest unconsumed record: the first valid header at or after the read position.
    for (std::size_t i = 0; i < segments_.size(); ++i) {
      const auto& segment = *segments_[i];
      const std::uint64_t from = i == 0 ? read_offset_ : kSegmentHeaderSize;
      if (from >= segment.data_end) continue;
      SegmentReader reader(segment.file->fd.get());
      auto result = reader.read(from, segment.data_end, nullptr);
      if (result.status == SegmentReader::Status::Ok)
        stats.oldest_age_nanos = saturating_sub(unix_nanos_now(), result.header.enqueued_unix_nanos);
      break;
    }
  }
  stats.dropped_batches = dropped_batches_;
  stats.dropped_spans = dropped_spans_;
  stats.corrupted_records = corrupted_records_;
  stats.write_errors = write_errors_;
  stats.disk_bytes = disk_bytes_;
  stats.segments = segments_.size();
  stats.quarantined_segments = quarantined_segments_;
  stats.torn_tails_truncated = torn_tails_truncated_;
  stats.acknowledged_sequence = consumed_through_;
  stats.last_error = last_error_;
  stats.last_export_error = last_export_error_;
  stats.next_sequence = next_sequence_;
  return stats;
}

void DiskBatchQueue::set_last_export_error(std::string message) {
  std::lock_guard lock(mutex_);
  if (message == last_export_error_) return;
  last_export_error_ = std::move(message);
  ++state_version_;
}

void DiskBatchQueue::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  records_available_.notify_all();
}

// ---------------------------------------------------------------------------------------
// Durability in the background

void DiskBatchQueue::flusher_loop() {
  // Data is synced every fsync interval (every second for the ack log under `always`); the
  // counters for `queue status` are persisted at least every second whatever the interval.
  const auto sync_period =
      config_.fsync == FsyncMode::Interval ? config_.fsync_interval : std::chrono::milliseconds(1000);
  const auto tick = std::min(sync_period, std::chrono::milliseconds(1000));
  auto next_sync = std::chrono::steady_clock::now() + sync_period;
  std::unique_lock lock(flusher_mutex_);
  while (!stop_flusher_) {
    flusher_wake_.wait_for(lock, tick, [this] { return stop_flusher_; });
    if (stop_flusher_) break;
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_sync) {
      flush_once(false);
      next_sync = now + sync_period;
    } else {
      std::lock_guard flushing(flush_mutex_);
      write_state_file(config_.fsync != FsyncMode::Never);
    }
    lock.lock();
  }
}

void DiskBatchQueue::sync() { flush_once(true); }

void DiskBatchQueue::flush_once(bool force) {
  std::lock_guard flushing(flush_mutex_);
  if (config_.fsync == FsyncMode::Interval || force) {
    std::vector<std::shared_ptr<SegmentFile>> files;
    {
      std::lock_guard lock(mutex_);
      files.swap(pending_sync_);
      if (force) {
        for (const auto& segment : segments_) files.push_back(segment->file);
      } else if (!segments_.empty()) {
        files.push_back(segments_.back()->file);
      }
    }
    for (const auto& file : files) {
      if (!file->dirty.exchange(false) && !force) continue;
      if (::fdatasync(file->fd.get()) != 0) {
        std::lock_guard lock(mutex_);
        ++write_errors_;
        record_error_locked("fdatasync " + file->path.string() + ": " + errno_text(errno));
      }
    }
    if (directory_dirty_.exchange(false) || force) queue::fsync_directory(segment_dir_);
  }
  if (config_.fsync != FsyncMode::Never || force) {
    std::lock_guard ack_lock(ack_mutex_);
    if (ack_fd_ && (ack_dirty_ || force)) {
      ack_dirty_ = false;
      if (::fdatasync(ack_fd_.get()) != 0) {
        std::lock_guard lock(mutex_);
        ++write_errors_;
        record_error_locked("fdatasync " + (segment_dir_ / queue::kAckLogName).string() + ": " + errno_text(errno));
      }
    }
  }
  write_state_file(config_.fsync != FsyncMode::Never || force);
}

void DiskBatchQueue::write_state_file(bool durable) {
  queue::PersistedState state;
  std::uint64_t version = 0;
  {
    std::lock_guard lock(mutex_);
    version = state_version_;
    if (version == persisted_state_version_) return;
    state.dropped_batches = dropped_batches_;
    state.dropped_spans = dropped_spans_;
    state.corrupted_records = corrupted_records_;
    state.write_errors = write_errors_;
    state.quarantined_segments = quarantined_segments_;
    state.torn_tails_truncated = torn_tails_truncated_;
    state.last_error = last_error_;
    state.last_export_error = last_export_error_;
  }
  state.updated_unix_nanos = unix_nanos_now();
  if (queue::write_state_file(segment_dir_ / queue::kStateFileName, state, durable)) {
    std::lock_guard lock(mutex_);
    persisted_state_version_ = std::max(persisted_state_version_, version);
  }
}

}  // namespace edgetrace
