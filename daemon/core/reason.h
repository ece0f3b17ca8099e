// Why a connection ended or a request failed. The same names label log
// lines (and, later, metrics).
#pragma once

#include <string_view>

namespace sqlmux {

enum class Reason {
  ClientClosed,         // the client sent Terminate or closed its socket
  ClientProtocolError,  // malformed or unexpected bytes from the client
  ClientIoError,
  LoginTimeout,
  AuthFailed,
  UnknownDatabase,
  UnsupportedProtocol,
  TooManyClients,  // max_client_conn
  QueryWaitTimeout,
  ClientIdleTimeout,       // client_idle_timeout: idle outside a transaction
  IdleTransactionTimeout,  // idle_transaction_timeout: idle inside a transaction
  TransactionTimeout,      // transaction_timeout: a transaction open too long
  QueryTimeout,            // query_timeout: a request cancelled on the server
  BackendConnectFailed,
  BackendDied,
  BackendProtocolError,
  BackendParamFailed,  // a session parameter could not be applied
  ServerIdleTimeout,
  ServerLifetime,
  ServerResetFailed,
  Shutdown,
  PoolRemoved,
  CancelRequest,        // a cancel connection, closed after use
  BackendObsolete,      // RECONNECT, a smaller pool size or a removed pool
  AdminKill,            // KILL / KILL_CLIENT from the admin console
  ClientKill,           // a MySQL client's KILL CONNECTION of this client
  AdminRejected,        // a console login that is not allowed
  TlsFailed,            // the TLS handshake or a TLS record failed
  TlsRequired,          // a plaintext client on a client_tls = "require" listener
  TooManyLogins,        // max_login_clients_per_address logins in progress from the address
  FdExhausted,          // accepted with the spare descriptor only to be refused: no fd left
  NotificationBacklog,  // the client left too many notifications unread
  TooManyUserClients,   // max_user_client_connections: the user has that many clients
  BackendEvicted,       // idle, closed for another pool at a shared max_db/max_user_connections
  Internal,
};

[[nodiscard]] constexpr std::string_view to_string(Reason r) {
  switch (r) {
    case Reason::ClientClosed:
      return "client_closed";
    case Reason::ClientProtocolError:
      return "client_protocol_error";
    case Reason::ClientIoError:
      return "client_io_error";
    case Reason::LoginTimeout:
      return "login_timeout";
    case Reason::AuthFailed:
      return "auth_failed";
    case Reason::UnknownDatabase:
      return "unknown_database";
    case Reason::UnsupportedProtocol:
      return "unsupported_protocol";
    case Reason::TooManyClients:
      return "too_many_clients";
    case Reason::QueryWaitTimeout:
      return "query_wait_timeout";
    case Reason::ClientIdleTimeout:
      return "client_idle_timeout";
    case Reason::IdleTransactionTimeout:
      return "idle_transaction_timeout";
    case Reason::TransactionTimeout:
      return "transaction_timeout";
    case Reason::QueryTimeout:
      return "query_timeout";
    case Reason::BackendConnectFailed:
      return "backend_connect_failed";
    case Reason::BackendDied:
      return "backend_died";
    case Reason::BackendProtocolError:
      return "backend_protocol_error";
    case Reason::BackendParamFailed:
      return "backend_param_failed";
    case Reason::ServerIdleTimeout:
      return "server_idle_timeout";
    case Reason::ServerLifetime:
      return "server_lifetime";
    case Reason::ServerResetFailed:
      return "server_reset_failed";
    case Reason::Shutdown:
      return "shutdown";
    case Reason::PoolRemoved:
      return "pool_removed";
    case Reason::CancelRequest:
      return "cancel_request";
    case Reason::BackendObsolete:
      return "backend_obsolete";
    case Reason::AdminKill:
      return "admin_kill";
    case Reason::ClientKill:
      return "client_kill";
    case Reason::AdminRejected:
      return "admin_rejected";
    case Reason::TlsFailed:
      return "tls_failed";
    case Reason::TlsRequired:
      return "tls_required";
    case Reason::TooManyLogins:
      return "too_many_logins";
    case Reason::FdExhausted:
      return "fd_exhausted";
    case Reason::NotificationBacklog:
      return "notification_backlog";
    case Reason::TooManyUserClients:
      return "too_many_user_clients";
    case Reason::BackendEvicted:
      return "backend_evicted";
    case Reason::Internal:
      return "internal";
  }
  return "unknown";
}

}  // namespace sqlmux
