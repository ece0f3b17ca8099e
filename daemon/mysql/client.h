// A MySQL / MariaDB client connection: greeting, authentication, then its
// commands relayed to whichever backend serves it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/pooled.h"
#include "daemon/mysql/auth_query.h"
#include "daemon/ops/upgrade_wire.h"
#include "pool/mysql/session.h"
#include "pool/mysql/statements.h"
#include "protocol/mysql/auth.h"
#include "protocol/mysql/command.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/packet.h"
#include "protocol/mysql/response.h"

namespace sqlmux {

class MyBackend;
class MyProtocol;
struct MyRsaKeys;
struct User;

class MyClient final : public PooledClient {
 public:
  MyClient(Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer,
           const MyProtocol& protocol);
  ~MyClient() override;

  // Sends the greeting, or in its place (sequence id 0, as MySQL does) the
  // ERR of the core's refusal: 1040 over max_client_conn, 1053 during
  // shutdown.
  void on_accepted() override;
  // That ERR packet for a connection refused before any byte is read (core/worker.h
  // RefusalWriter): 1040 too_many_clients and fd_exhausted, 1053 shutdown.
  static void write_refusal(const Failure& f, std::string_view received, std::string& out);

  [[nodiscard]] PooledBackend* pooled_backend() const override;
  [[nodiscard]] MyBackend* backend() const { return backend_; }
  void on_backend_linked(PooledBackend* b) override;
  // ERR (its code from the reason) and close.
  void fail(const Failure& f) override;
  void check_timeouts(uint64_t now) override;
  void on_shutdown() override;

  // The listener's client_tls (CLIENT_SSL offered unless Disable, or
  // without [tls]).
  void set_client_tls(config::ClientTls mode) { client_tls_ = mode; }

  // What this client's login gave sqlmux to log in to a server as the
  // client (a pool without `user`): the password (caching_sha2_password
  // full authentication) or SHA1(password) (mysql_native_password against
  // a stored native hash); empty otherwise. Lives as long as the session.
  [[nodiscard]] const my::auth::Credential& credential() const { return credential_; }

  // Capabilities negotiated with this client.
  [[nodiscard]] uint64_t caps() const { return caps_; }
  [[nodiscard]] config::PoolMode mode() const;
  // The session state this client's statements made (what a backend must
  // have before serving it), and its schema.
  [[nodiscard]] const pool::MySessionVars& vars() const { return vars_; }

  // --- from the backend ---
  // The backend has the client's state: the pending command goes out.
  void on_backend_ready();
  // The backend could not take the client's state: `err` answers the
  // pending command.
  void on_restore_failed(const std::string& err_payload);
  // Relayed response packets (framed, renumbered).
  bool deliver(std::string_view wire) { return send(wire.data(), wire.size()); }
  // The server's OK carried session-state changes (already decoded).
  void on_session_change(const my::OkPacket& ok, const pool::SessionReport& how);
  // The server asked for a LOCAL INFILE file: the client's next packets are
  // its contents, ended by an empty packet.
  void on_infile_requested() { infile_ = true; }
  // The response to the client's command is complete. `status`: the
  // server's status flags after it.
  void on_response_done(uint16_t status, bool linger);
  // The backend failed under this client (mid-command): ERR and close.
  // `seq`: the id the client expects next.
  void on_backend_failed(Reason why, const std::string& detail, uint8_t seq);
  // The backend's socket drained: read the client again.
  void resume_reading() {
    if (!closing()) want_read(true);
  }
  // The backend died while the client was between commands; in_tx: inside
  // a transaction (the server's last status flags).
  void on_backend_lost_idle(bool in_tx);
  // After COM_RESET_CONNECTION: the state of a fresh login again.
  void reset_session_state();
  // Transaction mode: the server answered the client's COM_STMT_PREPARE;
  // returns the statement id the client is to see.
  [[nodiscard]] uint32_t on_prepared(const my::PrepareOk& ok);
  // The statement the client's COM_STMT_PREPARE in flight defines (null in
  // session mode, where ids are the server's own).
  [[nodiscard]] const pool::MyStatementDef* preparing_def() const {
    return preparing_ ? pending_def_.get() : nullptr;
  }
  [[nodiscard]] std::string pinned_by() const override;
  // The thread id this client sees as its connection id (greeting,
  // CONNECTION_ID()), the one other clients name in KILL.
  [[nodiscard]] uint32_t thread_id() const { return thread_id_; }
  // Another client's KILL of this one (on this client's worker): the
  // statement it runs is killed on its server (KILL QUERY on a connection
  // of its own to that server); unless query_only the client is closed.
  void killed(bool query_only);
  // KILL QUERY and query_timeout: the statement in flight, or waiting for
  // a server connection.
  void cancel_running_query() override { killed(true); }
  void kill_from_peer(bool query_only) override { killed(query_only); }
  [[nodiscard]] bool pinned() const {
    return pin_ != pool::PinReason::None || long_data_ || !cursors_.empty();
  }
  // Online upgrade (client_upgrade.cpp): the record of this client when
  // it can be handed over (logged in to a transaction or statement pool
  // whose server login is not the client's own, no TLS, idle between
  // transactions with no server connection, nothing buffered or pending:
  // no LOCAL INFILE, KILL on a peer, COM_CHANGE_USER, pin, cursor or long
  // data); empty otherwise.
  [[nodiscard]] std::string upgrade_record() const override;
  // The new process serves a client handed over with `state` (its
  // `mysql` set) on socket `fd` (owned from here on, also on failure):
  // logged in and idle with the same thread id, as if its login had
  // happened here. False with `why` when it cannot (no such user or pool,
  // its thread id in use here, a limit reached).
  [[nodiscard]] static bool adopt(Worker& w, int fd, const upgrade::ClientState& state,
                                  const MyProtocol& protocol, std::string& why);

