#include "pool/pg/prepared.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include "pool/pg/listen.h"
#include "pool/pg/sql_scanner.h"

namespace sqlmux::pool {

std::string server_statement_name(std::string_view query, const std::vector<uint32_t>& types,
                                  uint64_t generation) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, query.data(), query.size());
  // Types after a NUL that cannot occur in the query text.
  EVP_DigestUpdate(ctx, "\0", 1);
  for (uint32_t t : types) {
    unsigned char be[4] = {static_cast<unsigned char>(t >> 24), static_cast<unsigned char>(t >> 16),
                           static_cast<unsigned char>(t >> 8), static_cast<unsigned char>(t)};
    EVP_DigestUpdate(ctx, be, 4);
  }
  if (generation != 0) {
    // 10 bytes after the 4-byte types: an input of generation 0 is 4n
    // bytes past the query's NUL, one with a generation 4n + 10, so none
    // reads as another.
    unsigned char g[10] = {0, 'g'};
    for (int i = 0; i < 8; ++i) g[2 + i] = static_cast<unsigned char>(generation >> (56 - 8 * i));
    EVP_DigestUpdate(ctx, g, sizeof g);
  }
  EVP_DigestFinal_ex(ctx, md, &md_len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string name = "sqlmux_";
  for (int i = 0; i < 16; ++i) {
    name += hex[md[i] >> 4];
    name += hex[md[i] & 15];
  }
  return name;
}

StatementRef make_statement(std::string_view query, std::vector<uint32_t> types,
                            uint64_t generation) {
  auto def = std::make_shared<StatementDef>();
  def->server_name = server_statement_name(query, types, generation);
  def->query = std::string(query);
  def->param_types = std::move(types);
  if (may_listen(query)) (void)encode_listen_ops(query, def->listen);
  def->set_config = find_set_config(query);
  return def;
}

const ClientStatements::Entry* ClientStatements::find(std::string_view name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : &it->second;
}

void ClientStatements::add(std::string_view name, StatementRef def, uint64_t epoch) {
  map_[std::string(name)] = Entry{std::move(def), epoch};
}

bool ClientStatements::remove(std::string_view name) {
  auto it = map_.find(name);
  if (it == map_.end()) return false;
  map_.erase(it);
  return true;
}

bool BackendStatements::touch(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  lru_.splice(lru_.end(), lru_, it->second.it);
  return true;
}

uint64_t BackendStatements::epoch(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? 0 : it->second.epoch;
}

void BackendStatements::set_epoch(const std::string& name, uint64_t epoch) {
  auto it = index_.find(name);
  if (it != index_.end()) it->second.epoch = epoch;
}

bool StaleStatements::stale(const std::string& name, uint64_t prepared_epoch) const {
  if (epoch_.load(std::memory_order_acquire) == prepared_epoch) return false;  // nothing since
  std::lock_guard<std::mutex> lk(mu_);
  auto it = invalidated_at_.find(name);
  return it != invalidated_at_.end() && it->second > prepared_epoch;
}

bool StaleStatements::invalidate(const std::string& name, uint64_t copy_epoch) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = invalidated_at_.find(name);
  if (it != invalidated_at_.end() && it->second > copy_epoch) return false;
  uint64_t e = epoch_.load(std::memory_order_relaxed) + 1;
  invalidated_at_[name] = e;
  epoch_.store(e, std::memory_order_release);
  return true;
}

std::optional<std::string> BackendStatements::insert(const std::string& name) {
  if (touch(name)) return std::nullopt;
  std::optional<std::string> evicted;
  if (index_.size() >= capacity_) {
    evicted = lru_.front();
    index_.erase(lru_.front());
    lru_.pop_front();
  }
  lru_.push_back(name);
  index_[name] = Slot{std::prev(lru_.end()), 0};
  return evicted;
}

void BackendStatements::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return;
  lru_.erase(it->second.it);
  index_.erase(it);
}

void BackendStatements::clear() {
  lru_.clear();
  index_.clear();
}

