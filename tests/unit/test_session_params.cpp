#include <catch2/catch.hpp>

#include "daemon/net/buffer.h"
#include "pool/intrusive_list.h"
#include "pool/pg/session_params.h"

using sqlmux::pool::SessionParams;

namespace {
SessionParams defaults() {
  SessionParams p;
  p.set("DateStyle", "ISO, MDY", true);
  p.set("TimeZone", "Etc/UTC", true);
  p.set("application_name", "", true);
  return p;
}
}  // namespace

TEST_CASE("session params: names compare case-insensitively, first spelling kept") {
  SessionParams p;
  p.set("DateStyle", "ISO", true);
  p.set("datestyle", "German", false);
  REQUIRE(p.size() == 1);
  REQUIRE(p.find("DATESTYLE")->name == "DateStyle");
  REQUIRE(p.find("datestyle")->value == "German");
  REQUIRE(p.find("DateStyle")->reported);  // once reported, stays reported
  p.erase("DATEstyle");
  REQUIRE(p.empty());
}

TEST_CASE("session params: no change when client and backend agree") {
  SessionParams backend = defaults();
  SessionParams client = defaults();
  REQUIRE(sqlmux::pool::diff(client, backend).empty());
  REQUIRE(sqlmux::pool::apply_sql({}).empty());
}

TEST_CASE("session params: changed and new values are set, leftovers reset") {
  SessionParams backend = defaults();
  backend.set("search_path", "tenant_1", false);  // set for an earlier client
  backend.set("extra_float_digits", "3", false);  // set for an earlier client
  SessionParams client = defaults();
  client.set("TimeZone", "Europe/Paris", true);
  client.set("search_path", "tenant_2, public", false);
  client.set("extra_float_digits", "3", false);
  auto changes = sqlmux::pool::diff(client, backend);
  REQUIRE(changes.size() == 2);
  std::string sql = sqlmux::pool::apply_sql(changes);
  REQUIRE(sql ==
          "SELECT pg_catalog.set_config('search_path', 'tenant_2, public', false), "
          "pg_catalog.set_config('TimeZone', 'Europe/Paris', false);");

  SessionParams other = defaults();  // never asked for search_path
  auto back = sqlmux::pool::diff(other, backend);
  REQUIRE(back.size() == 2);
  REQUIRE(sqlmux::pool::apply_sql(back) == "RESET \"extra_float_digits\";RESET \"search_path\";");
}

TEST_CASE("session params: reported values are never reset, only re-set") {
  SessionParams backend = defaults();
  backend.set("TimeZone", "Asia/Tokyo", true);  // a client changed it
  SessionParams client = defaults();
  auto changes = sqlmux::pool::diff(client, backend);
  REQUIRE(changes.size() == 1);
  REQUIRE_FALSE(changes[0].reset);
  REQUIRE(changes[0].value == "Etc/UTC");
}

TEST_CASE("session params: clear_unreported keeps what the server reports") {
  SessionParams p = defaults();
  p.set("search_path", "x", false);
  p.clear_unreported();
  REQUIRE(p.size() == 3);
  REQUIRE(p.find("search_path") == nullptr);
}

TEST_CASE("session params: quoting cannot break out of the literal") {
  using sqlmux::pool::quote_literal;
  REQUIRE(quote_literal("abc") == "'abc'");
  REQUIRE(quote_literal("it's") == "'it''s'");
  REQUIRE(quote_literal("a\\b") == "E'a\\\\b'");
  REQUIRE(quote_literal("x'); DROP TABLE t; --") == "'x''); DROP TABLE t; --'");
  std::vector<std::string> skipped;
  auto sql = sqlmux::pool::apply_sql({{"bad name;", "v", false}, {"a..b", "v", false}}, &skipped);
  REQUIRE(skipped == std::vector<std::string>{"a..b"});
  REQUIRE(sql == "SELECT pg_catalog.set_config('bad name;', 'v', false);");
}

TEST_CASE("session params: setting names are quoted per dotted part") {
  using sqlmux::pool::quote_setting_name;
  REQUIRE(quote_setting_name("work_mem") == "\"work_mem\"");
  // Reserved words, capitals, spaces: each part a quoted identifier.
  REQUIRE(quote_setting_name("select.x") == "\"select\".\"x\"");
  REQUIRE(quote_setting_name("user.from.Where") == "\"user\".\"from\".\"Where\"");
  REQUIRE(quote_setting_name("my app.a b") == "\"my app\".\"a b\"");
  // Embedded quotes are doubled; a semicolon stays inside the identifier.
  REQUIRE(quote_setting_name("x\";RESET ALL;--.y") == "\"x\"\";RESET ALL;--\".\"y\"");
  REQUIRE(quote_setting_name("a'b.c") == "\"a'b\".\"c\"");
  // Unicode passes through byte for byte.
  REQUIRE(quote_setting_name("\xc3\xa9t\xc3\xa9.\xe5\x90\x8d") ==
          "\"\xc3\xa9t\xc3\xa9\".\"\xe5\x90\x8d\"");
  // Not writable as identifiers: empty or over-long parts, NUL.
  REQUIRE_FALSE(quote_setting_name(""));
  REQUIRE_FALSE(quote_setting_name("a..b"));
  REQUIRE_FALSE(quote_setting_name(".a"));
  REQUIRE_FALSE(quote_setting_name("a."));
  REQUIRE_FALSE(quote_setting_name("a." + std::string(64, 'x')));
  REQUIRE(quote_setting_name("a." + std::string(63, 'x')));
  REQUIRE_FALSE(quote_setting_name(std::string("a\0b", 3)));
}

