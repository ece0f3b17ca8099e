// A MySQL / MariaDB backend (server) connection. sqlmux logs in itself
// (protocol/mysql_handshake, mysql_auth), so that it chooses the
// capabilities: MariaDB Connector/C always asks a MariaDB server for
// metadata caching and progress reports, which a relay would have to undo
// for every client that did not ask. Of MariaDB's extended capabilities
// sqlmux asks only for the extended metadata (how MariaDB marks JSON
// columns), which relay() drops from column definitions for clients that
// did not ask for it. After the login it turns on session-state tracking
// and relays the socket.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "daemon/core/pooled.h"
#include "pool/mysql/session.h"
#include "pool/mysql/statements.h"
#include "protocol/mysql/auth.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/reader.h"

namespace sqlmux {

class MyClient;

class MyBackend final : public PooledBackend {
 public:
  // Starts a TCP connect for `pool` to `host` (see PgBackend::connect).
  static MyBackend* connect(Worker& w, Pool& pool, PoolHost& host, uint64_t for_client,
                            uint64_t tried, std::string& error);

  [[nodiscard]] MyClient* client() const { return client_; }
  // The client's last complete response (query digests): rows (result-set
  // rows plus OK affected rows), whether it ended with ERR, and the
  // statement id of a COM_STMT_PREPARE_OK.
  struct ResultSummary {
    uint64_t rows = 0;
    bool error = false;
    uint32_t prepared_id = 0;
  };
  [[nodiscard]] const ResultSummary& last_result() const { return last_result_; }
  [[nodiscard]] PooledClient* pooled_client() const override;
  void became_idle() override;

  // Capabilities negotiated with the server.
  [[nodiscard]] uint64_t caps() const { return caps_; }

  // Links to a client and brings the session to the client's state (schema,
  // system variables); calls client->on_backend_ready() when done.
  void link(MyClient* c);
  // Sends the client's command (wire bytes of one logical packet) and
  // relays the response. expects_response = false for STMT_CLOSE and
  // STMT_SEND_LONG_DATA.
  void send_command(const uint8_t* wire, size_t n, uint8_t command, uint8_t seq,
                    bool expects_response);
  // LOAD DATA LOCAL: a packet of the file from the client (payload).
  void send_infile(std::string_view payload, bool last);
  // The client went away, or its session ended, while linked.
  void client_gone();
  // The client is done with this backend between commands (transaction
  // mode, nothing open): back to the pool, reset first when dirty.
  void unlink();
  // The client drained what was queued to it: read the server again.
  void resume_reading();
  // Session state that cannot move to another connection was made here.
  void mark_dirty() { dirty_ = true; }

  [[nodiscard]] const pool::MySessionVars& vars() const { return vars_; }
  // Transaction mode: the statements prepared on this connection.
  [[nodiscard]] pool::MyBackendStatements& statements() { return statements_; }
  // Prepares a client's statement here before its command (sqlmux's own
  // COM_STMT_PREPARE); the client's on_backend_ready() runs again after.
  void prepare_statement(const pool::MyStatementDef& def);

 protected:
  void on_readable() override;
  void on_writable() override;
  void on_poll_writable() override;
  void on_io_error(int err) override;
  void on_terminate() override;

 private:
  enum class Login { Tcp, Greeting, Auth, PublicKey, Setup, Done };
  // sqlmux's own commands: setting the session up, resetting it, and
  // bringing it to a client's state before the client's command.
  enum class Step { Setup, Track, Reset, InitDb, Restore, Prepare, ChangeUser };
  struct Internal {
    Step step;
    std::string payload;
    std::string key;  // Prepare: the statement's key in statements_
  };

