#include <catch2/catch.hpp>

#include "pool/pg/prepared.h"
#include "pool/pg/sql_scanner.h"

using sqlmux::pool::BackendStatements;
using sqlmux::pool::ClientStatements;
using sqlmux::pool::ResponseTracker;
using Kind = ResponseTracker::Kind;
using Action = ResponseTracker::Action;
using Entry = ResponseTracker::Entry;

namespace {
Entry fwd(Kind k) {
  return Entry{k, Action::Forward, {}, {}, {}, false};
}
Entry synth(Kind k, std::string reply) {
  return Entry{k, Action::Synthetic, std::move(reply), {}, {}, false};
}

// Feeds backend message types through the tracker as the relay does;
// returns what reaches the client (forwarded types and synthetic bytes).
std::string run(ResponseTracker& t, const std::string& types,
                std::vector<Entry>* dropped = nullptr) {
  std::string out;
  for (char c : types) {
    auto v = t.classify(c);
    if (v.forward) out += c;
    if (v.completes) {
      t.complete(v.error_skip, dropped);
      t.take_synthetic(out, 'I');
    }
  }
  return out;
}
}  // namespace

TEST_CASE("server statement names: stable, distinct, within NAMEDATALEN") {
  auto a = sqlmux::pool::server_statement_name("SELECT $1", {23});
  REQUIRE(a == sqlmux::pool::server_statement_name("SELECT $1", {23}));
  REQUIRE(a != sqlmux::pool::server_statement_name("SELECT $1", {20}));
  REQUIRE(a != sqlmux::pool::server_statement_name("SELECT $1", {}));
  REQUIRE(a != sqlmux::pool::server_statement_name("SELECT $2", {23}));
  REQUIRE(a.rfind("sqlmux_", 0) == 0);
  REQUIRE(a.size() == 39);
}

TEST_CASE("server statement names: the schema generation names a new statement") {
  using sqlmux::pool::server_statement_name;
  const auto g0 = server_statement_name("INSERT INTO t(name) VALUES ($1)", {25});
  // Generation 0 is the name without one (names stay what they were).
  REQUIRE(g0 == server_statement_name("INSERT INTO t(name) VALUES ($1)", {25}, 0));
  const auto g1 = server_statement_name("INSERT INTO t(name) VALUES ($1)", {25}, 1);
  const auto g2 = server_statement_name("INSERT INTO t(name) VALUES ($1)", {25}, 2);
  REQUIRE(g1 != g0);
  REQUIRE(g2 != g1);
  REQUIRE(g2 != g0);
  REQUIRE(g1 == server_statement_name("INSERT INTO t(name) VALUES ($1)", {25}, 1));
  REQUIRE(g1.size() == 39);
  // The generation cannot pass for parameter types (its 10 bytes follow
  // 4-byte types: the hashed lengths differ).
  REQUIRE(server_statement_name("SELECT 1", {}, 1) != server_statement_name("SELECT 1", {0x67}, 0));
  auto def = sqlmux::pool::make_statement("SELECT $1", {23}, 7);
  REQUIRE(def->server_name == server_statement_name("SELECT $1", {23}, 7));
  REQUIRE(def->query == "SELECT $1");
}

TEST_CASE("client statements: names map to shared definitions with their epoch") {
  ClientStatements cs;
  auto def = sqlmux::pool::make_statement("SELECT 1", {});
  cs.add("s1", def, 3);
  REQUIRE(cs.find("s1")->def == def);
  REQUIRE(cs.find("s1")->epoch == 3);
  REQUIRE(cs.find("s2") == nullptr);
  REQUIRE(cs.remove("s1"));
  REQUIRE_FALSE(cs.remove("s1"));
}

TEST_CASE("backend statements: LRU eviction and touch") {
  BackendStatements b(2);
  REQUIRE_FALSE(b.insert("a"));
  REQUIRE_FALSE(b.insert("b"));
  REQUIRE(b.touch("a"));  // b is now least recently used
  auto ev = b.insert("c");
  REQUIRE(ev);
  REQUIRE(*ev == "b");
  REQUIRE(b.contains("a"));
  REQUIRE(b.contains("c"));
  REQUIRE_FALSE(b.contains("b"));
  REQUIRE_FALSE(b.insert("a"));  // present: no eviction
  b.set_epoch("a", 7);
  REQUIRE(b.epoch("a") == 7);
  b.erase("a");
  REQUIRE(b.size() == 1);
  b.clear();
  REQUIRE(b.size() == 0);
}

