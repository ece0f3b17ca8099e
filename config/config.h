// sqlmux configuration: the TOML schema, loaded and validated.
//
// The schema (key names and meanings) is a contract with tools outside the
// repository: extend it, never rename. See config/examples/ and README.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::config {

using Duration = std::chrono::milliseconds;

enum class Protocol { Postgres, Mysql };
enum class PoolMode { Session, Transaction, Statement };
enum class LogLevel { Error, Warn, Info, Debug };
// How log lines are written: "time level [thread] message" or one JSON object.
enum class LogFormat { Text, Json };
// How a client proves who it is. Default: SCRAM-SHA-256 when the stored
// password is plaintext or a SCRAM verifier, md5 when it is an md5 hash.
enum class AuthMethod { Default, ScramSha256, Md5, Password, Trust };
// Which of a pool's backends serve it (see PoolConfig::route).
enum class Route { Primary, Replica, Any };
// TLS from clients on a listener: refused, offered, or required.
enum class ClientTls { Disable, Allow, Require };

[[nodiscard]] std::string_view to_string(Protocol p);

[[nodiscard]] std::string_view to_string(PoolMode m);
[[nodiscard]] std::string_view to_string(LogLevel l);
[[nodiscard]] std::string_view to_string(LogFormat f);
[[nodiscard]] std::string_view to_string(AuthMethod a);
[[nodiscard]] std::string_view to_string(Route r);
[[nodiscard]] std::string_view to_string(ClientTls t);

// A parsed listen address: "host:port", "[::1]:port" or "unix:/path".
// A MySQL pool's default auth_query (MariaDB 10.4+ keeps mysql.user as a
// view over mysql.global_priv; MySQL 5.7/8 as a table).
inline constexpr const char* kMysqlAuthQuery =
    "SELECT authentication_string FROM mysql.user WHERE user = ? AND plugin = "
    "'mysql_native_password' LIMIT 1";

