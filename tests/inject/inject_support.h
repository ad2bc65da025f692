// Real loopback plumbing for the injector tests: a scratch cgroup the test process moves
// into, a TCP server that records every byte of every connection, a blocking client, and
// plan helpers that write et_inject_plan entries the way the capture program does.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "edgetrace.h"

namespace edgetrace::testing {

using edgetrace::UniqueFd;

// A fresh cgroup v2 directory. enter() moves this whole process (every thread) into it; the
// destructor moves the process back to where it was and removes the directory.
class ScratchCgroup {
 public:
  ScratchCgroup();
  ~ScratchCgroup();
  ScratchCgroup(const ScratchCgroup&) = delete;
  ScratchCgroup& operator=(const ScratchCgroup&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  void enter();

 private:
  std::filesystem::path path_;
  std::filesystem::path original_;
  bool entered_ = false;
};

// Accepts on 127.0.0.1 or ::1 and records each connection's bytes until the peer closes.
class RecordingServer {
 public:
  explicit RecordingServer(int family);
  ~RecordingServer();
  RecordingServer(const RecordingServer&) = delete;
  RecordingServer& operator=(const RecordingServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] int family() const { return family_; }
  // Everything the connection whose client side is bound to `client_port` sent, once it has
  // closed; nullopt if it did not close within the timeout.
  std::optional<std::string> received_from(std::uint16_t client_port,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Any one closed connection's bytes (for clients whose port the test does not know).
  std::optional<std::string> received_from_any(std::chrono::milliseconds timeout = std::chrono::seconds(20));

 private:
  void accept_loop();
  void record(UniqueFd connection, std::uint16_t peer_port);

  int family_;
  UniqueFd listener_;
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::condition_variable finished_;
  std::map<std::uint16_t, std::string> closed_;
  std::vector<std::jthread> readers_;
  std::jthread acceptor_;
  bool stopping_ = false;
};

enum class SendCall { write, send, writev, sendmsg };

// A blocking TCP client connection to a RecordingServer.
class Client {
 public:
  Client(int family, std::uint16_t port);
  [[nodiscard]] std::uint16_t local_port() const { return local_port_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  // One syscall; returns what it returned (-errno on failure). writev/sendmsg split the
  // bytes into up to `pieces` iovecs.
  long send_once(std::string_view bytes, SendCall call = SendCall::write, std::size_t pieces = 1);
  void close() { fd_.reset(); }

 private:
  UniqueFd fd_;
  std::uint16_t local_port_ = 0;
};

// The key the sk_msg program looks plans up by: this thread's bpf_get_current_pid_tgid().
std::uint64_t current_pid_tgid();

std::string random_traceparent_header(std::mt19937_64& rng);
// A plan for `send_bytes` inserting `header` after the first "\r\n" (or at `offset`).
et_inject_plan make_plan(std::string_view send_bytes, std::string_view header,
                         std::optional<std::uint32_t> offset = std::nullopt);
void put_plan(int map_fd, const et_inject_plan& plan);
bool plan_present(int map_fd);
void remove_plan(int map_fd);

// send_bytes with the plan's header inserted at its offset.
std::string with_header(std::string_view send_bytes, const et_inject_plan& plan);

}  // namespace edgetrace::testing