TEST_CASE("stale statements: invalidation epochs") {
  sqlmux::pool::StaleStatements st;
  uint64_t e0 = st.current();
  REQUIRE_FALSE(st.stale("s", e0));
  REQUIRE(st.invalidate("s", e0));
  REQUIRE(st.stale("s", e0));
  const uint64_t e1 = st.current();
  REQUIRE_FALSE(st.stale("s", e1));
  REQUIRE_FALSE(st.stale("other", e0));
  // A second backend whose copy dates from before that invalidation reports
  // the same schema change late: statements prepared since stay valid.
  REQUIRE_FALSE(st.invalidate("s", e0));
  REQUIRE(st.current() == e1);
  REQUIRE_FALSE(st.stale("s", e1));
  // A copy prepared after the invalidation failing again: a new change.
  REQUIRE(st.invalidate("s", e1));
  REQUIRE(st.stale("s", e1));
}

TEST_CASE("stale statements: the schema generation") {
  sqlmux::pool::StaleStatements st;
  REQUIRE(st.generation() == 0);
  const uint64_t e = st.current();
  st.schema_changed();
  st.schema_changed();
  REQUIRE(st.generation() == 2);
  // It names new statements; it invalidates none.
  REQUIRE(st.current() == e);
  REQUIRE_FALSE(st.stale("s", e));
}

TEST_CASE("tracker: plain extended-protocol pipeline passes through") {
  ResponseTracker t;
  for (Kind k : {Kind::Parse, Kind::Bind, Kind::Describe, Kind::Execute, Kind::Sync})
    t.push(fwd(k));
  REQUIRE(run(t, "12tTDDCZ") == "12tTDDCZ");
  REQUIRE(t.empty());
}

TEST_CASE("tracker: notices and parameter status belong to no request") {
  ResponseTracker t;
  t.push(fwd(Kind::Query));
  REQUIRE(run(t, "NTSDNCZ") == "NTSDNCZ");
  REQUIRE(t.empty());
}

TEST_CASE("tracker: an injected Parse's reply is swallowed") {
  ResponseTracker t;
  t.push(Entry{Kind::Parse, Action::Swallow, {}, "srv", {}, false});
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Execute));
  t.push(fwd(Kind::Sync));
  REQUIRE(run(t, "12DCZ") == "2DCZ");
}

TEST_CASE("tracker: a synthetic reply waits for its turn") {
  ResponseTracker t;
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Execute));
  t.push(synth(Kind::Parse, "1"));
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Sync));
  REQUIRE(run(t, "2DC2Z") == "2DC12Z");
  REQUIRE(t.empty());
}

TEST_CASE("tracker: a synthetic reply at the head goes out at once, with the current status") {
  ResponseTracker t;
  t.push(synth(Kind::Close, "3"));
  std::string out;
  t.take_synthetic(out, 'T');
  REQUIRE(out == "3");
  t.push(Entry{Kind::Query, Action::Synthetic, "C", {}, {}, true});
  out.clear();
  t.take_synthetic(out, 'T');
  REQUIRE(out == std::string("CZ\0\0\0\5T", 7));
  REQUIRE(t.empty());
}

TEST_CASE("tracker: an error skips to Sync; skipped Parses are reported") {
  ResponseTracker t;
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Execute));
  t.push(Entry{Kind::Parse, Action::Forward, {}, "srv2", "c2", false});
  t.push(synth(Kind::Parse, "1"));
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Sync));
  std::vector<Entry> dropped;
  // BindComplete, then the Execute fails; the server skips to Sync.
  REQUIRE(run(t, "2EZ", &dropped) == "2EZ");
  REQUIRE(t.empty());
  REQUIRE(dropped.size() == 2);
  REQUIRE(dropped[0].stmt == "srv2");
  REQUIRE(dropped[0].client_stmt == "c2");
  REQUIRE(dropped[1].action == Action::Synthetic);
}

TEST_CASE("tracker: requests sent after an error and before Sync owe nothing") {
  // The error arrives before the rest of the client's pipeline.
  ResponseTracker t;
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Execute));
  REQUIRE(run(t, "2E") == "2E");
  REQUIRE(t.empty());
  REQUIRE(t.skipping());
  REQUIRE_FALSE(t.push(fwd(Kind::Parse)));
  REQUIRE_FALSE(t.push(synth(Kind::Parse, "1")));
  REQUIRE_FALSE(t.push(fwd(Kind::Execute)));
  REQUIRE(t.push(fwd(Kind::Sync)));
  REQUIRE_FALSE(t.skipping());
  // Then a new statement answered from the cache comes right after.
  t.push(synth(Kind::Parse, "1"));
  t.push(fwd(Kind::Sync));
  REQUIRE(run(t, "ZZ") == "Z1Z");
  REQUIRE(t.empty());
}