struct Address {
  enum class Kind { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;  // without brackets for IPv6
  uint16_t port = 0;
  std::string unix_path;
  std::string text;  // as written in the file
  bool operator==(const Address&) const = default;
};

struct ServerConfig {
  int workers = 2;  // event-loop threads; 0 = one per core
  uint32_t max_client_conn = 10000;
  LogLevel log_level = LogLevel::Info;
  LogFormat log_format = LogFormat::Text;
  // A client's login and its end at info (true, as PgBouncer's defaults) or
  // at debug (false). Ends for an error are logged at info either way.
  bool log_connections = true;
  bool log_disconnections = true;
  Duration shutdown_timeout{30000};  // SIGTERM: how long running transactions may finish
  // Online upgrade (README "Upgrade procedure"): the unix socket on which
  // the running process hands its listening sockets to `sqlmux --upgrade`
  // (empty: none).
  std::string upgrade_socket;
  // Failed logins (README "Failed logins"): the first auth_failure_limit
  // failures of one client address and user within auth_failure_window are
  // answered at once, each later one auth_failure_delay late, doubling up
  // to auth_failure_max_delay (limit 0 or delay 0: never late).
  uint32_t auth_failure_limit = 5;
  Duration auth_failure_window{10000};
  Duration auth_failure_delay{200};
  Duration auth_failure_max_delay{5000};
  // Connections of one client IP address not yet authenticated (0: no cap).
  uint32_t max_login_clients_per_address = 1000;
  // This instance's id among its peers (README "Running several
  // instances"): PostgreSQL cancel keys carry it; 0 = none (1..16383).
  uint32_t peer_id = 0;
  // The key the instances share to authenticate a MySQL KILL forwarded to
  // the peer that issued the thread id (peer_secret, _file or _env; at least
  // 16 characters); empty: KILLs are not forwarded.
  std::string peer_secret;
  // Client connections logged in as one user, all pools and both protocols
  // together (0: no cap); a [[user]]'s own key overrides it.
  uint32_t max_user_client_connections = 0;
  // Server connections (open or connecting, reserve included) to one
  // [[pool]] entry, all its per-user pools together (PgBouncer's
  // max_db_connections), and logged in as one server user, all pools of a
  // protocol together (max_user_connections); 0: no cap. A [[pool]]'s /
  // [[user]]'s own key overrides them. At a cap a client waits as at a
  // full pool.
  uint32_t max_db_connections = 0;
  uint32_t max_user_connections = 0;
  // A client that has not logged in within it is closed (0: never).
  Duration client_login_timeout{60000};
  // TCP keepalive on client and server sockets, as PgBouncer's keys
  // (seconds; 0: the system's default).
  bool tcp_keepalive = true;
  uint32_t tcp_keepidle = 0;
  uint32_t tcp_keepintvl = 0;
  uint32_t tcp_keepcnt = 0;
  // Query digests (SHOW QUERIES): per normalized statement, pool and user;
  // each worker keeps at most query_digests_max of them (the most total time).
  bool query_digests = false;  // off by default: see README "Query digests" (cost)
  uint32_t query_digests_max = 1000;
  // MySQL caching_sha2_password full authentication over plaintext: the
  // PEM file of the RSA private key whose public half clients ask for
  // (empty: none; such clients of a user stored as a hash are switched to
  // mysql_native_password instead).
  std::string caching_sha2_private_key;
};

struct ListenerConfig {
  Protocol protocol = Protocol::Postgres;
  Address listen;
  // Default: "allow" when [tls] is configured, else "disable".
  ClientTls client_tls = ClientTls::Disable;
};

// [tls]: the certificate sqlmux presents to clients (absent: no TLS).
struct TlsConfig {
  std::string cert;                 // PEM file: the certificate (chain)
  std::string key;                  // PEM file: its private key
  std::optional<std::string> ca;    // PEM file: CAs for client certificates (asked, verified)
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string ciphers;              // OpenSSL cipher list for TLS 1.2 (empty: OpenSSL's default)
};

struct UserConfig {
  std::string name;
  // plaintext, "SCRAM-SHA-256$...", "md5<32 hex>", or (MySQL logins only)
  // "*<40 hex>", mysql_native_password's SHA1(SHA1(password))
  std::string password;
  AuthMethod auth = AuthMethod::Default;
  std::string default_pool;  // MySQL: pool for clients that name no database
  // Over [server] max_user_client_connections for this user (0: no cap).
  std::optional<uint32_t> max_user_client_connections;
  // Over [server] max_user_connections for this server login (0: no cap).
  std::optional<uint32_t> max_user_connections;
};

struct BackendConfig {
  Address address;  // Tcp only (unix sockets allowed for postgres: unix:/dir)
  // "primary" or "replica" as configured; health checks replace it with
  // what the server says (pg_is_in_recovery()).
  std::string role = "primary";
  int weight = 1;  // share among the backends of one role
};

struct PoolConfig {
  std::string name;  // the database name that clients ask for
  Protocol protocol = Protocol::Postgres;
  PoolMode mode = PoolMode::Transaction;
  uint32_t size = 20;
  uint32_t min_idle = 0;
  // Once a client has waited reserve_pool_timeout, up to reserve_pool_size
  // more server connections beyond `size` (PgBouncer's reserve pool).
  uint32_t reserve_pool_size = 0;
  Duration reserve_pool_timeout{5000};
  // Over [server] max_db_connections for this entry (0: no cap).
  std::optional<uint32_t> max_db_connections;
  std::string database;             // on the backend; defaults to name
  std::optional<std::string> user;  // backend login; absent: the client's own
  std::optional<std::string> password;
  std::vector<BackendConfig> backends;
  // Which backends serve the pool: "primary", "replica" (the primary when
  // no replica is usable) or "any". Default: "primary" when a backend is
  // configured primary, else "replica".
  Route route = Route::Primary;
  Duration query_wait_timeout{120000};
  // Client session timeouts (0: off; README "Timeouts"). A client with no
  // request in flight and no transaction open for client_idle_timeout, or
  // with a transaction open but no request in flight for
  // idle_transaction_timeout, or with a transaction open for
  // transaction_timeout, is ended (its transaction rolled back).
  Duration client_idle_timeout{0};
  Duration idle_transaction_timeout{0};
  Duration transaction_timeout{0};
  // A request running longer on the server is cancelled there (0: off):
  // PostgreSQL a CancelRequest (the client gets the server's 57014, as for
  // statement_timeout), MySQL KILL QUERY (the server's ERR 1317).
  Duration query_timeout{0};
  // Any of the four above is on.
  [[nodiscard]] bool has_session_timeouts() const {
    return client_idle_timeout.count() > 0 || idle_transaction_timeout.count() > 0 ||
           transaction_timeout.count() > 0 || query_timeout.count() > 0;
  }
  Duration server_idle_timeout{600000};
  Duration server_lifetime{3600000};
  Duration server_connect_timeout{15000};
  // TLS to the backends, as libpq's sslmode: "disable", "prefer", "require",
  // "verify-ca" or "verify-full"; server_tls_ca: the CA file for verify-*.
  std::string server_tls = "disable";
  std::string server_tls_ca;
  // Transaction/statement mode: server-side prepared statements kept per
  // backend connection (least recently used closed beyond it).
  uint32_t max_prepared_statements = 1000;
  // Session mode: when the server ends an idle client's connection
  // (pg_terminate_backend, idle_session_timeout, KILL, wait_timeout), move
  // the client to a new server connection instead of relaying the ending
  // (the server's FATAL, or the close) as a direct connection would see it.
  bool session_reconnect = false;
  // Transaction/statement mode: LISTEN pins the client to its server
  // connection for its whole session (true), instead of the pool's shared
  // listener connection fanning notifications out (false, the default).
  bool listen_pin = false;
  // Pools without `user` (PgBouncer's auth_query): a client with no
  // [[user]] entry is checked against what auth_query returns, run on the
  // server as auth_user and cached for auth_query_cache_ttl. PostgreSQL:
  // the SCRAM verifier or md5 hash (columns: name, password; $1 = the
  // client's user). MySQL: the mysql_native_password hash (the first row's
  // last column; ? = the client's user; default kMysqlAuthQuery).
  std::optional<std::string> auth_user;
  std::optional<std::string> auth_password;
  std::string auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";
  Duration auth_query_cache_ttl{60000};
};

// [metrics]: the Prometheus endpoint (absent: none).
struct MetricsConfig {
  Address listen;                  // an IP address and port (serves /metrics)
  uint32_t query_digests_top = 0;  // sqlmux_query_digest_* for the top K digests (0: none)
};

// [health]: background health checks of every backend host (absent: none;
// hosts count as up and keep their configured roles).
struct HealthConfig {
  Duration interval{5000};
  Duration timeout{2000};  // connect + check query
  uint32_t fall = 3;       // failures in a row before a host is marked down
  uint32_t rise = 2;       // successes in a row before it is up again
  // The login for the check; absent: the `user`/`password` of a pool that
  // lists the host (validation requires one of the two).
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> database;  // absent: that pool's database
  // [health.postgres] / [health.mysql]: the login for that protocol's hosts,
  // key by key over the one above (a user there brings its own password).
  struct Login {
    std::optional<std::string> user;
    std::optional<std::string> password;
    std::optional<std::string> database;
    bool operator==(const Login&) const = default;
  };
  std::map<Protocol, Login> per_protocol;
  // The login for hosts of protocol p: [health.<p>] over [health].
  [[nodiscard]] Login login_for(Protocol p) const;
};

// [admin]: the PostgreSQL-protocol admin console (database "sqlmux").
struct AdminConfig {
  Address listen;
  std::vector<std::string> users;  // names of [[user]] entries allowed in
};

struct Config {
  std::string source;  // file path the config came from
  ServerConfig server;
  std::optional<MetricsConfig> metrics;
  std::vector<ListenerConfig> listeners;
  std::vector<UserConfig> users;
  std::vector<PoolConfig> pools;
  std::optional<AdminConfig> admin;  // absent: no console
  std::optional<HealthConfig> health;
  std::optional<TlsConfig> tls;
  // [peers]: the other instances, by peer_id: where a cancel request for a
  // key one of them issued is forwarded (an entry for this instance's own
  // id is allowed and ignored, so that every instance can share the table).
  std::map<uint32_t, Address> peers;

