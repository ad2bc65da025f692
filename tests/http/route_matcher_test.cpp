#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "config/config_error.h"
#include "http/route_matcher.h"

namespace edgetrace::http {
namespace {

struct RouteCase {
  std::string path;
  std::optional<std::string> route;
};

class RouteMatchTest : public testing::TestWithParam<RouteCase> {
 protected:
  const RouteMatcher matcher_{{
      "/users/{id}",
      "/users/{id}/orders/{order_id}",
      "/users/me",  // never wins: "/users/{id}" comes first
      "/api/*",
      "/api/*/status",
      "/static/**",
      "/",
      "/a//b",
  }};
};

TEST_P(RouteMatchTest, FirstMatchWins) {
  const RouteCase& c = GetParam();
  const auto route = matcher_.match(c.path);
  if (c.route) {
    ASSERT_TRUE(route.has_value()) << c.path;
    EXPECT_EQ(*route, *c.route) << c.path;
  } else {
    EXPECT_FALSE(route.has_value()) << c.path << " matched " << *route;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Routes, RouteMatchTest,
    testing::Values(RouteCase{"/users/42", "/users/{id}"}, RouteCase{"/users/me", "/users/{id}"},
                    RouteCase{"/users/42/orders/7", "/users/{id}/orders/{order_id}"},
                    RouteCase{"/users/42/orders", std::nullopt},
                    RouteCase{"/users/", std::nullopt},  // {id} needs a non-empty segment
                    RouteCase{"/users", std::nullopt}, RouteCase{"/users/42/", std::nullopt},
                    RouteCase{"/USERS/42", std::nullopt},  // literals are case-sensitive
                    RouteCase{"/api/v1", "/api/*"}, RouteCase{"/api/v1/status", "/api/*/status"},
                    RouteCase{"/api", std::nullopt}, RouteCase{"/api/v1/x", std::nullopt},
                    RouteCase{"/static", "/static/**"}, RouteCase{"/static/", "/static/**"},
                    RouteCase{"/static/css/site.css", "/static/**"}, RouteCase{"/staticx", std::nullopt},
                    RouteCase{"/", "/"}, RouteCase{"/a//b", "/a//b"}, RouteCase{"/a/b", std::nullopt},
                    RouteCase{"/users/caf%C3%A9", "/users/{id}"},  // no decoding, one segment
                    RouteCase{"/users/a%2Fb", "/users/{id}"},      // an encoded '/' stays in the segment
                    RouteCase{"", std::nullopt}, RouteCase{"*", std::nullopt},
                    RouteCase{"example.com:443", std::nullopt}));

TEST(RouteMatcher, MatchReturnsTheConfiguredPatternText) {
  const RouteMatcher matcher({"/items/{item_id}"});
  EXPECT_EQ(matcher.size(), 1u);
  EXPECT_EQ(matcher.match("/items/9"), std::optional<std::string_view>("/items/{item_id}"));
}

TEST(RouteMatcher, EmptyMatcherMatchesNothingAndCollapsesNothing) {
  const RouteMatcher matcher;
  EXPECT_FALSE(matcher.match("/anything").has_value());
  EXPECT_EQ(matcher.span_route("/anything/123"), std::optional<std::string_view>("/anything/123"));
}

TEST(RouteMatcher, CollapseUnmatchedDropsUnmatchedPaths) {
  const RouteMatcher matcher({"/users/{id}"}, RouteMatcherOptions{.collapse_unmatched = true});
  EXPECT_EQ(matcher.span_route("/users/1"), std::optional<std::string_view>("/users/{id}"));
  EXPECT_FALSE(matcher.span_route("/orders/1").has_value());
}

TEST(RouteMatcher, DoubleStarAtRootMatchesEveryOriginPath) {
  const RouteMatcher matcher({"/**"});
  EXPECT_TRUE(matcher.match("/").has_value());
  EXPECT_TRUE(matcher.match("/a/b/c").has_value());
  EXPECT_FALSE(matcher.match("*").has_value());
}

struct InvalidPattern {
  std::string pattern;
  std::string message_part;
};

class RoutePatternValidationTest : public testing::TestWithParam<InvalidPattern> {};

TEST_P(RoutePatternValidationTest, RejectsWithAClearMessage) {
  const InvalidPattern& c = GetParam();
  const auto error = RouteMatcher::validate(c.pattern);
  ASSERT_TRUE(error.has_value()) << c.pattern;
  EXPECT_NE(error->find(c.message_part), std::string::npos) << *error;
  try {
    RouteMatcher matcher({"/ok", c.pattern});
    FAIL() << "accepted " << c.pattern;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("routes[1]"), std::string::npos) << what;
    EXPECT_NE(what.find(c.message_part), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Invalid, RoutePatternValidationTest,
                         testing::Values(InvalidPattern{"", "must start with '/'"},
                                         InvalidPattern{"users/{id}", "must start with '/'"},
                                         InvalidPattern{"/static/**/x", "last segment"},
                                         InvalidPattern{"/users/{}", "non-empty name"},
                                         InvalidPattern{"/users/{id", "non-empty name"},
                                         InvalidPattern{"/users/{i-d}", "letters, digits"},
                                         InvalidPattern{"/users/id}", "wildcards must be whole"},
                                         InvalidPattern{"/file*.txt", "wildcards must be whole"},
                                         InvalidPattern{"/a?b", "path only"}));

TEST(RouteMatcher, ValidPatternsPassValidation) {
  for (const char* p : {"/", "/users/{id}", "/api/*", "/static/**", "/**", "/a/{x_1}/*/**"})
    EXPECT_FALSE(RouteMatcher::validate(p).has_value()) << p;
}

}  // namespace
}  // namespace edgetrace::http
