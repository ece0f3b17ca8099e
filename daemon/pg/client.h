// A PostgreSQL client connection: startup, authentication, then relaying
// its messages to whichever backend serves it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/directory.h"
#include "daemon/core/pooled.h"
#include "daemon/core/reason.h"
#include "daemon/ops/upgrade_wire.h"
#include "daemon/pg/auth_query.h"
#include "pool/pg/listen.h"
#include "pool/pg/prepared.h"
#include "pool/pg/session_params.h"
#include "protocol/pg/auth.h"
#include "protocol/pg/codec.h"

namespace sqlmux {

class PgBackend;
class PgClient;
class PgProtocol;
class Pool;
struct PgSecrets;
struct User;
namespace metrics {
struct PoolStats;
}

// A client that sqlmux serves itself after login instead of a pool (the
// admin console): it reads the client's buffered messages while Idle.
class LocalSession {
 public:
  virtual ~LocalSession() = default;
  virtual void process() = 0;
};
// Makes the local session of a client that logged in on such a listener;
// nullptr when it refused the client (and closed it).
using LocalSessionFactory = std::function<std::shared_ptr<LocalSession>(PgClient&)>;

class PgClient final : public PooledClient {
 public:
  PgClient(Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer,
           const PgProtocol& protocol);
  ~PgClient() override;

  // The FATAL that refuses a connection before or at its login: 53300 for
  // too_many_clients and fd_exhausted, 57P03 for shutdown.
  [[nodiscard]] static pg::ErrorFields refusal_error(const Failure& f);
  // That FATAL written at once to a connection that sent `received` (core/worker.h
  // RefusalWriter): after an 'N' when it asked for TLS or GSS encryption,
  // so that libpq reports the message rather than a failed SSL exchange.
  static void write_refusal(const Failure& f, std::string_view received, std::string& out);

  [[nodiscard]] PgBackend* backend() const { return backend_; }
  [[nodiscard]] PooledBackend* pooled_backend() const override;
  [[nodiscard]] pool::SessionParams& params() { return params_; }
  [[nodiscard]] pool::ClientStatements& statements() { return statements_; }
  // A reported parameter whose startup value the server has yet to
  // normalise for this pool: the welcome waits for a backend to apply it.
  struct Learning {
    std::string name;
    std::string raw;
    std::string base;  // the pool's value, which the server starts from
  };
  [[nodiscard]] const std::vector<Learning>& learning() const { return learning_; }
  [[nodiscard]] bool welcome_sent() const { return welcome_sent_; }
  // Forgets a statement whose Parse failed or was skipped.
  void forget_statement(const std::string& name) { statements_.remove(name); }

  // Accepted on a listener served by sqlmux itself (the admin console):
  // after authentication `make` serves it instead of a pool.
  void serve_locally(LocalSessionFactory make) { make_local_ = std::move(make); }
  // The listener's client_tls (SSLRequest answered 'S' unless Disable).
  void set_client_tls(config::ClientTls mode) { client_tls_ = mode; }

  // --- for a local session ---
  // The session greeted the client: it is Idle, served by the session.
  void local_session_started();
  [[nodiscard]] Buffer& input() { return in_; }
  void send_fatal(std::string_view sqlstate, std::string message, Reason why);
  void finish(Reason why);

