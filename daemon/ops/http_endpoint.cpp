#include "daemon/ops/http_endpoint.h"

#include <chrono>
#include <cstring>

#include "daemon/core/log.h"

namespace sqlmux {

struct HttpEndpoint::Conn {
  uv_tcp_t tcp{};
  HttpEndpoint* owner = nullptr;
  std::string in;
  std::string out;
  uv_write_t write{};
  uint64_t since_ms = 0;
  bool closing = false;
  Conn* prev = nullptr;
  Conn* next = nullptr;
};

namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

std::string response(int status, std::string_view content_type, const std::string& body, bool head,
                     std::string_view extra_headers = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    std::string(reason_phrase(status)) +
                    "\r\nContent-Type: " + std::string(content_type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n" + std::string(extra_headers) + "\r\n";
  if (!head) out += body;
  return out;
}
}  // namespace

std::string HttpEndpoint::respond(std::string_view request, const Handlers& h) {
  constexpr std::string_view kText = "text/plain; charset=utf-8";
  const size_t eol = request.find("\r\n");
  const std::string_view line = request.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.substr(sp2 + 1, 5) != "HTTP/") {
    return response(400, kText, "bad request\n", false);
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  const bool head = method == "HEAD";
  if (!head && method != "GET") {
    return response(405, kText, "only GET and HEAD\n", false, "Allow: GET, HEAD\r\n");
  }
  if (target == "/metrics") {
    return response(200, "text/plain; version=0.0.4; charset=utf-8",
                    h.metrics ? h.metrics() : std::string(), head);
  }
  if (target == "/healthz") return response(200, kText, "ok\n", head);
  if (target == "/readyz") {
    const auto [ok, why] = h.ready ? h.ready() : std::pair<bool, std::string>{true, ""};
    return ok ? response(200, kText, "ready\n", head)
              : response(503, kText, "not ready: " + why + "\n", head);
  }
  return response(404, kText, "not found (try /metrics, /healthz, /readyz)\n", head);
}

HttpEndpoint::~HttpEndpoint() {
  stop();
}

bool HttpEndpoint::start(const config::Address& addr, Handlers handlers, std::string& error,
                         int inherited_fd) {
  handlers_ = std::move(handlers);
  sockaddr_storage ss{};
  const std::string host = addr.host;
  if (uv_ip4_addr(host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
    error = "not an IP address: " + host;
    return false;
  }
  if (uv_loop_init(&loop_) != 0) {
    error = "cannot make an event loop";
    return false;
  }
  int rc = uv_tcp_init(&loop_, &server_);
  if (rc == 0) {
    rc = inherited_fd >= 0 ? uv_tcp_open(&server_, inherited_fd)
                           : uv_tcp_bind(&server_, reinterpret_cast<const sockaddr*>(&ss), 0);
  }
  server_.data = this;
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 64, &on_connection);
  if (rc != 0) {
    error = uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    (void)uv_run(&loop_, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop_);
    return false;
  }
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&server_), &fd) == 0) listen_fd_ = fd;
  (void)uv_async_init(&loop_, &stop_, &on_stop);
  stop_.data = this;
  (void)uv_async_init(&loop_, &unlisten_, &on_unlisten);
  unlisten_.data = this;
  (void)uv_timer_init(&loop_, &sweep_);
  sweep_.data = this;
  (void)uv_timer_start(&sweep_, &on_sweep, 1000, 1000);
  running_ = true;
  thread_ = std::thread([this] {
    (void)uv_run(&loop_, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop_);
  });
  return true;
}

void HttpEndpoint::stop() {
  if (!running_) return;
  running_ = false;
  uv_async_send(&stop_);
  thread_.join();
}

void HttpEndpoint::stop_listening() {
  if (!running_) return;
  uv_async_send(&unlisten_);
  std::unique_lock<std::mutex> lk(unlisten_mu_);
  (void)unlisten_cv_.wait_for(lk, std::chrono::seconds(1), [this] { return unlistened_; });
}

