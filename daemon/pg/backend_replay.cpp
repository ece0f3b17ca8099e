// A backend's shared prepared statements going stale after DDL: noting
// the server's error, and replaying the client's segment once after
// preparing the statement again (see backend.h).
#include <cinttypes>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

bool PgBackend::note_statement_error(std::string_view body, const std::string& server_name) {
  pg::ErrorFields e;
  if (!pg::parse_error_fields(body, e)) return false;
  // DDL changed what the statement returns (0A000), or the server could no
  // longer analyse it when it revalidated the plan at this Bind or Describe
  // (class 42: a column changed type, a table or function went away...):
  // only DDL since it was prepared gives these there (or a search_path of
  // this client's under which the text means something else). The
  // preparation is stale: every backend prepares it again, and a Parse of
  // its text goes to the server again instead of being answered from it.
  const bool result_changed =
      e.sqlstate == pg::sqlstate::kFeatureNotSupported &&
      e.message.find("cached plan must not change result type") != std::string::npos;
  if (!result_changed && (e.sqlstate.size() != 5 || e.sqlstate.compare(0, 2, "42") != 0)) {
    return false;
  }
  if (pg_state(pool_).stale_statements().invalidate(server_name, statements_.epoch(server_name))) {
    LOG_INFO("statement %s went stale after a schema change (%s); re-preparing it everywhere",
             server_name.c_str(), e.sqlstate.c_str());
  }
  return true;
}

bool PgBackend::forward(const uint8_t* p, size_t n) {
  if (replay_bytes_on_) {
    if (replay_bytes_.size() + n > kMaxReplayBytes) {
      clear_replay();  // too large to keep a copy of: no replay
    } else {
      replay_bytes_.append(reinterpret_cast<const char*>(p), n);
    }
  }
  return send(p, n);
}

void PgBackend::begin_replay(pool::StatementRef def, std::string client_name) {
  clear_replay();
  tracker_.start_recording();
  replay_bytes_on_ = true;
  replay_def_ = std::move(def);
  replay_client_name_ = std::move(client_name);
}

void PgBackend::clear_replay() {
  tracker_.clear_recording();
  replay_bytes_.clear();
  replay_bytes_on_ = false;
  replay_def_.reset();
  replay_client_name_.clear();
}

bool PgBackend::can_replay(const std::string& server_name) const {
  return client_ != nullptr && replay_def_ && replay_def_->server_name == server_name &&
         !replay_bytes_on_ && tracker_.recorded_complete() && tracker_.recorded_describes();
}

// The segment failed at its first Bind because the plan went stale; the
// server rolled back nothing of it (nothing ran) and the client saw nothing.
// Prepare the statement again and send the segment once more.
void PgBackend::replay() {
  const std::string& name = replay_def_->server_name;
  LOG_INFO("backend pid %d: re-prepared %s after a schema change and replayed the client's request",
           pid_, name.c_str());
  std::string out;
  pg::put_close(out, 'S', name);
  pg::put_parse(out, name, replay_def_->query, replay_def_->param_types);
  out += replay_bytes_;
  tracker_.push({pool::ResponseTracker::Kind::Close,
                 pool::ResponseTracker::Action::Swallow,
                 {},
                 {},
                 {},
                 false});
  tracker_.push({pool::ResponseTracker::Kind::Parse,
                 pool::ResponseTracker::Action::Swallow,
                 {},
                 name,
                 {},
                 false});
  const auto recorded = tracker_.recorded();
  std::vector<pool::ResponseTracker::Entry> again(recorded.begin(), recorded.end());
  const uint64_t epoch = pg_state(pool_).stale_statements().current();
  statements_.touch(name);
  statements_.set_epoch(name, epoch);
  if (client_ != nullptr) {
    const auto* e = client_->statements().find(replay_client_name_);
    if (e != nullptr && e->def == replay_def_) {
      client_->statements().add(replay_client_name_, replay_def_, epoch);
    }
  }
  clear_replay();
  for (auto& e : again) tracker_.push(std::move(e));
  send(out.data(), out.size());
}

void PgBackend::forget_failed_parse(const pool::ResponseTracker::Entry& e) {
  if (e.kind == pool::ResponseTracker::Kind::Close) {
    // An eviction the server skipped: the statement is still there, but no
    // longer in the cache. Clear them all before the next client.
    if (!e.stmt.empty()) dirty_ |= kDirtyPrepared;
    return;
  }
  if (!e.stmt.empty()) statements_.erase(e.stmt);
  if (!e.client_stmt.empty() && client_ != nullptr) client_->forget_statement(e.client_stmt);
}

}  // namespace sqlmux
