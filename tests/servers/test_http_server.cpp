// A small HTTP/1.1 server for the integration tests: one thread per connection, keep-alive,
// pipelining (every complete request in the buffer is answered, in order), and endpoints
// that make spans easy to assert on:
//   /slow?ms=N     answers after N milliseconds
//   /trickle?ms=N  writes the head (with Content-Length), then the body N milliseconds later
//   /chunked?ms=N  writes a chunked answer in two writes N milliseconds apart
//   /shape/lower-length?ms=N   like /trickle, its head's field names in lower case
//   /shape/chunked-over-length?ms=N  a chunked answer whose head also carries a
//                  Content-Length (chunked wins), its first write ending exactly that many
//                  bytes into the body
//   /status/N      answers with status N
//   /echo          answers with the request body (POST, Content-Length or chunked)
//   /raw           answers with the whole request as received: head, framing and body
//   /thread        answers with the id of the thread serving the connection
//   anything else  200 "hello"
// With --coalesce, the answers to pipelined requests read together go out in one write.
// With --writev, every write is a writev() with each response's head and body in buffers of
// their own (as nginx writes them).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto n = ::write(fd, data.data(), data.size());
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::size_t> header_number(std::string_view head, std::string_view name) {
  for (std::size_t pos = head.find("\r\n"); pos != std::string_view::npos; pos = head.find("\r\n", pos + 2)) {
    const auto line = head.substr(pos + 2, head.find("\r\n", pos + 2) - pos - 2);
    if (line.size() > name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0 && line[name.size()] == ':') {
      auto value = line.substr(name.size() + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      std::size_t n = 0;
      std::from_chars(value.data(), value.data() + value.size(), n);
      return n;
    }
  }
  return std::nullopt;
}

bool has_chunked(std::string_view head) {
  std::string lower(head);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("transfer-encoding: chunked") != std::string::npos;
}

// Length of the chunked body at the start of `data` and its decoded bytes, or nullopt if incomplete.
std::optional<std::size_t> chunked_length(std::string_view data, std::string& decoded) {
  std::size_t pos = 0;
  decoded.clear();
  for (;;) {
    const auto eol = data.find("\r\n", pos);
    if (eol == std::string_view::npos) return std::nullopt;
    std::size_t size = 0;
    std::from_chars(data.data() + pos, data.data() + eol, size, 16);
    pos = eol + 2;
    if (size == 0) {
      const auto end = data.find("\r\n", pos);  // no trailers in the tests
      if (end == std::string_view::npos) return std::nullopt;
      return end + 2;
    }
    if (data.size() < pos + size + 2) return std::nullopt;
    decoded.append(data.substr(pos, size));
    pos += size + 2;
  }
}

// Set once by main, before any connection is served.
bool use_writev = false;

// One writev() of `data`, a head and a body in buffers of their own for each response in it
// (Content-Length gives where a body ends; anything else runs to the end). Whatever a short
// write leaves goes out with write().
bool writev_responses(int fd, std::string_view data) {
  std::vector<iovec> pieces;
  for (std::size_t pos = 0; pos < data.size() && pieces.size() + 2 <= IOV_MAX;) {
    const auto head_end = data.find("\r\n\r\n", pos);
    std::size_t end = data.size();
    if (head_end != std::string_view::npos) {
      const auto head = data.substr(pos, head_end + 2 - pos);
      pieces.push_back({const_cast<char*>(head.data()), head.size() + 2});
      pos = head_end + 4;
      if (const auto length = header_number(head, "content-length")) end = std::min(end, pos + *length);
    }
    if (end > pos) pieces.push_back({const_cast<char*>(data.data() + pos), end - pos});
    pos = end;
  }
  const auto n = ::writev(fd, pieces.data(), static_cast<int>(pieces.size()));
  if (n <= 0) return false;
  return write_all(fd, data.substr(static_cast<std::size_t>(n)));
}

bool send_out(int fd, std::string_view data) {
  if (use_writev && !data.empty()) return writev_responses(fd, data);
  return write_all(fd, data);
}

std::string response(int status, std::string_view body, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + (status < 400 ? " OK" : " Error") + "\r\n";
  out += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

void serve(int client, bool coalesce) {
  Fd fd(client);
  const int one = 1;
  setsockopt(fd.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::string buffer;
  char chunk[65536];
  for (;;) {
    const auto n = ::read(fd.fd, chunk, sizeof(chunk));
    if (n <= 0) return;
    buffer.append(chunk, static_cast<std::size_t>(n));
    std::string pending_output;
    for (;;) {
      const auto head_end = buffer.find("\r\n\r\n");
      if (head_end == std::string::npos) {
        if (buffer.size() > 65536 || (buffer.size() >= 4 && !std::isupper(static_cast<unsigned char>(buffer[0])))) {
          send_out(fd.fd, response(400, "bad request", false));
          return;
        }
        break;
      }
      const std::string_view head(buffer.data(), head_end + 2);
      std::string body;
      std::size_t consumed = head_end + 4;
      if (has_chunked(head)) {
        const auto length = chunked_length(std::string_view(buffer).substr(consumed), body);
        if (!length) break;
        consumed += *length;
      } else if (const auto length = header_number(head, "content-length")) {
        if (buffer.size() < consumed + *length) break;
        body = buffer.substr(consumed, *length);
        consumed += *length;
      }
      const auto line_end = head.find("\r\n");
      const auto request_line = head.substr(0, line_end);
      const auto target_start = request_line.find(' ') + 1;
      const auto target = request_line.substr(target_start, request_line.rfind(' ') - target_start);
      const bool keep_alive = head.find("Connection: close") == std::string_view::npos;

      int ms = 100;
      if (const auto at = target.find("ms="); at != std::string_view::npos)
        std::from_chars(target.data() + at + 3, target.data() + target.size(), ms);
      const auto pause = [ms] { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };

      std::string out;
      if (target.starts_with("/slow")) {
        pause();
        out = response(200, "slow", keep_alive);
      } else if (target.starts_with("/trickle") || target.starts_with("/chunked") || target.starts_with("/shape/")) {
        // Two writes with a pause between them; earlier answers go out first.
        std::string first, second;
        const std::string_view close_field = keep_alive ? "" : "connection: close\r\n";
        if (target.starts_with("/shape/lower-length")) {
          first = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n" + std::string(close_field) + "\r\n";
          second = "trickled\n";
        } else if (target.starts_with("/shape/chunked-over-length")) {
          first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n" + std::string(close_field) +
                  "\r\n5\r\nhe";
          second = "llo\r\n0\r\n\r\n";
        } else if (target.starts_with("/trickle")) {
          constexpr std::string_view body = "trickled\n";
          first = response(200, body, keep_alive);
          first.resize(first.size() - body.size());
          second = body;
        } else {
          first = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n";
          if (!keep_alive) first += "Connection: close\r\n";
          first += "\r\n5\r\nhello\r\n";
          second = "0\r\n\r\n";
        }
        if (!send_out(fd.fd, pending_output + first)) return;
        pending_output.clear();
        pause();
        if (!send_out(fd.fd, second)) return;
      } else if (target.starts_with("/status/")) {
        int status = 200;
        std::from_chars(target.data() + 8, target.data() + target.size(), status);
        out = response(status, "status", keep_alive);
      } else if (target.starts_with("/raw")) {
        out = response(200, std::string_view(buffer).substr(0, consumed), keep_alive);
      } else if (target.starts_with("/thread")) {
        out = response(200, std::to_string(gettid()), keep_alive);
      } else if (target.starts_with("/echo")) {
        out = response(200, body, keep_alive);
      } else {
        out = response(200, "hello", keep_alive);
      }
      buffer.erase(0, consumed);
      if (coalesce) {
        pending_output += out;
      } else if (!send_out(fd.fd, out)) {
        return;
      }
      if (!keep_alive) {
        send_out(fd.fd, pending_output);
        return;
      }
    }
    if (!pending_output.empty() && !send_out(fd.fd, pending_output)) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [--coalesce] [--ipv6] [--writev]\n", argv[0]);
    return 2;
  }
  // A clean exit on SIGINT/SIGTERM, so `edgetrace run` passing the signal on reports 0.
  std::signal(SIGINT, [](int) { _exit(0); });
  std::signal(SIGTERM, [](int) { _exit(0); });
  const int port = std::atoi(argv[1]);
  bool coalesce = false, ipv6 = false;
  for (int i = 2; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--coalesce") coalesce = true;
    if (std::string_view(argv[i]) == "--ipv6") ipv6 = true;
    if (std::string_view(argv[i]) == "--writev") use_writev = true;
  }
  Fd listener(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0));
  const int one = 1;
  setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int bound;
  if (ipv6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(static_cast<std::uint16_t>(port));
    address.sin6_addr = in6addr_loopback;
    bound = ::bind(listener.fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bound = ::bind(listener.fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  }
  if (bound != 0 || ::listen(listener.fd, 128) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  std::printf("listening on %d\n", port);
  std::fflush(stdout);
  for (;;) {
    const int client = ::accept(listener.fd, nullptr, nullptr);
    if (client < 0) continue;
    std::thread(serve, client, coalesce).detach();
  }
}
