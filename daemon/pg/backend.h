// A backend (server) connection. libpq opens it (non-blocking, so SCRAM/md5
// to the server come from libpq), except for SCRAM passthrough (a pool
// without `user` whose [[user]] password is a hash: libpq cannot log in with
// a ClientKey or an md5 hash), where sqlmux logs in itself
// (backend_native.cpp, pg::ServerLogin). Once it is ready sqlmux relays its
// socket itself and runs its own short queries on it (session parameters,
// resets).
#pragma once

#include <libpq-fe.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/pooled.h"
#include "daemon/core/reason.h"
#include "pool/pg/listen.h"
#include "pool/pg/prepared.h"
#include "pool/pg/session_params.h"
#include "pool/pg/session_pins.h"
#include "protocol/pg/codec.h"
#include "protocol/pg/server_login.h"

namespace sqlmux {

// Where and how to cancel a query on a connection sqlmux logged in to
// itself (libpq's PGcancel cannot be made without libpq's login).
struct PgNativeCancel {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int32_t pid = 0;
  int32_t key = 0;
};
// Sends the CancelRequest (blocking: run off the loop, as PQcancel).
bool send_native_cancel(const PgNativeCancel& c, char* err, size_t err_len);

class PgClient;
class Pool;
struct PoolHost;
namespace metrics {
struct PoolStats;
}

class PgBackend final : public PooledBackend {
 public:
  // Starts a libpq connection for `pool` to `host`; for_client = the
  // waiting client it was opened for (0: none); tried = the pool's hosts
  // tried for that client so far (bit i = host i), this one included.
  // Returns nullptr when libpq cannot even start (error set), or when the
  // failure was handled already (error empty).
  static PgBackend* connect(Worker& w, Pool& pool, PoolHost& host, uint64_t for_client,
                            uint64_t tried, std::string& error);
  // The secret of a SCRAM passthrough login for `pool` (no `user`, no
  // plaintext password, the [[user]] password a SCRAM verifier or md5
  // hash); nullopt when libpq logs in. When passthrough applies but cannot
  // log in now (no client key held), nullopt with `error` set.
  [[nodiscard]] static std::optional<pg::LoginSecret> passthrough_secret(Worker& w, Pool& pool,
                                                                         std::string& error);

  [[nodiscard]] PgClient* client() const { return client_; }
  [[nodiscard]] PooledClient* pooled_client() const override;
  [[nodiscard]] const pool::SessionParams& params() const { return params_; }
  [[nodiscard]] bool reusable() const;

  // Links to a client and applies its session parameters; calls
  // client->on_backend_ready() when the backend is ready to relay.
  void link(PgClient* c);
  // Relays the client's bytes (whole messages or a streamed part of one);
  // the client side has pushed what they owe onto tracker().
  bool forward(const uint8_t* p, size_t n);
  [[nodiscard]] pool::ResponseTracker& tracker() { return tracker_; }
  [[nodiscard]] pool::BackendStatements& statements() { return statements_; }
  // Sends the synthetic replies now at the head of the tracker.
  void emit_synthetic();
  // When sqlmux itself answered everything the client asked (no reply is
  // owed and no transaction is open), ends the client's turn as a
  // ReadyForQuery 'I' from the server would. True when it did.
  bool finish_if_answered();
  [[nodiscard]] char tx_status() const { return tx_status_; }
  // Replay of one segment (Bind ... Sync) after a stale plan: recording.
  // A longer segment is not kept, hence not replayed.
  static constexpr size_t kMaxReplayBytes = 64 * 1024;
  void begin_replay(pool::StatementRef def, std::string client_name);
  [[nodiscard]] bool replay_recording() const { return replay_bytes_on_; }
  void end_replay_recording() { replay_bytes_on_ = false; }
  // Running sqlmux's own queries: the client's bytes wait.
  [[nodiscard]] bool busy() const { return internal_ != Internal::None; }
  // A simple query that sets `name` (SET/RESET): its value is read back
  // after the transaction so that it follows the client.
  void note_set(std::string name) { pending_sets_.push_back(std::move(name)); }
  // set_config() calls the client's SQL makes (transaction mode): the named
  // settings are read back like SET's; one named otherwise cannot follow the
  // client, and the connection is RESET ALL before another client uses it.
  void note_set_config(const pool::SetConfigCalls& calls) {
    for (const auto& n : calls.names) pending_sets_.push_back(n);
    if (calls.unknown) {
      unattributed_set_ = true;
      dirty_ |= kDirtySettings;
    }
  }
  // Session mode: the client made server-side state (a named statement, a
  // SET, ...) that a replacement server connection would lack.
  void note_session_state() { session_state_ = true; }
  // Transaction mode: SQL text the client sent; when it may create or end
  // pinning state, the server is asked at the end of the transaction.
  // LISTEN fan-out: the client's SQL has the word LISTEN where sqlmux
  // cannot follow it (a DO block, a function's dynamic SQL): the server
  // says which channels the connection listens on after the transaction.
  void note_unparsed_listen() {
    listen_unparsed_ = true;
    check_state_ = true;
  }
  // `words`: what pool::scan_words found in it.
  void note_client_words(uint8_t words) {
    if ((words & pool::kWordState) != 0) check_state_ = true;
  }
  // Why the client is pinned ("temp_table,listen"; "" for not).
  [[nodiscard]] std::string pin_reasons() const;
  // The client went away (or the session ended) while linked.
  void client_gone(bool client_mid_message);
  // The cancel key as libpq knows it (PQcancel runs off the loop).
  [[nodiscard]] std::shared_ptr<PGcancel> cancel_handle() const { return cancel_; }
  // The same for a connection sqlmux logged in to itself (passthrough).
  [[nodiscard]] std::shared_ptr<const PgNativeCancel> native_cancel() const {
    return native_cancel_;
  }
  void became_idle() override;
  void resume_reading_if_drained();