 protected:
  void on_readable() override;
  void on_io_error(int err) override;
  void on_writable() override;
  void on_closed() override;

 private:
  void process_input();
  void process_packets();
  bool handle_handshake_response(std::string_view payload, uint8_t seq);
  // The login once user_ is known (or looked up): plugin choice and check.
  bool continue_handshake(const my::HandshakeResponse& r, uint8_t next);
  // auth_query (README "auth_query"): a user without a [[user]] entry, of a
  // pool with auth_user, is checked against the native hash the server
  // returns (as a [[user]] native hash). False: answered, or failed.
  bool start_auth_query(const config::PoolConfig& pc, const my::HandshakeResponse& r, uint8_t next);
  void auth_query_done(MyAuthQuery::Result r);
  void use_looked_up(const std::optional<std::string>& secret);
  // After an SSLRequest: TLS from here on, the bytes already read behind
  // it (the ClientHello) its first input. False when the client is gone.
  bool begin_tls();
  bool handle_auth_switch_reply(std::string_view payload, uint8_t seq);
  bool check_password(std::string_view plugin, std::string_view response);
  // The user's stored SHA1(SHA1(password)) when [[user]] holds that hash.
  [[nodiscard]] const std::array<uint8_t, 20>* native_hash() const;
  // caching_sha2_password from a client whose [[user]] holds a native
  // hash (no SHA-256 to check the fast path against): with TLS or an RSA
  // key, perform_full_authentication (after an AuthSwitchRequest to
  // caching_sha2_password when the client sent no scramble reply, as
  // Connector/C does when its plugin is not the greeting's); else an
  // AuthSwitchRequest to mysql_native_password.
  bool caching_sha2_login(std::string_view response, uint8_t seq);
  bool start_full_auth(uint8_t seq);
  bool handle_full_auth(std::string_view payload, uint8_t seq);
  // A password the client sent (full authentication) against [[user]].
  [[nodiscard]] bool check_cleartext(std::string_view password) const;
  void auth_succeeded(uint8_t seq);
  // COM_CHANGE_USER: a new login on the same connection.
  bool change_user(std::string_view payload, uint8_t next);
  void change_user_done(uint8_t seq);
  void auth_failed(uint8_t seq);
  bool handle_command(const uint8_t* wire, size_t wire_len, std::string_view payload, uint8_t seq);
  // Metrics: a response ended one command (and maybe a transaction).
  void query_metrics(uint16_t status);
  // Transaction mode: a command naming a statement by the client's id.
  // False when answered here (or needing no answer).
  bool map_statement(my::Command cmd, std::string_view payload, uint8_t next);
  // Rewrites the pending command for the linked backend (its statement id,
  // parameter types it has not seen); false while the backend prepares it.
  bool statement_for_backend();
  // KILL / COM_PROCESS_KILL from this client (client_kill.cpp).
  void kill_command(const my::KillStatement& k, uint8_t next, std::string_view via);
  void kill_unsupported(uint8_t next);
  // A KILL of a thread id another instance issued: sent to that peer
  // (daemon/core/peer_kill), whose answer is this command's.
  void kill_on_peer(bool query_only, uint32_t target, uint8_t next, std::string_view via);
  bool peer_kill_pending_ = false;  // waiting for that answer: input is not read
  // KILL QUERY <server thread id> on a connection of its own to the server
  // `b` is connected to (off the loop, as PgClient's cancel).
  void kill_on_server(const MyBackend& b);
  void send_err(uint8_t seq, my::ErrorCode code, std::string_view message);
  void send_ok(uint8_t seq);
  // One packet (framed from `payload`) with sequence id `seq`.
  void send_packet(uint8_t seq, std::string_view payload);
  // AuthSwitchRequest to `plugin` (mysql_native_password or
  // caching_sha2_password) with scramble_.
  void send_auth_switch(uint8_t seq, std::string_view plugin = my::kNativePassword);
  // Sends ERR and closes (one exit path for a failed client).
  void disconnect(Reason why, uint8_t seq, my::ErrorCode code, const std::string& message);
  void finish(Reason why);

