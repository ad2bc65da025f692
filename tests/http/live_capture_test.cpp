// Real bytes on a real connection: curl and a raw pipelining client talk to nginx on
// 127.0.0.1 through a recording relay that keeps each direction's byte stream, as the kernel
// does. The parser must recover what curl itself saw, and with kernel-sized prefixes it must
// never pair a response with the wrong request.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/exchange.h"

namespace edgetrace::http {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

UniqueFd listen_loopback(std::uint16_t& port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = loopback(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 16) != 0)
    return UniqueFd();
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

UniqueFd connect_loopback(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = loopback(port);
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return UniqueFd();
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string read_until_close(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// nginx on a free loopback port, in the foreground, with everything under a temp directory.
class Nginx {
 public:
  Nginx() {
    dir_ = fs::temp_directory_path() / ("edgetrace-http-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "www");
    std::ofstream(dir_ / "www" / "index.html") << "<html><body>edgetrace</body></html>\n";
    std::string big;
    for (int i = 0; i < 400; ++i) big += "line " + std::to_string(i) + " of a compressible file\n";
    std::ofstream(dir_ / "www" / "big.txt") << big;

    for (int attempt = 0; attempt < 5 && pid_ <= 0; ++attempt) start();
  }
  ~Nginx() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;

  [[nodiscard]] bool running() const { return pid_ > 0; }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string error_log() const {
    std::ifstream in(dir_ / "error.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  void start() {
    {
      std::uint16_t port = 0;
      UniqueFd probe = listen_loopback(port);
      port_ = port;
    }
    const std::string d = dir_.string();
    std::ofstream(dir_ / "nginx.conf") << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        << "pid " << d << "/nginx.pid;\nerror_log " << d << "/error.log warn;\n"
        << "events { worker_connections 64; }\n"
        << "http {\n  access_log off;\n  default_type text/plain;\n"
        << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
        << "  fastcgi_temp_path " << d << "/fastcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n"
        << "  scgi_temp_path " << d << "/scgi;\n"
        << "  gzip on;\n  gzip_min_length 1;\n  gzip_types text/plain;\n"
        << "  server {\n    listen 127.0.0.1:" << port_ << ";\n    root " << d << "/www;\n"
        << "    location = /upload { return 201 \"stored\\n\"; }\n"
        << "    location /api/ { return 200 \"api\\n\"; }\n  }\n}\n";
    const std::string conf = (dir_ / "nginx.conf").string();
    std::vector<std::string> args = {"/usr/sbin/nginx", "-p", d, "-c", conf};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // fork+exec rather than posix_spawn: the child must die with the test (PDEATHSIG) and must
    // not hold the test's stdout/stderr open, or a crashed test would leave it serving.
    const pid_t pid = ::fork();
    if (pid < 0) return;
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int null_fd = ::open("/dev/null", O_RDWR);
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDOUT_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (connect_loopback(port_).valid()) {
        pid_ = pid;
        return;
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) return;  // exited: port taken, retry
      std::this_thread::sleep_for(50ms);
    }
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }

  fs::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

struct Capture {
  std::string request_stream;   // client -> server
  std::string response_stream;  // server -> client
};

// Accepts connections and relays each to the upstream port, recording both directions of
// every connection like the kernel's per-connection capture (without its size cap).
class RecordingRelay {
 public:
  explicit RecordingRelay(std::uint16_t upstream) : upstream_(upstream) {
    listener_ = listen_loopback(port_);
    if (listener_.valid()) thread_ = std::thread([this] { run(); });
  }
  ~RecordingRelay() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  RecordingRelay(const RecordingRelay&) = delete;
  RecordingRelay& operator=(const RecordingRelay&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::vector<Capture> captures() {
    std::lock_guard lock(mutex_);
    return captures_;
  }

 private:
  struct Connection {
    UniqueFd client;
    UniqueFd server;
    Capture capture;
    bool client_open = true;
    bool server_open = true;
  };

  void run() {
    std::vector<std::unique_ptr<Connection>> live;
    while (!stop_ || !live.empty()) {
      std::vector<pollfd> fds{{listener_.get(), POLLIN, 0}};
      for (auto& c : live) {
        fds.push_back({c->client_open ? c->client.get() : -1, POLLIN, 0});
        fds.push_back({c->server_open ? c->server.get() : -1, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 50) < 0 && errno != EINTR) return;
      if (stop_ && live.empty()) return;
      const std::size_t polled = live.size();  // an accept below adds one not in `fds`
      if (fds[0].revents & POLLIN) {
        auto c = std::make_unique<Connection>();
        c->client = UniqueFd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        c->server = connect_loopback(upstream_);
        if (c->client.valid() && c->server.valid()) live.push_back(std::move(c));
      }
      for (std::size_t i = 0; i < polled; ++i) {
        Connection& c = *live[i];
        if (fds[1 + 2 * i].revents) pump(c.client, c.server, c.capture.request_stream, c.client_open);
        if (fds[2 + 2 * i].revents) pump(c.server, c.client, c.capture.response_stream, c.server_open);
      }
      std::erase_if(live, [this](const std::unique_ptr<Connection>& c) {
        if (c->client_open || c->server_open) return false;
        std::lock_guard lock(mutex_);
        captures_.push_back(c->capture);
        return true;
      });
      // After stop, give up on connections the peers keep open.
      if (stop_) {
        for (auto& c : live) {
          std::lock_guard lock(mutex_);
          captures_.push_back(c->capture);
        }
        live.clear();
      }
    }
  }

  static void pump(const UniqueFd& from, const UniqueFd& to, std::string& record, bool& open) {
    char buf[16384];
    const ssize_t n = ::recv(from.get(), buf, sizeof buf, 0);
    if (n <= 0) {
      open = false;
      ::shutdown(to.get(), SHUT_WR);
      return;
    }
    record.append(buf, static_cast<std::size_t>(n));
    send_all(to.get(), std::string_view(buf, static_cast<std::size_t>(n)));
  }

  std::uint16_t upstream_;
  std::uint16_t port_ = 0;
  UniqueFd listener_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<Capture> captures_;
  std::thread thread_;
};

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

struct ChunkedBody {
  std::vector<std::string> pieces;
  std::size_t next = 0;
};

size_t read_piece(char* out, size_t size, size_t n, void* user) {
  auto* body = static_cast<ChunkedBody*>(user);
  if (body->next == body->pieces.size()) return 0;
  const std::string& piece = body->pieces[body->next++];
  const size_t len = std::min(piece.size(), size * n);
  std::copy_n(piece.data(), len, out);
  return len;
}

std::vector<std::optional<int>> paired_statuses(const ParsedExchange& e) {
  std::vector<std::optional<int>> out;
  for (const auto& p : e.pairing.pairs)
    out.push_back(p.response_index ? std::optional<int>(e.responses[*p.response_index].status_code)
                                   : std::nullopt);
  return out;
}

// With each side cut to every prefix up to `cap` bytes (every 7th, both sides), pairing must
// agree with the pairing of the full streams wherever it pairs.
void expect_prefixes_never_mispair(const Capture& capture, std::size_t cap) {
  const ParsedExchange full = parse_exchange(capture.request_stream, capture.response_stream);
  const std::string_view req = capture.request_stream;
  const std::string_view resp = capture.response_stream;
  for (std::size_t rl = 0; rl <= std::min(cap, req.size()); rl += 7) {
    for (std::size_t sl = 0; sl <= std::min(cap, resp.size()); sl += 7) {
      const ParsedExchange cut = parse_exchange(req.substr(0, rl), resp.substr(0, sl));
      for (const auto& p : cut.pairing.pairs) {
        if (!p.response_index) continue;
        ASSERT_LT(p.request_index, full.pairing.pairs.size());
        const auto& whole = full.pairing.pairs[p.request_index];
        ASSERT_TRUE(whole.response_index.has_value());
        ASSERT_EQ(cut.responses[*p.response_index].offset, full.responses[*whole.response_index].offset)
            << "request prefix " << rl << ", response prefix " << sl;
      }
    }
  }
}

class LiveCapture : public testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void SetUp() override {
    if (!fs::exists("/usr/sbin/nginx")) GTEST_SKIP() << "nginx is not installed (scripts/setup.sh)";
    nginx_ = std::make_unique<Nginx>();
    ASSERT_TRUE(nginx_->running()) << nginx_->error_log();
  }

  std::unique_ptr<Nginx> nginx_;
};

TEST_F(LiveCapture, CurlKeepAliveSessionThroughRecordingRelay) {
  RecordingRelay relay(nginx_->port());
  ASSERT_NE(relay.port(), 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(relay.port());
  const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  ASSERT_TRUE(curl);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "edgetrace-test/1");

  struct Step {
    std::string method;
    std::string path;
  };
  std::vector<Step> steps;
  std::vector<int> curl_codes;
  auto perform = [&](const Step& step) {
    curl_easy_setopt(curl.get(), CURLOPT_URL, (base + step.path).c_str());
    ASSERT_EQ(curl_easy_perform(curl.get()), CURLE_OK) << step.method << " " << step.path;
    long code = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &code);
    steps.push_back(step);
    curl_codes.push_back(static_cast<int>(code));
  };

  std::unique_ptr<curl_slist, SlistDeleter> trace_headers(
      curl_slist_append(nullptr, ("traceparent: " + traceparent).c_str()));
  curl_slist_append(trace_headers.get(), "tracestate: congo=t61rcWkgMzE");
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, trace_headers.get());
  perform({"GET", "/index.html?lang=en&x=%20y"});
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, nullptr);

  curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 1L);
  perform({"HEAD", "/big.txt"});
  curl_easy_setopt(curl.get(), CURLOPT_NOBODY, 0L);

  std::unique_ptr<curl_slist, SlistDeleter> gzip(curl_slist_append(nullptr, "Accept-Encoding: gzip"));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, gzip.get());
  perform({"GET", "/big.txt"});  // gzip makes nginx answer chunked
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, nullptr);

