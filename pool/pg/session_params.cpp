#include "pool/pg/session_params.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <optional>

namespace sqlmux::pool {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr size_t kMaxIdentifier = 63;  // NAMEDATALEN - 1: longer ones are truncated

}  // namespace

SessionParams::Map::iterator SessionParams::lookup(std::string_view key) {
  return std::lower_bound(map_.begin(), map_.end(), key,
                          [](const auto& e, std::string_view k) { return e.first < k; });
}

SessionParams::Map::const_iterator SessionParams::lookup(std::string_view key) const {
  return std::lower_bound(map_.begin(), map_.end(), key,
                          [](const auto& e, std::string_view k) { return e.first < k; });
}

void SessionParams::changed() {
  static std::atomic<uint64_t> next{1};
  stamp_ = map_.empty() ? 0 : next.fetch_add(1, std::memory_order_relaxed);
}

void SessionParams::set(std::string_view name, std::string_view value, bool reported) {
  std::string key = lower(name);
  auto it = lookup(key);
  if (it == map_.end() || it->first != key) {
    it = map_.insert(it, {std::move(key), Entry{std::string(name), {}, false}});
  } else if (it->second.value == value) {
    it->second.reported = it->second.reported || reported;
    return;  // the same value: the stamp stays
  }
  it->second.value = std::string(value);
  it->second.reported = it->second.reported || reported;
  changed();
}

void SessionParams::erase(std::string_view name) {
  const std::string key = lower(name);
  auto it = lookup(key);
  if (it != map_.end() && it->first == key) {
    map_.erase(it);
    changed();
  }
}

const SessionParams::Entry* SessionParams::find(std::string_view name) const {
  // Without an allocation: the name as given when it has no capitals (the
  // common case: keys, and names from the protocol), else lowercased on the stack.
  char buf[64];
  std::string long_key;
  std::string_view key = name;
  bool upper = false;
  for (char c : name) upper = upper || (c >= 'A' && c <= 'Z');
  if (upper) {
    if (name.size() > sizeof(buf)) {
      long_key = lower(name);
      key = long_key;
    } else {
      for (size_t i = 0; i < name.size(); ++i) {
        buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
      key = std::string_view(buf, name.size());
    }
  }
  auto it = lookup(key);
  return it == map_.end() || it->first != key ? nullptr : &it->second;
}

bool SessionParams::same_values(const SessionParams& other) const {
  if (stamp_ == other.stamp_) return true;
  if (map_.size() != other.map_.size()) return false;
  for (size_t i = 0; i < map_.size(); ++i) {
    if (map_[i].first != other.map_[i].first ||
        map_[i].second.value != other.map_[i].second.value) {
      return false;
    }
  }
  // Equal: both take the older stamp, so that every set with these values
  // ends up with one.
  stamp_ = other.stamp_ = std::min(stamp_, other.stamp_);
  return true;
}

void SessionParams::clear_unreported() {
  if (std::erase_if(map_, [](const auto& e) { return !e.second.reported; }) > 0) changed();
}

bool is_server_owned(std::string_view name) {
  // Reported parameters a session cannot set: they describe the server (a
  // pool may mix a primary and a standby, whose in_hot_standby differ).
  static constexpr std::string_view kOwned[] = {
      "in_hot_standby",  "integer_datetimes", "is_superuser",
      "server_encoding", "server_version",    "session_authorization",
  };
  const std::string n = lower(name);
  return std::find(std::begin(kOwned), std::end(kOwned), n) != std::end(kOwned);
}

std::vector<ParamChange> diff(const SessionParams& desired, const SessionParams& backend) {
  std::vector<ParamChange> out;
  if (desired.same_values(backend)) return out;
  for (const auto& [key, want] : desired.entries()) {
    if (want.reported && is_server_owned(key)) continue;
    const auto* have = backend.find(key);
    if (have == nullptr || have->value != want.value) out.push_back({want.name, want.value, false});
  }
  // Values sqlmux set on this backend for another client, which this client
  // never asked for: back to the backend's default. Reported parameters are
  // always in `desired` (seeded from the pool's defaults), so only the
  // unreported ones can be left over.
  for (const auto& [key, have] : backend.entries()) {
    if (!have.reported && desired.find(key) == nullptr) out.push_back({have.name, "", true});
  }
  return out;
}

std::string quote_literal(std::string_view s) {
  std::string out;
  bool backslash = s.find('\\') != std::string_view::npos;
  if (backslash) out += 'E';
  out += '\'';
  for (char c : s) {
    if (c == '\'') out += '\'';
    if (c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::optional<std::string> quote_setting_name(std::string_view name) {
  // Every part is quoted, so reserved words ("select".x), capitals, quotes,
  // spaces and non-ASCII names keep their meaning. Setting names compare
  // case-insensitively, so quoting a name that was not quoted is harmless.
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t dot = name.find('.', start);
    const std::string_view part =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty() || part.size() > kMaxIdentifier || part.find('\0') != std::string_view::npos) {
      return std::nullopt;
    }
    out += '"';
    for (char c : part) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
    if (dot == std::string_view::npos) return out;
    out += '.';
    start = dot + 1;
  }
}

std::string apply_sql(const std::vector<ParamChange>& changes, std::vector<std::string>* skipped) {
  std::string sets;
  std::string resets;
  for (const auto& ch : changes) {
    // set_config() takes the name as a literal; RESET needs it quoted.
    const auto quoted = quote_setting_name(ch.name);
    if (!quoted) {
      if (skipped != nullptr) skipped->push_back(ch.name);
      continue;
    }
    if (ch.reset) {
      resets += "RESET " + *quoted + ";";
    } else {
      sets += sets.empty() ? "SELECT " : ", ";
      if (ch.base) {
        sets += "pg_catalog.set_config(" + quote_literal(ch.name) + ", " + quote_literal(*ch.base) +
                ", false), ";
      }
      sets += "pg_catalog.set_config(" + quote_literal(ch.name) + ", " + quote_literal(ch.value) +
              ", false)";
    }
  }
  if (!sets.empty()) sets += ";";
  return sets + resets;
}

bool is_connection_key(std::string_view name) {
  std::string n = lower(name);
  return n == "user" || n == "database" || n == "options" || n == "replication";
}

bool parse_startup_options(std::string_view options,
                           std::vector<std::pair<std::string, std::string>>& out) {
  // Split on unescaped whitespace; backslash escapes the next character.
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < options.size(); ++i) {
    char c = options[i];
    if (c == '\\' && i + 1 < options.size()) {
      cur += options[++i];
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(cur));

  auto add = [&](const std::string& kv) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    std::string name = kv.substr(0, eq);
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    out.emplace_back(name, kv.substr(eq + 1));
    return true;
  };
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "-c") {
      if (i + 1 >= words.size() || !add(words[++i])) return false;
    } else if (w.rfind("-c", 0) == 0) {
      if (!add(w.substr(2))) return false;
    } else if (w.rfind("--", 0) == 0) {
      if (!add(w.substr(2))) return false;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace sqlmux::pool
