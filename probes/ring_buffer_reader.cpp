#include "ring_buffer_reader.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace edgetrace {

void RingBufferReader::Deleter::operator()(ring_buffer* rb) const { ring_buffer__free(rb); }

RingBufferReader::RingBufferReader(int map_fd, Handler handler) : handler_(std::move(handler)) {
  ring_.reset(ring_buffer__new(map_fd, &RingBufferReader::on_record, this, nullptr));
  if (!ring_) throw std::runtime_error(std::string("cannot map the ring buffer: ") + std::strerror(errno));
}

RingBufferReader::~RingBufferReader() = default;

int RingBufferReader::on_record(void* context, void* data, std::size_t size) {
  auto* self = static_cast<RingBufferReader*>(context);
  self->handler_(std::span<const std::byte>(static_cast<const std::byte*>(data), size));
  return 0;
}

int RingBufferReader::poll(std::chrono::milliseconds timeout) {
  const int n = ring_buffer__poll(ring_.get(), static_cast<int>(timeout.count()));
  if (n < 0 && n != -EINTR) throw std::runtime_error(std::string("ring buffer poll failed: ") + std::strerror(-n));
  return n < 0 ? 0 : n;
}

int RingBufferReader::drain() {
  const int n = ring_buffer__consume(ring_.get());
  return n < 0 ? 0 : n;
}

}  // namespace edgetrace