void HttpEndpoint::on_unlisten(uv_async_t* a) {
  auto* self = static_cast<HttpEndpoint*>(a->data);
  auto* h = reinterpret_cast<uv_handle_t*>(&self->server_);
  if (!uv_is_closing(h)) uv_close(h, nullptr);  // the descriptor closes here
  std::lock_guard<std::mutex> lk(self->unlisten_mu_);
  self->unlistened_ = true;
  self->unlisten_cv_.notify_all();
}

void HttpEndpoint::on_stop(uv_async_t* a) {
  auto* self = static_cast<HttpEndpoint*>(a->data);
  for (Conn* c = self->conns_; c != nullptr; c = c->next) {
    close_conn(reinterpret_cast<uv_handle_t*>(&c->tcp));
  }
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&self->server_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&self->server_), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&self->unlisten_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->sweep_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_), nullptr);
}

void HttpEndpoint::on_sweep(uv_timer_t* t) {
  auto* self = static_cast<HttpEndpoint*>(t->data);
  const uint64_t now = uv_now(&self->loop_);
  for (Conn* c = self->conns_; c != nullptr; c = c->next) {
    if (now - c->since_ms > kRequestTimeoutMs) close_conn(reinterpret_cast<uv_handle_t*>(&c->tcp));
  }
}

void HttpEndpoint::close_conn(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  if (c->closing) return;
  c->closing = true;
  uv_close(h, [](uv_handle_t* hh) {
    auto* conn = static_cast<Conn*>(hh->data);
    // Unlinked and freed in its close callback (libuv's rule).
    HttpEndpoint* o = conn->owner;
    if (conn->prev != nullptr) {
      conn->prev->next = conn->next;
    } else {
      o->conns_ = conn->next;
    }
    if (conn->next != nullptr) conn->next->prev = conn->prev;
    delete conn;
  });
}

void HttpEndpoint::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<HttpEndpoint*>(server->data);
  if (status < 0) return;
  auto* c = new Conn;
  c->owner = self;
  c->since_ms = uv_now(&self->loop_);
  (void)uv_tcp_init(&self->loop_, &c->tcp);
  c->tcp.data = c;
  // Linked first: close_conn's callback unlinks it.
  c->next = self->conns_;
  if (self->conns_ != nullptr) self->conns_->prev = c;
  self->conns_ = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    close_conn(reinterpret_cast<uv_handle_t*>(&c->tcp));
    return;
  }
  (void)uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t* h, size_t /*suggested*/, uv_buf_t* buf) {
        static thread_local char chunk[4096];
        (void)h;
        *buf = uv_buf_init(chunk, sizeof chunk);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* conn = static_cast<Conn*>(s->data);
        HttpEndpoint* o = conn->owner;
        if (n < 0) {
          close_conn(reinterpret_cast<uv_handle_t*>(s));
          return;
        }
        conn->in.append(buf->base, static_cast<size_t>(n));
        const bool whole = conn->in.find("\r\n\r\n") != std::string::npos;
        if (!whole && conn->in.size() <= kMaxRequest) return;
        (void)uv_read_stop(s);
        conn->out = whole
                        ? respond(conn->in, o->handlers_)
                        : response(431, "text/plain; charset=utf-8", "request too large\n", false);
        uv_buf_t b = uv_buf_init(conn->out.data(), static_cast<unsigned>(conn->out.size()));
        conn->write.data = conn;
        if (uv_write(&conn->write, s, &b, 1, [](uv_write_t* w, int /*status*/) {
              auto* cc = static_cast<Conn*>(w->data);
              close_conn(reinterpret_cast<uv_handle_t*>(&cc->tcp));
            }) != 0) {
          close_conn(reinterpret_cast<uv_handle_t*>(s));
        }
      });
}

}  // namespace sqlmux