TEST_CASE("tracker: errors inside a simple query or at Sync do not skip") {
  ResponseTracker t;
  t.push(fwd(Kind::Query));
  t.push(fwd(Kind::Sync));
  REQUIRE(run(t, "TDEZ") == "TDEZ");
  REQUIRE(t.size() == 1);
  REQUIRE(run(t, "EZ") == "EZ");  // e.g. a deferred constraint failing at commit
  REQUIRE(t.empty());
  REQUIRE_FALSE(t.skipping());
}

TEST_CASE("tracker: Describe of a statement ends at RowDescription or NoData") {
  ResponseTracker t;
  t.push(fwd(Kind::Describe));
  t.push(fwd(Kind::Describe));
  t.push(fwd(Kind::Sync));
  REQUIRE(run(t, "tTtnZ") == "tTtnZ");
  REQUIRE(t.empty());
}

TEST_CASE("DEALLOCATE / DISCARD recognition") {
  using sqlmux::pool::parse_deallocate;
  using K = sqlmux::pool::DeallocateCommand::Kind;
  REQUIRE(parse_deallocate("DEALLOCATE s1").kind == K::One);
  REQUIRE(parse_deallocate("deallocate prepare \"S 1\";").name == "S 1");
  REQUIRE(parse_deallocate("  DEALLOCATE  _pg3_0 ; ").name == "_pg3_0");
  REQUIRE(parse_deallocate("DEALLOCATE ALL").kind == K::All);
  REQUIRE(parse_deallocate("deallocate prepare all;").kind == K::All);
  REQUIRE(parse_deallocate("DISCARD ALL").kind == K::DiscardAll);
  REQUIRE(parse_deallocate("DISCARD PLANS").kind == K::None);
  REQUIRE(parse_deallocate("DEALLOCATE s1; SELECT 1").kind == K::None);
  REQUIRE(parse_deallocate("SELECT 'DEALLOCATE x'").kind == K::None);
  REQUIRE(parse_deallocate("DEALLOCATEX y").kind == K::None);
}

