#include "daemon/mysql/auth_query.h"

#include <mysql.h>

#include <utility>

#include "protocol/mysql/packet.h"

namespace sqlmux {

std::optional<std::string> my_bind_user(std::string_view query, std::string_view quoted_user) {
  char quote = 0;
  for (size_t i = 0; i < query.size(); ++i) {
    const char c = query[i];
    if (quote != 0) {
      if (c == '\\' && quote != '`') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '\'' || c == '"' || c == '`') {
      quote = c;
    } else if (c == '?') {
      std::string out(query.substr(0, i));
      out += quoted_user;
      out += query.substr(i + 1);
      return out;
    }
  }
  return std::nullopt;
}

MyAuthQuery::MyAuthQuery(uv_loop_t* loop, const config::PoolConfig& pc, std::string user, Done done)
    : AuthLookup(loop, std::move(done)),
      host_(lookup_address(pc).host),
      auth_user_(pc.auth_user.value_or("")),
      query_(pc.auth_query),
      user_(std::move(user)),
      port_(lookup_address(pc).port == 0 ? my::kDefaultPort : lookup_address(pc).port),
      auth_password_(pc.auth_password) {}

MyAuthQuery::~MyAuthQuery() {
  close();
}

void MyAuthQuery::start() {
  my_ = mysql_init(nullptr);
  if (my_ == nullptr) {
    fail("out of memory");
    return;
  }
  mysql_options(my_, MYSQL_OPT_NONBLOCK, nullptr);
  const unsigned timeout_s = 10;
  mysql_options(my_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
  MYSQL* ret = nullptr;
  stage_ = Stage::Connect;
  const int wait = mysql_real_connect_start(
      &ret, my_, host_.c_str(), auth_user_.c_str(),
      auth_password_ ? auth_password_->c_str() : nullptr,
      nullptr /* no database: auth_user needs no grant on the pool's */, port_, nullptr, 0);
  if (wait != 0) {
    step(wait);
  } else {
    connected(ret);
  }
}

void MyAuthQuery::step(int wait) {
  int events = 0;
  if ((wait & MYSQL_WAIT_READ) != 0) events |= UV_READABLE;
  if ((wait & MYSQL_WAIT_WRITE) != 0) events |= UV_WRITABLE;
  if (events == 0) events = UV_READABLE;  // MYSQL_WAIT_TIMEOUT alone: the socket closes
  (void)poll_socket(mysql_get_socket(my_), events);
}

void MyAuthQuery::on_poll(int status, int events) {
  // An error on the socket is for Connector/C to read.
  on_io(status < 0 ? UV_READABLE | UV_WRITABLE : events);
}

void MyAuthQuery::on_io(int uv_events) {
  int ev = 0;
  if ((uv_events & (UV_READABLE | UV_DISCONNECT)) != 0) ev |= MYSQL_WAIT_READ;
  if ((uv_events & UV_WRITABLE) != 0) ev |= MYSQL_WAIT_WRITE;
  switch (stage_) {
    case Stage::Connect: {
      MYSQL* ret = nullptr;
      const int wait = mysql_real_connect_cont(&ret, my_, ev);
      if (wait != 0) {
        step(wait);
      } else {
        connected(ret);
      }
      return;
    }
    case Stage::Query: {
      int err = 0;
      const int wait = mysql_real_query_cont(&err, my_, ev);
      if (wait != 0) {
        step(wait);
      } else {
        queried(err);
      }
      return;
    }
    case Stage::Store: {
      MYSQL_RES* res = nullptr;
      const int wait = mysql_store_result_cont(&res, my_, ev);
      if (wait != 0) {
        step(wait);
      } else {
        stored(res);
      }
      return;
    }
  }
}

void MyAuthQuery::connected(const MYSQL* ret) {
  if (ret == nullptr) {
    fail(mysql_error(my_));
    return;
  }
  std::string quoted(user_.size() * 2 + 3, '\0');
  quoted[0] = '\'';
  const unsigned long n = mysql_real_escape_string(my_, quoted.data() + 1, user_.data(),
                                                   static_cast<unsigned long>(user_.size()));
  quoted.resize(n + 1);
  quoted += '\'';
  auto sql = my_bind_user(query_, quoted);
  if (!sql) {
    fail("auth_query has no ? for the user name");
    return;
  }
  sql_ = std::move(*sql);
  stage_ = Stage::Query;
  int err = 0;
  const int wait = mysql_real_query_start(&err, my_, sql_.data(), sql_.size());
  if (wait != 0) {
    step(wait);
  } else {
    queried(err);
  }
}

void MyAuthQuery::queried(int err) {
  if (err != 0) {
    fail(mysql_error(my_));
    return;
  }
  stage_ = Stage::Store;
  MYSQL_RES* res = nullptr;
  const int wait = mysql_store_result_start(&res, my_);
  if (wait != 0) {
    step(wait);
  } else {
    stored(res);
  }
}

// The secret is the first row's last column (so both `SELECT hash` and
// `SELECT user, hash` serve); no row or NULL: no such user.
void MyAuthQuery::stored(MYSQL_RES* res) {
  if (res == nullptr) {
    fail(mysql_field_count(my_) == 0 ? "auth_query returned no result set" : mysql_error(my_));
    return;
  }
  Result out;
  out.ok = true;
  const unsigned cols = mysql_num_fields(res);
  if (MYSQL_ROW row = mysql_fetch_row(res);
      row != nullptr && cols > 0 && row[cols - 1] != nullptr) {
    const unsigned long* lens = mysql_fetch_lengths(res);
    out.secret = std::string(row[cols - 1], lens != nullptr ? lens[cols - 1] : 0);
  }
  mysql_free_result(res);
  finish(std::move(out));
}

void MyAuthQuery::close() {
  close_poll();
  if (my_ != nullptr) {
    // Sends COM_QUIT (a few bytes to an idle socket) when connected; a
    // lookup abandoned mid-way has its socket just closed.
    mysql_close(my_);
    my_ = nullptr;
  }
}

}  // namespace sqlmux
