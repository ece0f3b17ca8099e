#include "daemon/upgrade_offers.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "daemon/core/log.h"
#include "daemon/ops/metrics.h"
#include "daemon/ops/upgrade_socket.h"
#include "daemon/ops/upgrade_wire.h"

namespace sqlmux {

namespace {

using Clock = std::chrono::steady_clock;

// How long the new process may take to answer for a client; then the
// client is closed here (it may be served there).
constexpr auto kAnswerWait = std::chrono::seconds(10);
// How often a wait for an answer looks whether this process stops.
constexpr int kRecvSliceMs = 200;
// The new process logs (and counts) what it adopted at each "end": one
// follows a quiet moment, or a second of steady offers.
constexpr auto kEndQuiet = std::chrono::milliseconds(200);
constexpr auto kEndEvery = std::chrono::seconds(1);

}  // namespace

UpgradeOffers::UpgradeOffers(int conn, int new_pid, Workers& workers, Metrics* metrics)
    : conn_(conn), new_pid_(new_pid), workers_(workers), metrics_(metrics) {
  const int fl = ::fcntl(conn_, F_GETFL);
  if (fl >= 0) (void)::fcntl(conn_, F_SETFL, fl & ~O_NONBLOCK);
  timeval rcv{0, kRecvSliceMs * 1000};
  (void)::setsockopt(conn_, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
  timeval snd{static_cast<time_t>(std::chrono::seconds(kAnswerWait).count()), 0};
  (void)::setsockopt(conn_, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
  thread_ = std::thread([this] { run(); });
}

UpgradeOffers::~UpgradeOffers() {
  stop();
}

bool UpgradeOffers::offer(int worker, uint64_t id, std::string record, int fd) {
  std::lock_guard<std::mutex> lk(mu_);
  if (closed_) return false;
  queue_.push_back({worker, id, std::move(record), fd});
  cv_.notify_one();
  return true;
}

void UpgradeOffers::first_batch_queued() {
  std::lock_guard<std::mutex> lk(mu_);
  if (closed_) return;
  queue_.push_back({});
  cv_.notify_one();
}

void UpgradeOffers::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void UpgradeOffers::run() {
  std::string err;
  bool broken = false;
  bool first_done = false;  // the first batch's "end" went
  size_t since_end = 0;     // clients sent since the last "end"
  Clock::time_point last_end = Clock::now();
  for (;;) {
    Item it;
    bool have = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, kEndQuiet, [&] { return !queue_.empty() || stop_.load(); });
      if (stop_.load()) break;
      if (!queue_.empty()) {
        it = std::move(queue_.front());
        queue_.pop_front();
        have = true;
      }
    }
    const bool first_end = have && it.worker < 0;
    const bool end_due = first_end || (first_done && since_end > 0 &&
                                       (!have || Clock::now() - last_end >= kEndEvery));
    if (end_due) {
      if (!send_end(err)) {
        broken = true;
        if (have && !first_end) {
          ::close(it.fd);
          post(it, OfferResult::NotSent);
        }
        break;
      }
      first_done = first_done || first_end;
      since_end = 0;
      last_end = Clock::now();
    }
    if (!have || first_end) continue;
    const OfferResult r = send_one(it, err);
    post(it, r);
    if (r == OfferResult::NotSent || r == OfferResult::Unanswered) {
      broken = true;
      break;
    }
    ++since_end;
  }
  std::deque<Item> rest;
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    rest.swap(queue_);
  }
  for (Item& it : rest) {
    if (it.worker < 0) continue;
    ::close(it.fd);
    post(it, OfferResult::NotSent);
  }
  ::close(conn_);
  conn_ = -1;
  if (offered_ > 0) {
    LOG_INFO("online upgrade: handed %zu idle client(s) to pid %d (%zu offered)", handed_, new_pid_,
             offered_);
  }
  if (broken) {
    LOG_WARN("online upgrade: offering idle clients to pid %d stopped: %s; the rest stay here",
             new_pid_, err.c_str());
  }
}

OfferResult UpgradeOffers::send_one(Item& it, std::string& err) {
  const bool sent = upgrade::send_packet(conn_, it.record, {it.fd}, err);
  ::close(it.fd);  // the new process has its own copy now, or none
  it.fd = -1;
  if (!sent) return OfferResult::NotSent;
  ++offered_;
  const Clock::time_point deadline = Clock::now() + kAnswerWait;
  for (;;) {
    std::string msg;
    std::vector<int> fds;
    const bool got = upgrade::recv_packet(conn_, msg, fds, err);
    for (int fd : fds) ::close(fd);
    if (got) {
      uint64_t id = 0;
      if (upgrade::decode_adopted(msg, id) && id == it.id) {
        ++handed_;
        return OfferResult::Adopted;
      }
      if (upgrade::decode_refused(msg, id) && id == it.id) return OfferResult::Refused;
      err = "unexpected answer";
      break;
    }
    if (err != "timed out") break;
    if (stop_.load()) {
      err = "this process stops";
      break;
    }
    if (Clock::now() >= deadline) {
      err = "no answer within 10 s";
      break;
    }
  }
  // The socket went there: never served here again, whatever the other
  // process did with it.
  if (metrics_ != nullptr) metrics_->upgrade_unanswered(1);
  LOG_WARN(
      "online upgrade: client %llu offered to pid %d got no answer (%s): closed here (pid %d "
      "serves it if it adopted it)",
      static_cast<unsigned long long>(it.id), new_pid_, err.c_str(), new_pid_);
  return OfferResult::Unanswered;
}

bool UpgradeOffers::send_end(std::string& err) {
  if (!upgrade::send_packet(conn_, upgrade::encode_end(), {}, err)) return false;
  if (offered_ > 0) {
    LOG_INFO("online upgrade: handed %zu idle client(s) to pid %d (%zu offered)", handed_, new_pid_,
             offered_);
  }
  offered_ = handed_ = 0;
  return true;
}

void UpgradeOffers::post(const Item& it, OfferResult r) {
  workers_.at(it.worker).post([id = it.id, r](Worker& w) { w.offer_answered(id, r); });
}

}  // namespace sqlmux
