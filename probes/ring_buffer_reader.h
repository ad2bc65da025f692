// Drains the kernel's exchange ring buffer on the caller's thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>

struct ring_buffer;

namespace edgetrace {

class RingBufferReader {
 public:
  using Handler = std::function<void(std::span<const std::byte>)>;
  RingBufferReader(int map_fd, Handler handler);
  ~RingBufferReader();
  RingBufferReader(const RingBufferReader&) = delete;
  RingBufferReader& operator=(const RingBufferReader&) = delete;

  // Waits up to `timeout` for records and hands each to the handler; returns how many.
  int poll(std::chrono::milliseconds timeout);
  // Hands over everything already in the buffer without waiting.
  int drain();

 private:
  struct Deleter {
    void operator()(ring_buffer* rb) const;
  };
  static int on_record(void* context, void* data, std::size_t size);

  Handler handler_;
  std::unique_ptr<ring_buffer, Deleter> ring_;
};

}  // namespace edgetrace
