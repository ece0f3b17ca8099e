// LISTEN fan-out for one PostgreSQL pool in transaction or statement mode
// (README "LISTEN and NOTIFY in transaction mode"): one server connection
// of the pool's own, beside its size, LISTENs to the union of the channels
// its clients listen on, and each notification goes to every client
// listening on its channel, in the server's order.
//
// Threads: the hub and its connection live on the first worker. Clients
// post their changes there (change, client_gone); the hub posts
// notifications, in batches, to the workers of the clients that receive
// them, and tells a client when the connection listens on what it asked
// for (PgClient::on_listen_ready), so that its LISTEN completes only then,
// as on a direct connection.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pool/pg/listen.h"

namespace sqlmux {

class Pool;
class Worker;

class ListenHub {
 public:
  ListenHub() = default;
  ListenHub(const ListenHub&) = delete;
  ListenHub& operator=(const ListenHub&) = delete;
  ListenHub(ListenHub&&) = delete;
  ListenHub& operator=(ListenHub&&) = delete;
  ~ListenHub();

  // Any worker's thread: client `client` of `pool` on worker `from`
  // committed a transaction that changed its channels. When `added` is not
  // empty the client gets on_listen_ready once they are listened to (or
  // once the hub gave up for now: the connection failed).
  void change(Pool& pool, Worker& from, uint64_t client, std::vector<std::string> added,
              std::vector<std::string> removed);

 private:
  enum class State { Closed, Connecting, Ready, Retrying };
  struct Waiter {
    int worker;
    uint64_t client;
    std::vector<std::string> channels;
  };

  // --- on the home worker ---
  void on_change(int worker, uint64_t client, const std::vector<std::string>& added,
                 const std::vector<std::string>& removed);
  // Moves the connection toward the registry: opens it, LISTENs and
  // UNLISTENs the difference, closes it when nobody listens.
  void sync();
  void connect();
  void drive_connect();
  void on_io(int status, int events);
  void read_results();
  void fan_out();
  void lost(const char* why);
  void close_connection();
  void wake_waiters(bool all);
  void post_ready(int worker, uint64_t client);
  // NoticeResponse to every listening client: notifications may have been missed.
  void tell_missed();
  void update_gauges();
  // The one timer: the connect deadline while Connecting, the retry delay
  // while Retrying.
  void start_timer(int64_t ms);

  Pool* pool_ = nullptr;
  Worker* home_ = nullptr;
  bool at_stop_registered_ = false;
  bool stopped_ = false;
  pool::ListenRegistry reg_;
  State state_ = State::Closed;
  PGconn* pg_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* retry_ = nullptr;
  int retry_ms_ = 0;
  bool batch_failed_ = false;     // a command of the batch in flight failed
  bool lost_ = false;             // an open connection was lost: tell clients once reopened
  std::set<std::string> active_;  // listened to on the connection
  std::vector<std::pair<bool, std::string>> in_flight_;  // (listen?, channel) sent, unanswered
  std::vector<Waiter> waiters_;
};

}  // namespace sqlmux
