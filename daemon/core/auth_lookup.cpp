#include "daemon/core/auth_lookup.h"

#include <utility>

#include "daemon/core/log.h"

namespace sqlmux {

AuthLookup::AuthLookup(uv_loop_t* loop, Done done) : loop_(loop), done_(std::move(done)) {}

AuthLookup::~AuthLookup() {
  close_poll();  // the protocol's destructor closed the connection (and the poll) already
}

const config::Address& AuthLookup::lookup_address(const config::PoolConfig& pc) {
  for (const auto& b : pc.backends) {
    if (b.role == "primary") {
      return b.address;
    }
  }
  return pc.backends.front().address;
}

bool AuthLookup::poll_socket(int fd, int events) {
  int polled = -1;
  if (poll_ != nullptr) {
    (void)uv_fileno(reinterpret_cast<uv_handle_t*>(poll_), &polled);
  }
  if (poll_ == nullptr || polled != fd) {
    // The client library may open another socket while connecting.
    close_poll();
    poll_ = new uv_poll_t;
    if (fd < 0 || uv_poll_init(loop_, poll_, fd) != 0) {
      delete poll_;
      poll_ = nullptr;
      fail("cannot poll the auth_query connection's socket");
      return false;
    }
    poll_->data = this;
  }
  (void)uv_poll_start(poll_, events, [](uv_poll_t* h, int status, int ev) {
    static_cast<AuthLookup*>(h->data)->on_poll(status, ev);
  });
  return true;
}

void AuthLookup::close_poll() {
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
}

void AuthLookup::fail(const std::string& why) {
  Result r;
  r.error = log::one_line(why.c_str());
  finish(std::move(r));
}

void AuthLookup::finish(Result r) {
  close();
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) {
    done(std::move(r));  // may destroy this: nothing after
  }
}

}  // namespace sqlmux
