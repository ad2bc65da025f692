#include "export/batcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

namespace edgetrace {

Batcher::Batcher(BatchQueue& queue, ExportCounters& counters, OtlpBatchConfig config, OtlpEncoder encoder)
    : queue_(queue), counters_(counters), config_(config), encoder_(std::move(encoder)) {
  if (config_.max_spans == 0) throw std::invalid_argument("Batcher: max_spans must be positive");
}

void Batcher::emit_locked(std::span<const Span> spans) {
  std::string payload;
  payload.reserve(spans.size() * 256);
  encoder_.encode_into(spans, payload);
  const auto count = static_cast<std::uint32_t>(spans.size());
  counters_.encoded_spans += count;
  counters_.encoded_bytes += payload.size();
  if (!queue_.push(std::move(payload), count)) counters_.dropped_spans += count;
}

void Batcher::consume(SpanBatch spans) {
  if (spans.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (pending_.empty()) {
    oldest_pending_ = now;
    pending_ = std::move(spans);
  } else {
    pending_.insert(pending_.end(), std::make_move_iterator(spans.begin()), std::make_move_iterator(spans.end()));
  }

  std::size_t cut = 0;
  while (pending_.size() - cut >= config_.max_spans) {
    emit_locked(std::span<const Span>(pending_).subspan(cut, config_.max_spans));
    cut += config_.max_spans;
  }
  if (cut != 0) {
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(cut));
    oldest_pending_ = now;
  }
  if (!pending_.empty() && now - oldest_pending_ >= config_.max_delay) {
    emit_locked(pending_);
    pending_.clear();
  }
}

void Batcher::flush() {
  std::lock_guard lock(mutex_);
  if (pending_.empty()) return;
  emit_locked(pending_);
  pending_.clear();
}

}  // namespace edgetrace
