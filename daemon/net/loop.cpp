#include "daemon/net/loop.h"

#include "daemon/net/conn.h"

namespace sqlmux {

EventLoop::EventLoop() {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_idle_init(&loop_, &idle_);
  idle_.data = this;
}

bool EventLoop::run() {
  uv_check_start(&check_, &EventLoop::on_check);
  uv_run(&loop_, UV_RUN_DEFAULT);
  return uv_loop_close(&loop_) == 0;
}

void EventLoop::defer_error(Conn* c) {
  deferred_errors_.push_back(c);
  if (!closing_) uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void EventLoop::defer_close(Conn* c) {
  deferred_closes_.push_back(c);
  if (!closing_) uv_idle_start(&idle_, [](uv_idle_t*) {});
}

void EventLoop::on_check(uv_check_t* h) {
  static_cast<EventLoop*>(h->data)->run_deferred();
}

void EventLoop::run_deferred() {
  while (!deferred_errors_.empty() || !deferred_closes_.empty()) {
    std::vector<Conn*> errs;
    errs.swap(deferred_errors_);
    for (Conn* c : errs) c->report_io_error();
    std::vector<Conn*> closes;
    closes.swap(deferred_closes_);
    for (Conn* c : closes) c->report_closed_detached();
  }
  if (!closing_) uv_idle_stop(&idle_);
}

void EventLoop::close_handles() {
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
}

}  // namespace sqlmux
