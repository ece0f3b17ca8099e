#include "daemon/pg/cancel_route.h"

#include <uv.h>

#include <cstring>
#include <string>

#include "daemon/core/directory.h"
#include "daemon/core/pooled.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "pool/pg/cancel_key.h"
#include "protocol/pg/codec.h"

namespace sqlmux {

namespace {

// A forwarded CancelRequest: connect, write 16 bytes, close. Its memory is
// freed in the last close callback (libuv's rule); a peer that does not
// answer within kForwardTimeoutMs is given up.
constexpr uint64_t kForwardTimeoutMs = 2000;

struct Forward {
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string bytes;
  std::string peer;  // "id 2 (10.0.0.2:6432)", for the log
  int open_handles = 2;
  bool closing = false;
};

void on_handle_closed(uv_handle_t* h) {
  auto* f = static_cast<Forward*>(h->data);
  if (--f->open_handles == 0) delete f;
}

void finish(Forward* f) {
  if (f->closing) return;
  f->closing = true;
  uv_timer_stop(&f->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&f->timer), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&f->tcp), on_handle_closed);
}

void on_written(uv_write_t* req, int status) {
  auto* f = static_cast<Forward*>(req->data);
  if (status < 0) LOG_WARN("cancel request to peer %s: %s", f->peer.c_str(), uv_strerror(status));
  finish(f);
}

void on_connected(uv_connect_t* req, int status) {
  auto* f = static_cast<Forward*>(req->data);
  if (status < 0 || f->closing) {
    if (status < 0) {
      LOG_WARN("cancel request to peer %s: %s", f->peer.c_str(), uv_strerror(status));
    }
    finish(f);
    return;
  }
  uv_buf_t buf = uv_buf_init(f->bytes.data(), static_cast<unsigned>(f->bytes.size()));
  f->write.data = f;
  if (uv_write(&f->write, reinterpret_cast<uv_stream_t*>(&f->tcp), &buf, 1, on_written) != 0) {
    finish(f);
  }
}

void on_timeout(uv_timer_t* t) {
  auto* f = static_cast<Forward*>(t->data);
  LOG_WARN("cancel request to peer %s: no connection within %llu ms; given up", f->peer.c_str(),
           static_cast<unsigned long long>(kForwardTimeoutMs));
  finish(f);
}

bool forward(Worker& w, const config::Address& to, uint32_t peer_id, int32_t pid, int32_t key) {
  sockaddr_storage sa{};
  if (uv_ip4_addr(to.host.c_str(), to.port, reinterpret_cast<sockaddr_in*>(&sa)) != 0 &&
      uv_ip6_addr(to.host.c_str(), to.port, reinterpret_cast<sockaddr_in6*>(&sa)) != 0) {
    return false;  // validation allows IP addresses only
  }
  auto* f = new Forward();
  f->peer = "id " + std::to_string(peer_id) + " (" + to.text + ")";
  pg::put_cancel_request(f->bytes, pid, key);
  f->tcp.data = f;
  f->timer.data = f;
  f->connect.data = f;
  uv_timer_init(w.loop(), &f->timer);
  if (uv_tcp_init(w.loop(), &f->tcp) != 0) {
    f->open_handles = 1;
    uv_close(reinterpret_cast<uv_handle_t*>(&f->timer), on_handle_closed);
    return false;
  }
  uv_timer_start(&f->timer, on_timeout, kForwardTimeoutMs, 0);
  const int rc =
      uv_tcp_connect(&f->connect, &f->tcp, reinterpret_cast<const sockaddr*>(&sa), on_connected);
  if (rc != 0) {
    LOG_WARN("cancel request to peer %s: %s", f->peer.c_str(), uv_strerror(rc));
    finish(f);
    return false;
  }
  return true;
}

void count(Worker& w, metrics::CancelResult r) {
  if (metrics::WorkerStats* ws = w.stats()) ws->cancel_requests[static_cast<int>(r)].add();
}

}  // namespace

void route_cancel(Worker& w, int32_t pid, int32_t key, const log::ClientTag& from) {
  const config::Config& cfg = w.directory().config();
  const uint32_t peer = pool::cancel_peer(pid);
  if (peer == cfg.server.peer_id) {
    int worker = 0;
    uint64_t target = 0;
    if (w.directory().lookup_cancel(pool::cancel_lookup_id(pid, key), worker, target)) {
      count(w, metrics::CancelResult::Local);
      w.workers().at(worker).post([target](Worker& tw) {
        if (PooledClient* c = tw.find_client(target)) c->cancel_running_query();
      });
    } else {
      count(w, metrics::CancelResult::Unknown);
      CLOG_DEBUG(from, "cancel request with an unknown key dropped");
    }
    return;
  }
  const auto it = cfg.peers.find(peer);
  if (it == cfg.peers.end()) {
    count(w, metrics::CancelResult::Unknown);
    CLOG_DEBUG(from, "cancel request for peer id %u, which [peers] does not list, dropped", peer);
    return;
  }
  const uint32_t hops = pool::cancel_hops(pid);
  if (hops == 0) {
    count(w, metrics::CancelResult::HopsExhausted);
    CLOG_WARN(from,
              "cancel request for peer id %u forwarded too many times, dropped (do the "
              "instances' [peers] tables and peer_id agree?)",
              peer);
    return;
  }
  if (forward(w, it->second, peer, pool::with_hops(pid, hops - 1), key)) {
    count(w, metrics::CancelResult::Forwarded);
    CLOG_DEBUG(from, "cancel request forwarded to peer id %u (%s)", peer, it->second.text.c_str());
  } else {
    count(w, metrics::CancelResult::Unknown);
  }
}

}  // namespace sqlmux
