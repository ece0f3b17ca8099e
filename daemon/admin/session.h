// The admin console: a client that logged in on the [admin] listener to the
// virtual database "sqlmux" is served by an admin::Session on its worker.
//
// Commands that read or change state spread over workers run as a Job: the
// console's worker posts it to every worker's inbox as a task; each worker
// runs its part on its own thread, touching only its own clients and
// backends; the last one posts the job back to the console's worker and
// the session answers. Pools are shared and change only through their own
// locked calls. Switches of the process (reload, pause, disable, shutdown)
// go through core/control.h.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/admin/command.h"
#include "daemon/pg/client.h"
#include "protocol/pg/result.h"

namespace sqlmux {

class Pool;
class Worker;
struct Services;

namespace admin {

class Session;

// One client as a worker sees it.
struct ClientRow {
  uint64_t id = 0;
  std::string user;
  std::string database;
  const Pool* pool = nullptr;  // nullptr: logging in, or a console client
  std::string state;
  std::string address;
  int64_t connect_time = 0;  // unix seconds
  int worker = 0;
  std::string pinned;  // PooledClient::pinned_by()
};

// One server connection as a worker sees it.
struct ServerRow {
  int pid = 0;
  const Pool* pool = nullptr;
  std::string state;
  std::optional<uint64_t> client_id;
  std::string address;
  int64_t connect_time = 0;
  int worker = 0;
  // Opened before a RECONNECT, or its pool was removed by a reload: it
  // closes once released (WAIT_CLOSE waits for these).
  bool to_close = false;
};

struct WorkerPart {
  std::vector<ClientRow> clients;
  std::vector<ServerRow> servers;
  size_t affected = 0;  // clients or backends a command acted on
};

struct Job {
  std::function<void(Worker&, WorkerPart&)> work;  // runs on each worker's thread
  int origin = 0;                                  // the console client's worker
  std::weak_ptr<Session> session;                  // gone when the console client left
  std::mutex mu;
  std::vector<WorkerPart> parts;  // by worker id, under mu
  int remaining = 0;              // under mu
};

// Runs worker `w`'s part; the last part posts the job back to its origin.
void run_job(Worker& w, const std::shared_ptr<Job>& job);

// Per-worker parts (jobs.cpp).
void snapshot(Worker& w, WorkerPart& out);
void kill_pool_clients(Worker& w, const std::vector<Pool*>& pools, WorkerPart& out);
void kill_client(Worker& w, uint64_t id, WorkerPart& out);
// "2026-01-31 12:00:00" (UTC)
[[nodiscard]] std::string format_time(int64_t unix_seconds);

class Session final : public LocalSession, public std::enable_shared_from_this<Session> {
 public:
  // After authentication on the admin listener: checks the database and
  // the user, greets the client; nullptr when it was refused (and closed).
  [[nodiscard]] static std::shared_ptr<LocalSession> start(PgClient& c);
  explicit Session(PgClient& c);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() override;

  // Handles the client's buffered messages (it is Idle).
  void process() override;
  void job_done(const std::shared_ptr<Job>& job);

 private:
  void handle_query(std::string_view sql);
  void execute(const Command& cmd);
  void dispatch(std::function<void(Worker&, WorkerPart&)> work);
  void finish_command();  // ReadyForQuery, then the next buffered message
  void send_error(std::string_view sqlstate, std::string message, std::string detail = {},
                  std::string hint = {});
  void send_complete(std::string_view tag);
  void send_rows(const std::vector<std::string_view>& columns,
                 const std::vector<std::vector<std::optional<std::string>>>& rows);
  // As send_rows, with typed columns (what PgBouncer's SHOWs send).
  void send_typed(const std::vector<pg::Column>& columns,
                  const std::vector<std::vector<std::optional<std::string>>>& rows);
  // The pool a console argument names: "protocol:name", or a bare name that
  // only one protocol's pools use. Returns its qualified name ("" for an
  // empty argument: every pool), or nullopt with an error sent when the
  // argument names no pool or a name that both protocols use.
  std::optional<std::string> resolve_pool(const std::string& arg);
  // The running pools with qualified name `key` (every pool when empty).
  void pools_named(const std::string& key, std::vector<Pool*>& out);
  void show_pools(const std::vector<WorkerPart>& parts);
  void show_clients(const std::vector<WorkerPart>& parts);
  void show_servers(const std::vector<WorkerPart>& parts);
  void show_backends();
  void show_stats();
  void show_databases();
  void show_lists(const std::vector<WorkerPart>& parts);
  void show_help();
  void show_config();
  void show_auth();
  void show_queries();
  void pause_check(const std::vector<WorkerPart>& parts);
  // WAIT_CLOSE: done once no server connection of pending_pools_ is left
  // that RECONNECT retired (an older generation) or whose pool a reload
  // removed; else polls again.
  void wait_close_check(const std::vector<WorkerPart>& parts);
  void poll_again();  // a fresh snapshot in kPollMs (PAUSE, WAIT_CLOSE)
  static void on_pause_timer(uv_timer_t* t);

  PgClient& c_;
  const Services& s_;
  bool busy_ = false;          // a job runs; input waits
  bool skip_to_sync_ = false;  // after refusing an extended-protocol message
  Command pending_;
  std::vector<Pool*> pending_pools_;
  uv_timer_t* timer_ = nullptr;
};

}  // namespace admin
}  // namespace sqlmux
