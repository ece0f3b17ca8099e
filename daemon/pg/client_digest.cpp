// Query digests of a PostgreSQL client (SHOW QUERIES): the statements it
// sends - a simple Query's text, or the text Parse gave the statement an
// Execute's portal was bound to - queued in order, each ended by the
// server's reply: CommandComplete / EmptyQueryResponse / PortalSuspended /
// ErrorResponse for an Execute, ReadyForQuery for a Query (whose rows are
// summed over its statements). Executes the server skipped after an error
// are dropped at their Sync's ReadyForQuery, not counted.
#include <uv.h>

#include "daemon/pg/client.h"
#include "pool/digest.h"

namespace sqlmux {
namespace {

constexpr size_t kMaxNames = 10000;  // statements/portals remembered per client
constexpr size_t kMaxOpen = 100000;  // queued digests per client (pipelining)

// The next NUL-terminated string of `body`; false when there is none.
bool cstring(std::string_view& body, std::string_view& out) {
  const size_t nul = body.find('\0');
  if (nul == std::string_view::npos) return false;
  out = body.substr(0, nul);
  body.remove_prefix(nul + 1);
  return true;
}

}  // namespace

void PgClient::digest_peek(const pg::Header& h, const uint8_t* m, size_t avail, DigestReq& out) {
  out = DigestReq{};
  if (h.type != 'Q' && h.type != 'P' && h.type != 'B' && h.type != 'E' && h.type != 'C' &&
      h.type != 'S') {
    return;
  }
  out.type = h.type;
  if (h.type == 'S') return;
  // (A Query longer than what has arrived is digested from its start: the
  // normalized text is cut at kMaxDigestText anyway.)
  std::string_view body(
      reinterpret_cast<const char*>(m) + 5,
      std::min(avail, h.total()) - std::min<size_t>(5, std::min(avail, h.total())));
  std::string_view a;
  std::string_view b;
  switch (h.type) {
    case 'Q': {
      const size_t nul = body.find('\0');
      pool::normalize_sql(nul == std::string_view::npos ? body : body.substr(0, nul),
                          pool::SqlDialect::PostgreSQL, out.text);
      return;
    }
    case 'P':  // statement name, query
      if (cstring(body, a) && cstring(body, b)) {
        out.name = a;
        pool::normalize_sql(b, pool::SqlDialect::PostgreSQL, out.text);
      } else {
        out.type = 0;
      }
      return;
    case 'B':  // portal, statement name
      if (cstring(body, a) && cstring(body, b)) {
        out.name = a;
        out.text = b;
      } else {
        out.type = 0;
      }
      return;
    case 'E':  // portal
      if (cstring(body, a)) {
        out.name = a;
      } else {
        out.type = 0;
      }
      return;
    case 'C':  // 'S' statement / 'P' portal, name
      if (!body.empty()) {
        out.kind = body[0];
        body.remove_prefix(1);
        if (cstring(body, a)) {
          out.name = a;
          return;
        }
      }
      out.type = 0;
      return;
    default:
      return;
  }
}

void PgClient::digest_commit(DigestReq& r, bool forwarded) {
  switch (r.type) {
    case 'Q':
      if (forwarded) digest_push('Q', std::move(r.text));
      return;
    case 'S':
      digest_push('S', {});
      return;
    case 'P':
      if (digest_stmts_.size() >= kMaxNames) digest_stmts_.clear();
      digest_stmts_[std::move(r.name)] = std::move(r.text);
      return;
    case 'B': {
      auto it = digest_stmts_.find(r.text);
      if (digest_portals_.size() >= kMaxNames) digest_portals_.clear();
      digest_portals_[std::move(r.name)] = it != digest_stmts_.end() ? it->second : std::string();
      return;
    }
    case 'E': {
      if (!forwarded) return;
      auto it = digest_portals_.find(r.name);
      // A portal sqlmux does not know (bound before digests were on): no digest.
      digest_push('E', it != digest_portals_.end() ? it->second : std::string());
      return;
    }
    case 'C':
      if (r.kind == 'S') {
        digest_stmts_.erase(r.name);
      } else if (r.kind == 'P') {
        digest_portals_.erase(r.name);
      }
      return;
    default:
      return;
  }
}

void PgClient::digest_push(char kind, std::string text) {
  if (digest_q_.size() >= kMaxOpen) digest_q_.clear();  // replies lost track of: start over
  digest_q_.push_back(DigestOpen{kind, std::move(text), uv_hrtime(), 0, false});
}

void PgClient::digest_end(DigestOpen& d, uint64_t now) {
  const uint64_t start = std::max(d.start_ns, digest_done_ns_);
  digest_done_ns_ = now;
  if (!d.text.empty()) record_digest("postgres", d.text, now - start, d.rows, d.error);
}

void PgClient::digest_reply(char type, std::string_view body) {
  // The oldest Query or Execute not answered yet (Sync marks answer nothing).
  auto it = digest_q_.begin();
  while (it != digest_q_.end() && it->kind == 'S') ++it;
  if (it == digest_q_.end()) return;
  if (type == 'C') {
    std::string_view tag;
    if (pg::parse_command_complete(body, tag)) it->rows += pool::command_tag_rows(tag);
  } else if (type == 'E') {
    it->error = true;
  } else if (type != 'I' && type != 's') {
    return;
  }
  if (it->kind == 'E') {
    digest_end(*it, uv_hrtime());
    digest_q_.erase(it);
  }
}

void PgClient::digest_ready() {
  // Ends the oldest Query, or Sync: Executes before it that got no reply
  // were skipped by the server after an error.
  const uint64_t now = uv_hrtime();
  while (!digest_q_.empty()) {
    DigestOpen d = std::move(digest_q_.front());
    digest_q_.pop_front();
    if (d.kind == 'Q') {
      digest_end(d, now);
      return;
    }
    if (d.kind == 'S') {
      digest_done_ns_ = now;
      return;
    }
  }
}

void PgClient::digest_clear() {
  if (!digest_q_.empty()) digest_q_.clear();  // (clear() of an empty deque is not free)
}

}  // namespace sqlmux
