// Tests for pool/limits.cpp (max_user_client_connections counting) and the
// configuration keys of the limits.
#include "pool/limits.h"

#include <catch2/catch.hpp>

#include <string>

#include "config/config.h"

using namespace sqlmux;

TEST_CASE("keyed limit: a cap per key, freed by remove", "[limits]") {
  pool::KeyedLimit l;
  CHECK(l.try_add("alice", 2));
  CHECK(l.try_add("alice", 2));
  CHECK_FALSE(l.try_add("alice", 2));  // the third is refused, not counted
  CHECK(l.count("alice") == 2);
  CHECK(l.try_add("bob", 2));  // another key has its own count
  CHECK(l.count("bob") == 1);
  l.remove("alice");
  CHECK(l.try_add("alice", 2));  // room again
  CHECK_FALSE(l.try_add("alice", 2));
  CHECK(l.try_add("alice", 3));  // a larger cap (reload) lets one more in
  CHECK(l.count("alice") == 3);
}

TEST_CASE("keyed limit: cap 0 is no cap; keys at zero are forgotten", "[limits]") {
  pool::KeyedLimit l;
  for (int i = 0; i < 100; ++i) CHECK(l.try_add("u", 0));
  CHECK(l.count("u") == 100);
  for (int i = 0; i < 100; ++i) l.remove("u");
  CHECK(l.count("u") == 0);
  CHECK(l.keys() == 0);
  l.remove("u");  // not counted: ignored, never below zero
  CHECK(l.count("u") == 0);
  // A cap lowered below the count: nobody more until it drops below it.
  CHECK(l.try_add("v", 5));
  CHECK(l.try_add("v", 5));
  CHECK(l.try_add("v", 5));
  CHECK_FALSE(l.try_add("v", 2));
  l.remove("v");
  CHECK_FALSE(l.try_add("v", 2));
  l.remove("v");
  CHECK(l.try_add("v", 2));
}

namespace {
const char* kBase = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
[[pool]]
name = "app"
backends = [{ address = "127.0.0.1:5432" }]
)";
}

TEST_CASE("config: max_user_client_connections", "[limits][config]") {
  auto r = config::load_string(std::string(R"(
[server]
max_user_client_connections = 7
[[user]]
name = "a"
password = "x"
max_user_client_connections = 2
[[user]]
name = "b"
password = "x"
)") + kBase,
                               "t.toml");
  REQUIRE(r.errors.empty());
  CHECK(r.config->server.max_user_client_connections == 7);
  CHECK(r.config->users[0].max_user_client_connections == std::optional<uint32_t>(2));
  CHECK_FALSE(r.config->users[1].max_user_client_connections.has_value());
  CHECK(config::user_client_cap(*r.config, r.config->users[0]) == 2);
  CHECK(config::user_client_cap(*r.config, r.config->users[1]) == 7);

  auto bad = config::load_string(std::string(R"(
[[user]]
name = "a"
password = "x"
max_user_client_connections = -1
)") + kBase,
                                 "t.toml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].to_string().rfind("t.toml:5:", 0) == 0);
  CHECK(bad.errors[0].key == "user[0].max_user_client_connections");
}