ResponseTracker::Verdict ResponseTracker::classify(char type) const {
  Verdict v;
  if (count_ == 0) return v;  // unsolicited (notice, parameter status, notification)
  const Entry& h = front();
  // Messages that can arrive at any time belong to no request.
  if (type == 'N' || type == 'S' || type == 'A') return v;
  v.forward = h.action != Action::Swallow;
  switch (h.kind) {
    case Kind::Parse:
      v.completes = type == '1' || type == 'E';
      break;
    case Kind::Bind:
      v.completes = type == '2' || type == 'E';
      break;
    case Kind::Close:
      v.completes = type == '3' || type == 'E';
      break;
    case Kind::Describe:
      v.completes = type == 'T' || type == 'n' || type == 'E';
      break;
    case Kind::Execute:
      v.completes = type == 'C' || type == 'I' || type == 's' || type == 'E';
      break;
    case Kind::Sync:
    case Kind::Query:
    case Kind::Function:
      v.completes = type == 'Z';
      break;
  }
  if (type == 'E') {
    // An error always reaches the client (even for an injected Parse: the
    // client's next message fails because of it).
    v.forward = true;
    v.error_skip = h.kind != Kind::Sync && h.kind != Kind::Query && h.kind != Kind::Function;
  }
  return v;
}

ResponseTracker::Entry& ResponseTracker::push_slot() {
  if (count_ == slots_.size()) {
    std::vector<Entry> grown(slots_.empty() ? 8 : slots_.size() * 2);
    for (size_t i = 0; i < count_; ++i) {
      grown[i] = std::move(slots_[(head_ + i) & (slots_.size() - 1)]);
    }
    slots_.swap(grown);
    head_ = 0;
  }
  Entry& e = slots_[(head_ + count_) & (slots_.size() - 1)];
  ++count_;
  return e;
}

void ResponseTracker::pop_front() {
  Entry& e = slots_[head_];
  // Cleared for reuse; an unusually long reply does not stay held.
  constexpr size_t kKeep = 256;
  for (std::string* s : {&e.reply, &e.stmt, &e.client_stmt, &e.listen}) {
    if (s->capacity() > kKeep) {
      std::string().swap(*s);
    } else {
      s->clear();
    }
  }
  e.append_ready = false;
  head_ = (head_ + 1) & (slots_.size() - 1);
  --count_;
}

bool ResponseTracker::push_plain(Kind k) {
  if (!may_push(k)) return false;
  Entry& e = push_slot();  // a popped slot: its strings are empty
  e.kind = k;
  e.action = Action::Forward;
  if (recording_) record(e);
  return true;
}

bool ResponseTracker::push_bind(std::string_view stmt) {
  if (!may_push(Kind::Bind)) return false;
  Entry& e = push_slot();
  e.kind = Kind::Bind;
  e.action = Action::Forward;
  e.stmt.assign(stmt);
  if (recording_) record(e);
  return true;
}

bool ResponseTracker::may_push(Kind k) {
  if (skipping_) {
    if (k != Kind::Sync) return false;
    skipping_ = false;
  }
  return true;
}

void ResponseTracker::record(const Entry& e) {
  switch (e.kind) {
    case Kind::Bind:
      break;
    case Kind::Describe:
      if (!recorded_executed_) recorded_describes_ = true;
      break;
    case Kind::Execute:
      recorded_executed_ = true;
      break;
    case Kind::Sync:
      recorded_complete_ = true;
      recording_ = false;
      break;
    default:
      clear_recording();  // not replayable
      return;
  }
  if (e.action != Action::Forward) {
    clear_recording();
    return;
  }
  // Copied into a kept slot: assigning reuses its strings' storage, and
  // the strings that are empty (most of them) are cleared, not assigned.
  if (recorded_n_ == recorded_.size()) {
    recorded_.push_back(e);
  } else {
    Entry& r = recorded_[recorded_n_];
    r.kind = e.kind;
    r.action = e.action;
    r.append_ready = e.append_ready;
    auto copy = [](std::string& to, const std::string& from) {
      if (from.empty()) {
        to.clear();
      } else {
        to.assign(from);
      }
    };
    copy(r.reply, e.reply);
    copy(r.stmt, e.stmt);
    copy(r.client_stmt, e.client_stmt);
    copy(r.listen, e.listen);
  }
  ++recorded_n_;
}