  // The pool linked a backend to this client (it was Waiting).
  void on_backend_linked(PooledBackend* b) override;
  // The backend finished preparing (session parameters applied).
  void on_backend_ready();
  // The backend is done with this client's transaction (ReadyForQuery 'I').
  void on_backend_released();
  // The backend failed under this client.
  void on_backend_failed(Reason why, const pg::ErrorFields& err);
  // Applying this client's session parameters failed on the backend (now
  // closed) before any of its bytes went there: another backend serves it;
  // after kMaxSetupRetries failures in a row it gets `err` as FATAL.
  void on_backend_setup_failed(const pg::ErrorFields& err);
  // The backend died outside a transaction with nothing outstanding: the
  // next request gets another one (transparent reconnect).
  void on_backend_lost_idle();
  [[nodiscard]] std::string pinned_by() const override;
  // Online upgrade (client_upgrade.cpp): the record of this client when
  // it can be handed over (logged in to a transaction or statement pool,
  // no TLS, idle between transactions with no server connection, nothing
  // buffered, no LISTEN channel); empty otherwise.
  [[nodiscard]] std::string upgrade_record() const override;
  // The new process serves a client handed over with `state` on socket
  // `fd` (owned from here on, also on failure): logged in and idle, as
  // if its login had happened here. False with `why` when it cannot (no
  // such user or pool, a limit reached).
  [[nodiscard]] static bool adopt(Worker& w, int fd, const upgrade::ClientState& state,
                                  const PgProtocol& protocol, std::string& why);
  // Part of a message was relayed and the rest has not arrived yet.
  [[nodiscard]] bool mid_message() const { return pass_remaining_ > 0; }
  // A ParameterStatus the backend reported while serving this client.
  void on_parameter_status(std::string_view name, std::string_view value);
  // Relayed bytes from the backend (already framed by the backend side).
  bool deliver(const uint8_t* p, size_t n) { return send(p, n); }
  // Sends ErrorResponse + ReadyForQuery('I'): a non-fatal error of sqlmux's own.
  void send_error_and_ready(const pg::ErrorFields& e);
  // Backpressure from the backend side.
  void resume_reading_if_drained();
  // The server's ReadyForQuery ended one of this client's queries (metrics).
  void query_done(char tx_status) {
    if (stats_ != nullptr) query_done_metrics(tx_status);
    request_answered(tx_status != 'I');
    if (!digest_q_.empty()) digest_ready();
  }
  // Query digests (client_digest.cpp): a reply relayed to this client
  // (CommandComplete, ErrorResponse, EmptyQueryResponse, PortalSuspended).
  [[nodiscard]] bool digesting() const { return !digest_q_.empty(); }
  void digest_reply(char type, std::string_view body);

  // --- LISTEN fan-out (transaction and statement mode; listen_hub.h) ---
  // The pool fans notifications out (transaction or statement mode without listen_pin).
  [[nodiscard]] bool listen_fanout() const;
  // The client's transaction committed these completed LISTEN/UNLISTEN
  // statements (called before its ReadyForQuery goes out): its channels
  // change; when it gained one, its output waits for on_listen_ready.
  void listen_committed(const std::vector<pool::ListenOp>& ops);
  // The pool's LISTEN connection listens on what the client asked for.
  void on_listen_ready();
  // A NotificationResponse (or a NoticeResponse) from the pool's LISTEN
  // connection: sent now when the client is between transactions, else
  // held until its transaction ends (as PostgreSQL delivers them).
  void notify(const std::string& msg);
  // Around a batch of notifications: one write for all of them.
  void notify_batch(bool begin);
  // The client's transaction ended (ReadyForQuery 'I' sent): held
  // notifications go out.
  void flush_notifications();

  // Fails the client: FATAL ErrorResponse (when f.message is set; its
  // SQLSTATE from the reason) and close.
  void fail(const Failure& f) override;
  // Housekeeping: login and wait timeouts; shutdown.
  void check_timeouts(uint64_t now) override;
  void on_shutdown() override;
  // A cancel request for this client arrived.
  void cancel_running_query() override;

 protected:
  void on_readable() override;
  void on_writable() override;
  void on_io_error(int err) override;
  void on_closed() override;

 private:
  // Lookup: waiting for auth_query (nothing is read meanwhile).
  enum class Login { Startup, Lookup, Password, Md5, SaslInitial, SaslFinal };

