// The operator's HTTP endpoint ([metrics] listen): GET and HEAD of
// /metrics (the Prometheus text format), /healthz (the process answers)
// and /readyz (it takes clients: 200, or 503 with the reason). One thread
// of its own with a libuv loop; each request is answered and its
// connection closed (HTTP/1.0 and 1.1 clients, Prometheus, kubelet probes,
// curl). Requests are read up to kMaxRequest bytes and kRequestTimeoutMs.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "config/config.h"

namespace sqlmux {

class HttpEndpoint {
 public:
  struct Handlers {
    std::function<std::string()> metrics;                 // the /metrics body
    std::function<std::pair<bool, std::string>()> ready;  // ready? else why not
  };

  HttpEndpoint() = default;
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;
  HttpEndpoint(HttpEndpoint&&) = delete;
  HttpEndpoint& operator=(HttpEndpoint&&) = delete;
  ~HttpEndpoint();

  // Binds `addr` (an IP address and port) and starts serving; false with
  // `error` when it cannot. With `inherited_fd` (a listening TCP socket
  // handed over by the process an online upgrade replaces), serves that
  // socket instead of binding.
  [[nodiscard]] bool start(const config::Address& addr, Handlers handlers, std::string& error,
                           int inherited_fd = -1);
  // The listening socket (to hand over in an online upgrade); -1 before start.
  [[nodiscard]] int listen_fd() const { return listen_fd_; }
  // Thread-safe: stops accepting and closes this process's copy of the
  // listening socket (the upgrade handed it over); connections already
  // accepted are still answered. Returns once the socket is closed (its
  // descriptor number may be reused by then), or after a second.
  void stop_listening();
  // Closes the socket and every connection; joins the thread.
  void stop();

  static constexpr size_t kMaxRequest = 8192;
  static constexpr uint64_t kRequestTimeoutMs = 10000;

  // The response to one request's head (pure, for tests): status line,
  // headers and, except for HEAD, the body.
  [[nodiscard]] static std::string respond(std::string_view request, const Handlers& h);

 private:
  struct Conn;
  static void on_connection(uv_stream_t* server, int status);
  static void on_stop(uv_async_t* a);
  static void on_unlisten(uv_async_t* a);
  static void on_sweep(uv_timer_t* t);
  // Closes a connection; it is unlinked and freed in its close callback.
  static void close_conn(uv_handle_t* h);

  Handlers handlers_;
  uv_loop_t loop_{};
  uv_tcp_t server_{};
  uv_async_t stop_{};
  uv_async_t unlisten_{};
  std::mutex unlisten_mu_;
  std::condition_variable unlisten_cv_;
  bool unlistened_ = false;  // under unlisten_mu_
  int listen_fd_ = -1;
  uv_timer_t sweep_{};
  std::thread thread_;
  bool running_ = false;
  Conn* conns_ = nullptr;  // open connections (a list, for the sweep and stop)
};

}  // namespace sqlmux