TEST_CASE("session params: resets of hostile names are quoted, values are literals") {
  SessionParams backend = defaults();
  backend.set("select.x", "y", false);             // SET "select".x = 'y'
  backend.set("a\"b.c", "1", false);               // SET "a""b".c = 1
  backend.set("\xc3\xa9t\xc3\xa9.v", "1", false);  // unicode
  SessionParams client = defaults();
  client.set("app.note", "it's \\ fine", false);
  const auto sql = sqlmux::pool::apply_sql(sqlmux::pool::diff(client, backend));
  REQUIRE(sql ==
          "SELECT pg_catalog.set_config('app.note', E'it''s \\\\ fine', false);"
          "RESET \"a\"\"b\".\"c\";RESET \"select\".\"x\";RESET \"\xc3\xa9t\xc3\xa9\".\"v\";");
}

TEST_CASE("startup options: -c forms, --name=value, escapes") {
  std::vector<std::pair<std::string, std::string>> out;
  REQUIRE(sqlmux::pool::parse_startup_options(
      "-c search_path=a,b   -cgeqo=off --work-mem=4MB -c application_name=my\\ app", out));
  REQUIRE(out.size() == 4);
  REQUIRE(out[0] == std::make_pair(std::string("search_path"), std::string("a,b")));
  REQUIRE(out[1] == std::make_pair(std::string("geqo"), std::string("off")));
  REQUIRE(out[2] == std::make_pair(std::string("work_mem"), std::string("4MB")));
  REQUIRE(out[3] == std::make_pair(std::string("application_name"), std::string("my app")));
  out.clear();
  REQUIRE(sqlmux::pool::parse_startup_options("", out));
  REQUIRE(out.empty());
  REQUIRE_FALSE(sqlmux::pool::parse_startup_options("-c", out));
  REQUIRE_FALSE(sqlmux::pool::parse_startup_options("-c novalue", out));
  REQUIRE_FALSE(sqlmux::pool::parse_startup_options("-B 100", out));
  REQUIRE_FALSE(sqlmux::pool::parse_startup_options("-c =x", out));
}

TEST_CASE("connection keys are not session parameters") {
  REQUIRE(sqlmux::pool::is_connection_key("user"));
  REQUIRE(sqlmux::pool::is_connection_key("Database"));
  REQUIRE(sqlmux::pool::is_connection_key("options"));
  REQUIRE_FALSE(sqlmux::pool::is_connection_key("application_name"));
}

namespace {
struct Item {
  int v;
  sqlmux::pool::ListNode node;
};
}  // namespace

TEST_CASE("intrusive list: one state, one list") {
  using List = sqlmux::pool::IntrusiveList<Item, &Item::node>;
  List a;
  List b;
  Item x{1, {}};
  Item y{2, {}};
  Item z{3, {}};
  a.push_back(&x);
  a.push_back(&y);
  a.push_back(&z);
  REQUIRE(a.size() == 3);
  REQUIRE(a.front() == &x);
  a.remove(&y);
  b.push_back(&y);
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 1);
  REQUIRE(b.contains(&y));
  REQUIRE_FALSE(a.contains(&y));
  int sum = 0;
  a.for_each([&](Item* it) {
    sum += it->v;
    a.remove(it);  // removal during iteration is allowed
  });
  REQUIRE(sum == 4);
  REQUIRE(a.empty());
  REQUIRE(a.front() == nullptr);
  b.remove(&y);
}

TEST_CASE("buffer: ranges, compaction, growth and release") {
  sqlmux::Buffer buf;
  REQUIRE(buf.empty());
  REQUIRE(buf.capacity() == 0);
  buf.append("hello", 5);
  REQUIRE(buf.size() == 5);
  buf.consume(2);
  REQUIRE(std::string(reinterpret_cast<const char*>(buf.data()), buf.size()) == "llo");
  std::string big(10000, 'x');
  buf.append(big.data(), big.size());
  REQUIRE(buf.size() == 10003);
  REQUIRE(buf.data()[0] == 'l');
  REQUIRE(buf.data()[3] == 'x');
  buf.consume(buf.size());
  REQUIRE(buf.empty());
  buf.shrink_if_empty();
  REQUIRE(buf.capacity() == 0);
  uint8_t* w = buf.reserve(100);
  REQUIRE(buf.writable() >= 100);
  w[0] = 'a';
  buf.commit(1);
  REQUIRE(buf.size() == 1);
}