  [[nodiscard]] const UserConfig* find_user(std::string_view name) const;
  [[nodiscard]] const PoolConfig* find_pool(std::string_view name, Protocol proto) const;
};

struct ConfigError {
  std::string file;
  int line = 0;  // 0 when unknown (e.g. a missing key: the table's line)
  int column = 0;
  std::string key;  // dotted path, e.g. "pool[1].size"
  std::string message;
  // "file:line:column: key: message"
  [[nodiscard]] std::string to_string() const;
};

struct LoadResult {
  std::optional<Config> config;     // set only when errors is empty
  std::vector<ConfigError> errors;  // every error found, not only the first
};

// The cap on `u`'s client connections: its own key, else [server]'s (0: none).
[[nodiscard]] uint32_t user_client_cap(const Config& cfg, const UserConfig& u);
// The cap on server connections to pool entry `p` (all its per-user pools):
// its own max_db_connections, else [server]'s (0: none).
[[nodiscard]] uint32_t db_connection_cap(const Config& cfg, const PoolConfig& p);
// The cap on server connections logged in as `server_user`: that [[user]]'s
// max_user_connections, else [server]'s (0: none).
[[nodiscard]] uint32_t user_connection_cap(const Config& cfg, std::string_view server_user);

// "*" and 40 hex digits: a MySQL native password hash (mysql.user's
// authentication_string), which only MySQL logins can check.
[[nodiscard]] bool is_mysql_native_hash(std::string_view pw);

[[nodiscard]] LoadResult load_file(const std::string& path);
[[nodiscard]] LoadResult load_string(std::string_view text, std::string_view source_name);

// "500ms", "30s", "10m", "1h"; nullopt when malformed.
[[nodiscard]] std::optional<Duration> parse_duration(std::string_view text);
// "127.0.0.1:6432", "[::1]:6432", "localhost:5432", "unix:/path"; nullopt when malformed.
[[nodiscard]] std::optional<Address> parse_address(std::string_view text);

// A pool's name qualified by its protocol ("postgres:appdb", "mysql:appdb"):
// pool names are unique per protocol only. The admin console, reload log
// lines and pause state name pools this way.
[[nodiscard]] std::string qualified_name(const PoolConfig& p);

}  // namespace sqlmux::config
