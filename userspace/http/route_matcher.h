// Low-cardinality route templates (OTel http.route) from configured patterns.
//
// Pattern syntax: starts with '/', segments separated by '/':
//   literal   matches the same segment, case-sensitively ("users")
//   {name}    matches exactly one non-empty segment (name: letters, digits, '_')
//   *         matches exactly one non-empty segment
//   **        last segment only: matches zero or more remaining segments
// Paths are compared as sent (no percent-decoding, no query); a trailing '/' is an extra,
// empty segment, so "/users/{id}" matches "/users/7" but not "/users/7/".
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgetrace::http {

struct RouteMatcherOptions {
  // What span_route() gives for a path no pattern matches: false (default) keeps the path
  // itself, i.e. collapses nothing; true gives nullopt so the span is named by method alone.
  bool collapse_unmatched = false;
};

class RouteMatcher {
 public:
  // Throws edgetrace::ConfigError naming the offending pattern (and its index) when a
  // pattern is invalid; see validate().
  explicit RouteMatcher(std::vector<std::string> patterns, RouteMatcherOptions options = {});
  RouteMatcher() = default;

  // nullopt when the pattern is valid, otherwise why not.
  [[nodiscard]] static std::optional<std::string> validate(std::string_view pattern);

  // The first pattern (in configuration order) matching `path`; the view points into this
  // matcher and stays valid as long as it does.
  [[nodiscard]] std::optional<std::string_view> match(std::string_view path) const;

  // For the span name: match(path), else the path itself unless collapse_unmatched.
  [[nodiscard]] std::optional<std::string_view> span_route(std::string_view path) const;

  [[nodiscard]] std::size_t size() const { return routes_.size(); }

 private:
  enum class SegmentKind : unsigned char { Literal, One, Rest };
  struct Segment {
    SegmentKind kind;
    std::string literal;
  };
  struct Route {
    std::string pattern;
    std::vector<Segment> segments;
  };
  [[nodiscard]] static bool matches(const Route& route, std::string_view path);

  std::vector<Route> routes_;
  RouteMatcherOptions options_;
};

}  // namespace edgetrace::http
