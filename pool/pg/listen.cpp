#include "pool/pg/listen.h"

#include <algorithm>
#include <cctype>

#include "pool/pg/prepared.h"
#include "pool/pg/sql_scanner.h"

namespace sqlmux::pool {

bool may_listen(std::string_view sql) {
  // "listen" in any case: look for its 's' / 'S' and compare around it.
  static constexpr std::string_view kWord = "listen";
  for (size_t i = 2; i + 4 <= sql.size(); ++i) {
    const char c = sql[i];
    if (c != 's' && c != 'S') continue;
    size_t k = 0;
    while (k < kWord.size() &&
           std::tolower(static_cast<unsigned char>(sql[i - 2 + k])) == kWord[k]) {
      ++k;
    }
    if (k == kWord.size()) return true;
  }
  return false;
}

namespace {

// Truncates to kMaxChannelLen bytes without splitting a UTF-8 character,
// as the server truncates an over-long identifier.
void clip(std::string& name) {
  if (name.size() <= kMaxChannelLen) return;
  size_t n = kMaxChannelLen;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  name.resize(n);
}

}  // namespace

std::optional<ListenOp> parse_listen(std::string_view stmt) {
  sql::Scanner sc{stmt};
  ListenOp op;
  if (sc.keyword("LISTEN")) {
    op.kind = ListenOp::Kind::Listen;
  } else if (sc.keyword("UNLISTEN")) {
    op.kind = ListenOp::Kind::Unlisten;
    sql::Scanner probe = sc;
    probe.ws();
    if (probe.i < stmt.size() && stmt[probe.i] == '*') {
      ++probe.i;
      if (!probe.at_end()) return std::nullopt;
      op.kind = ListenOp::Kind::UnlistenAll;
      return op;
    }
  } else {
    return std::nullopt;
  }
  sc.ws();
  // One identifier (a dotted name is a syntax error on the server).
  // (A NUL cannot reach the server inside a query: not a channel name.)
  if (!sc.part(op.channel) || op.channel.empty() || !sc.at_end() ||
      op.channel.find('\0') != std::string::npos) {
    return std::nullopt;
  }
  clip(op.channel);
  if (op.channel.empty()) return std::nullopt;  // (only continuation bytes)
  return op;
}

size_t encode_listen_ops(std::string_view sql, std::string& out) {
  size_t count = 0;
  auto one = [&](std::string_view stmt) {
    if (auto op = parse_listen(stmt)) {
      out += static_cast<char>(op->kind);
      out += op->channel;
      out += '\0';
      ++count;
    }
  };
  if (const size_t semi = sql.find(';');
      semi == std::string_view::npos ||
      sql.find_first_not_of(" \t\r\n", semi + 1) == std::string_view::npos) {
    one(sql);
  } else {
    for (std::string_view stmt : split_statements(sql)) one(stmt);
  }
  return count;
}

bool next_listen_op(std::string_view encoded, size_t& pos, ListenOp& op) {
  if (pos >= encoded.size()) return false;
  const char k = encoded[pos];
  if (k != 'L' && k != 'U' && k != '*') return false;
  const size_t end = encoded.find('\0', pos + 1);
  if (end == std::string_view::npos) return false;
  op.kind = static_cast<ListenOp::Kind>(k);
  op.channel.assign(encoded.substr(pos + 1, end - pos - 1));
  pos = end + 1;
  return true;
}

void ListenSet::apply(const std::vector<ListenOp>& ops, std::vector<std::string>& added,
                      std::vector<std::string>& removed) {
  std::set<std::string> next = channels_;
  for (const ListenOp& op : ops) {
    switch (op.kind) {
      case ListenOp::Kind::Listen:
        next.insert(op.channel);
        break;
      case ListenOp::Kind::Unlisten:
        next.erase(op.channel);
        break;
      case ListenOp::Kind::UnlistenAll:
        next.clear();
        break;
    }
  }
  std::set_difference(next.begin(), next.end(), channels_.begin(), channels_.end(),
                      std::back_inserter(added));
  std::set_difference(channels_.begin(), channels_.end(), next.begin(), next.end(),
                      std::back_inserter(removed));
  channels_ = std::move(next);
}

bool ListenRegistry::add(const std::string& channel, Subscriber s) {
  auto [it, fresh] = map_.try_emplace(channel);
  auto& subs = it->second;
  for (const Subscriber& x : subs) {
    if (x.client == s.client) return false;
  }
  subs.push_back(s);
  ++subscriptions_;
  return fresh;
}

bool ListenRegistry::remove(const std::string& channel, uint64_t client) {
  auto it = map_.find(channel);
  if (it == map_.end()) return false;
  auto& subs = it->second;
  auto pos = std::find_if(subs.begin(), subs.end(),
                          [&](const Subscriber& x) { return x.client == client; });
  if (pos == subs.end()) return false;
  *pos = subs.back();  // order of subscribers does not matter
  subs.pop_back();
  --subscriptions_;
  if (!subs.empty()) return false;
  map_.erase(it);
  return true;
}

const std::vector<ListenRegistry::Subscriber>* ListenRegistry::subscribers(
    const std::string& channel) const {
  auto it = map_.find(channel);
  return it == map_.end() ? nullptr : &it->second;
}

std::vector<std::string> ListenRegistry::channel_names() const {
  std::vector<std::string> out;
  out.reserve(map_.size());
  for (const auto& [name, subs] : map_) out.push_back(name);
  return out;
}

std::vector<ListenRegistry::Subscriber> ListenRegistry::all_subscribers() const {
  std::unordered_map<uint64_t, int> seen;
  for (const auto& [name, subs] : map_) {
    for (const Subscriber& s : subs) seen.emplace(s.client, s.worker);
  }
  std::vector<Subscriber> out;
  out.reserve(seen.size());
  for (const auto& [client, worker] : seen) out.push_back({worker, client});
  return out;
}

std::string quote_channel(std::string_view channel) {
  std::string out = "\"";
  for (char c : channel) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace sqlmux::pool
