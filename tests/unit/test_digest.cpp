// pool/digest: statement normalization, the latency sketch, the bounded table.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "pool/digest.h"

using sqlmux::pool::command_tag_rows;
using sqlmux::pool::DigestRow;
using sqlmux::pool::DigestTable;
using sqlmux::pool::LatencySketch;
using sqlmux::pool::merge_digests;
using sqlmux::pool::normalize_sql;
using sqlmux::pool::SqlDialect;

namespace {
std::string pg(std::string_view s) {
  std::string out;
  normalize_sql(s, SqlDialect::PostgreSQL, out);
  return out;
}
std::string my(std::string_view s) {
  std::string out;
  normalize_sql(s, SqlDialect::MySQL, out);
  return out;
}
}  // namespace

TEST_CASE("digest: PostgreSQL literals, comments and whitespace", "[pool][digest]") {
  CHECK(pg("SELECT abalance FROM pgbench_accounts WHERE aid = 4217;") ==
        "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  CHECK(pg("select  *\n\tfrom t where a = 'it''s' and b = 1.5e-3") ==
        "select * from t where a = ? and b = ?");
  CHECK(pg("SELECT E'a\\'b', $$x'y$$, $tag$ $$ $tag$, 0x1F") == "SELECT ?");
  CHECK(pg("SELECT 1 -- comment\n + /* a /* nested */ one */ 2") == "SELECT ? + ?");
  CHECK(pg("SELECT * FROM t WHERE id IN (1, 2, 3) AND s IN ('a','b')") ==
        "SELECT * FROM t WHERE id IN (?) AND s IN (?)");
  CHECK(pg("INSERT INTO \"My Table\" (a, b) VALUES (1, 'x')") ==
        "INSERT INTO \"My Table\" (a, b) VALUES (?)");
  CHECK(pg("SELECT $1, $2 FROM t1 WHERE x2 = $3") == "SELECT $1, $2 FROM t1 WHERE x2 = $3");
  CHECK(pg("SELECT B'101', X'ff', U&'d\\0061t', N'x'") == "SELECT ?");
  CHECK(pg("  ;  ") == "");
  CHECK(pg("SELECT 'unterminated") == "SELECT ?");
  CHECK(pg("SELECT $x") == "SELECT $x");
  // A sign after an operator belongs to the literal.
  CHECK(pg("UPDATE t SET a = a + -42 WHERE k = -1") == "UPDATE t SET a = a + ? WHERE k = ?");
  CHECK(pg("SELECT a - 1, f(-2, +3)") == "SELECT a - ?, f(?)");
  // Standard strings: a backslash is no escape.
  CHECK(pg("SELECT 'a\\' , b") == "SELECT ? , b");
}

TEST_CASE("digest: MySQL strings, identifiers and comments", "[pool][digest]") {
  CHECK(my("SELECT c FROM sbtest1 WHERE id=5012") == "SELECT c FROM sbtest1 WHERE id=?");
  CHECK(my("SELECT \"str\", 'a\\'b' FROM `odd table` # trailing") == "SELECT ? FROM `odd table`");
  CHECK(my("SELECT 1 /* c */ + 2 -- x\n") == "SELECT ? + ?");
  CHECK(my("UPDATE t SET a = 0x1f WHERE k IN (1,2,3)") == "UPDATE t SET a = ? WHERE k IN (?)");
  // MySQL's /* */ do not nest.
  CHECK(my("SELECT /* a /* b */ 1") == "SELECT ?");
}

TEST_CASE("digest: control bytes, long texts", "[pool][digest]") {
  CHECK(pg(std::string("SELECT\x01\x02x", 9)) == "SELECT x");
  std::string big = "SELECT ";
  for (int i = 0; i < 2000; ++i) big += "col" + std::to_string(i) + ", ";
  const std::string n = pg(big);
  CHECK(n.size() <= sqlmux::pool::kMaxDigestText + 3);
  CHECK(n.substr(n.size() - 3) == "...");
}

TEST_CASE("digest: latency sketch error is within 1/16", "[pool][digest]") {
  for (uint64_t v : {0ULL, 1ULL, 7ULL, 8ULL, 9ULL, 100ULL, 1000ULL, 123456ULL, 99999999ULL}) {
    const uint64_t m = LatencySketch::bucket_middle(LatencySketch::bucket_of(v));
    CHECK(std::fabs(static_cast<double>(m) - static_cast<double>(v)) <=
          static_cast<double>(v) / 16.0 + 0.5);
  }
  LatencySketch s;
  for (uint64_t v = 1; v <= 1000; ++v) s.add(v);
  const uint64_t p99 = s.quantile(0.99);
  CHECK(p99 >= 990 * 15 / 16);
  CHECK(p99 <= 990 * 17 / 16);
  CHECK(LatencySketch{}.quantile(0.99) == 0);
}

TEST_CASE("digest: table counts, evicts the least total time, merges", "[pool][digest]") {
  DigestTable t(10);
  t.record("postgresql", "app", "u", "SELECT ?", 100, 1, false);
  t.record("postgresql", "app", "u", "SELECT ?", 300, 2, true);
  t.record("postgresql", "app", "v", "SELECT ?", 5, 0, false);
  std::vector<DigestRow> rows;
  t.collect(rows);
  REQUIRE(rows.size() == 2);
  auto merged = merge_digests(rows, 10);
  CHECK(merged[0].user == "u");
  CHECK(merged[0].stats.calls == 2);
  CHECK(merged[0].stats.errors == 1);
  CHECK(merged[0].stats.rows == 3);
  CHECK(merged[0].stats.total_us == 400);
  CHECK(merged[0].stats.max_us == 300);

  // Two workers' tables merge on read.
  DigestTable t2(10);
  t2.record("postgresql", "app", "u", "SELECT ?", 50, 1, false);
  t2.collect(rows);
  merged = merge_digests(rows, 1);
  REQUIRE(merged.size() == 1);
  CHECK(merged[0].stats.calls == 3);

  // Bounded: new digests push out those with the least total time.
  DigestTable small(10);
  small.record("mysql", "p", "u", "BIG", 1000000, 0, false);
  for (int i = 0; i < 100; ++i) {
    std::string q = std::to_string(i);
    q.push_back('q');
    small.record("mysql", "p", "u", q, 1, 0, false);
  }
  CHECK(small.size() <= 10);
  CHECK(small.evicted() > 0);
  rows.clear();
  small.collect(rows);
  merged = merge_digests(rows, 10);
  CHECK(merged[0].text == "BIG");
  small.clear();
  CHECK(small.size() == 0);
}

TEST_CASE("digest: CommandComplete tag rows", "[pool][digest]") {
  CHECK(command_tag_rows("SELECT 5") == 5);
  CHECK(command_tag_rows("INSERT 0 3") == 3);
  CHECK(command_tag_rows("UPDATE 12") == 12);
  CHECK(command_tag_rows("BEGIN") == 0);
  CHECK(command_tag_rows("SELECT x") == 0);
  CHECK(command_tag_rows("") == 0);
}
