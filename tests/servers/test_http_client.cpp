// A raw HTTP/1.1 client for the integration tests, for the cases curl cannot produce:
//   keepalive N PATH     N requests one after another on one connection
//   pipeline N PATH      N requests in a single write, then read N responses
//   split PATH           one request written in three pieces with pauses between
//   statuses N           N requests for /status/<code> with varied codes, in a single write
//   garbage              random bytes, then read whatever comes back
//   post BYTES           one POST /echo with a body of BYTES bytes, response checked
//   post-request-body N  N POST /echo on one connection, each body a GET request's head,
//                        written after its own head and a pause so that it is read apart
//   preexisting PATH     one request, then waits for a line on stdin, then two more
//   integrity N SEED [FILE]  N random requests to /raw (GET, POST with Content-Length or chunked
//                        bodies, some pipelined three to a write) on keep-alive connections;
//                        each echo must equal the request byte for byte, or the request with
//                        exactly one "traceparent: ..." line right after the request line.
//                        Prints "requests R injected I" (to FILE when given).
// Prints one line per response status; exits non-zero on any protocol surprise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Connection {
  int fd = -1;
  std::string buffer;
  explicit Connection(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      std::perror("connect");
      std::exit(1);
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { ::close(fd); }

  void send(std::string_view data) {
    while (!data.empty()) {
      const auto n = ::write(fd, data.data(), data.size());
      if (n <= 0) {
        std::perror("write");
        std::exit(1);
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Reads one response with a Content-Length body (the name in any case); returns its status (0 on EOF).
  int read_response(std::string* body = nullptr) {
    char chunk[65536];
    for (;;) {
      const auto head_end = buffer.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        std::size_t length = 0;
        std::string head = buffer.substr(0, head_end);
        std::ranges::transform(head, head.begin(), [](unsigned char c) { return std::tolower(c); });
        if (const auto at = head.find("content-length: "); at != std::string::npos)
          std::from_chars(buffer.data() + at + 16, buffer.data() + head_end, length);
        if (buffer.size() >= head_end + 4 + length) {
          int status = 0;
          std::from_chars(buffer.data() + 9, buffer.data() + 12, status);
          if (body) *body = buffer.substr(head_end + 4, length);
          buffer.erase(0, head_end + 4 + length);
          return status;
        }
      }
      const auto n = ::read(fd, chunk, sizeof(chunk));
      if (n <= 0) return 0;
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  }
};

std::string get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: edgetrace-test-client\r\n\r\n";
}

int expect_ok(int status) {
  std::printf("%d\n", status);
  return status == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PORT MODE [ARGS]\n", argv[0]);
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string_view mode = argv[2];
  Connection connection(port);
  int failures = 0;

  if (mode == "keepalive" || mode == "pipeline") {
    const int count = std::atoi(argv[3]);
    const std::string path = argc > 4 ? argv[4] : "/";
    if (mode == "pipeline") {
      std::string all;
      for (int i = 0; i < count; ++i) all += get(path + (path.find('?') == std::string::npos ? "?i=" : "&i=") + std::to_string(i));
      connection.send(all);
      for (int i = 0; i < count; ++i) failures += expect_ok(connection.read_response());
    } else {
      for (int i = 0; i < count; ++i) {
        connection.send(get(path + (path.find('?') == std::string::npos ? "?i=" : "&i=") + std::to_string(i)));
        failures += expect_ok(connection.read_response());
      }
    }
  } else if (mode == "statuses") {
    // Varied codes, so a response attributed to the wrong request shows in the spans.
    static constexpr int codes[] = {201, 404, 202, 503, 203, 418, 204, 500};
    const int count = std::atoi(argv[3]);
    std::string all;
    for (int i = 0; i < count; ++i) all += get("/status/" + std::to_string(codes[i % 8]));
    connection.send(all);
    for (int i = 0; i < count; ++i) failures += expect_ok(connection.read_response());
  } else if (mode == "split") {
    const std::string request = get(argv[3]);
    const auto third = request.size() / 3;
    connection.send(request.substr(0, third));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    connection.send(request.substr(third, third));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    connection.send(request.substr(2 * third));
    failures += expect_ok(connection.read_response());
  } else if (mode == "garbage") {
    std::mt19937 random(42);
    std::string bytes(300, '\0');
    for (auto& c : bytes) c = static_cast<char>(random() % 256);
    bytes[0] = '\x16';  // a TLS record type, never an HTTP method
    connection.send(bytes);
    std::printf("%d\n", connection.read_response());
  } else if (mode == "post") {
    const auto size = static_cast<std::size_t>(std::atoll(argv[3]));
    std::string body(size, 'x');
    for (std::size_t i = 0; i < size; ++i) body[i] = static_cast<char>('a' + i % 26);
    connection.send("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
    connection.send(body);
    std::string echoed;
    const int status = connection.read_response(&echoed);
    std::printf("%d\n", status);
    if (echoed != body) {
      std::fprintf(stderr, "echoed body differs\n");
      failures++;
    }
  } else if (mode == "post-request-body") {
    const int count = std::atoi(argv[3]);
    const std::string body = get("/in-a-body");
    for (int i = 0; i < count; ++i) {
      connection.send("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\n\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      connection.send(body);
      std::string echoed;
      failures += expect_ok(connection.read_response(&echoed));
      if (echoed != body) {
        std::fprintf(stderr, "echoed body differs\n");
        failures++;
      }
    }
  } else if (mode == "preexisting") {
    connection.send(get(argv[3]));
    failures += expect_ok(connection.read_response());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);  // the test starts the agent, then lets us continue
    for (int i = 1; i <= 2; ++i) {
      connection.send(get(std::string(argv[3]) + "?after=" + std::to_string(i)));
      failures += expect_ok(connection.read_response());
    }
  } else if (mode == "integrity") {
    const int count = std::atoi(argv[3]);
    std::mt19937_64 random(std::strtoull(argv[4], nullptr, 10));
    int injected = 0, sent = 0;
    auto make_request = [&](int i) {
      std::string path = "/raw/" + std::to_string(i) + "?q=" + std::to_string(random());
      const int kind = static_cast<int>(random() % 3);
      std::string body(random() % 65536, '\0');
      for (auto& c : body) c = static_cast<char>(random());
      if (kind == 0) return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
      if (kind == 1)
        return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\n\r\n" + body;
      std::string chunked = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
      for (std::size_t at = 0; at < body.size();) {
        const std::size_t size = std::min<std::size_t>(body.size() - at, 1 + random() % 9000);
        char line[32];
        std::snprintf(line, sizeof(line), "%zx\r\n", size);
        chunked += line + body.substr(at, size) + "\r\n";
        at += size;
      }
      return chunked + "0\r\n\r\n";
    };
    auto check = [&](const std::string& request, const std::string& echoed) {
      if (echoed == request) return true;
      const auto line_end = request.find("\r\n") + 2;
      const auto inserted = echoed.size() >= request.size() ? echoed.size() - request.size() : 0;
      if (inserted == 70 && echoed.compare(0, line_end, request, 0, line_end) == 0 &&
          echoed.compare(line_end, 16, "traceparent: 00-") == 0 && echoed.compare(line_end + 68, 2, "\r\n") == 0 &&
          echoed.compare(line_end + 70, std::string::npos, request, line_end, std::string::npos) == 0) {
        ++injected;
        return true;
      }
      std::fprintf(stderr, "request %d differs: sent %zu bytes, server saw %zu\n", sent, request.size(), echoed.size());
      return false;
    };
    while (sent < count) {
      Connection conn(port);
      for (int on_connection = 0; on_connection < 50 && sent < count;) {
        const int batch = random() % 4 == 0 ? 3 : 1;  // pipelined three to a write
        std::vector<std::string> requests;
        std::string all;
        for (int b = 0; b < batch; ++b) {
          requests.push_back(make_request(sent + b));
          all += requests.back();
        }
        conn.send(all);
        for (const auto& request : requests) {
          std::string echoed;
          if (conn.read_response(&echoed) != 200 || !check(request, echoed)) return 1;
        }
        sent += batch;
        on_connection += batch;
      }
    }
    const std::string summary = "requests " + std::to_string(sent) + " injected " + std::to_string(injected) + "\n";
    if (argc > 5) {
      std::ofstream(argv[5]) << summary;
    } else {
      std::fputs(summary.c_str(), stdout);
    }
  } else {
    std::fprintf(stderr, "unknown mode %s\n", argv[2]);
    return 2;
  }
  std::fflush(stdout);
  return failures ? 1 : 0;
}
