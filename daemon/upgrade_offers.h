// Online upgrade (README "Upgrade procedure"), old process: the thread that
// offers idle clients to the new process. It owns the connection to it
// once "done" is sent: the workers queue their clients as they become idle
// (Worker::start_offering), it sends each record with its socket, awaits
// the answer and posts it back to the client's worker, so that neither the
// main loop nor a worker ever waits for the other process. A client whose
// socket was sent is never served here again unless the new process
// refused it: without an answer it is closed here.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/core/worker.h"

namespace sqlmux {

class Metrics;

class UpgradeOffers final : public ClientOffers {
 public:
  // Takes `conn`, the connection to the new process (pid `new_pid`).
  UpgradeOffers(int conn, int new_pid, Workers& workers, Metrics* metrics);
  ~UpgradeOffers() override;
  UpgradeOffers(const UpgradeOffers&) = delete;
  UpgradeOffers& operator=(const UpgradeOffers&) = delete;

  // Thread-safe (the workers).
  [[nodiscard]] bool offer(int worker, uint64_t id, std::string record, int fd) override;
  // Every worker has queued the clients idle at the handover: "end" tells
  // the new process so once they are sent (it waits for that first batch).
  void first_batch_queued();
  // Takes no more clients; one awaiting its answer counts as unanswered,
  // those queued go back unsent. Joins the thread; idempotent. (Main loop.)
  void stop();

 private:
  struct Item {
    int worker = -1;  // -1: the "end" of the first batch
    uint64_t id = 0;
    std::string record;
    int fd = -1;
  };
  void run();
  // Sends `it` and awaits its answer.
  [[nodiscard]] OfferResult send_one(Item& it, std::string& err);
  [[nodiscard]] bool send_end(std::string& err);
  void post(const Item& it, OfferResult r);

  int conn_;
  const int new_pid_;
  Workers& workers_;
  Metrics* metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;  // under mu_
  bool closed_ = false;     // under mu_: no more offers taken
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // The thread's own: what the log line at the next "end" reports.
  size_t offered_ = 0;
  size_t handed_ = 0;
};

}  // namespace sqlmux
