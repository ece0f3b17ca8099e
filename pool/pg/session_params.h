// Session parameters that follow a client from backend to backend.
//
// A client's desired values are the pool's defaults (what a fresh backend
// reports through ParameterStatus) overridden by its startup packet and by
// every ParameterStatus a backend reports while serving it. A backend's
// values are what it reported plus what sqlmux set on it. Before a client
// uses a backend, diff() says what must change; nothing when they agree.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sqlmux::pool {

class SessionParams {
 public:
  SessionParams() = default;
  SessionParams(const SessionParams&) = default;
  SessionParams& operator=(const SessionParams&) = default;
  SessionParams(SessionParams&& o) noexcept : map_(std::move(o.map_)), stamp_(o.stamp_) {
    o.map_.clear();
    o.stamp_ = 0;
  }
  SessionParams& operator=(SessionParams&& o) noexcept {
    if (this != &o) {
      map_ = std::move(o.map_);
      stamp_ = o.stamp_;
      o.map_.clear();
      o.stamp_ = 0;
    }
    return *this;
  }

  struct Entry {
    std::string name;  // as first seen (e.g. "DateStyle")
    std::string value;
    bool reported = false;  // the server reports it via ParameterStatus
  };

  // Sets a value; names compare case-insensitively.
  void set(std::string_view name, std::string_view value, bool reported);
  void erase(std::string_view name);
  [[nodiscard]] const Entry* find(std::string_view name) const;
  [[nodiscard]] bool empty() const { return map_.empty(); }
  [[nodiscard]] size_t size() const { return map_.size(); }
  void clear() {
    map_.clear();
    stamp_ = 0;
  }
  // Drops every entry the server does not report (after RESET ALL / DISCARD ALL).
  void clear_unreported();
  // Sorted by key: a handful of entries, walked once per transaction.
  using Map = std::vector<std::pair<std::string, Entry>>;
  [[nodiscard]] const Map& entries() const { return map_; }
  // Same names with the same values (the per-transaction fast path of diff()).
  // Two sets found equal take one stamp (see stamp_), so the next
  // comparison of either with a set of that stamp is one integer compare.
  [[nodiscard]] bool same_values(const SessionParams& other) const;

 private:
  [[nodiscard]] Map::iterator lookup(std::string_view key);
  [[nodiscard]] Map::const_iterator lookup(std::string_view key) const;

  void changed();

  Map map_;  // key: lowercased name
  // Equal stamps mean equal names and values: every change of names or
  // values takes a fresh stamp (unique in the process), a copy keeps it,
  // and same_values() gives two sets it found equal the same one. The
  // desired values of a pool's clients and the values of its server
  // connections are mostly the same, so they converge on one stamp and a
  // hand-over compares two integers instead of every parameter. 0: empty.
  // Mutable: a cache of a comparison's outcome, not part of the value (both
  // sets of a comparison belong to one worker thread).
  mutable uint64_t stamp_ = 0;
};

struct ParamChange {
  std::string name;
  std::string value;
  bool reset = false;  // RESET name (back to the backend's default)
  // Set first, so that a value relative to the current one (DateStyle
  // 'dmy') means what it would on a fresh server connection.
  std::optional<std::string> base;
};

// Reported parameters that describe the server and cannot be set
// (in_hot_standby, server_version, ...): diff() never asks to apply them.
[[nodiscard]] bool is_server_owned(std::string_view name);

// What must change on `backend` so that it matches `desired`.
[[nodiscard]] std::vector<ParamChange> diff(const SessionParams& desired,
                                            const SessionParams& backend);

// One simple-query string that applies the changes, or "" when none:
//   SELECT pg_catalog.set_config('name', 'value', false), ...; RESET name; ...
// set_config takes the raw string form, as a startup packet does, so list
// values such as search_path keep their meaning; names and values are
// literals, RESET names quoted (quote_setting_name). Names that cannot be
// written as identifiers are skipped (and reported through `skipped`).
[[nodiscard]] std::string apply_sql(const std::vector<ParamChange>& changes,
                                    std::vector<std::string>* skipped = nullptr);

// Startup packet keys that are not session parameters.
[[nodiscard]] bool is_connection_key(std::string_view name);

// Splits a startup "options" value ("-c a=b --c=d -c e=f\ g") into
// name/value pairs; false when it holds something other than settings.
[[nodiscard]] bool parse_startup_options(std::string_view options,
                                         std::vector<std::pair<std::string, std::string>>& out);

// A setting name as SQL: every dotted part a quoted identifier
// ("select".x -> "select"."x"); nullopt when a part is empty or too long.
[[nodiscard]] std::optional<std::string> quote_setting_name(std::string_view name);

// 'x' -> "'x'" with embedded quotes doubled; E'' form when a backslash occurs.
[[nodiscard]] std::string quote_literal(std::string_view s);

}  // namespace sqlmux::pool
