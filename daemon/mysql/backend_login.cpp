// MyBackend's login: the TCP connect and sqlmux's own handshake with the
// server (see backend.h for why not Connector/C's).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/core/directory.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/backend.h"
#include "daemon/mysql/client.h"
#include "daemon/mysql/protocol.h"
#include "protocol/mysql/auth.h"
#include "protocol/mysql/response.h"

namespace sqlmux {

MyBackend* MyBackend::connect(Worker& w, Pool& pool, PoolHost& where, uint64_t for_client,
                              uint64_t tried, std::string& error) {
  my::auth::Credential cred = my::auth::Credential::from_password(pool.backend_password());
  if (pool.logs_in_as_client()) {
    // The client logs in as itself, and [[user]] may hold no password for
    // it: what its own login gave sqlmux (a MySQL pool's clients are
    // MyClients; connects run on the waiting client's worker).
    const auto* c =
        for_client != 0 ? static_cast<const MyClient*>(w.find_client(for_client)) : nullptr;
    if (c != nullptr && !c->credential().empty()) {
      cred = c->credential();
    } else if (const User* u = w.directory().find_user(pool.backend_user());
               u != nullptr && u->cfg.auth != config::AuthMethod::Trust && u->plaintext.empty()) {
      // min_idle: nothing to log in with until a client of the user does.
      error = "no password for user '" + pool.backend_user() +
              "' without a client: [[user]] holds only a hash, so server connections are opened "
              "for its clients only";
      return nullptr;
    }
  }
  const config::Address& addr = where.address;
  if (addr.kind != config::Address::Kind::Tcp) {
    error = "MySQL backends are reached over TCP";
    return nullptr;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(addr.port == 0 ? my::kDefaultPort : addr.port);
  if (int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
      rc != 0 || res == nullptr) {
    error = std::string("cannot resolve ") + addr.host + ": " + gai_strerror(rc);
    return nullptr;
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = strerror(errno);
    ::freeaddrinfo(res);
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)net::set_keepalive(fd, w.keepalive());
  const int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  const int err = errno;
  ::freeaddrinfo(res);
  if (rc != 0 && err != EINPROGRESS) {
    error = strerror(err);
    ::close(fd);
    return nullptr;
  }
  auto* b = new MyBackend(w, pool, fd, for_client);
  b->cred_ = std::move(cred);
  // Writable = connected (or failed: SO_ERROR says).
  if (!b->start_connecting(where, tried)) {
    error.clear();  // handled: connect_failed told the pool and the client
    return nullptr;
  }
  return b;
}

// --- login ----------------------------------------------------------------------

void MyBackend::on_poll_writable() {
  if (state_ != BackendState::Connecting || login_ != Login::Tcp) return;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    connect_failed(strerror(err));
    return;
  }
  login_ = Login::Greeting;
  want_write(false);
  want_read(true);
}

std::string MyBackend::auth_data(std::string_view plugin, std::string_view scramble) const {
  if (plugin == my::kCachingSha2Password) {
    return my::auth::caching_sha2_response(cred_.password(), scramble.substr(0, my::kScrambleLen));
  }
  return cred_.native_response(scramble.substr(0, my::kScrambleLen));
}

bool MyBackend::can_answer(std::string_view plugin, std::string& why) const {
  if (plugin == my::kNativePassword) return true;
  if (plugin == my::kCachingSha2Password && cred_.has_password()) return true;
  if (plugin == my::kCachingSha2Password) {
    why = "the server asks user '" + pool_.backend_user() +
          "' for caching_sha2_password, which needs the password; sqlmux has only what the "
          "client's mysql_native_password login against the stored hash gave (let the account "
          "use mysql_native_password, or log in with caching_sha2_password over TLS or RSA)";
  } else {
    why = "the server asks for authentication plugin " + std::string(plugin) +
          ", which sqlmux does not speak (use mysql_native_password)";
  }
  return false;
}

std::string MyBackend::change_user_payload() const {
  my::ChangeUser cu;
  cu.username = pool_.backend_user();
  cu.auth_plugin = auth_plugin_;
  cu.auth_response = auth_data(auth_plugin_, greeting_.scramble);
  cu.charset = kLoginCharset;
  std::string out;
  my::encode_change_user(out, cu, caps_);
  return out;
}

bool MyBackend::send_auth_response(std::string_view plugin, std::string_view scramble,
                                   uint8_t seq) {
  std::string why;
  if (!can_answer(plugin, why)) {
    connect_failed(why);
    return false;
  }
  const std::string data = auth_data(plugin, scramble);
  auth_plugin_ = std::string(plugin);
  send_payload(data, seq);
  return true;
}

void MyBackend::drive_login() {
  while (!closing() && state_ == BackendState::Connecting && !internal_running_) {
    my::Packet p;
    size_t used = 0;
    switch (my::decode_packet(in_.data(), in_.size(), kMaxLoginPacket, p, used)) {
      case my::Decode::NeedMore:
        return;
      case my::Decode::Malformed:
        connect_failed("malformed packet from the server during login");
        return;
      case my::Decode::Complete:
        break;
    }
    const bool ok = login_packet(p.payload(), p.last_seq());
    in_.consume(used);
    if (!ok) return;
  }
  if (internal_running_ && !in_.empty()) process_internal();
}

bool MyBackend::start_server_tls(uint8_t& seq) {
  const config::PoolConfig& cfg = pool_.cfg();
  my::ServerTls mode = my::ServerTls::Disable;
  (void)my::parse_server_tls(cfg.server_tls, mode);  // validated with the config
  switch (my::server_tls_step(greeting_.capabilities, mode)) {
    case my::ServerTlsStep::Plain:
      return true;
    case my::ServerTlsStep::Refuse:
      connect_failed("server_tls = \"" + cfg.server_tls +
                     "\" but the server does not offer TLS (no CLIENT_SSL in its greeting)");
      return false;
    case my::ServerTlsStep::StartTls:
      break;
  }
  std::string error;
  tls::Ctx ctx = tls::make_client_ctx(cfg.server_tls, cfg.server_tls_ca, error);
  if (!ctx) {
    connect_failed("TLS: " + error);
    return false;
  }
  caps_ |= my::cap::kSsl;
  my::SslRequest req;
  req.capabilities = caps_;
  req.max_packet = my::kMaxPacketLimit;
  req.charset = kLoginCharset;
  std::string out;
  my::encode_ssl_request(out, req);
  send_payload(out, seq);
  // The session keeps its own reference to the context.
  if (!start_tls_client(ctx.get(), host_->address.host, cfg.server_tls == "verify-full", error)) {
    connect_failed("TLS: " + error);
    return false;
  }
  tls_login_ = true;
  seq = static_cast<uint8_t>(seq + 1);
  return true;
}

bool MyBackend::login_packet(std::string_view payload, uint8_t seq) {
  const uint8_t first = payload.empty() ? 0 : static_cast<uint8_t>(payload[0]);
  if (first == my::kErrHeader) {
    my::ErrPacket e;
    connect_failed(my::decode_err(payload, e)
                       ? "server refused the login: " + std::to_string(e.code) + " " + e.message
                       : std::string("server refused the login"));
    return false;
  }
  const uint8_t next = static_cast<uint8_t>(seq + 1);
  switch (login_) {
    case Login::Greeting: {
      if (!my::decode_greeting(payload, greeting_)) {
        connect_failed("malformed greeting from the server");
        return false;
      }
      pid_ = static_cast<int>(greeting_.connection_id);
      static_cast<MyProtocol&>(pool_.driver()).set_server_version(greeting_.server_version);
      caps_ = kWantedCaps & greeting_.capabilities & 0xFFFFFFFFull;
      if ((greeting_.capabilities & my::cap::kMariaExtendedMetadata) != 0) {
        // CLIENT_MYSQL clear: the extended capabilities travel in the
        // response's filler, as the greeting's did.
        caps_ = (caps_ & ~my::cap::kMysql) | my::cap::kMariaExtendedMetadata;
      }
      if ((caps_ & my::cap::kProtocol41) == 0 || (caps_ & my::cap::kSecureConnection) == 0) {
        connect_failed("the server does not speak protocol 4.1 with secure authentication");
        return false;
      }
      uint8_t seq_out = next;
      if (!start_server_tls(seq_out)) return false;
      my::HandshakeResponse r;
      r.max_packet = my::kMaxPacketLimit;
      r.charset = kLoginCharset;
      r.username = pool_.backend_user();
      r.database = pool_.cfg().database;
      if (r.database.empty()) caps_ &= ~my::cap::kConnectWithDb;
      r.capabilities = caps_;
      std::string plugin =
          greeting_.auth_plugin.empty() ? std::string(my::kNativePassword) : greeting_.auth_plugin;
      if (plugin != my::kCachingSha2Password || !cred_.has_password()) {
        plugin = std::string(my::kNativePassword);
      }
      r.auth_plugin = plugin;
      r.auth_response = auth_data(plugin, greeting_.scramble);
      auth_plugin_ = plugin;
      std::string out;
      my::encode_handshake_response(out, r);
      send_payload(out, seq_out);  // over TLS: held until its handshake is done
      login_ = Login::Auth;
      return true;
    }
    case Login::Auth: {
      if (first == my::kOkHeader) {
        login_ = Login::Setup;
        queue(Step::Setup, command_payload(my::Command::Query, kSetupSql));
        return true;
      }
      if (first == my::kEofHeader) {
        my::AuthSwitchRequest sw;
        if (!my::decode_auth_switch(payload, sw)) {
          connect_failed("malformed AuthSwitchRequest from the server");
          return false;
        }
        greeting_.scramble = sw.data;
        return send_auth_response(sw.plugin, sw.data, next);
      }
      if (first == my::kAuthMoreDataHeader && auth_plugin_ == my::kCachingSha2Password) {
        my::CachingSha2Status st;
        if (my::decode_caching_sha2_status(payload, st)) {
          if (st == my::CachingSha2Status::FastAuthSuccess) return true;  // an OK follows
          if (st == my::CachingSha2Status::PerformFullAuth) {
            send_payload(std::string_view("\x02", 1), next);  // request the public key
            login_ = Login::PublicKey;
            return true;
          }
        }
      }
      connect_failed("unexpected packet from the server during login");
      return false;
    }
    case Login::PublicKey: {
      std::string_view pem;
      if (!my::decode_auth_more_data(payload, pem)) {
        connect_failed("malformed public key from the server");
        return false;
      }
      auto enc = my::auth::rsa_encrypt_password(cred_.password(), greeting_.scramble, pem);
      if (!enc) {
        connect_failed("cannot encrypt the password with the server's public key");
        return false;
      }
      send_payload(*enc, next);
      login_ = Login::Auth;
      return true;
    }
    default:
      connect_failed("unexpected packet from the server during login");
      return false;
  }
}

}  // namespace sqlmux