  perform({"GET", "/missing/page"});

  std::unique_ptr<curl_slist, SlistDeleter> expect(curl_slist_append(nullptr, "Expect: 100-continue"));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, expect.get());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "name=edge&value=trace");
  perform({"POST", "/upload"});
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(curl.get(), CURLOPT_HTTPGET, 1L);

  ChunkedBody body{{"first piece,", "second piece,", "third"}, 0};
  std::unique_ptr<curl_slist, SlistDeleter> chunked(
      curl_slist_append(nullptr, "Transfer-Encoding: chunked"));
  curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_READFUNCTION, read_piece);
  curl_easy_setopt(curl.get(), CURLOPT_READDATA, &body);
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, chunked.get());
  perform({"PUT", "/upload"});
  curl_easy_setopt(curl.get(), CURLOPT_UPLOAD, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(curl.get(), CURLOPT_HTTPGET, 1L);

  perform({"GET", "/api/users/7"});
  curl.reset();  // closes the connection
  if (HasFatalFailure()) return;

  // Wait for the relay to see the connection(s) end.
  std::vector<Capture> captures;
  for (int i = 0; i < 200; ++i) {
    captures = relay.captures();
    std::size_t total = 0;
    for (const auto& c : captures) total += parse_exchange(c.request_stream, c.response_stream).requests.size();
    if (total == steps.size()) break;
    std::this_thread::sleep_for(25ms);
  }
  ASSERT_FALSE(captures.empty());

  std::vector<std::string> methods;
  std::vector<std::string> paths;
  std::vector<int> statuses;
  std::size_t interim = 0;
  std::size_t expect_continue = 0;
  for (const Capture& capture : captures) {
    const ParsedExchange e = parse_exchange(capture.request_stream, capture.response_stream);
    EXPECT_EQ(e.request_status.stop, ParseStop::Complete) << capture.request_stream;
    EXPECT_EQ(e.response_status.stop, ParseStop::Complete);
    EXPECT_EQ(e.pairing.unpaired_requests, 0u);
    EXPECT_EQ(e.pairing.unpaired_responses, 0u);
    interim += e.pairing.interim_responses;
    for (std::size_t i = 0; i < e.requests.size(); ++i) {
      const ParsedRequest& r = e.requests[i];
      methods.push_back(r.method);
      paths.push_back(r.query.empty() ? r.path : r.path + "?" + r.query);
      EXPECT_EQ(r.user_agent, "edgetrace-test/1");
      EXPECT_EQ(r.host, "127.0.0.1:" + std::to_string(relay.port()));
      if (r.path == "/index.html") {
        EXPECT_EQ(r.traceparent, traceparent);
        EXPECT_EQ(r.tracestate, "congo=t61rcWkgMzE");
      }
      if (r.method == "PUT") { EXPECT_TRUE(r.chunked); }
      if (const Header* h = r.find_header("expect"); h && iequals(h->value, "100-continue"))
        ++expect_continue;
      const auto& pair = e.pairing.pairs[i];
      statuses.push_back(pair.response_index ? e.responses[*pair.response_index].status_code : -1);
    }
    // The kernel's default and maximum capture sizes.
    expect_prefixes_never_mispair(capture, 512);
    if (HasFatalFailure()) return;
  }
  std::vector<std::string> want_methods;
  std::vector<std::string> want_paths;
  for (const Step& s : steps) {
    want_methods.push_back(s.method);
    want_paths.push_back(s.path);
  }
  EXPECT_EQ(methods, want_methods);
  EXPECT_EQ(paths, want_paths);
  EXPECT_EQ(statuses, curl_codes);
  EXPECT_EQ(curl_codes, (std::vector<int>{200, 200, 200, 404, 201, 201, 200}));
  // nginx answers "Expect: 100-continue" (ours on the POST, curl's own on the chunked PUT)
  // with an interim 100 before reading the body; pairing skipped each.
  EXPECT_GE(expect_continue, 1u);
  EXPECT_EQ(interim, expect_continue);
}

