// The persistent spill queue: an append-only segment log in one directory (format and rules
// in docs/queue.md). One producer thread pushes; one consumer thread peeks and acknowledges.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "queue/batch_queue.h"
#include "queue/queue_config.h"
#include "queue/unique_fd.h"

namespace edgetrace {

// The queue directory could not be opened (not creatable, or locked by another process).
class QueueOpenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// QueueStats plus what only the disk queue knows.
struct DiskQueueStats : QueueStats {
  std::uint64_t disk_bytes = 0;  // all segment files, including acknowledged records not yet deleted
  std::uint64_t segments = 0;
  std::uint64_t quarantined_segments = 0;
  std::uint64_t torn_tails_truncated = 0;
  std::uint64_t acknowledged_sequence = 0;  // highest sequence consumed (acked, dropped or skipped)
  std::uint64_t next_sequence = 0;
  std::string last_error;
  std::string last_export_error;
};

class DiskBatchQueue final : public BatchQueue {
 public:
  // Recovers whatever the directory holds (see docs/queue.md "Recovery") and locks it.
  // Throws QueueOpenError (directory unusable or in use) or ConfigError (bad config).
  explicit DiskBatchQueue(QueueConfig config);
  ~DiskBatchQueue() override;
  DiskBatchQueue(const DiskBatchQueue&) = delete;
  DiskBatchQueue& operator=(const DiskBatchQueue&) = delete;

  bool push(std::string payload, std::uint32_t span_count) override;
  std::optional<QueuedBatch> peek(std::chrono::milliseconds wait) override;
  void acknowledge(std::uint64_t sequence) override;
  [[nodiscard]] QueueStats stats() const override;
  void close() override;

  [[nodiscard]] DiskQueueStats disk_stats() const;
  void set_last_export_error(std::string message);
  // Makes everything written so far durable now (whatever the fsync policy) and persists the
  // counters; also done at destruction.
  void sync();

  [[nodiscard]] const QueueConfig& config() const { return config_; }

 private:
  struct SegmentFile;
  struct Segment;

  void recover();
  void position_consumer_locked();
  std::shared_ptr<Segment> create_segment(std::uint64_t first_sequence);
  bool roll_active_segment();
  void drop_front_segment_locked(std::vector<std::filesystem::path>& to_delete);
  void reap_consumed_front_locked(std::vector<std::filesystem::path>& to_delete);
  void consume_record_locked(std::uint64_t sequence, std::uint32_t span_count, std::uint64_t record_bytes,
                             std::uint64_t next_offset);
  void quarantine(const std::filesystem::path& path, const std::string& why);
  void record_error_locked(const std::string& message);
  void record_drop_locked(std::uint64_t batches, std::uint64_t spans);
  void append_ack_record(std::uint64_t sequence);
  void flusher_loop();
  void flush_once(bool force);
  void write_state_file(bool durable);
  static void delete_files(const std::vector<std::filesystem::path>& paths);

  QueueConfig config_;
  std::filesystem::path segment_dir_;
  queue::UniqueFd lock_fd_;

  // Producer-owned (push thread), guarded by producer_mutex_ against close()/sync().
  std::mutex producer_mutex_;
  std::shared_ptr<Segment> active_;
  std::uint64_t next_sequence_ = 1;  // written under mutex_ too, so stats() can read it

  // Shared state.
  mutable std::mutex mutex_;
  std::condition_variable records_available_;
  std::deque<std::shared_ptr<Segment>> segments_;
  std::uint64_t disk_bytes_ = 0;
  std::uint64_t consumed_through_ = 0;  // highest sequence acked, dropped or skipped as corrupt
  std::uint64_t read_offset_ = 0;       // in segments_.front()
  std::uint64_t read_last_sequence_ = 0;  // last sequence seen in segments_.front()
  std::uint64_t front_generation_ = 0;  // bumps whenever segments_.front() changes
  std::optional<QueuedBatch> peeked_;
  std::uint64_t peeked_next_offset_ = 0;
  bool closed_ = false;
  std::vector<std::shared_ptr<SegmentFile>> pending_sync_;
  std::atomic<bool> directory_dirty_{false};  // a segment was created since the last directory fsync
  std::uint64_t dropped_batches_ = 0;
  std::uint64_t dropped_spans_ = 0;
  std::uint64_t corrupted_records_ = 0;
  std::uint64_t write_errors_ = 0;
  std::uint64_t quarantined_segments_ = 0;
  std::uint64_t torn_tails_truncated_ = 0;
  std::string last_error_;
  std::string last_export_error_;
  std::uint64_t state_version_ = 1;  // bumps on every counter change; the flusher persists on change

  // The ack log (consumer-owned; the flusher syncs it).
  std::mutex ack_mutex_;
  queue::UniqueFd ack_fd_;
  std::uint64_t ack_log_bytes_ = 0;
  bool ack_dirty_ = false;

  std::mutex flush_mutex_;  // one flush at a time (flusher thread vs sync())
  std::mutex flusher_mutex_;
  std::condition_variable flusher_wake_;
  bool stop_flusher_ = false;
  std::uint64_t persisted_state_version_ = 0;
  std::thread flusher_;
};

}  // namespace edgetrace
