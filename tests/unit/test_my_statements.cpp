// my_statements: client statement ids (with MariaDB's "last prepared" id),
// per-backend LRU of prepared statements, and parameter types per backend.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pool/mysql/statements.h"
#include "protocol/mysql/command.h"

using sqlmux::my::kLastPreparedStatement;
using sqlmux::my::ParamType;
using sqlmux::pool::make_statement_def;
using sqlmux::pool::MyBackendStatements;
using sqlmux::pool::MyClientStatements;
using sqlmux::pool::statement_key;

namespace {
const ParamType kLongLong{0x08, 0x00};
const ParamType kVarString{0xfd, 0x00};
const ParamType kUnsignedLong{0x03, sqlmux::my::kParamUnsigned};
}  // namespace

TEST_CASE("my_statements: keys and definitions") {
  CHECK(statement_key(std::nullopt, "SELECT 1") == std::string("\0SELECT 1", 9));
  CHECK(statement_key(std::string("shop"), "SELECT 1") == std::string("shop\0SELECT 1", 13));
  // The same text in two schemas is two statements (names resolve at PREPARE).
  CHECK(statement_key(std::string("a"), "SELECT * FROM t") !=
        statement_key(std::string("b"), "SELECT * FROM t"));
  CHECK(statement_key(std::string("a"), "bSELECT") != statement_key(std::string("ab"), "SELECT"));

  auto def = make_statement_def("SELECT ?", std::string("shop"), 1, 1);
  CHECK(def->sql == "SELECT ?");
  CHECK(def->schema == std::optional<std::string>("shop"));
  CHECK(def->num_params == 1);
  CHECK(def->num_columns == 1);
  CHECK(def->param_types.empty());
  CHECK(def->key == statement_key(std::string("shop"), "SELECT ?"));
}

TEST_CASE("my_statements: client ids start at 1, increase, are never reused") {
  MyClientStatements c;
  const uint32_t a = c.add(make_statement_def("SELECT 1", std::nullopt, 0, 1));
  const uint32_t b = c.add(make_statement_def("SELECT 2", std::nullopt, 0, 1));
  CHECK(a == 1);
  CHECK(b == 2);
  CHECK(c.size() == 2);
  REQUIRE(c.find(a));
  CHECK(c.find(a)->sql == "SELECT 1");
  CHECK(c.find(b)->sql == "SELECT 2");
  CHECK(!c.find(0));
  CHECK(!c.find(3));

  CHECK(c.remove(a));
  CHECK(!c.remove(a));
  CHECK(!c.find(a));
  CHECK(c.size() == 1);
  CHECK(c.add(make_statement_def("SELECT 1", std::nullopt, 0, 1)) == 3);  // not 1 again

  c.clear();  // COM_RESET_CONNECTION
  CHECK(c.size() == 0);
  CHECK(!c.find(b));
  CHECK(c.add(make_statement_def("SELECT 3", std::nullopt, 0, 1)) == 4);
}

TEST_CASE("my_statements: the definition outlives its client id") {
  MyClientStatements c;
  const uint32_t id = c.add(make_statement_def("SELECT ?", std::nullopt, 1, 1));
  auto held = c.find(id);  // e.g. by a PREPARE in flight on a backend
  c.find(id)->param_types = {kLongLong};
  REQUIRE(c.remove(id));
  CHECK(held->param_types == std::vector<ParamType>{kLongLong});
  CHECK(held.use_count() == 1);
}

TEST_CASE("my_statements: kLastPreparedStatement as MariaDB resolves it") {
  MyClientStatements c;
  // Nothing prepared yet: ER_UNKNOWN_STMT_HANDLER on the server.
  CHECK(c.resolve(kLastPreparedStatement) == 0);
  CHECK(!c.find(kLastPreparedStatement));

  const uint32_t a = c.add(make_statement_def("SELECT 'a'", std::nullopt, 0, 1));
  const uint32_t b = c.add(make_statement_def("SELECT 'b'", std::nullopt, 0, 1));
  CHECK(c.resolve(kLastPreparedStatement) == b);
  CHECK(c.find(kLastPreparedStatement)->sql == "SELECT 'b'");
  CHECK(c.resolve(a) == a);  // other ids as they are

  // A failed PREPARE leaves no "last" statement (a is not used instead).
  c.prepare_failed();
  CHECK(!c.find(kLastPreparedStatement));
  CHECK(c.find(b));

  // Closing the last statement (by its id or by -1) leaves none either.
  const uint32_t d = c.add(make_statement_def("SELECT 'd'", std::nullopt, 0, 1));
  CHECK(c.remove(d));
  CHECK(!c.find(kLastPreparedStatement));
  const uint32_t e = c.add(make_statement_def("SELECT 'e'", std::nullopt, 0, 1));
  CHECK(c.remove(kLastPreparedStatement));
  CHECK(!c.find(e));
  CHECK(!c.remove(kLastPreparedStatement));
  // Closing another statement keeps it.
  const uint32_t f = c.add(make_statement_def("SELECT 'f'", std::nullopt, 0, 1));
  CHECK(c.remove(a));
  CHECK(c.resolve(kLastPreparedStatement) == f);
  c.clear();
  CHECK(c.resolve(kLastPreparedStatement) == 0);
}

