// The Loader's typed readers of TOML values (see loader.h): each reads one
// key, checks its type and range, and reports a problem as a ConfigError at
// the offending node.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "config/loader.h"
#include "config/secret.h"

namespace sqlmux::config::detail {
namespace {

// Levenshtein distance, for "did you mean" hints on misspelled keys.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string_view type_name(toml::node_type t) {
  constexpr std::array<std::string_view, 10> kNames{
      "nothing",   "a table", "an array", "a string",   "an integer", "a floating-point number",
      "a boolean", "a date",  "a time",   "a date-time"};
  auto i = static_cast<size_t>(t);
  return i < kNames.size() ? kNames[i] : "nothing";
}

std::string quoted(std::string_view s) {
  // Appended, not "\"" + std::string(s) + "\"": GCC 12 warns (-Wrestrict, a
  // false positive) on that once quoted() is no longer inlined into its callers.
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(std::string_view key, size_t i) {
  return std::string(key) + "[" + std::to_string(i) + "]";
}

void Loader::error(const toml::node& at, std::string key, std::string message) {
  const toml::source_position& pos = at.source().begin;
  errors_.push_back(ConfigError{file_, static_cast<int>(pos.line), static_cast<int>(pos.column),
                                std::move(key), std::move(message)});
}

void Loader::check_keys(const toml::table& t, const std::string& path,
                        std::initializer_list<std::string_view> known) {
  for (const auto& [toml_key, node] : t) {
    std::string_view key = toml_key.str();
    if (std::find(known.begin(), known.end(), key) != known.end()) {
      continue;
    }
    std::string message = "unknown key; known keys: " + join(known);
    auto best = std::min_element(known.begin(), known.end(), [key](auto a, auto b) {
      return edit_distance(key, a) < edit_distance(key, b);
    });
    if (best != known.end() && edit_distance(key, *best) <= 2) {
      message += " (did you mean " + quoted(*best) + "?)";
    }
    error(node, child(path, key), message);
  }
}

// The node for `key`, or nullptr; reports a missing required key at the table.
const toml::node* Loader::find(const toml::table& t, std::string_view key, const std::string& path,
                               bool required) {
  const toml::node* node = t.get(key);
  if (node == nullptr && required) {
    error(t, child(path, key), "required key is missing");
  }
  return node;
}

const toml::table* Loader::table_at(const toml::table& t, std::string_view key,
                                    const std::string& path) {
  const toml::node* node = t.get(key);
  return node ? typed<toml::table>(*node, child(path, key), "a table") : nullptr;
}

const toml::array* Loader::table_array_at(const toml::table& root, std::string_view key) {
  const toml::node* node = root.get(key);
  if (node == nullptr) {
    return nullptr;
  }
  const toml::array* arr = node->as_array();
  if (arr == nullptr) {
    error(*node, std::string(key),
          "expected an array of tables ([[" + std::string(key) + "]]), got " +
              std::string(type_name(node->type())));
  }
  return arr;
}

const toml::value<std::string>* Loader::read_string(const toml::table& t, std::string_view key,
                                                    const std::string& path, std::string& out,
                                                    bool required, bool allow_empty) {
  const toml::node* node = find(t, key, path, required);
  if (node == nullptr) {
    return nullptr;
  }
  const auto* v = typed<toml::value<std::string>>(*node, child(path, key), "a string");
  if (v == nullptr) {
    return nullptr;
  }
  if (!allow_empty && v->get().empty()) {
    error(*node, child(path, key), "must not be empty");
    return nullptr;
  }
  out = v->get();
  return v;
}

// A password: `password` itself, or read from `password_file` or the
// environment variable `password_env` (exactly one of the three). The
// node of the key that gave it, or nullptr (none given, or an error).
const toml::node* Loader::read_secret(const toml::table& t, const std::string& path,
                                      std::string& out, const std::string& base) {
  const std::string keys[] = {base, base + "_file", base + "_env"};
  const toml::node* found = nullptr;
  std::string found_key;
  for (const std::string& key : keys) {
    const toml::node* n = t.get(key);
    if (n == nullptr) continue;
    if (found != nullptr) {
      error(*n, child(path, key),
            "set together with " + found_key + "; give only one of " + keys[0] + ", " + keys[1] +
                ", " + keys[2]);
      return nullptr;
    }
    found = n;
    found_key = key;
  }
  if (found == nullptr) return nullptr;
  std::string text;
  const auto* v = read_string(t, found_key, path, text);
  if (v == nullptr) return nullptr;
  if (found_key == base) {
    out = std::move(text);
    return v;
  }
  std::string err;
  const bool ok =
      found_key == keys[1] ? read_secret_file(text, out, err) : read_secret_env(text, out, err);
  if (!ok) {
    error(*v, child(path, found_key), err);
    return nullptr;
  }
  return v;
}

bool Loader::has_secret(const toml::table& t) {
  return t.get("password") != nullptr || t.get("password_file") != nullptr ||
         t.get("password_env") != nullptr;
}

const toml::node* Loader::read_bool(const toml::table& t, std::string_view key,
                                    const std::string& path, bool& out) {
  const toml::node* node = t.get(key);
  if (node == nullptr) return nullptr;
  const auto* v = typed<toml::value<bool>>(*node, child(path, key), "a boolean");
  if (v == nullptr) return nullptr;
  out = v->get();
  return node;
}

void Loader::read_duration(const toml::table& t, std::string_view key, const std::string& path,
                           Duration& out) {
  const toml::node* node = t.get(key);
  if (node == nullptr) {
    return;
  }
  const auto* v = node->as_string();
  std::optional<Duration> d = v ? parse_duration(v->get()) : std::nullopt;
  if (d) {
    out = *d;
  } else if (v) {
    error(*node, child(path, key),
          "invalid duration " + quoted(v->get()) +
              "; expected a duration such as \"30s\" (units: ms, s, m, h)");
  } else {
    error(*node, child(path, key),
          "expected a duration such as \"30s\", got " + std::string(type_name(node->type())));
  }
}

const toml::node* Loader::read_address(const toml::table& t, std::string_view key,
                                       const std::string& path, Address& out) {
  std::string text;
  const auto* node = read_string(t, key, path, text, /*required=*/true);
  if (node == nullptr) {
    return nullptr;
  }
  if (std::optional<Address> addr = parse_address(text)) {
    out = std::move(*addr);
    return node;
  }
  error(*node, child(path, key),
        "invalid address " + quoted(text) +
            "; expected host:port, [ipv6]:port or unix:/absolute/path (port 1-65535)");
  return nullptr;
}

}  // namespace sqlmux::config::detail
