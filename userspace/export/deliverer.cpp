#include "export/deliverer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace edgetrace {

Deliverer::Deliverer(BatchQueue& queue, OtlpSender& sender, ExportCounters& counters, OtlpRetryConfig retry,
                     std::chrono::milliseconds drain_timeout)
    : queue_(queue), sender_(sender), counters_(counters), retry_(retry), drain_timeout_(drain_timeout),
      rng_(std::random_device{}()) {}

Deliverer::~Deliverer() { stop(); }

void Deliverer::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void Deliverer::stop() {
  std::lock_guard one_stopper(stop_mutex_);
  std::unique_lock lock(mutex_);
  if (!thread_.joinable()) return;
  if (!stopping_) {
    stopping_ = true;
    drain_deadline_ = std::chrono::steady_clock::now() + drain_timeout_;
  }
  wake_.notify_all();
  // A send can outlast the drain deadline (its own timeout is longer): cut it short then.
  if (!wake_.wait_until(lock, drain_deadline_, [this] { return finished_; })) {
    lock.unlock();
    sender_.cancel();
    lock.lock();
  }
  lock.unlock();
  thread_.join();
  const auto left = queue_.stats();
  if (left.depth_batches != 0)
    spdlog::warn("otlp deliverer stopped with {} batches ({} spans) still queued", left.depth_batches, left.depth_spans);
}

bool Deliverer::drain_expired_locked() const {
  return stopping_ && std::chrono::steady_clock::now() >= drain_deadline_;
}

std::chrono::milliseconds Deliverer::backoff_delay(const OtlpRetryConfig& retry, unsigned attempt, std::mt19937_64& rng) {
  auto delay = retry.initial_backoff;
  for (unsigned i = 0; i < attempt && delay < retry.max_backoff; ++i) delay *= 2;
  delay = std::min(delay, retry.max_backoff);
  const auto half = delay.count() / 2;
  std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(0, delay.count() - half));
  return std::chrono::milliseconds(half + jitter(rng));
}

bool Deliverer::sleep_for_retry(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  const auto until = std::chrono::steady_clock::now() + delay;
  for (;;) {
    const auto limit = stopping_ ? std::min(until, drain_deadline_) : until;
    if (std::chrono::steady_clock::now() >= limit) break;
    wake_.wait_until(lock, limit);
  }
  return !drain_expired_locked();
}

void Deliverer::run() {
  for (;;) {
    bool stopping = false;
    {
      std::lock_guard lock(mutex_);
      if (drain_expired_locked()) break;
      stopping = stopping_;
    }
    const auto peek_start = std::chrono::steady_clock::now();
    auto batch = queue_.peek(stopping ? std::chrono::milliseconds(0) : std::chrono::milliseconds(100));
    if (!batch) {
      if (stopping) break;  // drained
      // A closed queue answers at once; do not spin on it.
      if (std::chrono::steady_clock::now() - peek_start < std::chrono::milliseconds(10)) {
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_; });
      }
      continue;
    }
    deliver(*batch);
    std::lock_guard lock(mutex_);
    if (drain_expired_locked()) break;
  }
  std::lock_guard lock(mutex_);
  finished_ = true;
  wake_.notify_all();
}

void Deliverer::deliver(const QueuedBatch& batch) {
  const auto first_attempt = std::chrono::steady_clock::now();
  for (unsigned attempt = 0;; ++attempt) {
    SendResult result;
    try {
      result = sender_.send(batch.payload);
    } catch (const std::exception& e) {
      result = SendResult::retry(std::string("send threw: ") + e.what());
    }

    if (result.ok()) {
      const auto rejected = static_cast<std::uint64_t>(std::clamp<std::int64_t>(result.rejected_spans, 0, batch.span_count));
      counters_.exported_spans += batch.span_count - rejected;
      counters_.exported_batches += 1;
      if (result.rejected_spans != 0 || !result.message.empty()) {
        counters_.rejected_spans += rejected;
        spdlog::warn("otlp partial success: receiver rejected {} of {} spans: {}", result.rejected_spans,
                     batch.span_count, result.message);
      }
      queue_.acknowledge(batch.sequence);
      return;
    }
    if (error_observer_) error_observer_(result.message);
    if (result.outcome == SendResult::Outcome::Permanent) {
      counters_.failed_spans += batch.span_count;
      counters_.failed_batches += 1;
      spdlog::error("otlp export of {} spans failed permanently ({}): {}", batch.span_count, sender_.describe(),
                    result.message);
      queue_.acknowledge(batch.sequence);
      return;
    }

    const auto elapsed = std::chrono::steady_clock::now() - first_attempt;
    if (retry_.max_elapsed.count() != 0 && elapsed >= retry_.max_elapsed) {
      counters_.dropped_spans += batch.span_count;
      spdlog::error("otlp export of {} spans dropped after retrying for {} ms: {}", batch.span_count,
                    std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), result.message);
      queue_.acknowledge(batch.sequence);
      return;
    }
    const auto delay = result.retry_after ? *result.retry_after : backoff_delay(retry_, attempt, rng_);
    counters_.retries += 1;
    spdlog::warn("otlp export of {} spans will be retried in {} ms ({}): {}", batch.span_count, delay.count(),
                 sender_.describe(), result.message);
    if (!sleep_for_retry(delay)) return;  // stopping: the batch stays queued
  }
}

}  // namespace edgetrace
