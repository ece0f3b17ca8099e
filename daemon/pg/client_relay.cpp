// Relaying a client's messages to its backend, and the extended-protocol
// messages that name prepared statements.
//
// In session mode messages pass unchanged. In transaction and statement
// mode a client's statement name is mapped to a server-side name shared by
// every client with the same statement (pool/pg/prepared.h): Parse, Bind,
// Describe and Close are rewritten, a Parse the backend lacks is injected
// before the message that needs it, and replies are added or dropped so that
// the client sees exactly what it asked for, in order.
#include <cinttypes>
#include <cstring>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"
#include "pool/pg/sql_scanner.h"

namespace sqlmux {

namespace {
constexpr size_t kHighWater = 512 * 1024;
// A simple query is read whole (to spot DEALLOCATE, DISCARD, SET) only up
// to this size; longer ones are streamed.
constexpr size_t kMaxSniffedQuery = 8 * 1024;
// A named Parse is held whole to hash its text; beyond this it is refused.
constexpr size_t kMaxNamedParse = 64u * 1024 * 1024;

using Kind = pool::ResponseTracker::Kind;
using Action = pool::ResponseTracker::Action;
using Entry = pool::ResponseTracker::Entry;
using StatementEntry = const pool::ClientStatements::Entry*;

// The first NUL-terminated string of a message body, from what has arrived.
// nullopt: not all there yet. Empty optional value never means malformed:
// the caller checks `complete` to tell.
bool first_cstr(const uint8_t* body, size_t have, std::string_view& out, size_t& used) {
  const void* z = std::memchr(body, 0, have);
  if (z == nullptr) return false;
  used = static_cast<size_t>(static_cast<const uint8_t*>(z) - body) + 1;
  out = std::string_view(reinterpret_cast<const char*>(body), used - 1);
  return true;
}

Entry plain(Kind k) {
  return Entry{k, Action::Forward, {}, {}, {}, false};
}

}  // namespace

void PgClient::push_synthetic(Entry e) {
  e.action = Action::Synthetic;
  auto& tr = backend_->tracker();
  const bool at_head = tr.empty();
  if (!tr.push(std::move(e))) return;  // the server skips this point (after an error)
  if (at_head) {
    backend_->emit_synthetic();
    synthetic_sent_ = true;
  }
}

bool PgClient::prepared_on_backend(const std::string& server_name, std::string& out) {
  auto& cache = backend_->statements();
  auto& stale = pg_state(*pool_).stale_statements();
  if (!cache.touch(server_name)) {
    if (stats_ != nullptr) stats_->prepared_misses.add();
    return false;
  }
  if (!stale.stale(server_name, cache.epoch(server_name))) {
    if (stats_ != nullptr) stats_->prepared_hits.add();
    return true;
  }
  if (stats_ != nullptr) stats_->prepared_misses.add();
  // Its plan went stale (DDL): close it here; the caller prepares it again.
  pg::put_close(out, 'S', server_name);
  backend_->tracker().push(Entry{Kind::Close, Action::Swallow, {}, {}, {}, false});
  cache.erase(server_name);
  return false;
}

void PgClient::add_to_backend(const std::string& server_name, std::string& out) {
  auto& cache = backend_->statements();
  if (auto evicted = cache.insert(server_name)) {
    if (stats_ != nullptr) stats_->prepared_evictions.add();
    pg::put_close(out, 'S', *evicted);
    backend_->tracker().push(Entry{Kind::Close, Action::Swallow, {}, *evicted, {}, false});
  }
  cache.set_epoch(server_name, pg_state(*pool_).stale_statements().current());
}

void PgClient::ensure_prepared(const pool::StatementDef& def, std::string& out) {
  if (prepared_on_backend(def.server_name, out)) return;
  add_to_backend(def.server_name, out);
  pg::put_parse(out, def.server_name, def.query, def.param_types);
  backend_->tracker().push(Entry{Kind::Parse, Action::Swallow, {}, def.server_name, {}, false});
}

PgClient::Handled PgClient::handle_parse(const pg::Header& h, const uint8_t* m, size_t avail,
                                         std::string& out) {
  std::string_view name;
  size_t used = 0;
  const size_t have = std::min(avail, h.total()) - 5;
  if (!first_cstr(m + 5, have, name, used)) {
    return avail >= h.total() ? Handled::Failed : Handled::NeedMore;
  }
  if (name.empty()) return handle_unnamed_parse(h, m, avail);
  if (h.total() > kMaxNamedParse) return Handled::Failed;
  if (avail < h.total()) return Handled::NeedMore;
  std::string_view body(reinterpret_cast<const char*>(m + 5), h.body_len());
  std::string_view query;
  std::vector<uint32_t> types;
  if (!pg::parse_parse(body, name, query, types)) return Handled::Failed;
  const uint8_t words = pool::scan_words(query);
  backend_->note_client_words(words);
  if ((words & pool::kWordListen) != 0 && listen_fanout()) {
    std::string ops;
    if (pool::encode_listen_ops(query, ops) == 0) backend_->note_unparsed_listen();
  }

  std::string client_name(name);
  if (statements_.find(client_name) != nullptr) {
    pg::ErrorFields e;
    e.sqlstate = "42P05";
    e.message = "prepared statement \"" + client_name + "\" already exists";
    std::string reply;
    pg::put_error(reply, e);
    push_synthetic(Entry{Kind::Parse, Action::Synthetic, std::move(reply), {}, {}, false});
    skip_until_sync_ = true;  // as the server would after an error
    return Handled::Consumed;
  }
  // Named by the pool's schema generation: after DDL the text names a new
  // server statement, so this Parse reaches the server (prepared afresh,
  // its error relayed as it is) while earlier clients keep the old one.
  auto& stale = pg_state(*pool_).stale_statements();
  auto def = pool::make_statement(query, std::move(types), stale.generation());
  statements_.add(client_name, def, stale.current());
  if (prepared_on_backend(def->server_name, out)) {
    // Prepared on this backend already (by this client or another one). If
    // an earlier error makes the server skip this point, the client's name
    // is forgotten again (forget_failed_parse: stmt empty, the backend keeps it).
    std::string reply("1\0\0\0\4", 5);
    push_synthetic(Entry{Kind::Parse, Action::Synthetic, std::move(reply), {}, client_name, false});
    return Handled::Consumed;
  }
  add_to_backend(def->server_name, out);
  pg::put_parse(out, def->server_name, def->query, def->param_types);
  backend_->tracker().push(
      Entry{Kind::Parse, Action::Forward, {}, def->server_name, client_name, false});
  return Handled::Consumed;
}

// A segment that starts with a cached statement's Bind (or Describe)
// outside a transaction block is replayed once if the server's statement
// turns out stale (backend_replay.cpp); the replay needs the whole segment,
// up to its Sync, recorded when the server's error comes. A client that
// writes Bind, Describe, Execute and Sync one by one could get the error
// back between them, and the error would reach it. So such a segment goes
// to the server once its Sync (or a Flush: the client then waits for
// answers) is in, as libpq and the drivers send it anyway: the server
// answers nothing before either. Not held: a segment longer than a replay
// keeps (it is not replayed), and a COPY, whose server answers before any
// Sync.
bool PgClient::replay_segment_ready(const pool::StatementDef& def) const {
  std::string_view q = def.query;
  while (!q.empty() && pool::sql::sql_space(q.front())) q.remove_prefix(1);
  if (!pool::sql::first_word_not(q, {"COPY"})) return true;  // (or a comment first)
  const uint8_t* p = in_.data();
  const size_t n = in_.size();
  for (size_t off = 0;;) {
    if (off >= PgBackend::kMaxReplayBytes) return true;
    pg::Header h;
    const pg::Decode d = pg::peek_header(p + off, n - off, pg::kMaxMessageLen, h);
    if (d == pg::Decode::Malformed) return true;  // the relay fails the client
    if (d == pg::Decode::NeedMore) return false;
    if (off + h.total() > PgBackend::kMaxReplayBytes) return true;
    if (off + h.total() > n) return false;
    if (h.type == 'S' || h.type == 'H') return true;
    off += h.total();
  }
}

PgClient::Handled PgClient::handle_bind(const pg::Header& h, const uint8_t* m, size_t avail) {
  const size_t have = std::min(avail, h.total()) - 5;
  std::string_view portal;
  std::string_view stmt;
  size_t used1 = 0;
  size_t used2 = 0;
  if (!first_cstr(m + 5, have, portal, used1) ||
      !first_cstr(m + 5 + used1, have - used1, stmt, used2)) {
    return avail >= h.total() ? Handled::Failed : Handled::NeedMore;
  }
  forget_dealloc_portal(portal);  // bound anew
  if (stmt.empty() && bind_unnamed_dealloc(h, portal, used1 + used2)) return Handled::Consumed;
  StatementEntry entry = stmt.empty() ? nullptr : statements_.find(stmt);
  // LISTEN fan-out: the portal runs a LISTEN/UNLISTEN (noted at its Execute).
  if (listen_portal_ && listen_portal_->first == portal) listen_portal_.reset();
  if (const std::string& ops = entry != nullptr ? entry->def->listen : unnamed_listen_;
      !ops.empty() && (entry != nullptr || stmt.empty()) && listen_fanout()) {
    listen_portal_.emplace(std::string(portal), ops);
  }
  if (entry == nullptr) {
    backend_->tracker().push_plain(Kind::Bind);
    return Handled::Forward;
  }
  const bool fresh_segment = backend_->tracker().empty() && backend_->tx_status() == 'I';
  if (fresh_segment && describes_portals_ && !replay_segment_ready(*entry->def)) {
    return Handled::NeedMore;  // nothing done yet: the Bind is read again
  }
  if (!entry->def->set_config.empty()) backend_->note_set_config(entry->def->set_config);
  const size_t names = used1 + used2;
  const std::string& sname = entry->def->server_name;
  if (describes_portals_ && pg_state(*pool_).stale_statements().stale(sname, entry->epoch)) {
    // This client reads the row description of every execution: the
    // re-prepared statement is safe for it. Take the current plan.
    statements_.add(stmt, entry->def, pg_state(*pool_).stale_statements().current());
    entry = statements_.find(stmt);
  }
  if (pg_state(*pool_).stale_statements().stale(sname, entry->epoch)) {
    // Prepared before a schema change altered its result or broke it:
    // PostgreSQL fails it until the client prepares it again (drivers such
    // as asyncpg then do); running the new plan would hand the client rows
    // of a shape it did not ask for.
    // (Also when the server could no longer analyse it, class 42: on
    // PostgreSQL the old statement would keep failing with that error, and
    // this one tells drivers to prepare it again, which then works or fails
    // as it would on PostgreSQL. It also spares clients whose search_path
    // finds what another client's did not.)
    pg::ErrorFields e;
    e.sqlstate = std::string(pg::sqlstate::kFeatureNotSupported);
    e.message = "cached plan must not change result type";
    e.routine = "RevalidateCachedQuery";  // what the server says; drivers key on it
    std::string reply;
    pg::put_error(reply, e);
    push_synthetic(Entry{Kind::Bind, Action::Synthetic, std::move(reply), {}, {}, false});
    skip_until_sync_ = true;
    in_.consume(5 + names);
    drop_remaining_ = h.total() - 5 - names;
    return Handled::Consumed;
  }
  std::string& out = scratch_;  // reused: no allocation per Bind once it has grown
  out.clear();
  ensure_prepared(*entry->def, out);
  if (!out.empty()) {
    backend_->forward(reinterpret_cast<const uint8_t*>(out.data()), out.size());
    out.clear();
  }
  // A segment that starts with this Bind outside a transaction block can be
  // replayed once if the statement's plan turns out stale (0A000).
  if (fresh_segment && describes_portals_) backend_->begin_replay(entry->def, std::string(stmt));
  const size_t rest = h.body_len() - names;
  out += 'B';
  const uint32_t len = static_cast<uint32_t>(4 + used1 + sname.size() + 1 + rest);
  const char lenb[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16),
                        static_cast<char>(len >> 8), static_cast<char>(len)};
  out.append(lenb, 4);
  out.append(reinterpret_cast<const char*>(m + 5), used1);
  out.append(sname);
  out += '\0';
  // The Bind remembers its statement: a stale-plan error invalidates it.
  backend_->tracker().push_bind(sname);
  backend_->forward(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  in_.consume(5 + names);  // the caller flushed what preceded this Bind
  pass_remaining_ = rest;  // parameters stream on unchanged
  return Handled::Consumed;
}

PgClient::Handled PgClient::handle_describe_or_close(const pg::Header& h, const uint8_t* m,
                                                     size_t avail, std::string& out) {
  const Kind kind = h.type == 'D' ? Kind::Describe : Kind::Close;
  if (avail < h.total()) return Handled::NeedMore;
  std::string_view body(reinterpret_cast<const char*>(m + 5), h.body_len());
  char what = 0;
  std::string_view name;
  if (!pg::parse_close_or_describe(body, what, name)) return Handled::Failed;
  if (kind == Kind::Describe && what == 'P') segment_described_ = true;
  if (describe_or_close_dealloc(h.type, what, name)) return Handled::Consumed;
  StatementEntry entry = what == 'S' && !name.empty() ? statements_.find(name) : nullptr;
  if (entry == nullptr) {
    backend_->tracker().push_plain(kind);
    return Handled::Forward;
  }
  if (kind == Kind::Close) {
    // The server-side statement stays for others; only this client forgets it.
    statements_.remove(name);
    push_synthetic(
        Entry{Kind::Close, Action::Synthetic, std::string("3\0\0\0\4", 5), {}, {}, false});
    return Handled::Consumed;
  }
  // A Describe that starts a segment outside a transaction block can be
  // replayed once if the server's statement turns out stale: the client
  // learns the statement's shape from the replay itself.
  const bool fresh_segment = backend_->tracker().empty() && backend_->tx_status() == 'I';
  if (fresh_segment && !replay_segment_ready(*entry->def)) return Handled::NeedMore;
  ensure_prepared(*entry->def, out);
  if (fresh_segment) {
    // (The caller flushed what preceded this Describe.) What was injected
    // goes first, unrecorded: the replay prepares the statement itself.
    if (!out.empty()) backend_->forward(reinterpret_cast<const uint8_t*>(out.data()), out.size());
    out.clear();
    backend_->begin_replay(entry->def, std::string(name));
  }
  pg::put_describe(out, 'S', entry->def->server_name);
  // The Describe remembers its statement: a stale-statement error invalidates it.
  backend_->tracker().push(
      Entry{Kind::Describe, Action::Forward, {}, entry->def->server_name, {}, false});
  return Handled::Consumed;
}

void PgClient::note_set_command(std::string_view stmt) {
  const auto set = pool::parse_set(stmt);
  if (set.kind == pool::SetCommand::Kind::Set || set.kind == pool::SetCommand::Kind::Reset) {
    backend_->note_set(set.name);
    if (set.characteristics) {
      backend_->note_set("default_transaction_read_only");
      backend_->note_set("default_transaction_deferrable");
    }
  } else if (set.kind == pool::SetCommand::Kind::ResetAll) {
    params_.clear_unreported();
  }
}

PgClient::Handled PgClient::handle_query(const pg::Header& h, const uint8_t* m, size_t avail,
                                         std::string& out) {
  const bool rewrite = pool_->cfg().mode != config::PoolMode::Session;
  unnamed_dealloc_ = false;  // a simple query drops the unnamed statement and portal
  unnamed_listen_.clear();
  forget_dealloc_portal("");
  if (!rewrite || h.total() > kMaxSniffedQuery) {
    backend_->tracker().push_plain(Kind::Query);
    return Handled::Forward;
  }
  if (avail < h.total()) return Handled::NeedMore;
  std::string_view sql;
  if (!pg::parse_query(std::string_view(reinterpret_cast<const char*>(m + 5), h.body_len()), sql)) {
    backend_->tracker().push_plain(Kind::Query);
    return Handled::Forward;
  }
  const uint8_t words = pool::scan_words(sql);
  backend_->note_client_words(words);
  if ((words & pool::kWordSetConfig) != 0) {
    if (auto calls = pool::find_set_config(sql); !calls.empty()) backend_->note_set_config(calls);
  }
  std::string listen;
  if ((words & pool::kWordListen) != 0 && listen_fanout() &&
      pool::encode_listen_ops(sql, listen) == 0) {
    backend_->note_unparsed_listen();  // e.g. EXECUTE 'LISTEN x' in a DO block
  }
  // Most queries (SELECT ...) start with none of the words the
  // recognisers below look for: neither needs to read them (a statement
  // after a ';' still may start with one).
  const bool other_word = pool::sql::first_word_not(sql, {"DEALLOCATE", "DISCARD", "SET", "RESET"});
  const auto dealloc = other_word ? pool::DeallocateCommand{} : pool::parse_deallocate(sql);
  switch (dealloc.kind) {
    case pool::DeallocateCommand::Kind::One: {
      StatementEntry entry = statements_.find(dealloc.name);
      if (entry == nullptr) break;  // not ours: the server answers
      std::string server_name = entry->def->server_name;
      statements_.remove(dealloc.name);
      auto& cache = backend_->statements();
      if (cache.contains(server_name)) {
        cache.erase(server_name);
        pg::put_query(out, "DEALLOCATE " + server_name);
        backend_->tracker().push_plain(Kind::Query);
      } else {
        std::string reply;
        pg::put_command_complete(reply, "DEALLOCATE");
        push_synthetic(Entry{Kind::Query, Action::Synthetic, std::move(reply), {}, {}, true});
      }
      return Handled::Consumed;
    }
    case pool::DeallocateCommand::Kind::All:
      statements_.clear();
      break;
    case pool::DeallocateCommand::Kind::DiscardAll:
      statements_.clear();
      params_.clear_unreported();
      break;
    case pool::DeallocateCommand::Kind::None:
      // Settings the query changes are read back after the transaction.
      if (const size_t semi = sql.find(';');
          semi == std::string_view::npos ||
          sql.find_first_not_of(" \t\r\n", semi + 1) == std::string_view::npos) {
        if (!other_word) note_set_command(sql);  // one statement: no need to split
      } else {
        for (std::string_view stmt : pool::split_statements(sql)) note_set_command(stmt);
      }
      break;
  }
  if (listen.empty()) {
    backend_->tracker().push_plain(Kind::Query);
  } else {
    Entry e = plain(Kind::Query);
    e.listen = std::move(listen);
    backend_->tracker().push(std::move(e));
  }
  return Handled::Forward;
}

void PgClient::relay_to_backend() {
  PgBackend* const b = backend_;
  if (b->busy()) return;  // sqlmux's own query runs first
  const bool rewrite = pool_->cfg().mode != config::PoolMode::Session;
  auto& tr = b->tracker();
  size_t fwd = 0;
  auto flush = [&] {
    if (fwd > 0) {
      b->forward(in_.data(), fwd);
      in_.consume(fwd);
      fwd = 0;
    }
  };
  synthetic_sent_ = false;
  while (!closing() && backend_ == b) {
    const uint8_t* p = in_.data();
    const size_t n = in_.size();
    if (fwd >= n) break;
    if (pass_remaining_ > 0) {
      size_t k = std::min(pass_remaining_, n - fwd);
      fwd += k;
      pass_remaining_ -= k;
      continue;
    }
    if (drop_remaining_ > 0) {
      flush();
      size_t k = std::min(drop_remaining_, in_.size());
      in_.consume(k);
      drop_remaining_ -= k;
      continue;
    }
    pg::Header h;
    pg::Decode d = pg::peek_header(p + fwd, n - fwd, pg::kMaxMessageLen, h);
    if (d == pg::Decode::NeedMore) break;
    if (d == pg::Decode::Malformed) {
      flush();
      CLOG_INFO(log_tag_, "invalid message length (type %d)", p[0]);
      send_fatal(pg::sqlstate::kProtocolViolation, "invalid message length",
                 Reason::ClientProtocolError);
      return;
    }
    const uint8_t* m = p + fwd;
    const size_t avail = n - fwd;
    if (h.type == 'X') {
      flush();
      in_.consume(std::min(h.total(), in_.size()));
      finish(Reason::ClientClosed);
      return;
    }
    if (!pg::is_session_message_type(h.type)) {
      flush();
      invalid_message_type(p[fwd]);
      return;
    }
    if (skip_until_sync_ && h.type != 'S') {
      flush();
      drop_remaining_ = h.total();
      continue;
    }
    if (tr.skipping() && h.type != 'S') {
      // The server skips this message (an error came before the client's
      // Sync): relay it unchanged; it owes nothing and prepares nothing.
      pass_remaining_ = h.total();
      continue;
    }
    Handled r = Handled::Forward;
    std::string out;  // bytes of sqlmux's own, sent in this message's place
    DigestReq dq;
    if (digests_on()) digest_peek(h, m, avail, dq);
    switch (h.type) {
      case 'S':
        skip_until_sync_ = false;
        segment_described_ = false;
        forget_dealloc_portal("");  // the unnamed portal ends with its transaction
        tr.push_plain(Kind::Sync);
        if (b->replay_recording()) {
          // The recorded segment ends exactly after this Sync.
          if (dq.type != 0) digest_commit(dq, true);
          if (stats_ != nullptr) note_request('S');
          request_sent();
          fwd += h.total();
          flush();
          b->end_replay_recording();
          continue;
        }
        break;
      case 'E':
        if (!segment_described_) describes_portals_ = false;
        if (rewrite) {
          r = handle_execute(h, m, avail);
        } else {
          tr.push_plain(Kind::Execute);
        }
        break;
      case 'F':
        tr.push_plain(Kind::Function);
        break;
      case 'Q':
        r = handle_query(h, m, avail, out);
        break;
      case 'P':
        if (rewrite) {
          r = handle_parse(h, m, avail, out);
        } else {
          tr.push_plain(Kind::Parse);
          // A named statement is session state a new server would lack.
          if (avail <= 5 || m[5] != 0) b->note_session_state();
        }
        break;
      case 'B':
        if (rewrite) {
          // Rewrites stream their tail: forward what precedes first.
          flush();
          r = handle_bind(h, in_.data(), in_.size());
        } else {
          tr.push_plain(Kind::Bind);
        }
        break;
      case 'D':
      case 'C':
        if (rewrite) {
          if (h.type == 'D') {
            flush();  // a Describe may send sqlmux's own messages first
            r = handle_describe_or_close(h, in_.data(), in_.size(), out);
            break;
          }
          r = handle_describe_or_close(h, m, avail, out);
        } else {
          tr.push_plain(h.type == 'D' ? Kind::Describe : Kind::Close);
        }
        break;
      default:
        break;  // Flush, CopyData/Done/Fail: no reply of their own
    }
    if (r == Handled::NeedMore) break;
    if (dq.type != 0 && r != Handled::Failed) digest_commit(dq, r == Handled::Forward);
    if (stats_ != nullptr) note_request(h.type);
    if (h.type == 'Q' || h.type == 'S' || h.type == 'F') request_sent();
    if (r == Handled::Failed) {
      flush();
      send_fatal(
          pg::sqlstate::kProtocolViolation,
          std::string("invalid ") + std::string(pg::frontend_message_name(h.type)) + " message",
          Reason::ClientProtocolError);
      return;
    }
    if (r == Handled::Consumed) {
      if (h.type != 'B') {  // (Bind sent its own prefix and streams its tail)
        flush();            // what came before goes first
        if (!out.empty()) b->forward(reinterpret_cast<const uint8_t*>(out.data()), out.size());
        in_.consume(h.total());
      }
      continue;
    }
    pass_remaining_ = h.total();
  }
  flush();
  if (in_.empty()) in_.shrink_if_empty();
  if (backend_ == b && synthetic_sent_ && rewrite) b->finish_if_answered();
  // Reading may have paused while this client waited with a full buffer.
  if (backend_ != nullptr) want_read(backend_->queued() <= kHighWater);
}

}  // namespace sqlmux
