// One thread's libuv loop and its deferred work: a connection's socket
// failure or close is reported from here, after the current I/O
// callbacks, never re-entrantly. The worker (core/worker.h) is one.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

namespace sqlmux {

class Conn;

class EventLoop {
 public:
  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  virtual ~EventLoop() = default;

  [[nodiscard]] uv_loop_t* loop() { return &loop_; }
  [[nodiscard]] uint64_t now_ms() { return uv_now(&loop_); }
  // The EventLoop whose uv loop this is.
  [[nodiscard]] static EventLoop* of(uv_loop_t* l) { return static_cast<EventLoop*>(l->data); }

  // Deferred work, run after the current I/O callbacks.
  void defer_error(Conn* c);
  void defer_close(Conn* c);
  void run_deferred();

 protected:
  // Runs the loop until every handle is closed, then closes it (false
  // when handles were still open).
  [[nodiscard]] bool run();
  // Stops deferring through the idle handle and closes the loop's own
  // handles (the loop ends once the owner closed the rest).
  void close_handles();

 private:
  static void on_check(uv_check_t* h);

  uv_loop_t loop_{};
  uv_check_t check_{};
  uv_idle_t idle_{};  // active while deferred work waits: the loop does not block
  bool closing_ = false;
  std::vector<Conn*> deferred_errors_;
  std::vector<Conn*> deferred_closes_;
};

}  // namespace sqlmux