bool ResponseTracker::push(Entry e) {
  if (!may_push(e.kind)) return false;
  if (recording_) record(e);
  push_slot() = std::move(e);
  return true;
}

void ResponseTracker::start_recording() {
  clear_recording();
  recording_ = true;
}

void ResponseTracker::clear_recording() {
  recording_ = false;
  recorded_complete_ = false;
  recorded_describes_ = false;
  recorded_executed_ = false;
  recorded_n_ = 0;
  if (recorded_.size() > 16) recorded_.clear();  // after an unusually long segment
}

void ResponseTracker::complete(bool error_skip, std::vector<Entry>* dropped) {
  if (count_ == 0) return;
  if (!error_skip) {
    pop_front();
    return;
  }
  Entry head = std::move(front());
  pop_front();
  if (dropped != nullptr && (head.kind == Kind::Parse || head.kind == Kind::Close)) {
    dropped->push_back(std::move(head));
  }
  // The server skips everything up to the next Sync.
  while (count_ > 0 && front().kind != Kind::Sync) {
    // Skipped Parses create nothing, whether sent or answered by sqlmux;
    // skipped Closes close nothing.
    if (dropped != nullptr && (front().kind == Kind::Parse || front().kind == Kind::Close)) {
      dropped->push_back(std::move(front()));
    }
    pop_front();
  }
  if (count_ == 0) skipping_ = true;  // the client's Sync is still to come
}

void ResponseTracker::take_synthetic(std::string& out, char tx_status) {
  while (count_ > 0 && front().action == Action::Synthetic) {
    out += front().reply;
    if (front().append_ready) {
      const char z[6] = {'Z', 0, 0, 0, 5, tx_status};
      out.append(z, sizeof z);
    }
    pop_front();
  }
}

using sql::Scanner;

DeallocateCommand parse_deallocate(std::string_view sql) {
  DeallocateCommand cmd;
  if (sql::first_word_not(sql, "DISCARD", "DEALLOCATE")) return cmd;  // SELECT ...
  Scanner sc{sql};
  if (sc.keyword("DISCARD")) {
    if (sc.keyword("ALL") && sc.at_end()) cmd.kind = DeallocateCommand::Kind::DiscardAll;
    return cmd;
  }
  if (!sc.keyword("DEALLOCATE")) return cmd;
  (void)sc.keyword("PREPARE");
  Scanner probe = sc;
  if (probe.keyword("ALL") && probe.at_end()) {
    cmd.kind = DeallocateCommand::Kind::All;
    return cmd;
  }
  std::string name;
  if (sc.name(name) && sc.at_end()) {
    cmd.kind = DeallocateCommand::Kind::One;
    cmd.name = std::move(name);
  }
  return cmd;
}

SetCommand parse_set(std::string_view sql) {
  SetCommand cmd;
  if (sql::first_word_not(sql, "SET", "RESET")) return cmd;  // SELECT ...
  Scanner sc{sql};
  if (sc.keyword("RESET")) {
    if (sc.keyword("ALL")) {
      cmd.kind = SetCommand::Kind::ResetAll;
      return cmd;
    }
    if (sc.keyword("SESSION")) {
      if (sc.keyword("AUTHORIZATION")) {
        cmd.kind = SetCommand::Kind::Reset;
        cmd.name = "session_authorization";
      }
      return cmd;
    }
    std::string name;
    if (sc.name(name)) {
      cmd.kind = SetCommand::Kind::Reset;
      cmd.name = std::move(name);
    }
    return cmd;
  }
  if (!sc.keyword("SET")) return cmd;
  if (sc.keyword("LOCAL")) return cmd;
  (void)sc.keyword("SESSION");
  // SET ROLE x and SET SESSION AUTHORIZATION x are the settings role and
  // session_authorization (set_config() takes them the same way).
  if (Scanner probe = sc; probe.keyword("ROLE")) {
    cmd.kind = SetCommand::Kind::Set;
    cmd.name = "role";
    return cmd;
  }
  if (Scanner probe = sc; probe.keyword("AUTHORIZATION")) {
    cmd.kind = SetCommand::Kind::Set;
    cmd.name = "session_authorization";
    return cmd;
  }
  Scanner probe = sc;
  if (probe.keyword("CHARACTERISTICS")) {
    // SET SESSION CHARACTERISTICS AS TRANSACTION ...: the session defaults
    // default_transaction_isolation / _read_only / _deferrable.
    if (probe.keyword("AS") && probe.keyword("TRANSACTION")) {
      cmd.kind = SetCommand::Kind::Set;
      cmd.name = "default_transaction_isolation";
      cmd.characteristics = true;
    }
    return cmd;
  }
  if (probe.keyword("TRANSACTION") || probe.keyword("CONSTRAINTS")) {
    return cmd;
  }
  std::string name;
  if (!sc.name(name)) return cmd;
  if (name == "time") {
    if (!sc.keyword("ZONE")) return cmd;
    name = "timezone";
  } else if (!(sc.keyword("TO") || (sc.ws(), sc.i < sc.s.size() && sc.s[sc.i] == '='))) {
    return cmd;
  }
  cmd.kind = SetCommand::Kind::Set;
  cmd.name = std::move(name);
  return cmd;
}

