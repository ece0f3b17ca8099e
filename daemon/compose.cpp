#include "daemon/compose.h"

#include "daemon/admin/session.h"
#include "daemon/mysql/client.h"
#include "daemon/mysql/health_probe.h"
#include "daemon/mysql/protocol.h"
#include "daemon/pg/client.h"
#include "daemon/pg/health_probe.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

std::unique_ptr<Protocols> make_protocols() {
  auto p = std::make_unique<Protocols>();
  p->add(config::Protocol::Postgres, std::make_unique<PgProtocol>());
  p->add(config::Protocol::Mysql, std::make_unique<MyProtocol>());
  return p;
}

bool adopt_client(const Protocols& protocols, Worker& w, int fd, const upgrade::ClientState& state,
                  std::string& why) {
  if (state.mysql) {
    const auto& my = static_cast<const MyProtocol&>(protocols.get(config::Protocol::Mysql));
    return MyClient::adopt(w, fd, state, my, why);
  }
  const auto& pg = static_cast<const PgProtocol&>(protocols.get(config::Protocol::Postgres));
  return PgClient::adopt(w, fd, state, pg, why);
}

ClientFactory listener_clients(const Protocols& protocols, config::Protocol protocol,
                               config::ClientTls tls) {
  switch (protocol) {
    case config::Protocol::Postgres: {
      const auto& pg = static_cast<const PgProtocol&>(protocols.get(protocol));
      return [&pg, tls](Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer) {
        auto* c = new PgClient(w, fd, id, refusal, peer, pg);
        c->set_client_tls(tls);
        return static_cast<PooledClient*>(c);
      };
    }
    case config::Protocol::Mysql: {
      const auto& my = static_cast<const MyProtocol&>(protocols.get(protocol));
      return [&my, tls](Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer) {
        auto* c = new MyClient(w, fd, id, refusal, peer, my);
        c->set_client_tls(tls);
        return static_cast<PooledClient*>(c);
      };
    }
  }
  return nullptr;
}

RefusalWriter listener_refusal(config::Protocol protocol) {
  switch (protocol) {
    case config::Protocol::Postgres:
      return &PgClient::write_refusal;
    case config::Protocol::Mysql:
      return &MyClient::write_refusal;
  }
  return nullptr;
}

ClientFactory console_clients(const Protocols& protocols, config::ClientTls tls) {
  const auto& pg = static_cast<const PgProtocol&>(protocols.get(config::Protocol::Postgres));
  return [&pg, tls](Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer) {
    auto* c = new PgClient(w, fd, id, refusal, peer, pg);
    c->set_client_tls(tls);
    c->serve_locally(&admin::Session::start);
    return static_cast<PooledClient*>(c);
  };
}

HealthProbes health_probes() {
  return {{config::Protocol::Postgres, pg_health_probe_kind()},
          {config::Protocol::Mysql, mysql_health_probe_kind()}};
}

}  // namespace sqlmux
