#include "daemon/core/peer_kill.h"

#include <openssl/rand.h>
#include <uv.h>

#include <chrono>
#include <utility>

#include "daemon/core/directory.h"
#include "daemon/core/pooled.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"

namespace sqlmux {

namespace {

// How long a forwarded KILL may take to connect and be answered.
constexpr uint64_t kForwardTimeoutMs = 2000;

uint64_t unix_now() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void count(Worker& w, metrics::KillOutcome o) {
  if (metrics::WorkerStats* ws = w.stats(); ws != nullptr) {
    ws->kills[static_cast<int>(metrics::KillRoute::FromPeer)][static_cast<int>(o)].add();
  }
}

// One forwarded KILL: connect, write the request, read the answer, close.
// Freed in the last close callback (libuv's rule). `done` is called once.
struct Forward {
  Worker* worker = nullptr;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string request;
  std::string secret;
  pool::PeerNonce nonce{};
  std::string peer;  // "id 2 (10.0.0.2:6432)", for the log
  char buf[pool::kPeerReplyLen]{};
  std::string reply;
  PeerKillDone done;
  int open_handles = 2;
  bool closing = false;
};

void on_handle_closed(uv_handle_t* h) {
  auto* f = static_cast<Forward*>(h->data);
  if (--f->open_handles == 0) delete f;
}

void finish(Forward* f, std::optional<pool::PeerKillResult> r) {
  if (f->closing) return;
  f->closing = true;
  uv_timer_stop(&f->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&f->timer), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&f->tcp), on_handle_closed);
  if (f->done) {
    PeerKillDone done = std::move(f->done);
    done(*f->worker, r);
  }
}

void on_alloc(uv_handle_t* h, size_t, uv_buf_t* out) {
  auto* f = static_cast<Forward*>(h->data);
  *out = uv_buf_init(f->buf, sizeof f->buf);
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
  auto* f = static_cast<Forward*>(s->data);
  if (f->closing) return;
  if (n < 0) {
    LOG_WARN("KILL forwarded to peer %s: %s before an answer (a peer_secret that differs?)",
             f->peer.c_str(), n == UV_EOF ? "closed" : uv_strerror(static_cast<int>(n)));
    finish(f, std::nullopt);
    return;
  }
  f->reply.append(f->buf, static_cast<size_t>(n));
  pool::PeerKillResult r{};
  pool::PeerKillError err{};
  switch (pool::decode_peer_kill_reply(reinterpret_cast<const uint8_t*>(f->reply.data()),
                                       f->reply.size(), f->secret, f->nonce, r, err)) {
    case pool::PeerDecode::NeedMore:
      if (f->reply.size() > pool::kPeerReplyLen) {  // cannot happen: decoded at that length
        finish(f, std::nullopt);
      }
      return;
    case pool::PeerDecode::Malformed:
      LOG_WARN("KILL forwarded to peer %s: its answer is refused (%s)", f->peer.c_str(),
               std::string(pool::to_string(err)).c_str());
      finish(f, std::nullopt);
      return;
    case pool::PeerDecode::Complete:
      finish(f, r);
      return;
  }
}

void on_written(uv_write_t* req, int status) {
  auto* f = static_cast<Forward*>(req->data);
  if (f->closing) return;
  if (status < 0) {
    LOG_WARN("KILL forwarded to peer %s: %s", f->peer.c_str(), uv_strerror(status));
    finish(f, std::nullopt);
  }
}

void on_connected(uv_connect_t* req, int status) {
  auto* f = static_cast<Forward*>(req->data);
  if (f->closing) return;
  if (status < 0) {
    LOG_WARN("KILL forwarded to peer %s: %s", f->peer.c_str(), uv_strerror(status));
    finish(f, std::nullopt);
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&f->tcp);
  uv_buf_t buf = uv_buf_init(f->request.data(), static_cast<unsigned>(f->request.size()));
  f->write.data = f;
  if (uv_write(&f->write, stream, &buf, 1, on_written) != 0 ||
      uv_read_start(stream, on_alloc, on_read) != 0) {
    finish(f, std::nullopt);
  }
}

void on_timeout(uv_timer_t* t) {
  auto* f = static_cast<Forward*>(t->data);
  LOG_WARN("KILL forwarded to peer %s: no answer within %llu ms; given up", f->peer.c_str(),
           static_cast<unsigned long long>(kForwardTimeoutMs));
  finish(f, std::nullopt);
}

}  // namespace

