// PostgreSQL as the core sees it (core/protocol.h): opens PgBackends,
// keeps each pool's PostgreSQL state and derives users' SCRAM verifiers
// and md5 hashes. One instance, made by the composition root.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "daemon/core/protocol.h"
#include "daemon/pg/auth_query.h"
#include "daemon/pg/listen_hub.h"
#include "pool/pg/prepared.h"
#include "pool/pg/session_params.h"
#include "protocol/pg/auth.h"

namespace sqlmux {

class Pool;

// A user's PostgreSQL secrets.
struct PgSecrets final : UserSecrets {
  config::AuthMethod method = config::AuthMethod::ScramSha256;
  std::optional<pg::auth::ScramVerifier> scram;  // SCRAM and cleartext checks
  std::string md5;                               // "md5..." when derivable
};

// What a PostgreSQL pool keeps for its clients and server connections.
class PgPoolState final : public PoolState {
 public:
  // The parameters a fresh server connection reports (sent to clients at
  // login); false until one reported them.
  [[nodiscard]] bool welcome(pool::SessionParams& out);
  void set_welcome(const pool::SessionParams& params);
  [[nodiscard]] pool::StaleStatements& stale_statements() { return stale_; }
  // What the server reports for a reported parameter a client gave at
  // startup as `raw` (client_encoding=utf8 -> UTF8), once learned.
  [[nodiscard]] std::optional<std::string> reported_value(std::string_view name,
                                                          std::string_view raw);
  void learn_reported_value(std::string_view name, std::string_view raw, std::string_view value);
  // LISTEN fan-out for the pool's transaction-mode clients.
  [[nodiscard]] ListenHub& listen_hub() { return listen_hub_; }
  // SCRAM passthrough: the ClientKey of the pool's user, recovered from a
  // client's SCRAM proof at login. Held only while a client session that
  // proved it is connected (hold at login, release when it leaves; the
  // last release wipes it); never logged.
  void hold_client_key(const pg::auth::ScramKey& key);
  void release_client_key();
  [[nodiscard]] std::optional<pg::auth::ScramKey> client_key();
  // auth_query: the verifier or md5 hash the latest login of the pool's
  // user (who has no [[user]] entry) was checked against; the server login
  // uses it as it would a [[user]] entry's. False until one logged in.
  void set_looked_up(const std::optional<pg::auth::ScramVerifier>& scram, const std::string& md5);
  [[nodiscard]] bool looked_up(std::optional<pg::auth::ScramVerifier>& scram, std::string& md5);

 private:
  std::mutex mu_;
  bool has_welcome_ = false;     // under mu_
  pool::SessionParams welcome_;  // under mu_
  // lowercased name, NUL, raw value -> the server's value; under mu_, bounded.
  std::unordered_map<std::string, std::string> reported_;
  pool::StaleStatements stale_;                             // thread-safe itself
  std::optional<pg::auth::ScramKey> client_key_;            // under mu_
  int key_holders_ = 0;                                     // under mu_
  bool has_looked_up_ = false;                              // under mu_
  std::optional<pg::auth::ScramVerifier> looked_up_scram_;  // under mu_
  std::string looked_up_md5_;                               // under mu_
  ListenHub listen_hub_;                                    // lives on the first worker
};

// The PostgreSQL state of a PostgreSQL pool.
[[nodiscard]] PgPoolState& pg_state(const Pool& pool);

class PgProtocol final : public ProtocolDriver {
 public:
  PgProtocol();

  [[nodiscard]] PooledBackend* open_backend(Worker& w, Pool& pool, PoolHost& host,
                                            uint64_t for_client, uint64_t tried,
                                            std::string& error) override;
  [[nodiscard]] std::unique_ptr<PoolState> make_pool_state() const override;
  [[nodiscard]] std::unique_ptr<const UserSecrets> derive_secrets(
      const config::UserConfig& u) const override;

  // A verifier for users that do not exist, so that they get the same
  // SCRAM exchange as a wrong password.
  [[nodiscard]] const pg::auth::ScramVerifier& mock_verifier() const { return mock_; }
  // auth_query results, shared by the workers.
  [[nodiscard]] AuthQueryCache& auth_cache() const { return *auth_cache_; }

 private:
  pg::auth::ScramVerifier mock_;
  std::unique_ptr<AuthQueryCache> auth_cache_ = std::make_unique<AuthQueryCache>();
};

}  // namespace sqlmux
