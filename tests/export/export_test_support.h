// Span fixtures and temp-file helpers shared by the export suites.
#pragma once

#include "../common/temp_dir.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "export/exporter_config.h"
#include "span/span.h"

namespace edgetrace::testing {

inline std::shared_ptr<const Resource> make_resource(std::string service, std::uint32_t pid) {
  auto r = std::make_shared<Resource>();
  r->pid = pid;
  r->attributes = {{"service.name", std::move(service)}, {"host.name", std::string("test-host")}};
  return r;
}

// A server span shaped like what the stitcher emits for an HTTP request, with `seed`
// making ids and values distinct.
inline Span make_http_span(std::uint64_t seed, std::shared_ptr<const Resource> resource, bool root = true) {
  Span s;
  for (std::size_t i = 0; i < s.trace_id.size(); ++i) s.trace_id[i] = static_cast<std::uint8_t>(seed * 31 + i + 1);
  for (std::size_t i = 0; i < s.span_id.size(); ++i) s.span_id[i] = static_cast<std::uint8_t>(seed * 17 + i + 1);
  if (!root)
    for (std::size_t i = 0; i < s.parent_span_id.size(); ++i) s.parent_span_id[i] = static_cast<std::uint8_t>(0xA0 + i);
  s.trace_flags = 1;
  s.name = "GET /api/items/{id}";
  s.kind = SpanKind::Server;
  s.start_unix_nanos = 1'700'000'000'000'000'000ULL + seed * 1000;
  s.end_unix_nanos = s.start_unix_nanos + 1'234'567;
  s.status = StatusCode::Unset;
  s.attributes = {
      {"http.request.method", std::string("GET")},
      {"url.path", "/api/items/" + std::to_string(seed)},
      {"http.route", std::string("/api/items/{id}")},
      {"http.response.status_code", std::int64_t{200}},
      {"server.address", std::string("shop.internal")},
      {"server.port", std::int64_t{8080}},
      {"network.protocol.version", std::string("1.1")},
      {"user_agent.original", std::string("python-requests/2.31")},
  };
  s.resource = std::move(resource);
  return s;
}


inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A self-signed certificate for 127.0.0.1/localhost made with the openssl CLI; the
// certificate doubles as its own CA file.
struct TestCertificate {
  std::string cert_file, key_file;
  std::string cert_pem, key_pem;
};

inline TestCertificate make_self_signed_certificate(const TempDir& dir, const std::string& name) {
  TestCertificate c{dir.file(name + ".crt"), dir.file(name + ".key"), {}, {}};
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + name +
                          " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + c.key_file + " -out " +
                          c.cert_file + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl could not make a test certificate");
  c.cert_pem = read_text(c.cert_file);
  c.key_pem = read_text(c.key_file);
  return c;
}

// A getenv backed by a map, for parse_exporter_config.
inline GetEnv env_from(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace edgetrace::testing