TEST_CASE("session params: same_values walks names and values, not spelling or flags") {
  SessionParams a = defaults();
  SessionParams b;
  b.set("datestyle", "ISO, MDY", false);
  b.set("timezone", "Etc/UTC", true);
  b.set("Application_Name", "", true);
  REQUIRE(a.same_values(b));
  REQUIRE(sqlmux::pool::diff(a, b).empty());
  b.set("TimeZone", "Europe/Paris", true);
  REQUIRE_FALSE(a.same_values(b));
  REQUIRE(sqlmux::pool::diff(a, b).size() == 1);
  b.set("TimeZone", "Etc/UTC", true);
  b.set("search_path", "x", false);
  REQUIRE_FALSE(a.same_values(b));
  // A long name with capitals (past the on-stack lowering) still matches.
  const std::string longname = "Ext." + std::string(80, 'Q');
  a.set(longname, "1", false);
  REQUIRE(a.find(std::string(longname.size(), 'q').replace(0, 4, "ext.")) != nullptr);
}

TEST_CASE("buffer: storage blocks are reused after release") {
  for (int round = 0; round < 3; ++round) {
    sqlmux::Buffer a;
    sqlmux::Buffer b;
    std::string big(70000, 'y');  // grows through several block sizes
    a.append(big.data(), big.size());
    b.append("z", 1);
    REQUIRE(a.size() == big.size());
    REQUIRE(a.data()[69999] == 'y');
    REQUIRE(b.data()[0] == 'z');
    a.consume(a.size());
    a.shrink_if_empty();
    REQUIRE(a.capacity() == 0);
  }
}

TEST_CASE("session params: server-owned parameters are never applied", "[params]") {
  using namespace sqlmux::pool;
  SessionParams client;
  client.set("in_hot_standby", "on", true);
  client.set("server_version", "15.1", true);
  client.set("TimeZone", "UTC", true);
  SessionParams backend;
  backend.set("in_hot_standby", "off", true);
  backend.set("server_version", "15.2", true);
  backend.set("TimeZone", "Europe/Paris", true);
  const auto changes = diff(client, backend);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].name == "TimeZone");
  CHECK(changes[0].value == "UTC");
  CHECK(is_server_owned("IN_HOT_STANDBY"));
  CHECK_FALSE(is_server_owned("search_path"));
}

TEST_CASE("session params: a base value is set first, from the same literal rules") {
  sqlmux::pool::ParamChange ch{"DateStyle", "dmy", false, std::string("ISO, MDY")};
  REQUIRE(sqlmux::pool::apply_sql({ch}) ==
          "SELECT pg_catalog.set_config('DateStyle', 'ISO, MDY', false), "
          "pg_catalog.set_config('DateStyle', 'dmy', false);");
}

TEST_CASE("session params: a comparison's outcome is cached until either set changes") {
  SessionParams a = defaults();
  SessionParams b = defaults();
  SessionParams c = defaults();
  REQUIRE(a.same_values(b));  // compared, then one stamp
  REQUIRE(b.same_values(c));
  REQUIRE(a.same_values(c));
  b.set("TimeZone", "Europe/Paris", true);
  REQUIRE_FALSE(a.same_values(b));
  REQUIRE_FALSE(b.same_values(c));
  REQUIRE(a.same_values(c));
  b.set("TimeZone", "Etc/UTC", true);  // back to equal contents
  REQUIRE(b.same_values(a));
  REQUIRE(sqlmux::pool::diff(c, b).empty());
  // Setting a value it already has changes nothing.
  a.set("DateStyle", "ISO, MDY", false);
  REQUIRE(a.same_values(c));
  a.set("search_path", "s", false);
  REQUIRE_FALSE(a.same_values(c));
  REQUIRE(sqlmux::pool::diff(c, a).size() == 1);
  a.erase("search_path");
  REQUIRE(a.same_values(c));
  // A copy is equal; a moved-from set is empty and equal only to empty sets.
  SessionParams d = a;
  REQUIRE(d.same_values(a));
  SessionParams e = std::move(d);
  REQUIRE(e.same_values(a));
  REQUIRE(d.empty());                       // NOLINT(bugprone-use-after-move)
  REQUIRE_FALSE(d.same_values(a));          // NOLINT(bugprone-use-after-move)
  REQUIRE(d.same_values(SessionParams{}));  // NOLINT(bugprone-use-after-move)
  a.set("work_mem", "64MB", false);
  a.clear_unreported();
  REQUIRE(a.same_values(c));
  a.clear();
  REQUIRE(a.same_values(SessionParams{}));
  REQUIRE_FALSE(a.same_values(c));
}
