// Admin console commands: the text of a simple query, parsed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqlmux::admin {

enum class Verb {
  Empty,  // nothing but blanks and ';'
  ShowPools,
  ShowClients,
  ShowServers,
  ShowBackends,
  ShowStats,
  ShowConfig,
  ShowVersion,
  ShowAuth,       // failed logins per address and user (auth limiter)
  ShowDatabases,  // PgBouncer's: one row per configured pool
  ShowLists,      // PgBouncer's: list, items
  ShowHelp,       // a NOTICE listing the commands
  Pause,          // [pool]
  Resume,         // [pool]
  Disable,        // host
  Enable,         // host
  Reconnect,      // [pool]
  WaitClose,      // [pool]: until the server connections RECONNECT/reload retired are closed
  Kill,           // pool
  KillClient,     // id
  ShowQueries,    // query digests, by total time
  ResetQueries,   // forget the query digests
  Reload,
  Shutdown,
};

struct Command {
  Verb verb = Verb::Empty;
  std::string arg;         // pool or host; empty when optional and absent
  uint64_t client_id = 0;  // KILL_CLIENT
};

struct ParseResult {
  std::optional<Command> command;
  std::string error;  // set when command is empty: what is wrong
};

// Case-insensitive keywords, blanks between words, optional trailing ';'.
// Arguments keep their case; they may be quoted ("..." or '...'), but not
// be empty ("" and '' are errors, not an absent argument).
[[nodiscard]] ParseResult parse(std::string_view sql);

// "SHOW POOLS | SHOW CLIENTS | ..." for error messages.
[[nodiscard]] std::string_view known_commands();

// The CommandComplete tag of a command ("SHOW", "PAUSE", ...).
[[nodiscard]] std::string_view tag(Verb v);

}  // namespace sqlmux::admin
