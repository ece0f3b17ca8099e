// Tests for daemon/admin/command.cpp: parsing admin console commands.
#include "daemon/admin/command.h"

#include <catch2/catch.hpp>

using namespace sqlmux::admin;

namespace {

Command ok(std::string_view sql) {
  ParseResult r = parse(sql);
  INFO(std::string(sql) + " -> " + r.error);
  REQUIRE(r.command.has_value());
  CHECK(r.error.empty());
  return *r.command;
}

std::string error_of(std::string_view sql) {
  ParseResult r = parse(sql);
  INFO(sql);
  REQUIRE_FALSE(r.command.has_value());
  CHECK_FALSE(r.error.empty());
  return r.error;
}

}  // namespace

TEST_CASE("admin command: keywords are case-insensitive, blanks and ';' are ignored", "[admin]") {
  CHECK(ok("SHOW POOLS").verb == Verb::ShowPools);
  CHECK(ok("show pools;").verb == Verb::ShowPools);
  CHECK(ok("  Show\t\nClients ;; ").verb == Verb::ShowClients);
  CHECK(ok("show servers").verb == Verb::ShowServers);
  CHECK(ok("SHOW BACKENDS").verb == Verb::ShowBackends);
  CHECK(ok("SHOW STATS").verb == Verb::ShowStats);
  CHECK(ok("show config").verb == Verb::ShowConfig);
  CHECK(ok("show version;").verb == Verb::ShowVersion);
  CHECK(ok("show queries").verb == Verb::ShowQueries);
  CHECK(ok("RESET QUERIES;").verb == Verb::ResetQueries);
  CHECK(error_of("RESET QUERIES appdb").find("no argument") != std::string::npos);
  CHECK(ok("reload").verb == Verb::Reload);
  CHECK(ok("SHUTDOWN;").verb == Verb::Shutdown);
  CHECK(ok("").verb == Verb::Empty);
  CHECK(ok(" ; ").verb == Verb::Empty);
}

TEST_CASE("admin command: arguments", "[admin]") {
  Command c = ok("pause");
  CHECK(c.verb == Verb::Pause);
  CHECK(c.arg.empty());
  c = ok("PAUSE AppDb;");
  CHECK(c.verb == Verb::Pause);
  CHECK(c.arg == "AppDb");  // arguments keep their case
  CHECK(ok("resume appdb").arg == "appdb");
  CHECK(ok("RECONNECT").arg.empty());
  CHECK(ok("reconnect \"my pool\"").arg == "my pool");
  CHECK(ok("DISABLE 127.0.0.1:5432").arg == "127.0.0.1:5432");
  CHECK(ok("enable '[::1]:5432'").arg == "[::1]:5432");
  CHECK(ok("KILL appdb").verb == Verb::Kill);
  c = ok("kill_client 42;");
  CHECK(c.verb == Verb::KillClient);
  CHECK(c.client_id == 42);
}

TEST_CASE("admin command: errors say what is wrong", "[admin]") {
  CHECK(error_of("SELECT 1") == "unknown admin command");
  CHECK(error_of("SHOW") == "unknown admin command");
  CHECK(error_of("SHOW POOLZ") == "unknown admin command");
  CHECK(error_of("SHOW POOLS extra") == "SHOW POOLS takes no argument");
  CHECK(error_of("PAUSE a b") == "PAUSE takes one argument (pool)");
  CHECK(error_of("KILL") == "KILL needs an argument: pool");
  CHECK(error_of("DISABLE") == "DISABLE needs an argument: host");
  CHECK(error_of("KILL_CLIENT x1").find("numeric client id") != std::string::npos);
  CHECK(error_of("KILL_CLIENT -1").find("numeric client id") != std::string::npos);
  CHECK(error_of("KILL_CLIENT 99999999999999999999").find("numeric") != std::string::npos);
  CHECK(error_of("PAUSE \"unterminated") == "unterminated quoted argument");
  CHECK(error_of("SHOW POOLS; SHOW CLIENTS") == "one command per query (';' inside it)");
}