  // The charset sqlmux logs in with (utf8mb4_general_ci); clients get theirs
  // restored with the other session variables.
  static constexpr uint8_t kLoginCharset = 45;
  static constexpr uint32_t kMaxLoginPacket = 1u << 20;
  // What sqlmux asks of the server: no DEPRECATE_EOF (most clients use EOF
  // packets). Of a MariaDB server (CLIENT_MYSQL clear in its greeting) also
  // MARIADB_CLIENT_EXTENDED_METADATA when it offers it (see login_packet),
  // never CACHE_METADATA, PROGRESS or the bulk and COM_MULTI extensions.
  static constexpr uint64_t kWantedCaps =
      my::cap::kLongPassword | my::cap::kLongFlag | my::cap::kConnectWithDb | my::cap::kLocalFiles |
      my::cap::kProtocol41 | my::cap::kTransactions | my::cap::kSecureConnection |
      my::cap::kMultiStatements | my::cap::kMultiResults | my::cap::kPsMultiResults |
      my::cap::kPluginAuth | my::cap::kPluginAuthLenencData | my::cap::kSessionTrack;
  // Turns on the session tracking that transaction pooling reads.
  static constexpr std::string_view kSetupSql =
      "SET SESSION session_track_system_variables='*', session_track_schema=ON, "
      "session_track_state_change=ON, session_track_transaction_info='CHARACTERISTICS'";
  [[nodiscard]] static std::string command_payload(my::Command c, std::string_view arg);

  MyBackend(Worker& w, Pool& pool, int fd, uint64_t for_client);
  void drive_login();
  bool login_packet(std::string_view payload, uint8_t seq);
  bool send_auth_response(std::string_view plugin, std::string_view scramble, uint8_t seq);
  // server_tls after the greeting: SSLRequest with sequence id `seq` and
  // the TLS handshake; `seq` becomes the response's. False: connect_failed.
  bool start_server_tls(uint8_t& seq);
  // The login's auth data for `plugin` with `scramble` (empty: unsupported).
  [[nodiscard]] std::string auth_data(std::string_view plugin, std::string_view scramble) const;
  // Whether cred_ can answer `plugin`; when not, why (for the client's ERR).
  [[nodiscard]] bool can_answer(std::string_view plugin, std::string& why) const;
  // COM_CHANGE_USER to the same login without a database: the one way to
  // leave a schema (for a client that selected none).
  [[nodiscard]] std::string change_user_payload() const;
  void send_payload(std::string_view payload, uint8_t seq);
  void queue(Step s, std::string payload);
  void run_next();
  void process_internal();
  void internal_done(bool ok, const my::ErrPacket* err);
  void relay();
  void response_done();
  void release_to_pool();
  void process_idle();
  void fail(Reason why, const std::string& detail);
  void note_ok(std::string_view payload, bool to_client);

  MyClient* client_ = nullptr;
  Login login_ = Login::Tcp;
  my::Greeting greeting_;
  // What the logins (and COM_CHANGE_USER) answer with: the pool's password,
  // or in a pool without `user` the credential of the client the
  // connection was opened for when [[user]] holds only a hash.
  my::auth::Credential cred_;
  std::string auth_plugin_;
  uint64_t caps_ = 0;
  bool tls_login_ = false;  // TLS started during the login (server_tls)
  std::string scratch_;
  std::string relay_out_;                // relay(): packets for the client
  std::vector<std::string> translated_;  // relay(): a translated packet
  std::string definition_;               // relay(): a column definition reshaped for the client

  std::deque<Internal> steps_;
  // What the end of sqlmux's own commands means for a linked client.
  enum class AfterSteps { Ready, ResponseDone };
  AfterSteps after_steps_ = AfterSteps::Ready;
  bool internal_running_ = false;
  std::optional<my::ResponseReader> reader_;  // the response being relayed or read
  uint8_t command_ = 0;
  uint8_t client_seq_ = 0;     // next sequence id towards the client
  uint8_t backend_seq_ = 0;    // next sequence id towards the server
  bool infile_ = false;        // the client is sending a LOCAL INFILE file
  bool draining_ = false;      // the client left mid-response: read it to the end
  bool dirty_ = false;         // needs COM_RESET_CONNECTION before another client
  uint16_t status_ = 0;        // the server's last status flags
  bool linger_ = false;        // the response left per-statement state (see note_ok)
  bool linger_after_ = false;  // linger_ of a response whose steps still run
  bool retrack_ = false;       // the client changed session_track_*: set sqlmux's again

  pool::MySessionVars vars_;
  pool::SessionReport report_;  // how to read the reports of the command in flight
  pool::MyBackendStatements statements_;
  void close_statements(const std::vector<uint32_t>& ids);
  static const char* step_name(Step s);
  std::vector<uint32_t> to_close_;  // statements to close once the response ends
  uint64_t ok_rows_ = 0;            // affected rows of the client's OKs in this response
  ResultSummary last_result_;
};

}  // namespace sqlmux