TEST_CASE("SET / RESET recognition") {
  using sqlmux::pool::parse_set;
  using K = sqlmux::pool::SetCommand::Kind;
  REQUIRE(parse_set("SET search_path = t1, public").name == "search_path");
  REQUIRE(parse_set("set session statement_timeout to '5s'").name == "statement_timeout");
  REQUIRE(parse_set("SET TIME ZONE 'UTC'").name == "timezone");
  REQUIRE(parse_set("SET \"MyOpt.x\" = 1").name == "MyOpt.x");
  // Dotted names with quoted parts (reserved words need them).
  REQUIRE(parse_set("SET \"select\".x = 'y'").name == "select.x");
  REQUIRE(parse_set("SET App.\"From\" TO 1").name == "app.From");
  REQUIRE(parse_set("RESET \"user\".\"a\"\"b\"").name == "user.a\"b");
  REQUIRE(parse_set("SET \"x\".").kind == K::None);
  REQUIRE(parse_set("SET LOCAL search_path = x").kind == K::None);
  REQUIRE(parse_set("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").kind == K::None);
  // SET ROLE / SESSION AUTHORIZATION follow the client as settings.
  REQUIRE(parse_set("SET SESSION AUTHORIZATION bob").name == "session_authorization");
  REQUIRE(parse_set("SET ROLE bob").name == "role");
  REQUIRE(parse_set("set session role 'bob'").name == "role");
  REQUIRE(parse_set("RESET ROLE").name == "role");
  REQUIRE(parse_set("RESET ROLE").kind == K::Reset);
  REQUIRE(parse_set("RESET SESSION AUTHORIZATION").name == "session_authorization");
  REQUIRE(parse_set("RESET SESSION x").kind == K::None);
  REQUIRE(parse_set("SET LOCAL ROLE bob").kind == K::None);
  REQUIRE(parse_set("SET CONSTRAINTS ALL DEFERRED").kind == K::None);
  // The session's transaction defaults follow as their three settings.
  const auto ch = parse_set("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
  REQUIRE(ch.kind == K::Set);
  REQUIRE(ch.name == "default_transaction_isolation");
  REQUIRE(ch.characteristics);
  REQUIRE_FALSE(parse_set("SET search_path = x").characteristics);
  REQUIRE(parse_set("RESET work_mem").kind == K::Reset);
  REQUIRE(parse_set("RESET ALL").kind == K::ResetAll);
  REQUIRE(parse_set("SELECT 1").kind == K::None);
  REQUIRE(parse_set("SET x").kind == K::None);
  // The first word decides at once when the statement starts with it; a
  // comment or whitespace first takes the full scan, with the same outcome.
  REQUIRE(parse_set("sEt work_mem = 1").name == "work_mem");
  REQUIRE(parse_set("Reset work_mem").kind == K::Reset);
  REQUIRE(parse_set("SET(x)").kind == K::None);
  REQUIRE(parse_set("/* c */ SET work_mem = 1").name == "work_mem");
  REQUIRE(parse_set("\n\tset work_mem = 1").name == "work_mem");
  REQUIRE(parse_set("SETTINGS x = 1").kind == K::None);
  REQUIRE(parse_set("SET_x = 1").kind == K::None);
  REQUIRE(parse_set("SET1 x = 1").kind == K::None);
  REQUIRE(parse_set("RESETS x").kind == K::None);
  REQUIRE(parse_set("S").kind == K::None);
  REQUIRE(parse_set("").kind == K::None);
}

TEST_CASE("sql::first_word_not: the recognisers' fast exit") {
  using sqlmux::pool::sql::first_word_not;
  REQUIRE(first_word_not("SELECT 1", "SET", "RESET"));
  REQUIRE(first_word_not("settings", "SET", "RESET"));
  REQUIRE(first_word_not("set_config", "SET"));
  REQUIRE(first_word_not("seté", "SET"));
  REQUIRE_FALSE(first_word_not("set x", "SET", "RESET"));
  REQUIRE_FALSE(first_word_not("ReSeT", "SET", "RESET"));
  REQUIRE_FALSE(first_word_not("SET;", "SET"));
  REQUIRE_FALSE(first_word_not(" SELECT", "SET"));  // not a letter first: full scan
  REQUIRE_FALSE(first_word_not("/*x*/SELECT", "SET"));
  REQUIRE_FALSE(first_word_not("", "SET"));
  REQUIRE(first_word_not("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "SET"));
  REQUIRE_FALSE(first_word_not("deallocate all", "DISCARD", "DEALLOCATE"));
}

TEST_CASE("set_config() calls: literal names followed, others unknown") {
  using sqlmux::pool::find_set_config;
  auto c = find_set_config("SELECT set_config('search_path', $1, false)");
  REQUIRE(c.names == std::vector<std::string>{"search_path"});
  REQUIRE_FALSE(c.unknown);
  c = find_set_config(
      "select pg_catalog.SET_CONFIG ( 'App.X' , 'y', false), set_config('it''s', '', true)");
  REQUIRE(c.names == std::vector<std::string>{"app.x", "it's"});
  c = find_set_config("SELECT set_config($1, $2, false)");
  REQUIRE(c.names.empty());
  REQUIRE(c.unknown);
  REQUIRE(find_set_config("SELECT set_config(name, 'x', false) FROM t").unknown);
  REQUIRE(find_set_config("SELECT my_set_config('a', 1), set_config_x, t.set_config").empty());
  REQUIRE(find_set_config("SELECT pgbench_accounts.aid FROM pgbench_accounts").empty());
  REQUIRE(find_set_config("").empty());
  REQUIRE(find_set_config("set_config('unterminated").unknown);
}

TEST_CASE("simple queries split into statements") {
  using sqlmux::pool::split_statements;
  auto v = split_statements("BEGIN; SET work_mem = '7MB'; COMMIT");
  REQUIRE(v.size() == 3);
  REQUIRE(sqlmux::pool::parse_set(v[1]).name == "work_mem");
  REQUIRE(split_statements("SELECT ';' ; SELECT \"a;b\"").size() == 2);
  REQUIRE(split_statements("SELECT 1 -- ; not here\n; SELECT 2").size() == 2);
  REQUIRE(split_statements("SELECT /* ; /* nested ; */ */ 1").size() == 1);
  REQUIRE(split_statements("DO $x$ BEGIN PERFORM 1; END $x$; SELECT $1").size() == 2);
  REQUIRE(split_statements("SELECT 'it''s;'; SELECT 2;").size() == 2);
  REQUIRE(split_statements("").empty());
}

TEST_CASE("tracker: recording a replayable segment") {
  ResponseTracker t;
  t.push(Entry{Kind::Parse, Action::Swallow, {}, "s", {}, false});  // injected before: not recorded
  t.start_recording();
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Describe));
  t.push(fwd(Kind::Execute));
  t.push(fwd(Kind::Sync));
  REQUIRE_FALSE(t.recording());
  REQUIRE(t.recorded_complete());
  REQUIRE(t.recorded_describes());
  REQUIRE(t.recorded().size() == 4);
  t.push(fwd(Kind::Bind));  // the next segment is not part of it
  REQUIRE(t.recorded().size() == 4);
  t.clear_recording();
  REQUIRE(t.recorded().empty());
}

TEST_CASE("tracker: a segment without Describe, or with a Parse, is not replayable") {
  ResponseTracker t;
  t.start_recording();
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Execute));
  t.push(fwd(Kind::Describe));  // after Execute: too late
  t.push(fwd(Kind::Sync));
  REQUIRE(t.recorded_complete());
  REQUIRE_FALSE(t.recorded_describes());
  t.start_recording();
  t.push(fwd(Kind::Bind));
  t.push(fwd(Kind::Parse));
  REQUIRE_FALSE(t.recording());
  t.push(fwd(Kind::Sync));
  REQUIRE_FALSE(t.recorded_complete());
  t.start_recording();
  t.push(fwd(Kind::Bind));
  t.push(synth(Kind::Close, "3"));
  REQUIRE_FALSE(t.recording());
}

