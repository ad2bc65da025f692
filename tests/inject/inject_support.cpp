#include "inject_support.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "trace_probes.h"

namespace edgetrace::testing {
namespace {

std::string errno_text() { return std::strerror(errno); }

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::filesystem::path own_cgroup2_path() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  throw std::runtime_error("/proc/self/cgroup has no cgroup v2 entry");
}

socklen_t fill_loopback(int family, std::uint16_t port, sockaddr_storage& address) {
  std::memset(&address, 0, sizeof(address));
  if (family == AF_INET) {
    auto& in4 = reinterpret_cast<sockaddr_in&>(address);
    in4.sin_family = AF_INET;
    in4.sin_port = htons(port);
    in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(sockaddr_in);
  }
  auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(port);
  in6.sin6_addr = in6addr_loopback;
  return sizeof(sockaddr_in6);
}

std::uint16_t port_of(const sockaddr_storage& address) {
  return ntohs(address.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(address).sin_port
                                            : reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
}

std::uint16_t local_port_of(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw std::runtime_error("getsockname: " + errno_text());
  return port_of(address);
}

}  // namespace



ScratchCgroup::ScratchCgroup() {
  const auto mount = cgroup2_mount_point();
  original_ = mount / own_cgroup2_path().relative_path();
  path_ = mount / ("edgetrace-inject-test-" + std::to_string(::getpid()));
  std::error_code ec;
  std::filesystem::create_directory(path_, ec);
  if (ec) throw std::runtime_error("cannot create cgroup " + path_.string() + ": " + ec.message());
}

void ScratchCgroup::enter() {
  write_file(path_ / "cgroup.procs", std::to_string(::getpid()));
  entered_ = true;
}

ScratchCgroup::~ScratchCgroup() {
  try {
    if (entered_) write_file(original_ / "cgroup.procs", std::to_string(::getpid()));
  } catch (const std::exception&) {
    // Leave the directory: it cannot be removed while this process is inside.
    return;
  }
  ::rmdir(path_.c_str());
}

RecordingServer::RecordingServer(int family) : family_(family) {
  listener_ = UniqueFd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener_.get() < 0) throw std::runtime_error("socket: " + errno_text());
  const int yes = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  sockaddr_storage address{};
  const socklen_t length = fill_loopback(family, 0, address);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0)
    throw std::runtime_error("bind: " + errno_text());
  if (::listen(listener_.get(), 128) != 0) throw std::runtime_error("listen: " + errno_text());
  port_ = local_port_of(listener_.get());
  acceptor_ = std::jthread([this] { accept_loop(); });
}

RecordingServer::~RecordingServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ::shutdown(listener_.get(), SHUT_RDWR);
  acceptor_ = {};
  readers_.clear();
}

void RecordingServer::accept_loop() {
  for (;;) {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    UniqueFd connection(::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC));
    if (connection.get() < 0) {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    readers_.emplace_back([this, peer_port = port_of(peer), fd = std::make_shared<UniqueFd>(std::move(connection))] {
      record(std::move(*fd), peer_port);
    });
  }
}

void RecordingServer::record(UniqueFd connection, std::uint16_t peer_port) {
  std::string bytes;
  std::vector<char> buffer(256 * 1024);
  for (;;) {
    pollfd waiting{connection.get(), POLLIN, 0};
    const int ready = ::poll(&waiting, 1, 200);
    if (ready == 0) {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      continue;
    }
    const ssize_t n = ::read(connection.get(), buffer.data(), buffer.size());
    if (n > 0) {
      bytes.append(buffer.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  std::lock_guard lock(mutex_);
  closed_[peer_port] = std::move(bytes);
  finished_.notify_all();
}

std::optional<std::string> RecordingServer::received_from(std::uint16_t client_port,
                                                          std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!finished_.wait_for(lock, timeout, [&] { return closed_.contains(client_port); })) return std::nullopt;
  auto node = closed_.extract(client_port);
  return std::move(node.mapped());
}

std::optional<std::string> RecordingServer::received_from_any(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!finished_.wait_for(lock, timeout, [&] { return !closed_.empty(); })) return std::nullopt;
  auto node = closed_.extract(closed_.begin());
  return std::move(node.mapped());
}

Client::Client(int family, std::uint16_t port) {
  fd_ = UniqueFd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd_.get() < 0) throw std::runtime_error("socket: " + errno_text());
  sockaddr_storage address{};
  const socklen_t length = fill_loopback(family, port, address);
  if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0)
    throw std::runtime_error("connect: " + errno_text());
  local_port_ = local_port_of(fd_.get());
}