TEST_CASE("my_statements: a client's statements restored elsewhere (online upgrade)") {
  MyClientStatements c;
  const uint32_t a = c.add(make_statement_def("SELECT ?", std::string("db1"), 1, 1));
  CHECK(c.add(make_statement_def("SELECT 2", std::nullopt, 0, 1)) == 2);
  const uint32_t d = c.add(make_statement_def("SELECT 3", std::nullopt, 0, 1));
  REQUIRE(c.remove(2));
  c.find(a)->param_types = {kLongLong};
  std::vector<std::pair<uint32_t, std::shared_ptr<sqlmux::pool::MyStatementDef>>> defs;
  c.for_each([&](uint32_t id, const sqlmux::pool::MyStatementDef& def) {
    defs.emplace_back(id, std::make_shared<sqlmux::pool::MyStatementDef>(def));
  });
  REQUIRE(defs.size() == 2);
  CHECK(defs[0].first == a);
  CHECK(defs[1].first == d);
  CHECK(c.next_id() == 4);
  CHECK(c.last_id() == d);

  MyClientStatements r;
  REQUIRE(r.restore(defs, c.next_id(), c.last_id()));
  REQUIRE(r.find(a));
  CHECK(r.find(a)->sql == "SELECT ?");
  CHECK(r.find(a)->key == statement_key(std::string("db1"), "SELECT ?"));
  CHECK(r.find(a)->param_types == std::vector<ParamType>{kLongLong});
  CHECK(!r.find(2));
  CHECK(r.find(kLastPreparedStatement)->sql == "SELECT 3");
  CHECK(r.add(make_statement_def("SELECT 4", std::nullopt, 0, 1)) == 4);  // ids go on
  CHECK_FALSE(r.restore(defs, 5, 0));                                     // only into an empty set

  // What add() could not have made is refused, nothing changed.
  const auto def = make_statement_def("SELECT 1", std::nullopt, 0, 1);
  MyClientStatements e;
  CHECK_FALSE(e.restore({{0, def}}, 2, 0));
  CHECK_FALSE(e.restore({{kLastPreparedStatement, def}}, kLastPreparedStatement, 0));
  CHECK_FALSE(e.restore({{3, def}}, 3, 0));            // not below next
  CHECK_FALSE(e.restore({{1, def}, {1, def}}, 3, 0));  // twice
  CHECK_FALSE(e.restore({{1, def}}, 3, 2));            // last not among them
  CHECK_FALSE(e.restore({{1, nullptr}}, 3, 0));
  CHECK_FALSE(e.restore({}, 0, 0));
  CHECK(e.size() == 0);
  CHECK(e.add(make_statement_def("SELECT 1", std::nullopt, 0, 1)) == 1);
}

TEST_CASE("my_statements: backend statements by key, least recently used closed") {
  MyBackendStatements b(3);
  CHECK(b.limit() == 3);
  CHECK(b.add("k1", 101, 0).empty());
  CHECK(b.add("k2", 102, 1).empty());
  CHECK(b.add("k3", 103, 2).empty());
  CHECK(b.size() == 3);
  REQUIRE(b.find("k1"));  // k1 is now the most recently used
  CHECK(b.find("k1")->backend_id == 101);
  CHECK(b.find("k3")->num_params == 2);
  CHECK(!b.find("k9"));

  // Past the limit: k2, the least recently used, is to be closed.
  CHECK(b.add("k4", 104, 0) == std::vector<uint32_t>{102});
  CHECK(b.size() == 3);
  CHECK(!b.find("k2"));
  CHECK(b.add("k5", 105, 0) == std::vector<uint32_t>{101});  // k3 was touched after k1
  CHECK(b.add("k6", 106, 0) == std::vector<uint32_t>{103});

  // Prepared twice: the old id is closed, the new one kept.
  CHECK(b.add("k6", 116, 0) == std::vector<uint32_t>{106});
  CHECK(b.find("k6")->backend_id == 116);
  CHECK(b.size() == 3);

  CHECK(b.remove("k6") == std::optional<uint32_t>(116));
  CHECK(!b.remove("k6"));
  CHECK(b.size() == 2);
  CHECK(b.add("k7", 107, 0).empty());  // room again

  b.clear();  // COM_RESET_CONNECTION closed them on the server
  CHECK(b.size() == 0);
  CHECK(!b.find("k4"));
  CHECK(b.add("k4", 1, 0).empty());
}