TEST_CASE("tracker: the queue keeps its order across reuse, wrap-around and growth") {
  ResponseTracker t;
  // Reused slots: a popped synthetic reply leaves nothing behind.
  t.push(synth(Kind::Close, "3"));
  std::string out;
  t.take_synthetic(out, 'I');
  REQUIRE(out == "3");
  REQUIRE(t.empty());
  auto name = [](int i) {
    std::string s(1, 's');
    s += std::to_string(i);
    return s;
  };
  // Head moved on: 20 entries wrap around the first ring and grow it twice.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) {
      if (i % 5 == 4) {
        t.push(Entry{Kind::Parse, Action::Swallow, {}, name(i), {}, false});
      } else {
        REQUIRE(t.push_plain(i % 2 == 0 ? Kind::Bind : Kind::Execute));
      }
    }
    REQUIRE(t.size() == 20);
    for (int i = 0; i < 20; ++i) {
      const Entry* h = t.head();
      REQUIRE(h != nullptr);
      if (i % 5 == 4) {
        REQUIRE(h->kind == Kind::Parse);
        REQUIRE(h->action == Action::Swallow);
        REQUIRE(h->stmt == name(i));
      } else {
        REQUIRE(h->kind == (i % 2 == 0 ? Kind::Bind : Kind::Execute));
        REQUIRE(h->action == Action::Forward);
        REQUIRE(h->stmt.empty());  // a slot that held "s4" was cleared
        REQUIRE(h->reply.empty());
        REQUIRE_FALSE(h->append_ready);
      }
      t.complete(false, nullptr);
    }
    REQUIRE(t.empty());
  }
}

TEST_CASE("tracker: push_plain follows push while skipping and recording") {
  ResponseTracker t;
  t.push_plain(Kind::Bind);
  REQUIRE(run(t, "E") == "E");
  REQUIRE(t.skipping());
  REQUIRE_FALSE(t.push_plain(Kind::Execute));
  REQUIRE(t.push_plain(Kind::Sync));
  REQUIRE_FALSE(t.skipping());
  REQUIRE(run(t, "Z") == "Z");
  t.start_recording();
  t.push_plain(Kind::Bind);
  t.push_plain(Kind::Describe);
  t.push_plain(Kind::Execute);
  t.push_plain(Kind::Sync);
  REQUIRE(t.recorded_complete());
  REQUIRE(t.recorded_describes());
  REQUIRE(t.recorded().size() == 4);
  t.start_recording();
  t.push_plain(Kind::Bind);
  t.push_plain(Kind::Query);  // not replayable
  REQUIRE_FALSE(t.recording());
  REQUIRE_FALSE(t.recorded_complete());
}

TEST_CASE("sql::first_word_not: a list of words") {
  using sqlmux::pool::sql::first_word_not;
  const std::initializer_list<std::string_view> kWords = {"DEALLOCATE", "DISCARD", "SET", "RESET"};
  REQUIRE(first_word_not("SELECT abalance FROM pgbench_accounts", kWords));
  REQUIRE(first_word_not("settings", kWords));
  REQUIRE(first_word_not("Resets(1)", kWords));
  REQUIRE_FALSE(first_word_not("set x = 1", kWords));
  REQUIRE_FALSE(first_word_not("reset all", kWords));
  REQUIRE_FALSE(first_word_not("Discard all", kWords));
  REQUIRE_FALSE(first_word_not("DEALLOCATE p", kWords));
  REQUIRE_FALSE(first_word_not("\tSELECT 1", kWords));  // not a letter first: full scan
  REQUIRE_FALSE(first_word_not("@SET", kWords));
  REQUIRE_FALSE(first_word_not("[SET", kWords));  // '[' | 0x20 is '{': not a letter
}
