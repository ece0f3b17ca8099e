#include "daemon/mysql/health_probe.h"

#include <mysql.h>
#include <poll.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "daemon/core/log.h"
#include "protocol/mysql/packet.h"

namespace sqlmux {

namespace {

constexpr std::string_view kQuery = "SELECT @@global.read_only";

// Each step is a Connector/C *_start or *_cont: it either finishes or
// returns the MYSQL_WAIT_* set to wait for (wait_), and the next poll(2)
// event continues it.
class MyHealthProbe final : public HealthProbe {
 public:
  MyHealthProbe(const HealthTarget& target, const config::HealthConfig& settings)
      : target_(target),
        connect_timeout_s_(
            static_cast<unsigned>(std::max<int64_t>(1, settings.timeout.count() / 1000))) {}
  ~MyHealthProbe() override;
  MyHealthProbe(const MyHealthProbe&) = delete;
  MyHealthProbe& operator=(const MyHealthProbe&) = delete;
  MyHealthProbe(MyHealthProbe&&) = delete;
  MyHealthProbe& operator=(MyHealthProbe&&) = delete;

  Step start() override;
  [[nodiscard]] int fd() const override { return mysql_get_socket(my_); }
  [[nodiscard]] short events() const override;
  Step advance(short revents) override;

 private:
  enum class Stage { Connect, Query, Store };
  Step continue_connect(int events);
  Step connected(const MYSQL* ret);
  Step continue_query(int events);
  Step queried(int err);
  Step continue_store(int events);
  Step result(MYSQL_RES* res);
  [[nodiscard]] Step failed() const {
    return Outcome{false, std::nullopt, log::one_line(mysql_error(my_))};
  }

  // Connector/C keeps pointers to these strings while it connects.
  const HealthTarget target_;
  const unsigned connect_timeout_s_;
  MYSQL* my_ = nullptr;
  Stage stage_ = Stage::Connect;
  int wait_ = 0;  // MYSQL_WAIT_* of the last *_start / *_cont
};

MyHealthProbe::~MyHealthProbe() {
  if (my_ != nullptr) {
    mysql_close(my_);
  }
}

short MyHealthProbe::events() const {
  short ev = 0;
  if ((wait_ & MYSQL_WAIT_READ) != 0) {
    ev |= POLLIN;
  }
  if ((wait_ & MYSQL_WAIT_WRITE) != 0) {
    ev |= POLLOUT;
  }
  return ev;
}

HealthProbe::Step MyHealthProbe::advance(short revents) {
  int ev = 0;
  if ((revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
    ev |= MYSQL_WAIT_READ;
  }
  if ((revents & POLLOUT) != 0) {
    ev |= MYSQL_WAIT_WRITE;
  }
  switch (stage_) {
    case Stage::Connect:
      return continue_connect(ev);
    case Stage::Query:
      return continue_query(ev);
    case Stage::Store:
      return continue_store(ev);
  }
  return std::nullopt;
}

HealthProbe::Step MyHealthProbe::start() {
  my_ = mysql_init(nullptr);
  if (my_ == nullptr) {
    return Outcome{false, std::nullopt, "out of memory"};
  }
  mysql_options(my_, MYSQL_OPT_NONBLOCK, nullptr);
  mysql_options(my_, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout_s_);
  const HealthTarget& t = target_;
  // The pool's server_tls (t.sslmode): Connector/C uses TLS when the server
  // offers it and, with a CA, checks the chain; verify-full also the host
  // name. Whether TLS is required is checked once connected.
  if (t.sslmode != "disable") {
    mysql_ssl_set(my_, nullptr, nullptr, t.sslrootcert.empty() ? nullptr : t.sslrootcert.c_str(),
                  nullptr, nullptr);
    if (t.sslmode == "verify-full") {
      const my_bool on = 1;
      mysql_options(my_, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    }
  }
  MYSQL* ret = nullptr;
  stage_ = Stage::Connect;
  wait_ = mysql_real_connect_start(&ret, my_, t.host.c_str(), t.user.c_str(),
                                   t.password ? t.password->c_str() : nullptr,
                                   t.database.empty() ? nullptr : t.database.c_str(),
                                   static_cast<unsigned>(std::stoul(t.port)), nullptr, 0);
  return wait_ != 0 ? std::nullopt : connected(ret);
}

HealthProbe::Step MyHealthProbe::continue_connect(int events) {
  MYSQL* ret = nullptr;
  wait_ = mysql_real_connect_cont(&ret, my_, events);
  return wait_ != 0 ? std::nullopt : connected(ret);
}

// The connect finished: on to the query.
HealthProbe::Step MyHealthProbe::connected(const MYSQL* ret) {
  if (ret == nullptr) {
    return failed();
  }
  const std::string& mode = target_.sslmode;
  if (mode != "disable" && mode != "prefer" && mysql_get_ssl_cipher(my_) == nullptr) {
    return Outcome{false, std::nullopt,
                   "server_tls = \"" + mode + "\" but the server does not offer TLS"};
  }
  int err = 0;
  stage_ = Stage::Query;
  wait_ = mysql_real_query_start(&err, my_, kQuery.data(), kQuery.size());
  return wait_ != 0 ? std::nullopt : queried(err);
}

HealthProbe::Step MyHealthProbe::continue_query(int events) {
  int err = 0;
  wait_ = mysql_real_query_cont(&err, my_, events);
  return wait_ != 0 ? std::nullopt : queried(err);
}

// The query finished: on to its result.
HealthProbe::Step MyHealthProbe::queried(int err) {
  if (err != 0) {
    return failed();
  }
  stage_ = Stage::Store;
  MYSQL_RES* res = nullptr;
  wait_ = mysql_store_result_start(&res, my_);
  return wait_ != 0 ? std::nullopt : result(res);
}

HealthProbe::Step MyHealthProbe::continue_store(int events) {
  MYSQL_RES* res = nullptr;
  wait_ = mysql_store_result_cont(&res, my_, events);
  return wait_ != 0 ? std::nullopt : result(res);
}

// The value of @@global.read_only: up, and primary or replica.
HealthProbe::Step MyHealthProbe::result(MYSQL_RES* res) {
  if (res == nullptr) {
    return failed();
  }
  MYSQL_ROW row = mysql_fetch_row(res);
  std::optional<pool::Role> role;
  if (row != nullptr && row[0] != nullptr) {
    const std::string_view v(row[0]);
    role = v == "1" || v == "ON" ? pool::Role::Replica : pool::Role::Primary;
  }
  mysql_free_result(res);
  return Outcome{role.has_value(), role, role ? std::string() : "no result"};
}

std::unique_ptr<HealthProbe> make_probe(const HealthTarget& target,
                                        const config::HealthConfig& settings) {
  return std::make_unique<MyHealthProbe>(target, settings);
}

}  // namespace

HealthProbeKind mysql_health_probe_kind() {
  return {my::kDefaultPort, &make_probe};
}

}  // namespace sqlmux