// Found by fuzz_admin_command: "enable ''" parsed as ENABLE with an empty
// host, and KILL '' as KILL with an empty pool, which the console reads as
// every pool (PAUSE '' likewise paused all of them).
TEST_CASE("admin command: an empty quoted argument is an error, not an absent one", "[admin]") {
  for (std::string_view sql : {"enable ''", "DISABLE \"\"", "KILL ''", "kill \"\";",
                               "KILL_CLIENT ''", "PAUSE ''", "resume \"\"", "RECONNECT ''"}) {
    CHECK(error_of(sql) == "empty quoted argument");
  }
  CHECK(error_of("'' SHOW POOLS") == "empty quoted argument");
  CHECK(ok("PAUSE ' '").arg == " ");  // a blank is not empty
  CHECK(ok("KILL \"''\"").arg == "''");
}

TEST_CASE("admin command: tags and the list of known commands", "[admin]") {
  CHECK(tag(Verb::ShowPools) == "SHOW");
  CHECK(tag(Verb::Pause) == "PAUSE");
  CHECK(tag(Verb::KillClient) == "KILL_CLIENT");
  CHECK(tag(Verb::ShowQueries) == "SHOW");
  CHECK(tag(Verb::ResetQueries) == "RESET");
  for (std::string_view cmd :
       {"SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW BACKENDS", "SHOW STATS", "SHOW CONFIG",
        "SHOW VERSION", "PAUSE", "RESUME", "DISABLE", "ENABLE", "RECONNECT", "KILL pool",
        "KILL_CLIENT", "RELOAD", "SHUTDOWN", "SHOW QUERIES", "RESET QUERIES"}) {
    INFO(cmd);
    CHECK(known_commands().find(cmd) != std::string_view::npos);
  }
  // Every listed command parses.
  std::string_view list = known_commands();
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(" | ", start);
    std::string_view item = list.substr(start, end == std::string_view::npos ? end : end - start);
    std::string sql(item.substr(0, item.find_first_of("[")));
    for (const char* arg : {" pool", " host", " id"}) {
      if (auto p = sql.find(arg); p != std::string::npos)
        sql.replace(p, std::string(arg).size(), " 1");
    }
    INFO(sql);
    CHECK(parse(sql).command.has_value());
    if (end == std::string_view::npos) break;
    start = end + 3;
  }
}

TEST_CASE("admin command: PgBouncer's SHOW DATABASES, LISTS, HELP and WAIT_CLOSE", "[admin]") {
  CHECK(ok("SHOW DATABASES").verb == Verb::ShowDatabases);
  CHECK(ok("show lists;").verb == Verb::ShowLists);
  CHECK(ok("Show Help").verb == Verb::ShowHelp);
  CHECK(tag(Verb::ShowDatabases) == "SHOW");
  CHECK(tag(Verb::ShowLists) == "SHOW");
  CHECK(tag(Verb::ShowHelp) == "SHOW");
  const Command all = ok("WAIT_CLOSE");
  CHECK(all.verb == Verb::WaitClose);
  CHECK(all.arg.empty());
  const Command one = ok("wait_close postgres:AppDb;");
  CHECK(one.verb == Verb::WaitClose);
  CHECK(one.arg == "postgres:AppDb");
  CHECK(ok("WAIT_CLOSE \"app db\"").arg == "app db");
  CHECK(tag(Verb::WaitClose) == "WAIT_CLOSE");
  CHECK(error_of("WAIT_CLOSE a b") == "WAIT_CLOSE takes one argument (pool)");
  CHECK(error_of("WAIT_CLOSE ''") == "empty quoted argument");
  CHECK(error_of("SHOW LISTS x") == "SHOW LISTS takes no argument");
  CHECK(error_of("SHOW HELP me") == "SHOW HELP takes no argument");
  CHECK(error_of("WAIT CLOSE") == "unknown admin command");
  for (std::string_view c : {"SHOW DATABASES", "SHOW LISTS", "SHOW HELP", "WAIT_CLOSE [pool]"}) {
    CHECK(known_commands().find(c) != std::string_view::npos);
  }
}