 protected:
  void on_readable() override;
  void on_writable() override;
  void on_poll_writable() override;
  void on_io_error(int err) override;
  void on_terminate() override;

 private:
  enum class Internal { None, Sync, Reset, Capture, StateCheck };
  PgBackend(Worker& w, Pool& pool, PGconn* pg, int fd, uint64_t for_client, bool owns_fd);
  ~PgBackend() override;
  static PgBackend* connect_native(Worker& w, Pool& pool, PoolHost& where, uint64_t for_client,
                                   uint64_t tried, pg::LoginSecret secret, std::string& error);
  void drive_connect();
  void connected();
  // The native login (backend_native.cpp).
  void native_writable();
  void native_readable();
  void native_connected();
  void native_send_startup();
  void native_ssl_answer();
  void native_failed(const std::string& why);
  void relay_to_client();
  void process_internal();
  void process_idle();
  void run_internal(Internal kind, const std::vector<std::string>& queries);
  void internal_done();
  void release_or_reset();
  void fail(Reason why, const char* detail);
  void note_command_tag(std::string_view tag);
  void forget_failed_parse(const pool::ResponseTracker::Entry& e);
  // Whether the linked client waits for nothing and is sending nothing.
  [[nodiscard]] bool client_quiet() const;
  // Whether the linked client could move to another server connection
  // unnoticed: quiet, no transaction, no session state, and in session
  // mode only with session_reconnect.
  [[nodiscard]] bool client_can_move() const;
  // The body of an ErrorResponse to a Bind or Describe of the shared
  // statement `server_name`: true when it says the preparation went stale
  // (then invalidated pool-wide).
  bool note_statement_error(std::string_view body, const std::string& server_name);
  [[nodiscard]] bool can_replay(const std::string& server_name) const;
  void replay();
  void clear_replay();
  void transaction_done();
  void capture_done();
  void state_check_done();
  [[nodiscard]] bool pinned() const { return pinned_ || state_pins_ != 0; }
  PGconn* pg_;  // nullptr for a native login
  std::shared_ptr<PGcancel> cancel_;
  std::unique_ptr<pg::ServerLogin> native_;  // while logging in natively
  bool native_sent_startup_ = false;
  bool native_ready_ = false;     // logged in natively: Terminate on close
  bool native_ssl_wait_ = false;  // the SSLRequest went out, its answer is due
  std::string native_tls_host_;   // server_tls on over TCP: the host to verify
  PgNativeCancel native_addr_;
  std::shared_ptr<const PgNativeCancel> native_cancel_;
  PgClient* client_ = nullptr;
  pool::SessionParams params_;
  std::vector<pool::ParamChange> pending_changes_;

  pool::ResponseTracker tracker_;  // replies still due to the client, in order
  pool::BackendStatements statements_;
  std::vector<std::string> pending_sets_;  // settings to read back (Capture)
  int set_tags_ = 0;                       // SET/RESET completions seen
  bool unattributed_set_ = false;          // set_config() of a setting not named literally
  std::string held_rfq_;                   // ReadyForQuery held during Capture
  std::vector<std::string> captured_;
  bool pinned_ = false;  // LISTEN in transaction mode
  // Transaction mode: session state that pins the client (pool::PgPin
  // bits, the server's answer to kStateQuery), and whether the running
  // transaction may have changed it (ask at its end).
  uint8_t state_pins_ = 0;
  bool check_state_ = false;
  bool ddl_seen_ = false;     // DDL ran in the current transaction
  std::string replay_bytes_;  // the segment as sent (bounded)
  bool replay_bytes_on_ = false;
  bool replay_swallow_ = false;  // failed attempt: drop up to its ReadyForQuery
  pool::StatementRef replay_def_;
  std::string held_param_desc_;  // ParameterDescription of a replayable Describe
  std::string replay_client_name_;
  char tx_status_ = 'I';
  size_t pass_remaining_ = 0;
  // What a client left behind that must be undone before another uses it.
  // kDirtyState: pinning state (temp tables, ...): DISCARD ALL undoes it.
  enum Dirty : unsigned {
    kDirtySettings = 1,
    kDirtyListen = 2,
    kDirtyPrepared = 4,
    kDirtyState = 8
  };
  unsigned dirty_ = 0;
  bool stmt_violation_ = false;
  bool session_state_ = false;
  bool fatal_relayed_ = false;  // the server's FATAL went to the client
  // LISTEN fan-out (transaction and statement mode): the LISTEN/UNLISTEN
  // statements that completed in the current transaction, how many of the
  // head request's have, and how the transaction is ending: an error
  // after them, the last COMMIT ('C') or ROLLBACK ('R') tag.
  std::vector<pool::ListenOp> listen_tx_;
  size_t listen_matched_ = 0;
  bool listen_error_ = false;
  char listen_end_ = 0;
  bool listen_unparsed_ = false;  // ask pg_listening_channels() (note_unparsed_listen)
  void note_listen_tag();
  void end_listen_transaction();

  Internal internal_ = Internal::None;
  int internal_rfq_ = 0;
  bool internal_failed_ = false;
  pg::ErrorFields internal_error_;
};

}  // namespace sqlmux