long Client::send_once(std::string_view bytes, SendCall call, std::size_t pieces) {
  std::vector<iovec> iovecs;
  if (call == SendCall::writev || call == SendCall::sendmsg) {
    pieces = std::clamp<std::size_t>(pieces, 1, std::max<std::size_t>(1, bytes.size()));
    const std::size_t step = bytes.size() / pieces;
    std::size_t at = 0;
    for (std::size_t i = 0; i < pieces; ++i) {
      const std::size_t length = i + 1 == pieces ? bytes.size() - at : step;
      iovecs.push_back(iovec{const_cast<char*>(bytes.data() + at), length});
      at += length;
    }
  }
  ssize_t result = -1;
  switch (call) {
    case SendCall::write:
      result = ::write(fd_.get(), bytes.data(), bytes.size());
      break;
    case SendCall::send:
      result = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      break;
    case SendCall::writev:
      result = ::writev(fd_.get(), iovecs.data(), static_cast<int>(iovecs.size()));
      break;
    case SendCall::sendmsg: {
      msghdr message{};
      message.msg_iov = iovecs.data();
      message.msg_iovlen = iovecs.size();
      result = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);
      break;
    }
  }
  return result < 0 ? -errno : result;
}

std::uint64_t current_pid_tgid() {
  return (static_cast<std::uint64_t>(::getpid()) << 32) | static_cast<std::uint32_t>(::gettid());
}

std::string random_traceparent_header(std::mt19937_64& rng) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string header = "traceparent: 00-";
  for (int i = 0; i < 32; ++i) header += hex[rng() % 16];
  header += '-';
  for (int i = 0; i < 16; ++i) header += hex[rng() % 16];
  header += "-01\r\n";
  return header;
}

et_inject_plan make_plan(std::string_view send_bytes, std::string_view header, std::optional<std::uint32_t> offset) {
  et_inject_plan plan{};
  if (header.size() != ET_TRACEPARENT_HEADER_LEN) throw std::invalid_argument("header must be 70 bytes");
  if (!offset) {
    const auto crlf = send_bytes.find("\r\n");
    if (crlf == std::string_view::npos) throw std::invalid_argument("no request line in the send");
    offset = static_cast<std::uint32_t>(crlf + 2);
  }
  plan.insert_offset = *offset;
  plan.send_length = static_cast<std::uint32_t>(send_bytes.size());
  std::memcpy(plan.first_bytes, send_bytes.data(), std::min(send_bytes.size(), sizeof(plan.first_bytes)));
  std::memcpy(plan.header, header.data(), header.size());
  return plan;
}

void put_plan(int map_fd, const et_inject_plan& plan) {
  const std::uint64_t key = current_pid_tgid();
  if (bpf_map_update_elem(map_fd, &key, &plan, BPF_ANY) != 0)
    throw std::runtime_error("cannot write the plan: " + errno_text());
}

bool plan_present(int map_fd) {
  const std::uint64_t key = current_pid_tgid();
  et_inject_plan plan{};
  return bpf_map_lookup_elem(map_fd, &key, &plan) == 0;
}

void remove_plan(int map_fd) {
  const std::uint64_t key = current_pid_tgid();
  bpf_map_delete_elem(map_fd, &key);
}

std::string with_header(std::string_view send_bytes, const et_inject_plan& plan) {
  std::string expected(send_bytes.substr(0, plan.insert_offset));
  expected.append(reinterpret_cast<const char*>(plan.header), ET_TRACEPARENT_HEADER_LEN);
  expected.append(send_bytes.substr(plan.insert_offset));
  return expected;
}

}  // namespace edgetrace::testing