SetConfigCalls find_set_config(std::string_view sql) {
  SetConfigCalls out;
  static constexpr std::string_view kFn = "set_config";
  auto ident = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
           static_cast<unsigned char>(c) >= 0x80;
  };
  // Each '_' may be set_config's: compare around it (cheap on texts without).
  for (size_t at = sql.find('_', 3); at != std::string_view::npos; at = sql.find('_', at + 1)) {
    const size_t start = at - 3;
    if (sql.size() - start < kFn.size()) break;
    bool match = true;
    for (size_t k = 0; k < kFn.size() && match; ++k) {
      match = std::tolower(static_cast<unsigned char>(sql[start + k])) == kFn[k];
    }
    if (!match || (start > 0 && ident(sql[start - 1]))) continue;
    Scanner sc{sql, start + kFn.size()};
    sc.ws();
    if (sc.i >= sql.size() || sql[sc.i] != '(') continue;  // a column named set_config...
    ++sc.i;
    sc.ws();
    std::string name;
    bool literal = sc.i < sql.size() && sql[sc.i] == '\'';
    for (size_t i = sc.i + 1; literal; ++i) {
      if (i >= sql.size()) {
        literal = false;
      } else if (sql[i] == '\'') {
        if (i + 1 < sql.size() && sql[i + 1] == '\'') {
          name += '\'';
          ++i;
          continue;
        }
        sc.i = i + 1;
        break;
      } else {
        name += static_cast<char>(std::tolower(static_cast<unsigned char>(sql[i])));
      }
    }
    sc.ws();
    if (literal && !name.empty() && sc.i < sql.size() && sql[sc.i] == ',') {
      if (std::find(out.names.begin(), out.names.end(), name) == out.names.end()) {
        out.names.push_back(std::move(name));
      }
    } else {
      out.unknown = true;
    }
  }
  return out;
}

std::vector<std::string_view> split_statements(std::string_view sql) {
  std::vector<std::string_view> out;
  size_t start = 0;
  size_t i = 0;
  const size_t n = sql.size();
  while (i < n) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      for (++i; i < n; ++i) {
        if (sql[i] == c) {
          if (i + 1 < n && sql[i + 1] == c) {
            ++i;  // doubled quote
            continue;
          }
          break;
        }
      }
      ++i;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 1;
      for (i += 2; i < n && depth > 0; ++i) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          ++i;
        } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
          --depth;
          ++i;
        }
      }
    } else if (c == '$') {
      // $tag$ ... $tag$ (tag: letters, digits, underscores; not a $1 parameter)
      size_t j = i + 1;
      while (j < n && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) ++j;
      if (j < n && sql[j] == '$' &&
          !(j > i + 1 && std::isdigit(static_cast<unsigned char>(sql[i + 1])))) {
        std::string_view tag = sql.substr(i, j - i + 1);
        size_t close = sql.find(tag, j + 1);
        i = close == std::string_view::npos ? n : close + tag.size();
      } else {
        ++i;
      }
    } else if (c == ';') {
      out.push_back(sql.substr(start, i - start));
      start = ++i;
    } else {
      ++i;
    }
  }
  if (start < n) out.push_back(sql.substr(start));
  return out;
}

}  // namespace sqlmux::pool
