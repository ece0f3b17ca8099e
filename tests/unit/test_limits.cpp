// Tests for pool/limits.cpp (max_user_client_connections counting; server
// connections under max_db_connections / max_user_connections and the
// eviction choice), the scheduler's reserve pool and shared caps, and the
// configuration keys of the limits.
#include "pool/limits.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/config_diff.h"
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

// --- max_db_connections / max_user_connections -------------------------------------

TEST_CASE("server caps: per database and per server user, both or neither", "[limits]") {
  pool::ServerCaps c;
  // Two pools of one [[pool]] entry (users a and b), cap 2 on the database.
  CHECK(c.try_take({"postgres:app", 2, "postgres:a", 0}) == pool::kCapNone);
  CHECK(c.try_take({"postgres:app", 2, "postgres:b", 0}) == pool::kCapNone);
  CHECK(c.try_take({"postgres:app", 2, "postgres:b", 0}) == pool::kCapDb);
  CHECK(c.db_count("postgres:app") == 2);
  CHECK(c.user_count("postgres:b") == 1);  // the refused one counted nowhere
  // User a's cap 1 counts across databases: full already (1 on "app").
  CHECK(c.try_take({"postgres:other", 0, "postgres:a", 1}) == pool::kCapUser);
  CHECK(c.db_count("postgres:other") == 0);
  CHECK(c.try_take({"postgres:app", 2, "postgres:a", 1}) == (pool::kCapDb | pool::kCapUser));
  c.give_back("postgres:app", "postgres:a");
  CHECK(c.db_count("postgres:app") == 1);
  CHECK(c.user_count("postgres:a") == 0);
  CHECK(c.try_take({"postgres:other", 0, "postgres:a", 1}) == pool::kCapNone);
  // Cap 0: counted, never refused.
  for (int i = 0; i < 50; ++i) CHECK(c.try_take({"mysql:x", 0, "mysql:u", 0}) == pool::kCapNone);
  CHECK(c.db_count("mysql:x") == 50);
}

TEST_CASE("eviction choice: the longest-idle connection among the pools under the cap",
          "[limits]") {
  CHECK(pool::pick_eviction({}) == -1);
  CHECK(pool::pick_eviction({{0, 0}, {0, 0}}) == -1);  // nothing idle
  CHECK(pool::pick_eviction({{1, 500}, {3, 200}, {0, 0}, {1, 900}}) == 1);
  CHECK(pool::pick_eviction({{0, 0}, {1, 700}}) == 1);
  CHECK(pool::pick_eviction({{1, 300}, {4, 300}}) == 1);  // equals: the one with more idle
}

namespace {
// A pool's gate over a ServerCaps shared with other pools (what
// daemon/core/pool.cpp does over Directory's, under its mutexes).
struct CapGate : pool::SlotGate {
  pool::ServerCaps& caps;
  std::string db;
  uint32_t db_cap;
  std::string user;
  uint32_t user_cap;
  uint8_t refused = pool::kCapNone;
  CapGate(pool::ServerCaps& c, std::string d, uint32_t dc, std::string u, uint32_t uc)
      : caps(c), db(std::move(d)), db_cap(dc), user(std::move(u)), user_cap(uc) {}
  bool try_take() override {
    refused = caps.try_take({db, db_cap, user, user_cap});
    return refused == pool::kCapNone;
  }
  void give_back() override { caps.give_back(db, user); }
};
}  // namespace

TEST_CASE("scheduler at a shared cap: waits like a full pool, woken by another pool's close",
          "[limits][scheduler]") {
  int conns[8];
  pool::ServerCaps caps;
  CapGate ga(caps, "postgres:app", 2, "postgres:a", 0);
  CapGate gb(caps, "postgres:app", 2, "postgres:b", 0);
  pool::Scheduler a = reserve_sched(5, 0, 0);
  pool::Scheduler b = reserve_sched(5, 0, 0);
  a.set_gate(&ga);
  b.set_gate(&gb);
  REQUIRE(a.acquire(0, 1, 100).kind == pool::Acquired::Kind::Connect);
  const pool::Backend a0 = opened(a, &conns[0], 100);
  REQUIRE(a.acquire(0, 2, 100).kind == pool::Acquired::Kind::Connect);
  const pool::Backend a1 = opened(a, &conns[1], 100);
  CHECK(caps.db_count("postgres:app") == 2);
  // Pool b is far below its size, but the database is at its cap: queued.
  REQUIRE(b.acquire(0, 10, 200).kind == pool::Acquired::Kind::Queued);
  CHECK(gb.refused == pool::kCapDb);
  CHECK(b.total() == 0);
  CHECK(b.waiting_on_cap() == 1);
  REQUIRE(b.acquire(0, 11, 210).kind == pool::Acquired::Kind::Queued);
  CHECK(b.waiting_on_cap() == 2);
  CHECK_FALSE(b.grant_slot(300));  // still full
  // a's first backend is released while b waits: evicted instead of idle.
  pool::Handout h = a.release(0, a0, 400, false, /*evict=*/true);
  REQUIRE(h.kind == pool::Handout::Kind::Close);
  CHECK(h.why == pool::Close::Evicted);
  CHECK(a.idle() == 0);
  CHECK(a.backend_gone(0, a0, false));
  CHECK(caps.db_count("postgres:app") == 1);
  // The freed room goes to b's longest waiter.
  auto w = b.grant_slot(450);
  REQUIRE(w);
  CHECK(w->client_id == 10);
  CHECK(b.total() == 1);
  CHECK(caps.db_count("postgres:app") == 2);
  CHECK(b.waiting_on_cap() == 0);  // granted: no longer marked at the cap
  CHECK_FALSE(b.grant_slot(460));  // the second waiter: full again
  CHECK(b.waiting_on_cap() == 1);
  // A waiter of a's own still gets a released backend (evict or not).
  REQUIRE(a.acquire(0, 3, 500).kind == pool::Acquired::Kind::Queued);
  CHECK(a.waiting_on_cap() == 1);
  h = a.release(0, a1, 510, false, true);
  REQUIRE(h.kind == pool::Handout::Kind::Local);
  CHECK(h.waiter.client_id == 3);
  // A cancelled waiter is no longer counted.
  CHECK(b.cancel_wait(0, 11));
  CHECK(b.waiting_on_cap() == 0);
}