  // Lookup: waiting for auth_query (nothing is read meanwhile).
  enum class Login { Handshake, Lookup, AuthSwitch, FullAuth, Done };
  Login login_ = Login::Handshake;
  bool joined_ = false;             // counted in pool_'s clients
  bool changing_user_ = false;      // an AuthSwitch for COM_CHANGE_USER is out
  std::string switch_plugin_;       // the plugin the AuthSwitch asked for
  std::optional<Failure> refusal_;  // the core's admission check
  PeerAddress peer_;
  bool counted_ = true;
  std::string scramble_;
  my::auth::Credential credential_;
  std::unique_ptr<my::auth::FullAuth> full_auth_;  // during Login::FullAuth
  std::shared_ptr<const MyRsaKeys> rsa_;           // the key full_auth_ borrows
  uint64_t caps_ = 0;
  uint64_t offered_caps_ = 0;  // what the greeting offered (and CLIENT_MYSQL)
  config::ClientTls client_tls_ = config::ClientTls::Disable;
  bool tls_requested_ = false;  // an SSLRequest was read: begin_tls() next
  uint8_t charset_ = 0;
  std::string login_db_;
  const MyProtocol& protocol_;
  const User* user_ = nullptr;
  // auth_query: the lookup in flight with the login it holds, the user made
  // of its answer (user_ then points here) and the cache key (empty: no
  // auth_query login).
  std::unique_ptr<MyAuthQuery> auth_query_;
  std::unique_ptr<my::HandshakeResponse> lookup_login_;
  uint8_t lookup_seq_ = 0;
  std::unique_ptr<User> looked_up_user_;
  std::string auth_cache_key_;
  bool lookup_starting_ = false;  // inside auth_query_->start()

  MyBackend* backend_ = nullptr;
  std::string pending_;  // the command waiting for a backend (wire bytes)
  std::string sending_;  // the command being sent (see on_backend_ready)
  uint8_t pending_cmd_ = 0;
  uint8_t pending_seq_ = 0;
  bool pending_response_ = true;
  bool infile_ = false;
  bool processing_ = false;      // inside process_input()
  uint64_t query_start_ns_ = 0;  // metrics: when the command in flight arrived
  uint64_t tx_start_ns_ = 0;
  bool in_tx_ = false;
  bool in_flight_ = false;        // a command was sent; its response is not complete
  bool calc_found_rows_ = false;  // the command in flight has SQL_CALC_FOUND_ROWS
  bool linger_ = false;  // keep the backend for the next command (LAST_INSERT_ID, warnings)
  pool::PinReason pin_ = pool::PinReason::None;
  // COM_STMT_SEND_LONG_DATA: the data waits on one server connection for
  // the statement's EXECUTE; the client stays there for the session.
  bool long_data_ = false;
  // Session mode: a COM_STMT_PREPARE went to the server connection, whose
  // statement ids the client holds (a new connection would lack them).
  bool session_statements_ = false;
  pool::MySessionVars vars_;
  pool::MyClientStatements stmts_;
  std::shared_ptr<pool::MyStatementDef> pending_def_;  // of the pending command
  bool preparing_ = false;                             // the pending command is a COM_STMT_PREPARE
  uint32_t pending_stmt_ = 0;   // the client's statement id of the pending command
  std::set<uint32_t> cursors_;  // statements with a cursor open on the backend
  std::string scratch_;
  uint32_t thread_id_ = 0;  // registered in the Directory; 0 before the greeting
  // Query digests: the command in flight's normalized text (empty: none)
  // and when it arrived; session mode: the client's statements' texts by
  // the server's ids (transaction mode reads them from stmts_).
  void note_digest(my::Command cmd, std::string_view payload);
  std::string digest_text_;
  uint64_t digest_start_ns_ = 0;
  bool digest_prepare_ = false;  // digest_text_ is a session-mode COM_STMT_PREPARE's
  std::unordered_map<uint32_t, std::string> digest_stmts_;
};

}  // namespace sqlmux
