#include "pipeline/capture_pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace edgetrace {

CapturePipeline::CapturePipeline(CaptureProbes& probes, ExchangeStitcher& stitcher, SpanSink& sink, PipelineOptions options)
    : probes_(probes),
      stitcher_(stitcher),
      sink_(sink),
      options_(std::move(options)),
      reader_(probes.ring_buffer_fd(), [this](std::span<const std::byte> record) { stitcher_.on_record(record); }) {}

CapturePipeline::~CapturePipeline() { stop(); }

void CapturePipeline::start() {
  thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

void CapturePipeline::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  thread_.join();
  reader_.drain();
  stitcher_.deliver();
  sink_.flush();
  spdlog::info("{}", status_line());
}

std::string CapturePipeline::status_line() const {
  const auto kernel = probes_.counters();
  const auto& stitch = stitcher_.counters();
  auto line = fmt::format(
      "status: exchanges={} spans={} ring_buffer_drops={} unsampled={} injections_planned={} non_http_connections={} "
      "connection_table_full={} capture_faults={} unparsable={} response_unknown={} request_beyond_capture={} truncated_request_captures={} malformed_records={}",
      kernel.exchanges_emitted, stitch.spans, kernel.ring_buffer_drops, kernel.unsampled, kernel.injections_planned,
      kernel.non_http_connections,
      kernel.connection_table_full, kernel.capture_faults, stitch.unparsable_exchanges, stitch.responses_unknown,
      stitch.requests_beyond_capture, stitch.truncated_request_captures, stitch.malformed_records);
  if (options_.extra_status) line += " " + options_.extra_status();
  return line;
}

void CapturePipeline::run(std::stop_token stop) {
  using clock = std::chrono::steady_clock;
  auto last_flush = clock::now();
  auto last_status = clock::now();
  auto last_drain = clock::now();
  auto wait = pacer_.next_wait(0, {});
  while (!stop.stop_requested()) {
    std::size_t records = 0;
    try {
      // The kernel wakes us only when the ring fills up; otherwise drain after this wait.
      records += static_cast<std::size_t>(reader_.poll(wait));
      records += static_cast<std::size_t>(reader_.drain());
      stitcher_.deliver();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
    const auto now = clock::now();
    wait = pacer_.next_wait(records, now - last_drain);
    last_drain = now;
    if (now - last_flush >= options_.flush_interval) {
      sink_.flush();
      last_flush = now;
    }
    if (options_.status_interval.count() > 0 && now - last_status >= options_.status_interval) {
      spdlog::info("{}", status_line());
      last_status = now;
    }
  }
}

}  // namespace edgetrace
