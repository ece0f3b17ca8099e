#include "daemon/admin/command.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace sqlmux::admin {
namespace {

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

// Splits on blanks; a word starting with a quote runs to the matching quote
// and must not be empty.
bool split(std::string_view s, std::vector<std::string>& words, std::string& error) {
  size_t i = 0;
  while (i < s.size()) {
    if (blank(s[i])) {
      ++i;
      continue;
    }
    if (s[i] == '"' || s[i] == '\'') {
      const char q = s[i];
      const size_t end = s.find(q, i + 1);
      if (end == std::string_view::npos) {
        error = "unterminated quoted argument";
        return false;
      }
      // '' is no name: as an argument it would read as an absent one
      // (KILL '' would select every pool).
      if (end == i + 1) {
        error = "empty quoted argument";
        return false;
      }
      words.emplace_back(s.substr(i + 1, end - i - 1));
      i = end + 1;
      continue;
    }
    size_t end = i;
    while (end < s.size() && !blank(s[end])) ++end;
    words.emplace_back(s.substr(i, end - i));
    i = end;
  }
  return true;
}

struct Spec {
  std::string_view words;  // upper-case keywords, blank-separated
  Verb verb;
  enum Arg { None, Optional, Required } arg;
  std::string_view arg_name;
};

constexpr Spec kSpecs[] = {
    {"SHOW POOLS", Verb::ShowPools, Spec::None, ""},
    {"SHOW CLIENTS", Verb::ShowClients, Spec::None, ""},
    {"SHOW SERVERS", Verb::ShowServers, Spec::None, ""},
    {"SHOW BACKENDS", Verb::ShowBackends, Spec::None, ""},
    {"SHOW STATS", Verb::ShowStats, Spec::None, ""},
    {"SHOW CONFIG", Verb::ShowConfig, Spec::None, ""},
    {"SHOW VERSION", Verb::ShowVersion, Spec::None, ""},
    {"SHOW AUTH", Verb::ShowAuth, Spec::None, ""},
    {"SHOW DATABASES", Verb::ShowDatabases, Spec::None, ""},
    {"SHOW LISTS", Verb::ShowLists, Spec::None, ""},
    {"SHOW HELP", Verb::ShowHelp, Spec::None, ""},
    {"SHOW QUERIES", Verb::ShowQueries, Spec::None, ""},
    {"RESET QUERIES", Verb::ResetQueries, Spec::None, ""},
    {"PAUSE", Verb::Pause, Spec::Optional, "pool"},
    {"RESUME", Verb::Resume, Spec::Optional, "pool"},
    {"DISABLE", Verb::Disable, Spec::Required, "host"},
    {"ENABLE", Verb::Enable, Spec::Required, "host"},
    {"RECONNECT", Verb::Reconnect, Spec::Optional, "pool"},
    {"WAIT_CLOSE", Verb::WaitClose, Spec::Optional, "pool"},
    {"KILL", Verb::Kill, Spec::Required, "pool"},
    {"KILL_CLIENT", Verb::KillClient, Spec::Required, "id"},
    {"RELOAD", Verb::Reload, Spec::None, ""},
    {"SHUTDOWN", Verb::Shutdown, Spec::None, ""},
};

}  // namespace

std::string_view known_commands() {
  return "SHOW POOLS | SHOW CLIENTS | SHOW SERVERS | SHOW BACKENDS | SHOW STATS | SHOW CONFIG | "
         "SHOW VERSION | SHOW AUTH | SHOW DATABASES | SHOW LISTS | SHOW HELP | SHOW QUERIES | "
         "RESET QUERIES | "
         "PAUSE [pool] | RESUME [pool] | DISABLE host | ENABLE host | RECONNECT [pool] | "
         "WAIT_CLOSE [pool] | "
         "KILL pool | KILL_CLIENT id | RELOAD | SHUTDOWN";
}

ParseResult parse(std::string_view sql) {
  ParseResult r;
  while (!sql.empty() && (blank(sql.back()) || sql.back() == ';')) sql.remove_suffix(1);
  if (sql.find(';') != std::string_view::npos) {
    r.error = "one command per query (';' inside it)";
    return r;
  }
  std::vector<std::string> words;
  if (!split(sql, words, r.error)) return r;
  if (words.empty()) {
    r.command = Command{};
    return r;
  }
  for (const Spec& spec : kSpecs) {
    std::vector<std::string> keys;
    std::string ignored;
    split(spec.words, keys, ignored);
    if (words.size() < keys.size()) continue;
    bool match = true;
    for (size_t i = 0; i < keys.size() && match; ++i) match = upper(words[i]) == keys[i];
    if (!match) continue;
    const size_t args = words.size() - keys.size();
    const std::string cmd(spec.words);
    if (args > 1 || (args == 1 && spec.arg == Spec::None)) {
      r.error = cmd + " takes " +
                (spec.arg == Spec::None ? std::string("no argument")
                                        : "one argument (" + std::string(spec.arg_name) + ")");
      return r;
    }
    if (args == 0 && spec.arg == Spec::Required) {
      r.error = cmd + " needs an argument: " + std::string(spec.arg_name);
      return r;
    }
    Command c;
    c.verb = spec.verb;
    if (args == 1) c.arg = words.back();
    if (c.verb == Verb::KillClient) {
      const std::string& id = c.arg;
      if (id.empty() || id.size() > 19 ||
          !std::all_of(id.begin(), id.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        r.error = "KILL_CLIENT needs a numeric client id (see SHOW CLIENTS), got \"" + id + "\"";
        return r;
      }
      c.client_id = std::stoull(id);
    }
    r.command = std::move(c);
    return r;
  }
  r.error = "unknown admin command";
  return r;
}

std::string_view tag(Verb v) {
  switch (v) {
    case Verb::Empty:
      return "";
    case Verb::ShowPools:
    case Verb::ShowClients:
    case Verb::ShowServers:
    case Verb::ShowBackends:
    case Verb::ShowStats:
    case Verb::ShowConfig:
    case Verb::ShowVersion:
    case Verb::ShowAuth:
    case Verb::ShowDatabases:
    case Verb::ShowLists:
    case Verb::ShowHelp:
    case Verb::ShowQueries:
      return "SHOW";
    case Verb::ResetQueries:
      return "RESET";
    case Verb::Pause:
      return "PAUSE";
    case Verb::Resume:
      return "RESUME";
    case Verb::Disable:
      return "DISABLE";
    case Verb::Enable:
      return "ENABLE";
    case Verb::Reconnect:
      return "RECONNECT";
    case Verb::WaitClose:
      return "WAIT_CLOSE";
    case Verb::Kill:
      return "KILL";
    case Verb::KillClient:
      return "KILL_CLIENT";
    case Verb::Reload:
      return "RELOAD";
    case Verb::Shutdown:
      return "SHUTDOWN";
  }
  return "";
}

}  // namespace sqlmux::admin
