#include "daemon/core/directory.h"

#include <algorithm>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"

namespace sqlmux {

namespace {
// The [[user]] password forms that are not the password itself (see
// config.h): a SCRAM verifier, "md5" and 32 hex digits, or a MySQL native
// password hash.
bool stored_as_hash(std::string_view pw) {
  if (pw.rfind("SCRAM-SHA-256$", 0) == 0 || config::is_mysql_native_hash(pw)) return true;
  if (pw.size() != 35 || pw.substr(0, 3) != "md5") return false;
  return std::all_of(pw.begin() + 3, pw.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
}  // namespace

Directory::Directory(config::Config cfg, const Protocols& protocols) : protocols_(protocols) {
  cfg_versions_.push_back(std::make_unique<const config::Config>(std::move(cfg)));
  cfg_.store(cfg_versions_.back().get());
  user_versions_.push_back(derive_users(config()));
  users_.store(user_versions_.back().get());
}

Directory::~Directory() = default;

std::unique_ptr<const Directory::UserMap> Directory::derive_users(const config::Config& cfg) const {
  auto users = std::make_unique<UserMap>();
  for (const auto& u : cfg.users) {
    User& user = (*users)[u.name];
    user.cfg = u;
    if (!stored_as_hash(u.password)) user.plaintext = u.password;
    protocols_.for_each([&](config::Protocol p, const ProtocolDriver& d) {
      user.secrets[static_cast<size_t>(p)] = d.derive_secrets(u);
    });
  }
  return users;
}

const User* Directory::find_user(std::string_view name) const {
  const UserMap& users = *users_.load(std::memory_order_acquire);
  auto it = users.find(name);
  return it == users.end() ? nullptr : &it->second;
}

bool Directory::is_admin_user(std::string_view name) const {
  const auto& admin = config().admin;
  return admin && std::find(admin->users.begin(), admin->users.end(), name) != admin->users.end();
}

std::unique_ptr<Pool> Directory::make_pool(const config::PoolConfig& pc, const std::string& user,
                                           const std::string& password) {
  auto pool = std::make_unique<Pool>(*env_, pc, user, password);
  if (all_paused_ || paused_pools_.contains(config::qualified_name(pc))) pool->set_paused(true);
  return pool;
}

Pool* Directory::find_pool(std::string_view database, const User& user, config::Protocol proto) {
  // Under pools_mu_: a reload swaps the configuration and retires pools
  // while holding it, so a removed pool is never handed out.
  std::lock_guard<std::mutex> lk(pools_mu_);
  const config::PoolConfig* pc = config().find_pool(database, proto);
  if (pc == nullptr) return nullptr;
  std::string owner = pc->user ? std::string() : user.cfg.name;
  auto key = std::make_pair(config::qualified_name(*pc), owner);
  auto it = pools_.find(key);
  if (it != pools_.end()) return it->second.get();
  std::string be_user = pc->user ? *pc->user : user.cfg.name;
  std::string be_pass = pc->password ? *pc->password : user.plaintext;
  Pool* raw = pools_.emplace(key, make_pool(*pc, be_user, be_pass)).first->second.get();
  if (const UserSecrets* s = user.secrets_for(proto);
      !pc->user && !pc->password && s != nullptr && s->server_login_needs_client()) {
    raw->set_clients_only();
    if (pc->min_idle != 0) {
      LOG_INFO(
          "pool %s: min_idle %u not kept: [[user]] %s holds only a hash, so server "
          "connections are opened for its clients",
          raw->label().c_str(), pc->min_idle, user.cfg.name.c_str());
    }
  }
  return raw;
}

void Directory::create_fixed_pools() {
  std::lock_guard<std::mutex> lk(pools_mu_);
  create_fixed_pools_locked();
}

void Directory::create_fixed_pools_locked() {
  for (const auto& pc : config().pools) {
    if (!pc.user) continue;
    auto key = std::make_pair(config::qualified_name(pc), std::string());
    if (pools_.contains(key)) continue;
    pools_.emplace(key, make_pool(pc, *pc.user, pc.password ? *pc.password : std::string()));
  }
}

void Directory::for_each_pool(const std::function<void(Pool&)>& f) {
  std::vector<Pool*> list;
  {
    std::lock_guard<std::mutex> lk(pools_mu_);
    for (auto& [k, p] : pools_) list.push_back(p.get());
  }
  for (Pool* p : list) f(*p);
}

std::vector<Pool*> Directory::set_paused(const std::string& pool, bool paused) {
  std::vector<Pool*> affected;
  std::lock_guard<std::mutex> lk(pools_mu_);
  if (pool.empty()) {
    all_paused_ = paused;
    paused_pools_.clear();
  } else if (paused) {
    paused_pools_.insert(pool);
  } else {
    paused_pools_.erase(pool);
  }
  for (auto& [key, p] : pools_) {
    if (pool.empty() || config::qualified_name(p->cfg()) == pool) {
      p->set_paused(paused);
      affected.push_back(p.get());
    }
  }
  return affected;
}

void Directory::install(config::Config next) {
  auto users = derive_users(next);
  std::lock_guard<std::mutex> lk(pools_mu_);
  cfg_versions_.push_back(std::make_unique<const config::Config>(std::move(next)));
  user_versions_.push_back(std::move(users));
  cfg_.store(cfg_versions_.back().get(), std::memory_order_release);
  users_.store(user_versions_.back().get(), std::memory_order_release);
  const config::Config& cfg = config();
  for (auto& [key, p] : pools_) {
    const config::PoolConfig* pc = cfg.find_pool(p->cfg().name, p->cfg().protocol);
    if (pc == nullptr) {
      if (!p->retired()) {
        LOG_INFO("reload: pool %s removed: no new clients; closes when its clients leave",
                 p->label().c_str());
      }
      p->set_retired(true);
      continue;
    }
    p->set_retired(false);
    p->set_config(*pc);
  }
  create_fixed_pools_locked();
}

bool Directory::try_add_client() {
  uint32_t n = clients_.fetch_add(1) + 1;
  return n <= config().server.max_client_conn;
}

void Directory::remove_client() {
  clients_.fetch_sub(1);
}

bool Directory::try_add_user_client(std::string_view user, uint32_t cap) {
  std::lock_guard<std::mutex> lk(user_clients_mu_);
  return user_clients_.try_add(user, cap);
}

void Directory::remove_user_client(std::string_view user) {
  std::lock_guard<std::mutex> lk(user_clients_mu_);
  user_clients_.remove(user);
}

uint8_t Directory::take_server_slot(const pool::ServerCaps::Keys& k) {
  std::lock_guard<std::mutex> lk(server_caps_mu_);
  return server_caps_.try_take(k);
}

void Directory::give_back_server_slot(std::string_view db, std::string_view user) {
  std::lock_guard<std::mutex> lk(server_caps_mu_);
  server_caps_.give_back(db, user);
}

bool Directory::register_cancel(uint64_t id, int worker, uint64_t client_id) {
  std::lock_guard<std::mutex> lk(cancel_mu_);
  return cancels_.try_emplace(id, CancelEntry{worker, client_id}).second;
}

void Directory::unregister_cancel(uint64_t id) {
  std::lock_guard<std::mutex> lk(cancel_mu_);
  cancels_.erase(id);
}

bool Directory::lookup_cancel(uint64_t id, int& worker, uint64_t& client_id) {
  std::lock_guard<std::mutex> lk(cancel_mu_);
  auto it = cancels_.find(id);
  if (it == cancels_.end()) return false;
  worker = it->second.worker;
  client_id = it->second.client_id;
  return true;
}

uint32_t Directory::register_thread(int worker, uint64_t client_id) {
  const uint32_t peer_id = config().server.peer_id;  // a restart changes it
  std::lock_guard<std::mutex> lk(threads_mu_);
  if (peer_id == 0) {
    // A 32-bit counter that skips 0 and ids still in use once it wraps.
    do {
      ++next_thread_id_;
    } while (next_thread_id_ == 0 || threads_.count(next_thread_id_) != 0);
    threads_[next_thread_id_] = ThreadEntry{worker, client_id, {}};
    return next_thread_id_;
  }
  // The peer_id in the top bits (pool/peer_kill.h), a 17-bit sequence below
  // that skips ids still in use; 0 when every one of them is.
  for (uint32_t tries = 0; tries <= pool::kThreadSeqMask; ++tries) {
    const uint32_t id = pool::peer_thread_id(peer_id, ++next_thread_id_);
    if (threads_.count(id) != 0) continue;
    threads_[id] = ThreadEntry{worker, client_id, {}};
    return id;
  }
  return 0;
}

bool Directory::adopt_thread(uint32_t thread_id, uint32_t counter, int worker, uint64_t client_id) {
  const uint32_t peer_id = config().server.peer_id;
  if (thread_id == 0 || (peer_id != 0 && pool::thread_peer(thread_id) != peer_id)) return false;
  std::lock_guard<std::mutex> lk(threads_mu_);
  if (threads_.count(thread_id) != 0) return false;
  threads_[thread_id] = ThreadEntry{worker, client_id, {}};
  // Without peer_id the id is the counter's value; with it, its sequence.
  const uint32_t seq = peer_id == 0 ? thread_id : (thread_id & pool::kThreadSeqMask);
  next_thread_id_ = std::max({next_thread_id_, counter, seq});
  return true;
}

uint32_t Directory::thread_counter() {
  std::lock_guard<std::mutex> lk(threads_mu_);
  return next_thread_id_;
}

bool Directory::accept_peer_kill(const pool::PeerKill& k, uint64_t now, pool::PeerKillError& why) {
  std::lock_guard<std::mutex> lk(peer_nonces_mu_);
  why = peer_nonces_.accept(k, now);
  return why == pool::PeerKillError::None;
}

void Directory::set_thread_user(uint32_t thread_id, const std::string& user) {
  std::lock_guard<std::mutex> lk(threads_mu_);
  auto it = threads_.find(thread_id);
  if (it != threads_.end()) it->second.user = user;
}

void Directory::unregister_thread(uint32_t thread_id) {
  std::lock_guard<std::mutex> lk(threads_mu_);
  threads_.erase(thread_id);
}

bool Directory::lookup_thread(uint32_t thread_id, ThreadEntry& out) {
  std::lock_guard<std::mutex> lk(threads_mu_);
  auto it = threads_.find(thread_id);
  if (it == threads_.end()) return false;
  out = it->second;
  return true;
}

}  // namespace sqlmux
