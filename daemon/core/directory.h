// What a connection looks up: the configuration in force, users, pools
// and cancel keys, and the count of clients against max_client_conn.
// Thread-safe; a reload installs new versions and earlier ones stay
// alive, so a reference taken by a worker is never invalidated.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "daemon/core/protocol.h"
#include "pool/limits.h"
#include "pool/peer_kill.h"

namespace sqlmux {

class Directory;
class HostRegistry;
class Metrics;
class Pool;
class Workers;

// A user as logins need it, derived once per configuration version.
struct User {
  config::UserConfig cfg;
  std::string plaintext;  // when the password is configured in clear
  std::array<std::unique_ptr<const UserSecrets>, kProtocolCount> secrets;
  [[nodiscard]] const UserSecrets* secrets_for(config::Protocol p) const {
    return secrets[static_cast<size_t>(p)].get();
  }
};

// What a pool needs of the process to run.
struct PoolEnv {
  HostRegistry& hosts;
  Metrics* metrics;  // nullptr without [metrics]
  Workers& workers;
  const Protocols& protocols;
  Directory* directory = nullptr;  // set by Directory::set_pool_env
};

class Directory {
 public:
  Directory(config::Config cfg, const Protocols& protocols);
  ~Directory();
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  [[nodiscard]] const config::Config& config() const {
    return *cfg_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const User* find_user(std::string_view name) const;
  [[nodiscard]] bool is_admin_user(std::string_view name) const;

  // --- pools ---
  // Set once, before the first pool is made.
  void set_pool_env(PoolEnv* env) {
    env_ = env;
    env_->directory = this;
  }
  // The pool serving `database` for `user` (created on first use for pools
  // that log in as the client's own user); nullptr when there is none.
  [[nodiscard]] Pool* find_pool(std::string_view database, const User& user,
                                config::Protocol proto);
  // Every pool with a fixed server login (min_idle opens their connections
  // before the first client arrives); at start and after a reload.
  void create_fixed_pools();
  void for_each_pool(const std::function<void(Pool&)>& f);
  // PAUSE / RESUME (`pool` empty: all, and pools made later); the pools
  // whose state changed.
  [[nodiscard]] std::vector<Pool*> set_paused(const std::string& pool, bool paused);

  // --- reload ---
  // Installs `next` (already validated and adjusted) with its users;
  // retires pools it dropped and reconfigures the others.
  void install(config::Config next);

  // --- clients ---
  // max_client_conn accounting: counted either way; false when over.
  [[nodiscard]] bool try_add_client();
  void remove_client();
  [[nodiscard]] uint32_t client_count() const { return clients_.load(); }
  [[nodiscard]] uint64_t next_client_id() { return next_client_id_.fetch_add(1) + 1; }
  // max_user_client_connections: counts a logged-in client of `user`
  // unless it has `cap` already (0: no cap); false (not counted) when over.
  [[nodiscard]] bool try_add_user_client(std::string_view user, uint32_t cap);
  void remove_user_client(std::string_view user);
  // Server connections under max_db_connections and max_user_connections,
  // all pools and workers together (pool::ServerCaps).
  [[nodiscard]] uint8_t take_server_slot(const pool::ServerCaps::Keys& k);
  void give_back_server_slot(std::string_view db, std::string_view user);

  // Cancel keys sqlmux gave its clients, by the protocol's identity of the
  // key (64 bits); false when `id` is taken (the protocol makes another).
  [[nodiscard]] bool register_cancel(uint64_t id, int worker, uint64_t client_id);
  void unregister_cancel(uint64_t id);
  [[nodiscard]] bool lookup_cancel(uint64_t id, int& worker, uint64_t& client_id);

  // Thread ids sqlmux gave its clients (what a MySQL client sees as its
  // connection id, and names in KILL): unique among the live ones, never 0.
  struct ThreadEntry {
    int worker = 0;
    uint64_t client_id = 0;
    std::string user;  // set once the client logged in
  };
  // With server.peer_id the id carries it (pool/peer_kill.h); 0 when all
  // 2^17 ids of the instance are in use (the client is refused).
  [[nodiscard]] uint32_t register_thread(int worker, uint64_t client_id);
  // Online upgrade: the id a client handed over by the previous process
  // had there; `counter` is that process's allocator position. False when
  // the id is taken here, or with server.peer_id does not carry it. Else
  // registered, and this allocator continues past both (ids it gives later
  // are not the previous process's, until the sequence wraps).
  [[nodiscard]] bool adopt_thread(uint32_t thread_id, uint32_t counter, int worker,
                                  uint64_t client_id);
  // The allocator's position (what adopt_thread takes as `counter`).
  [[nodiscard]] uint32_t thread_counter();
  void set_thread_user(uint32_t thread_id, const std::string& user);
  void unregister_thread(uint32_t thread_id);
  [[nodiscard]] bool lookup_thread(uint32_t thread_id, ThreadEntry& out);
  // A KILL forwarded by a peer (MAC already checked): true when its time is
  // within the window and its nonce unseen (it is remembered); else `why`.
  [[nodiscard]] bool accept_peer_kill(const pool::PeerKill& k, uint64_t now,
                                      pool::PeerKillError& why);

 private:
  using UserMap = std::map<std::string, User, std::less<>>;
  [[nodiscard]] std::unique_ptr<const UserMap> derive_users(const config::Config& cfg) const;
  [[nodiscard]] std::unique_ptr<Pool> make_pool(const config::PoolConfig& pc,
                                                const std::string& user,
                                                const std::string& password);  // pools_mu_ held
  void create_fixed_pools_locked();

  const Protocols& protocols_;
  PoolEnv* env_ = nullptr;
  std::atomic<const config::Config*> cfg_{nullptr};
  std::atomic<const UserMap*> users_{nullptr};
  std::vector<std::unique_ptr<const config::Config>> cfg_versions_;  // under pools_mu_
  std::vector<std::unique_ptr<const UserMap>> user_versions_;        // under pools_mu_

  std::mutex pools_mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Pool>> pools_;
  std::set<std::string, std::less<>> paused_pools_;  // under pools_mu_
  bool all_paused_ = false;                          // under pools_mu_

  std::atomic<uint32_t> clients_{0};
  std::atomic<uint64_t> next_client_id_{0};
  // Logged-in clients per user: one mutex, taken once at login and once at
  // the end of a client (never per query).
  std::mutex user_clients_mu_;
  pool::KeyedLimit user_clients_;  // under user_clients_mu_
  // Taken with a pool's mutex held (never the other way round).
  std::mutex server_caps_mu_;
  pool::ServerCaps server_caps_;  // under server_caps_mu_

  struct CancelEntry {
    int worker;
    uint64_t client_id;
  };
  std::mutex cancel_mu_;
  std::unordered_map<uint64_t, CancelEntry> cancels_;

  std::mutex threads_mu_;
  std::unordered_map<uint32_t, ThreadEntry> threads_;  // under threads_mu_
  uint32_t next_thread_id_ = 0;                        // under threads_mu_

  std::mutex peer_nonces_mu_;
  pool::PeerNonces peer_nonces_;  // under peer_nonces_mu_
};

}  // namespace sqlmux