TEST_CASE("my_statements: a limit of 0 keeps one; keys with NULs") {
  MyBackendStatements b(0);
  CHECK(b.limit() == 1);
  const std::string k1 = statement_key(std::string("a"), "SELECT 1");
  const std::string k2 = statement_key(std::string("b"), "SELECT 1");
  CHECK(b.add(k1, 1, 0).empty());
  CHECK(b.add(k2, 2, 0) == std::vector<uint32_t>{1});
  CHECK(!b.find(k1));
  CHECK(b.find(k2)->backend_id == 2);
  CHECK(!b.find(std::string_view(k2).substr(0, 2)));
}

TEST_CASE("my_statements: many statements through a small cache") {
  MyBackendStatements b(16);
  std::vector<uint32_t> closed;
  size_t added = 0;
  for (uint32_t i = 1; i <= 1000; ++i) {
    const std::string key = statement_key(std::nullopt, "SELECT " + std::to_string(i % 40));
    if (b.find(key) == nullptr) {
      ++added;
      for (uint32_t id : b.add(key, i, 0)) closed.push_back(id);
    }
    CHECK(b.size() <= 16);
  }
  // Every id handed out is either still here or was closed exactly once.
  std::sort(closed.begin(), closed.end());
  CHECK(std::adjacent_find(closed.begin(), closed.end()) == closed.end());
  CHECK(b.size() == 16);
  CHECK(added - closed.size() == b.size());
  CHECK(added == 1000);  // 40 keys cycling through 16 slots: always the least recent
}

TEST_CASE("my_statements: types bound per backend") {
  MyBackendStatements b(10);
  const std::vector<ParamType> two = {kLongLong, kVarString};
  const std::vector<ParamType> other = {kUnsignedLong, kVarString};
  CHECK(b.types_bound("k") == nullptr);
  CHECK(!b.must_bind("k", two));  // not prepared here: the caller prepares first
  b.set_types_bound("k", two);    // ignored: not here
  CHECK(b.types_bound("k") == nullptr);

  CHECK(b.add("k", 7, 2).empty());
  REQUIRE(b.types_bound("k") != nullptr);
  CHECK(b.types_bound("k")->empty());
  CHECK(b.must_bind("k", two));  // never bound here
  CHECK(!b.must_bind("k", {}));  // the client never bound any: forward as is
  b.set_types_bound("k", two);   // an EXECUTE with new-params-bound=1 went here
  CHECK(*b.types_bound("k") == two);
  CHECK(!b.must_bind("k", two));   // same types: forward as is
  CHECK(b.must_bind("k", other));  // another client bound others on its own backend
  // The entry find() returned answers the same (MyClient asks that way).
  const MyBackendStatements::Entry* e = b.find("k");
  REQUIRE(e != nullptr);
  CHECK(!MyBackendStatements::must_bind(*e, two));
  CHECK(MyBackendStatements::must_bind(*e, other));
  CHECK(!MyBackendStatements::must_bind(*e, {}));
  b.set_types_bound("k", other);
  CHECK(!b.must_bind("k", other));
  CHECK(!MyBackendStatements::must_bind(*b.find("k"), other));
  CHECK(b.add("z", 9, 0).empty());  // no parameters: never rewritten
  CHECK(!MyBackendStatements::must_bind(*b.find("z"), two));

  // Re-prepared: nothing bound any more.
  (void)b.add("k", 8, 2);
  CHECK(b.types_bound("k")->empty());
  CHECK(b.must_bind("k", other));

  // No parameters: nothing to bind.
  CHECK(b.add("none", 9, 0).empty());
  CHECK(!b.must_bind("none", other));
}
