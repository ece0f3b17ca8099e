// libFuzzer target: admin console commands (daemon/admin/command.cpp).
//
// The input is the text of a simple query sent to the admin console.
//
// Invariants (a failure traps):
// - exactly one of command / error is set;
// - Empty only for input made of blanks and ';';
// - the argument is what command.h promises: empty for verbs without
//   one, non-empty for verbs that require one (DISABLE, ENABLE, KILL,
//   KILL_CLIENT), and always a piece of the input (a bare word, or the text
//   between two quotes) without blanks unless it was quoted, and without ';';
// - KILL_CLIENT's id is the decimal value of its (all-digit) argument and
//   client_id is 0 for every other verb;
// - tag() is empty only for Empty;
// - a parsed command rendered back (canonical keywords, the argument bare or
//   quoted) parses to the same command, also with lower-case keywords, extra
//   blanks and trailing ';'.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/admin/command.h"

using namespace sqlmux::admin;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool has_blank(std::string_view s) {
  for (char c : s) {
    if (blank(c)) {
      return true;
    }
  }
  return false;
}

enum class Arg { None, Optional, Required };

struct Canon {
  std::string_view words;
  Arg arg;
};

// The spelling of each verb (mirrors known_commands()).
Canon canon(Verb v) {
  switch (v) {
    case Verb::Empty:
      return {"", Arg::None};
    case Verb::ShowPools:
      return {"SHOW POOLS", Arg::None};
    case Verb::ShowClients:
      return {"SHOW CLIENTS", Arg::None};
    case Verb::ShowServers:
      return {"SHOW SERVERS", Arg::None};
    case Verb::ShowBackends:
      return {"SHOW BACKENDS", Arg::None};
    case Verb::ShowStats:
      return {"SHOW STATS", Arg::None};
    case Verb::ShowConfig:
      return {"SHOW CONFIG", Arg::None};
    case Verb::ShowVersion:
      return {"SHOW VERSION", Arg::None};
    case Verb::ShowAuth:
      return {"SHOW AUTH", Arg::None};
    case Verb::ShowDatabases:
      return {"SHOW DATABASES", Arg::None};
    case Verb::ShowLists:
      return {"SHOW LISTS", Arg::None};
    case Verb::ShowHelp:
      return {"SHOW HELP", Arg::None};
    case Verb::ShowQueries:
      return {"SHOW QUERIES", Arg::None};
    case Verb::ResetQueries:
      return {"RESET QUERIES", Arg::None};
    case Verb::Pause:
      return {"PAUSE", Arg::Optional};
    case Verb::Resume:
      return {"RESUME", Arg::Optional};
    case Verb::Disable:
      return {"DISABLE", Arg::Required};
    case Verb::Enable:
      return {"ENABLE", Arg::Required};
    case Verb::Reconnect:
      return {"RECONNECT", Arg::Optional};
    case Verb::WaitClose:
      return {"WAIT_CLOSE", Arg::Optional};
    case Verb::Kill:
      return {"KILL", Arg::Required};
    case Verb::KillClient:
      return {"KILL_CLIENT", Arg::Required};
    case Verb::Reload:
      return {"RELOAD", Arg::None};
    case Verb::Shutdown:
      return {"SHUTDOWN", Arg::None};
  }
  __builtin_trap();
}

// The argument as one word of a command: bare when it can be, else quoted
// with a quote character it does not contain. Every argument the parser
// returns can be written so (one that holds both quote characters came from
// a bare word); false when not.
bool render_arg(const std::string& arg, std::string& out) {
  if (!arg.empty() && !has_blank(arg) && arg[0] != '"' && arg[0] != '\'') {
    out = arg;
    return true;
  }
  for (char q : {'"', '\''}) {
    if (arg.find(q) == std::string::npos) {
      out = q + arg + q;
      return true;
    }
  }
  return false;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

void check_same(const ParseResult& r, const Command& want) {
  check(r.command.has_value() && r.error.empty());
  check(r.command->verb == want.verb);
  check(r.command->arg == want.arg);
  check(r.command->client_id == want.client_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ParseResult r = parse(input);

  // Exactly one of command / error.
  check(r.command.has_value() == r.error.empty());
  if (!r.command) {
    return 0;
  }
  const Command& c = *r.command;

  bool only_blanks = true;
  for (char ch : input) {
    only_blanks = only_blanks && (blank(ch) || ch == ';');
  }
  check((c.verb == Verb::Empty) == only_blanks);
  check(tag(c.verb).empty() == (c.verb == Verb::Empty));

  const Canon spec = canon(c.verb);
  check(spec.arg != Arg::None || c.arg.empty());
  check(spec.arg != Arg::Required || !c.arg.empty());

  // The argument is a piece of the input: a bare word (no blanks), or the
  // text between two equal quotes. Never a ';'.
  if (!c.arg.empty()) {
    check(c.arg.find(';') == std::string::npos);
    bool found = false;
    for (size_t pos = input.find(c.arg); pos != std::string_view::npos && !found;
         pos = input.find(c.arg, pos + 1)) {
      const size_t end = pos + c.arg.size();
      const bool quoted = pos > 0 && end < input.size() && input[pos - 1] == input[end] &&
                          (input[end] == '"' || input[end] == '\'');
      found = quoted || !has_blank(c.arg);
    }
    check(found);
  }

  if (c.verb == Verb::KillClient) {
    check(c.arg.size() <= 19);
    uint64_t v = 0;
    for (char ch : c.arg) {
      check(ch >= '0' && ch <= '9');
      v = v * 10 + static_cast<uint64_t>(ch - '0');
    }
    check(v == c.client_id);
  } else {
    check(c.client_id == 0);
  }

  // Rendered back, the command parses to itself.
  std::string arg;
  const bool with_arg = !c.arg.empty();
  check(!with_arg || render_arg(c.arg, arg));
  const std::string words(spec.words);
  const std::string canonical = with_arg ? words + " " + arg : words;
  check_same(parse(canonical), c);
  check_same(parse(" \t" + lower(words) + (with_arg ? "\n" + arg : "") + " ;;\r\n"), c);
  return 0;
}
