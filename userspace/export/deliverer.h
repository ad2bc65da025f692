// The single delivery thread: oldest batch first, one batch in flight, so the receiver
// sees batches in order and a batch leaves the queue only once it was accepted or
// permanently refused (at-least-once delivery).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <string>
#include <mutex>
#include <random>
#include <thread>

#include "export/export_counters.h"
#include "export/exporter_config.h"
#include "export/otlp_sender.h"
#include "queue/batch_queue.h"

namespace edgetrace {

class Deliverer {
 public:
  Deliverer(BatchQueue& queue, OtlpSender& sender, ExportCounters& counters, OtlpRetryConfig retry,
            std::chrono::milliseconds drain_timeout);
  ~Deliverer();  // stop()
  Deliverer(const Deliverer&) = delete;
  Deliverer& operator=(const Deliverer&) = delete;

  // Called on the delivery thread with each failed attempt's message (e.g. for
  // DiskBatchQueue::set_last_export_error). Set before start().
  void set_error_observer(std::function<void(const std::string&)> observer) { error_observer_ = std::move(observer); }

  void start();
  // Keeps delivering for up to drain_timeout (until the queue is empty), then cancels the
  // send in flight and returns. Undelivered batches stay in the queue. Idempotent.
  void stop();

  // The delay before retry number `attempt` (0-based) without a server hint: exponential
  // from initial_backoff, capped at max_backoff, with "equal jitter" (half fixed, half
  // random) so many agents do not retry in lockstep.
  static std::chrono::milliseconds backoff_delay(const OtlpRetryConfig& retry, unsigned attempt, std::mt19937_64& rng);

 private:
  void run();
  void deliver(const QueuedBatch& batch);
  // False once stopping and the drain deadline has passed.
  bool sleep_for_retry(std::chrono::milliseconds delay);
  bool drain_expired_locked() const;

  BatchQueue& queue_;
  OtlpSender& sender_;
  ExportCounters& counters_;
  const OtlpRetryConfig retry_;
  const std::chrono::milliseconds drain_timeout_;
  std::mt19937_64 rng_;
  std::function<void(const std::string&)> error_observer_;

  std::mutex stop_mutex_;  // serializes stop() callers (e.g. an explicit stop and the destructor)
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point drain_deadline_{};
  std::thread thread_;
};

}  // namespace edgetrace
