// Tests for pool/limits.cpp (max_user_client_connections counting), the
// scheduler's reserve pool and the configuration keys of the limits.
#include "pool/limits.h"

#include <catch2/catch.hpp>

#include <string>

#include "config/config.h"
#include "pool/scheduler.h"

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

namespace {
// A one-worker scheduler of `size` with a reserve, one primary host.
pool::Scheduler reserve_sched(uint32_t size, uint32_t reserve, uint64_t timeout_ms) {
  pool::Scheduler s(1);
  pool::Scheduler::Settings st;
  st.size = size;
  st.route = config::Route::Any;
  st.reserve_pool_size = reserve;
  st.reserve_pool_timeout_ms = timeout_ms;
  s.configure(st);
  s.set_hosts({{0, 1}});
  s.observe_host(0, true, pool::Role::Primary);
  s.observe_clients(1);
  return s;
}

pool::Backend opened(pool::Scheduler& s, void* conn, uint64_t now) {
  s.connecting(0);
  REQUIRE(s.open_on_host(0) == 0);
  return {conn, s.generation(), 0, now, now};
}
}  // namespace

TEST_CASE("reserve pool: opens only once a client has waited reserve_pool_timeout",
          "[limits][scheduler]") {
  int conns[4];
  pool::Scheduler s = reserve_sched(1, 1, 1000);
  REQUIRE(s.acquire(0, 1, 100).kind == pool::Acquired::Kind::Connect);
  const pool::Backend b0 = opened(s, &conns[0], 100);
  REQUIRE(s.acquire(0, 2, 200).kind == pool::Acquired::Kind::Queued);
  CHECK(s.limit(1199) == 1);
  CHECK_FALSE(s.grant_slot(1199));  // waited 999 ms: not yet
  CHECK(s.limit(1200) == 2);
  bool reserve = false;
  auto w = s.grant_slot(1200, &reserve);
  REQUIRE(w);
  CHECK(w->client_id == 2);
  CHECK(reserve);
  CHECK(s.total() == 2);
  CHECK(s.reserve_in_use() == 1);
  const pool::Backend b1 = opened(s, &conns[1], 1200);
  // A new client never opens a reserve connection itself; the reserve is
  // full for the next one however long it waits.
  REQUIRE(s.acquire(0, 3, 1300).kind == pool::Acquired::Kind::Queued);
  CHECK_FALSE(s.grant_slot(99999));
  // The reserve backend serves the waiter while anyone waits...
  pool::Handout h = s.release(0, b1, 1400, false);
  REQUIRE(h.kind == pool::Handout::Kind::Local);
  CHECK(h.waiter.client_id == 3);
  // ...and closes once nobody does: the pool shrinks back to size.
  h = s.release(0, b1, 1500, false);
  CHECK(h.kind == pool::Handout::Kind::Close);
  CHECK(h.why == pool::Close::Obsolete);
  CHECK(s.backend_gone(0, b1, false));
  CHECK(s.reserve_in_use() == 0);
  CHECK(s.release(0, b0, 1600, false).kind == pool::Handout::Kind::Idle);
  CHECK(s.total() == 1);
}

TEST_CASE("reserve pool: off at reserve_pool_size 0; a freed slot below size first",
          "[limits][scheduler]") {
  int conns[4];
  pool::Scheduler off = reserve_sched(1, 0, 0);
  REQUIRE(off.acquire(0, 1, 100).kind == pool::Acquired::Kind::Connect);
  (void)opened(off, &conns[0], 100);
  REQUIRE(off.acquire(0, 2, 100).kind == pool::Acquired::Kind::Queued);
  CHECK_FALSE(off.grant_slot(1'000'000));
  CHECK(off.limit(1'000'000) == 1);

  pool::Scheduler s = reserve_sched(2, 1, 500);
  REQUIRE(s.acquire(0, 1, 100).kind == pool::Acquired::Kind::Connect);
  const pool::Backend a = opened(s, &conns[1], 100);
  REQUIRE(s.acquire(0, 2, 100).kind == pool::Acquired::Kind::Connect);
  (void)opened(s, &conns[2], 100);
  REQUIRE(s.acquire(0, 3, 100).kind == pool::Acquired::Kind::Queued);
  CHECK(s.backend_gone(0, a, false));  // below size again
  bool reserve = true;
  auto w = s.grant_slot(200, &reserve);  // before the timeout: a slot below size
  REQUIRE(w);
  CHECK_FALSE(reserve);
  CHECK(s.reserve_in_use() == 0);
}

TEST_CASE("config: reserve_pool_size and reserve_pool_timeout", "[limits][config]") {
  auto r = config::load_string(std::string(kBase) +
                                   "reserve_pool_size = 3\n"
                                   "reserve_pool_timeout = \"250ms\"\n",
                               "t.toml");
  REQUIRE(r.errors.empty());
  CHECK(r.config->pools[0].reserve_pool_size == 3);
  CHECK(r.config->pools[0].reserve_pool_timeout.count() == 250);
  auto d = config::load_string(kBase, "t.toml");
  REQUIRE(d.errors.empty());
  CHECK(d.config->pools[0].reserve_pool_size == 0);
  CHECK(d.config->pools[0].reserve_pool_timeout.count() == 5000);
  auto bad =
      config::load_string(std::string(kBase) + "reserve_pool_timeout = \"soon\"\n", "t.toml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].key == "pool[0].reserve_pool_timeout");
  CHECK(bad.errors[0].line == 8);
}