TEST_F(LiveCapture, RawPipelinedRequestsToNginx) {
  const std::string requests =
      "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
      "HEAD /big.txt HTTP/1.1\r\nHost: t\r\n\r\n"
      "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
      "GET /big.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"
      "DELETE /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n"
      "GET /api/ping HTTP/1.0\r\nHost: t\r\n\r\n";  // HTTP/1.0: nginx closes afterwards
  UniqueFd fd = connect_loopback(nginx_->port());
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(send_all(fd.get(), requests));
  const Capture capture{requests, read_until_close(fd.get())};

  const ParsedExchange e = parse_exchange(capture.request_stream, capture.response_stream);
  EXPECT_EQ(e.request_status.stop, ParseStop::Complete);
  ASSERT_EQ(e.requests.size(), 6u);
  EXPECT_EQ(paired_statuses(e),
            (std::vector<std::optional<int>>{200, 200, 201, 200, 201, 200}))
      << capture.response_stream;
  // Each response was framed right: the HEAD answer carried a Content-Length but no body, the
  // gzip one was chunked, and the stream ends exactly after the last one.
  ASSERT_EQ(e.responses.size(), 6u);
  EXPECT_TRUE(e.responses[1].content_length.has_value());
  EXPECT_GT(*e.responses[1].content_length, 0u);
  EXPECT_TRUE(e.responses[3].chunked);
  EXPECT_EQ(e.response_status.stop, ParseStop::Complete);
  EXPECT_EQ(e.response_status.consumed, capture.response_stream.size());

  expect_prefixes_never_mispair(capture, 4096);
}

}  // namespace
}  // namespace edgetrace::http
