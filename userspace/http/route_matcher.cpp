#include "http/route_matcher.h"

#include <utility>

#include "config/config_error.h"

namespace edgetrace::http {
namespace {

bool is_param_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Splits "/a/b/c" into "a", "b", "c" (the leading '/' is required by the caller) until `fn`
// returns false.
template <typename Fn>
void for_each_segment(std::string_view path, Fn&& fn) {
  std::size_t pos = 1;
  while (true) {
    const std::size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) {
      fn(path.substr(pos));
      return;
    }
    if (!fn(path.substr(pos, slash - pos))) return;
    pos = slash + 1;
  }
}

}  // namespace

std::optional<std::string> RouteMatcher::validate(std::string_view pattern) {
  if (pattern.empty() || pattern.front() != '/') return "must start with '/'";
  std::optional<std::string> error;
  bool after_rest = false;
  for_each_segment(pattern, [&](std::string_view segment) {
    if (after_rest) {
      error = "'**' is only allowed as the last segment";
      return false;
    }
    if (segment == "**") {
      after_rest = true;
      return true;
    }
    if (segment == "*") return true;
    if (!segment.empty() && segment.front() == '{') {
      if (segment.size() < 3 || segment.back() != '}') {
        error = "segment '" + std::string(segment) + "' must be '{name}' with a non-empty name";
        return false;
      }
      for (const char c : segment.substr(1, segment.size() - 2)) {
        if (!is_param_name_char(c)) {
          error = "parameter name in '" + std::string(segment) +
                  "' may only hold letters, digits and '_'";
          return false;
        }
      }
      return true;
    }
    if (segment.find_first_of("{}*") != std::string_view::npos) {
      error = "segment '" + std::string(segment) +
              "' mixes literal text with '{', '}' or '*'; wildcards must be whole segments";
      return false;
    }
    if (segment.find_first_of("?#") != std::string_view::npos) {
      error = "segment '" + std::string(segment) + "' holds '?' or '#'; patterns match the path only";
      return false;
    }
    return true;
  });
  return error;
}

RouteMatcher::RouteMatcher(std::vector<std::string> patterns, RouteMatcherOptions options)
    : options_(options) {
  routes_.reserve(patterns.size());
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    if (auto error = validate(patterns[i])) {
      throw ConfigError("routes[" + std::to_string(i) + "] \"" + patterns[i] + "\": " + *error);
    }
    Route route;
    route.pattern = std::move(patterns[i]);
    for_each_segment(route.pattern, [&route](std::string_view segment) {
      if (segment == "**") {
        route.segments.push_back(Segment{SegmentKind::Rest, {}});
      } else if (segment == "*" || (!segment.empty() && segment.front() == '{')) {
        route.segments.push_back(Segment{SegmentKind::One, {}});
      } else {
        route.segments.push_back(Segment{SegmentKind::Literal, std::string(segment)});
      }
      return true;
    });
    routes_.push_back(std::move(route));
  }
}

bool RouteMatcher::matches(const Route& route, std::string_view path) {
  std::size_t next = 0;
  bool ok = true;
  bool rest = false;
  for_each_segment(path, [&](std::string_view segment) {
    if (next == route.segments.size()) {
      ok = false;
      return false;
    }
    const Segment& want = route.segments[next++];
    switch (want.kind) {
      case SegmentKind::Rest: rest = true; break;
      case SegmentKind::One: ok = !segment.empty(); break;
      case SegmentKind::Literal: ok = segment == want.literal; break;
    }
    return ok && !rest;
  });
  if (!ok) return false;
  if (rest) return true;
  // Path ran out: only a trailing "**" (zero segments) may remain.
  return next == route.segments.size() ||
         (next + 1 == route.segments.size() && route.segments[next].kind == SegmentKind::Rest);
}

std::optional<std::string_view> RouteMatcher::match(std::string_view path) const {
  if (path.empty() || path.front() != '/') return std::nullopt;
  for (const Route& route : routes_)
    if (matches(route, path)) return std::string_view(route.pattern);
  return std::nullopt;
}

std::optional<std::string_view> RouteMatcher::span_route(std::string_view path) const {
  if (auto route = match(path)) return route;
  if (options_.collapse_unmatched) return std::nullopt;
  return path;
}

}  // namespace edgetrace::http
