// DEALLOCATE and DISCARD ALL sent through the extended protocol (psycopg 3
// evicts from its statement cache with DEALLOCATE as Parse/Bind/Execute).
//
// In transaction and statement mode a client's statement names exist only
// in sqlmux, so `DEALLOCATE name` of one of them is answered here, as the
// server would answer it: ParseComplete, BindComplete, NoData for a
// Describe, CommandComplete "DEALLOCATE" for the Execute. The server-side
// statement stays for the other clients that share it (as with Close).
// DEALLOCATE ALL and DISCARD ALL go to the server; the client forgets its
// statements, as with a simple query.
#include <cstring>

#include "daemon/pg/backend.h"
#include "daemon/pg/client.h"

namespace sqlmux {

namespace {
using Kind = pool::ResponseTracker::Kind;
using Action = pool::ResponseTracker::Action;
using Entry = pool::ResponseTracker::Entry;

// Statements longer than this are not DEALLOCATE / DISCARD ALL (see
// kMaxSniffedQuery in client_relay.cpp).
constexpr size_t kMaxSniffedParse = 8 * 1024;

Entry synthetic(Kind k, std::string reply) {
  return Entry{k, Action::Synthetic, std::move(reply), {}, {}, false};
}
}  // namespace

PgClient::Handled PgClient::handle_unnamed_parse(const pg::Header& h, const uint8_t* m,
                                                 size_t avail) {
  if (h.total() <= kMaxSniffedParse) {
    if (avail < h.total()) return Handled::NeedMore;
    std::string_view body(reinterpret_cast<const char*>(m + 5), h.body_len());
    std::string_view name;
    std::string_view query;
    std::vector<uint32_t> types;
    if (!pg::parse_parse(body, name, query, types)) return Handled::Failed;
    const uint8_t words = pool::scan_words(query);
    backend_->note_client_words(words);
    // A SET through the extended protocol (psycopg 3) follows the client
    // as one in a simple query does: read back after the transaction.
    note_set_command(query);
    if ((words & pool::kWordSetConfig) != 0) {
      if (auto calls = pool::find_set_config(query); !calls.empty()) {
        backend_->note_set_config(calls);
      }
    }
    unnamed_listen_.clear();
    if ((words & pool::kWordListen) != 0 && pool::encode_listen_ops(query, unnamed_listen_) == 0 &&
        listen_fanout()) {
      backend_->note_unparsed_listen();
    }
    const auto cmd = pool::parse_deallocate(query);
    switch (cmd.kind) {
      case pool::DeallocateCommand::Kind::One:
        if (statements_.remove(cmd.name)) {
          unnamed_dealloc_ = true;
          push_synthetic(synthetic(Kind::Parse, std::string("1\0\0\0\4", 5)));
          return Handled::Consumed;
        }
        break;  // not one of ours: the server answers
      case pool::DeallocateCommand::Kind::All:
        statements_.clear();
        break;
      case pool::DeallocateCommand::Kind::DiscardAll:
        statements_.clear();
        params_.clear_unreported();
        break;
      case pool::DeallocateCommand::Kind::None:
        break;
    }
  }
  if (h.total() > kMaxSniffedParse) unnamed_listen_.clear();
  unnamed_dealloc_ = false;
  backend_->tracker().push_plain(Kind::Parse);
  return Handled::Forward;
}

bool PgClient::bind_unnamed_dealloc(const pg::Header& h, std::string_view portal, size_t names) {
  if (!unnamed_dealloc_) return false;
  push_synthetic(synthetic(Kind::Bind, std::string("2\0\0\0\4", 5)));
  dealloc_portal_ = std::string(portal);
  in_.consume(5 + names);
  drop_remaining_ = h.total() - 5 - names;  // its parameters (none expected)
  return true;
}

bool PgClient::describe_or_close_dealloc(char type, char what, std::string_view name) {
  const bool portal = what == 'P' && dealloc_portal_ && *dealloc_portal_ == name;
  const bool stmt = what == 'S' && name.empty() && unnamed_dealloc_;
  if (!portal && !stmt) return false;
  if (type == 'C') {
    push_synthetic(synthetic(Kind::Close, std::string("3\0\0\0\4", 5)));
    if (portal) dealloc_portal_.reset();
    if (stmt) unnamed_dealloc_ = false;
  } else if (portal) {
    push_synthetic(synthetic(Kind::Describe, std::string("n\0\0\0\4", 5)));  // NoData
  } else {
    // ParameterDescription (no parameters), NoData.
    push_synthetic(synthetic(Kind::Describe, std::string("t\0\0\0\6\0\0n\0\0\0\4", 12)));
  }
  return true;
}

PgClient::Handled PgClient::handle_execute(const pg::Header& h, const uint8_t* m, size_t avail) {
  if (!dealloc_portal_ && !listen_portal_) {
    backend_->tracker().push_plain(Kind::Execute);
    return Handled::Forward;
  }
  if (avail < h.total()) return Handled::NeedMore;
  const auto* body = m + 5;
  const void* z = std::memchr(body, 0, h.body_len());
  if (z == nullptr) return Handled::Failed;
  std::string_view portal(reinterpret_cast<const char*>(body),
                          static_cast<size_t>(static_cast<const uint8_t*>(z) - body));
  if (!dealloc_portal_ || portal != *dealloc_portal_) {
    Entry e{Kind::Execute, Action::Forward, {}, {}, {}, false};
    if (listen_portal_ && listen_portal_->first == portal) e.listen = listen_portal_->second;
    backend_->tracker().push(std::move(e));
    return Handled::Forward;
  }
  std::string reply;
  pg::put_command_complete(reply, "DEALLOCATE");
  push_synthetic(synthetic(Kind::Execute, std::move(reply)));
  return Handled::Consumed;
}

void PgClient::forget_dealloc_portal(std::string_view portal) {
  if (dealloc_portal_ && *dealloc_portal_ == portal) dealloc_portal_.reset();
}

}  // namespace sqlmux