bool forward_kill(Worker& w, uint32_t peer_id, pool::PeerKill k, PeerKillDone done) {
  const config::Config& cfg = w.directory().config();
  if (cfg.server.peer_secret.empty()) return false;
  const auto it = cfg.peers.find(peer_id);
  if (it == cfg.peers.end()) return false;
  const config::Address& to = it->second;
  sockaddr_storage sa{};
  if (uv_ip4_addr(to.host.c_str(), to.port, reinterpret_cast<sockaddr_in*>(&sa)) != 0 &&
      uv_ip6_addr(to.host.c_str(), to.port, reinterpret_cast<sockaddr_in6*>(&sa)) != 0) {
    return false;  // validation allows IP addresses only
  }
  if (RAND_bytes(k.nonce.data(), static_cast<int>(k.nonce.size())) != 1) return false;
  k.unix_time = unix_now();
  auto* f = new Forward();
  f->worker = &w;
  f->peer = "id " + std::to_string(peer_id) + " (" + to.text + ")";
  f->secret = cfg.server.peer_secret;
  f->nonce = k.nonce;
  pool::put_peer_kill(f->request, k, f->secret);
  f->done = std::move(done);
  f->tcp.data = f;
  f->timer.data = f;
  f->connect.data = f;
  uv_timer_init(w.loop(), &f->timer);
  if (uv_tcp_init(w.loop(), &f->tcp) != 0) {
    f->open_handles = 1;
    f->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&f->timer), on_handle_closed);
    return false;
  }
  uv_timer_start(&f->timer, on_timeout, kForwardTimeoutMs, 0);
  const int rc =
      uv_tcp_connect(&f->connect, &f->tcp, reinterpret_cast<const sockaddr*>(&sa), on_connected);
  if (rc != 0) {
    LOG_WARN("KILL forwarded to peer %s: %s", f->peer.c_str(), uv_strerror(rc));
    f->done = nullptr;  // the caller answers: false
    finish(f, std::nullopt);
    return false;
  }
  return true;
}

void answer_peer_kill(Worker& w, std::string_view packet, std::string& reply,
                      const log::ClientTag& from) {
  const config::Config& cfg = w.directory().config();
  if (cfg.server.peer_secret.empty()) {
    count(w, metrics::KillOutcome::Rejected);
    CLOG_WARN(from, "KILL from a peer refused: server.peer_secret is not set here");
    return;
  }
  pool::PeerKill k;
  size_t used = 0;
  pool::PeerKillError err{};
  if (pool::decode_peer_kill(reinterpret_cast<const uint8_t*>(packet.data()), packet.size(),
                             cfg.server.peer_secret, k, used, err) != pool::PeerDecode::Complete ||
      used != packet.size()) {
    count(w, metrics::KillOutcome::Rejected);
    CLOG_WARN(from, "KILL from a peer refused: %s", std::string(pool::to_string(err)).c_str());
    return;
  }
  if (!w.directory().accept_peer_kill(k, unix_now(), err)) {
    count(w, metrics::KillOutcome::Rejected);
    CLOG_WARN(from, "KILL from a peer refused: %s (do the instances' clocks agree within %llus?)",
              std::string(pool::to_string(err)).c_str(),
              static_cast<unsigned long long>(pool::kPeerKillWindowS));
    return;
  }
  const char* what = k.query_only ? "KILL QUERY" : "KILL CONNECTION";
  Directory::ThreadEntry e;
  pool::PeerKillResult r = pool::PeerKillResult::Ok;
  if (pool::thread_peer(k.thread_id) != cfg.server.peer_id ||
      !w.directory().lookup_thread(k.thread_id, e) || e.user.empty()) {
    r = pool::PeerKillResult::NoSuchThread;
    count(w, metrics::KillOutcome::NoSuchThread);
    CLOG_INFO(from, "%s %u from a peer (user '%s'): no such thread", what, k.thread_id,
              k.user.c_str());
  } else if (e.user != k.user) {
    r = pool::PeerKillResult::NotOwner;
    count(w, metrics::KillOutcome::NotOwner);
    CLOG_INFO(from, "%s %u from a peer (user '%s'): refused, thread of user '%s'", what,
              k.thread_id, k.user.c_str(), e.user.c_str());
  } else {
    count(w, k.query_only ? metrics::KillOutcome::Query : metrics::KillOutcome::Connection);
    CLOG_INFO(from, "%s %u from a peer (user '%s')", what, k.thread_id, k.user.c_str());
    const bool query_only = k.query_only;
    const uint64_t cid = e.client_id;
    w.workers().at(e.worker).post([cid, query_only](Worker& tw) {
      if (PooledClient* c = tw.find_client(cid)) c->kill_from_peer(query_only);
    });
  }
  pool::put_peer_kill_reply(reply, r, k.nonce, cfg.server.peer_secret);
}

}  // namespace sqlmux