TEST_CASE("scheduler at a shared cap: idle eviction order, min_idle and a full pool",
          "[limits][scheduler]") {
  int conns[8];
  pool::ServerCaps caps;
  CapGate g(caps, "mysql:app", 0, "mysql:u", 3);
  pool::Scheduler s(2);
  pool::Scheduler::Settings st;
  st.size = 3;
  st.min_idle = 3;
  st.route = config::Route::Any;
  s.configure(st);
  s.set_hosts({{0, 1}});
  s.observe_host(0, true, pool::Role::Primary);
  s.set_gate(&g);
  // Another pool of user u holds one connection: min_idle opens 2, not 3.
  REQUIRE(caps.try_take({"mysql:other", 0, "mysql:u", 3}) == pool::kCapNone);
  pool::Upkeep up = s.housekeep(0, 0, false);
  CHECK(up.open == 2);
  CHECK(s.total() == 2);
  CHECK(s.waiting_on_cap() == 0);  // nobody waits
  // Idle on two workers; the longest idle is chosen for eviction.
  s.connecting(0);
  s.connecting(1);
  REQUIRE(s.open_on_host(0) == 0);
  REQUIRE(s.open_on_host(0) == 0);
  const pool::Backend x{&conns[0], 0, 0, 0, 300};
  const pool::Backend y{&conns[1], 0, 0, 0, 100};
  CHECK(s.release(0, x, 300, false).kind == pool::Handout::Kind::Idle);
  CHECK(s.release(1, y, 300, false).kind == pool::Handout::Kind::Idle);
  auto oldest = s.oldest_idle();
  REQUIRE(oldest);
  CHECK(oldest->first == 1);
  CHECK(oldest->second == 100);
  auto e = s.evict_idle(1);
  REQUIRE(e);
  CHECK(e->conn == &conns[1]);
  CHECK_FALSE(s.evict_idle(1));
  CHECK(s.backend_gone(1, *e, false));
  CHECK(caps.user_count("mysql:u") == 2);
  // At its own size a pool's waiters wait on the pool, not on the cap.
  pool::Scheduler full = reserve_sched(1, 0, 0);
  CapGate gf(caps, "mysql:f", 5, "mysql:f", 0);
  full.set_gate(&gf);
  REQUIRE(full.acquire(0, 1, 0).kind == pool::Acquired::Kind::Connect);
  REQUIRE(full.acquire(0, 2, 0).kind == pool::Acquired::Kind::Queued);
  CHECK(full.waiting() == 1);
  CHECK(full.waiting_on_cap() == 0);
}

TEST_CASE("config: max_db_connections and max_user_connections, reloadable", "[limits][config]") {
  const std::string head = R"(
[server]
max_db_connections = 10
max_user_connections = 20
[[user]]
name = "a"
password = "x"
max_user_connections = 3
[[user]]
name = "b"
password = "x"
)";
  auto r = config::load_string(head + kBase + "max_db_connections = 4\n", "t.toml");
  REQUIRE(r.errors.empty());
  const config::Config& c = *r.config;
  CHECK(c.server.max_db_connections == 10);
  CHECK(c.server.max_user_connections == 20);
  CHECK(config::db_connection_cap(c, c.pools[0]) == 4);
  CHECK(config::user_connection_cap(c, "a") == 3);
  CHECK(config::user_connection_cap(c, "b") == 20);
  CHECK(config::user_connection_cap(c, "not-a-user") == 20);  // a pool's own server login

  auto d = config::load_string(kBase, "t.toml");
  REQUIRE(d.errors.empty());
  CHECK(config::db_connection_cap(*d.config, d.config->pools[0]) == 0);
  CHECK(config::user_connection_cap(*d.config, "a") == 0);

  const config::ConfigDiff diff = config::diff(*d.config, c);
  CHECK(std::count(diff.applied.begin(), diff.applied.end(), "server.max_db_connections") == 1);
  CHECK(std::count(diff.applied.begin(), diff.applied.end(), "server.max_user_connections") == 1);
  REQUIRE(diff.pools_changed.size() == 1);
  CHECK(diff.pools_changed[0].applied == std::vector<std::string>{"max_db_connections"});
  auto r2 = config::load_string(std::string(head).replace(head.find("max_user_connections = 3"), 24,
                                                          "max_user_connections = 5") +
                                    kBase + "max_db_connections = 4\n",
                                "t.toml");
  REQUIRE(r2.errors.empty());
  CHECK(config::diff(c, *r2.config).users_changed == std::vector<std::string>{"a"});

  auto bad = config::load_string(head + kBase + "max_db_connections = -2\n", "t.toml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].key == "pool[0].max_db_connections");
}