  void process_input();
  bool handle_startup();
  bool handle_auth_message();
  void start_auth();
  // auth_query (README "auth_query"): a user without a [[user]] entry, of a
  // pool with auth_user, is checked against what the server returns.
  void start_auth_query(const config::PoolConfig& pc);
  void auth_query_done(PgAuthQuery::Result r);
  void use_looked_up(const std::optional<std::string>& secret);
  // The challenge for user_ (nullptr: a mock one that no answer passes).
  void begin_exchange();
  void auth_succeeded();
  void auth_failed(std::string_view detail);
  void init_params(const pool::SessionParams& defaults);
  void send_welcome();
  // FATAL `err` (when err.message is set) and close.
  void fail_with(Reason why, const pg::ErrorFields& err);
  // FATAL 08P01 for a message type no logged-in client may send.
  void invalid_message_type(uint8_t type);
  void need_backend();
  void relay_to_backend();
  // Extended-protocol messages that name prepared statements (client_relay.cpp).
  enum class Handled { Forward, Consumed, NeedMore, Failed };
  // `out` receives bytes to send in the message's place when it is Consumed.
  Handled handle_parse(const pg::Header& h, const uint8_t* m, size_t avail, std::string& out);
  Handled handle_bind(const pg::Header& h, const uint8_t* m, size_t avail);
  // Whether the client's segment that starts at in_'s front may be sent:
  // see handle_bind.
  [[nodiscard]] bool replay_segment_ready(const pool::StatementDef& def) const;
  Handled handle_describe_or_close(const pg::Header& h, const uint8_t* m, size_t avail,
                                   std::string& out);
  Handled handle_query(const pg::Header& h, const uint8_t* m, size_t avail, std::string& out);
  // DEALLOCATE / DISCARD ALL through the extended protocol (client_dealloc.cpp).
  Handled handle_unnamed_parse(const pg::Header& h, const uint8_t* m, size_t avail);
  Handled handle_execute(const pg::Header& h, const uint8_t* m, size_t avail);
  // True when sqlmux answered (and consumed) the message.
  [[nodiscard]] bool bind_unnamed_dealloc(const pg::Header& h, std::string_view portal,
                                          size_t names);
  [[nodiscard]] bool describe_or_close_dealloc(char type, char what, std::string_view name);
  void forget_dealloc_portal(std::string_view portal);
  // A SET/RESET statement in a simple query: its setting is read back later.
  void note_set_command(std::string_view stmt);
  void ensure_prepared(const pool::StatementDef& def, std::string& out);
  // True when the backend holds a current preparation (a stale one is
  // closed through `out`, and false returned).
  bool prepared_on_backend(const std::string& server_name, std::string& out);
  void add_to_backend(const std::string& server_name, std::string& out);
  void push_synthetic(pool::ResponseTracker::Entry e);
  // Query digests (client_digest.cpp): what a request message names, read
  // before it is handled (digest_peek), applied once it was (digest_commit).
  struct DigestReq {
    char type = 0;  // 0: nothing to digest
    char kind = 0;  // Close: 'S' / 'P'
    std::string name;
    std::string text;  // normalized text, or Bind's statement name
  };
  struct DigestOpen {
    char kind;  // 'Q' Query, 'E' Execute, 'S' Sync
    std::string text;
    uint64_t start_ns;
    uint64_t rows;
    bool error;
  };
  void digest_peek(const pg::Header& h, const uint8_t* m, size_t avail, DigestReq& out);
  void digest_commit(DigestReq& r, bool forwarded);
  void digest_push(char kind, std::string text);
  void digest_end(DigestOpen& d, uint64_t now);
  void digest_ready();
  void digest_clear();
  // Metrics: a request message begins or ends a query (Query, Sync, FunctionCall).
  void note_request(char type);
  void query_done_metrics(char tx_status);

