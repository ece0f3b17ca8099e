#include "daemon/pg/protocol.h"

#include <cctype>
#include <cstdlib>

#include "daemon/core/pool.h"
#include "daemon/pg/backend.h"

namespace sqlmux {

bool PgPoolState::welcome(pool::SessionParams& out) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!has_welcome_) return false;
  out = welcome_;
  return true;
}

void PgPoolState::hold_client_key(const pg::auth::ScramKey& key) {
  std::lock_guard<std::mutex> lk(mu_);
  ++key_holders_;
  if (client_key_) pg::auth::wipe(*client_key_);
  client_key_ = key;  // the latest login's (a reload may change the verifier)
}

void PgPoolState::release_client_key() {
  std::lock_guard<std::mutex> lk(mu_);
  if (key_holders_ > 0 && --key_holders_ == 0 && client_key_) {
    pg::auth::wipe(*client_key_);
    client_key_.reset();
  }
}

std::optional<pg::auth::ScramKey> PgPoolState::client_key() {
  std::lock_guard<std::mutex> lk(mu_);
  return client_key_;
}

void PgPoolState::set_looked_up(const std::optional<pg::auth::ScramVerifier>& scram,
                                const std::string& md5) {
  std::lock_guard<std::mutex> lk(mu_);
  has_looked_up_ = true;
  looked_up_scram_ = scram;  // the latest login's (the password may have changed)
  looked_up_md5_ = md5;
}

bool PgPoolState::looked_up(std::optional<pg::auth::ScramVerifier>& scram, std::string& md5) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!has_looked_up_) return false;
  scram = looked_up_scram_;
  md5 = looked_up_md5_;
  return true;
}

void PgPoolState::set_welcome(const pool::SessionParams& params) {
  std::lock_guard<std::mutex> lk(mu_);
  if (has_welcome_) return;
  welcome_ = params;
  has_welcome_ = true;
}

namespace {
constexpr size_t kMaxLearnedValues = 1024;  // distinct startup values per pool

std::string reported_key(std::string_view name, std::string_view raw) {
  std::string k;
  k.reserve(name.size() + 1 + raw.size());
  for (char c : name) k += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  k += '\0';
  k += raw;
  return k;
}
}  // namespace

std::optional<std::string> PgPoolState::reported_value(std::string_view name,
                                                       std::string_view raw) {
  const std::string k = reported_key(name, raw);
  std::lock_guard<std::mutex> lk(mu_);
  auto it = reported_.find(k);
  if (it == reported_.end()) return std::nullopt;
  return it->second;
}

void PgPoolState::learn_reported_value(std::string_view name, std::string_view raw,
                                       std::string_view value) {
  std::string k = reported_key(name, raw);
  std::lock_guard<std::mutex> lk(mu_);
  // When full, later values are learned again at each login (still exact).
  if (reported_.size() >= kMaxLearnedValues && reported_.count(k) == 0) return;
  reported_[std::move(k)] = std::string(value);
}

PgPoolState& pg_state(const Pool& pool) {
  // A PostgreSQL pool's state is made by PgProtocol::make_pool_state.
  return *static_cast<PgPoolState*>(pool.protocol_state());
}

PgProtocol::PgProtocol() {
  uint8_t rnd[24];
  if (!pg::auth::random_bytes(rnd, sizeof rnd)) std::abort();  // no entropy: cannot run safely
  mock_ = pg::auth::make_scram_verifier(
      pg::auth::base64_encode(std::string_view(reinterpret_cast<const char*>(rnd), 16)),
      std::string_view(reinterpret_cast<const char*>(rnd + 16), 8));
}

PooledBackend* PgProtocol::open_backend(Worker& w, Pool& pool, PoolHost& host, uint64_t for_client,
                                        uint64_t tried, std::string& error) {
  return PgBackend::connect(w, pool, host, for_client, tried, error);
}

std::unique_ptr<PoolState> PgProtocol::make_pool_state() const {
  return std::make_unique<PgPoolState>();
}

std::unique_ptr<const UserSecrets> PgProtocol::derive_secrets(const config::UserConfig& u) const {
  auto a = std::make_unique<PgSecrets>();
  const std::string& pw = u.password;
  if (pw.rfind("SCRAM-SHA-256$", 0) == 0) {
    a->scram = pg::auth::parse_scram_verifier(pw);
  } else if (pg::auth::is_md5_hash(pw)) {
    a->md5 = pw;
  } else if (config::is_mysql_native_hash(pw)) {
    // A MySQL native hash checks no PostgreSQL login (nor is it a password).
  } else {
    uint8_t salt[16];
    if (pg::auth::random_bytes(salt, sizeof salt)) {
      a->scram = pg::auth::make_scram_verifier(
          pw, std::string_view(reinterpret_cast<const char*>(salt), sizeof salt));
    }
    a->md5 = pg::auth::md5_password_hash(pw, u.name);
  }
  if (u.auth == config::AuthMethod::Default) {
    a->method = a->scram ? config::AuthMethod::ScramSha256 : config::AuthMethod::Md5;
  } else {
    a->method = u.auth;
  }
  return a;
}

}  // namespace sqlmux