  Login login_ = Login::Startup;
  std::optional<Failure> refusal_;  // the core's: told after the startup packet
  PeerAddress peer_;                // IP address (none for unix sockets): failed-login delays
  bool sent_ssl_answer_ = false;
  bool welcome_sent_ = false;
  bool counted_ = false;
  const PgProtocol& protocol_;
  const User* user_ = nullptr;
  const PgSecrets* secrets_ = nullptr;  // user_'s PostgreSQL secrets
  // auth_query: the lookup in flight, the user made of its answer (user_
  // then points here) and the cache key (empty: no auth_query login).
  std::unique_ptr<PgAuthQuery> auth_query_;
  std::unique_ptr<User> looked_up_user_;
  std::string auth_cache_key_;
  bool lookup_starting_ = false;  // inside auth_query_->start()
  pool::SessionParams params_;    // desired session parameters
  std::vector<std::pair<std::string, std::string>> startup_params_;
  std::vector<Learning> learning_;
  std::unique_ptr<pg::auth::ScramServer> scram_;
  // SCRAM passthrough: this session's proof gave the pool its user's
  // ClientKey (PgPoolState::hold_client_key); released when it leaves.
  bool holds_client_key_ = false;
  // The same from a cleartext password checked against a verifier (auth =
  // "password"), until auth_succeeded hands it on.
  std::optional<pg::auth::ScramKey> password_key_;
  uint8_t md5_salt_[4] = {0, 0, 0, 0};
  int32_t cancel_pid_ = 0;
  int32_t cancel_key_ = 0;

  PgBackend* backend_ = nullptr;
  bool backend_ready_ = false;
  int setup_failures_ = 0;        // in a row (on_backend_setup_failed)
  size_t pass_remaining_ = 0;     // bytes of a message still being relayed
  size_t drop_remaining_ = 0;     // bytes of a message being dropped (skip to Sync)
  bool skip_until_sync_ = false;  // after an error sqlmux raised itself
  bool synthetic_sent_ = false;
  // Whether this client describes each portal before executing it (libpq's
  // PQexecPrepared, psycopg 3) - then a re-prepared statement is safe for
  // it - or relies on a cached row description (asyncpg). Learned.
  bool describes_portals_ = true;
  bool segment_described_ = false;
  pool::ClientStatements statements_;
  // The unnamed statement is a DEALLOCATE sqlmux answers; the portal bound to it.
  bool unnamed_dealloc_ = false;
  std::optional<std::string> dealloc_portal_;
  std::string scratch_;  // rewritten message prefixes
  Reason close_reason_ = Reason::ClientClosed;
  // LISTEN fan-out: the client's channels; LISTENs waiting for the pool's
  // connection (the output is corked meanwhile); notifications held during
  // a transaction; the unnamed statement's and a bound portal's
  // LISTEN/UNLISTEN ops (encoded, pool/pg/listen.h).
  pool::ListenSet listen_;
  int listen_waits_ = 0;
  bool notify_corked_ = false;
  std::string notify_held_;
  std::string unnamed_listen_;
  std::optional<std::pair<std::string, std::string>> listen_portal_;

  std::deque<DigestOpen> digest_q_;                              // sent on, not answered yet
  std::unordered_map<std::string, std::string> digest_stmts_;    // name -> normalized text
  std::unordered_map<std::string, std::string> digest_portals_;  // portal -> normalized text
  uint64_t digest_done_ns_ = 0;  // the last reply that ended a digest
  uint64_t query_start_ns_ = 0;  // the oldest query not answered yet
  uint64_t tx_start_ns_ = 0;
  uint32_t queries_open_ = 0;  // sent on, ReadyForQuery not yet back
  bool in_cycle_ = false;      // extended-protocol messages before their Sync
  bool in_tx_ = false;
  config::ClientTls client_tls_ = config::ClientTls::Disable;
  LocalSessionFactory make_local_;       // set: served by sqlmux itself
  std::shared_ptr<LocalSession> local_;  // after login, when make_local_ is set
};

}  // namespace sqlmux
