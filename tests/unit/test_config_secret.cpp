// Tests for password_file / password_env (config/secret.cpp and the keys
// that hold a password in config/config.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.h"
#include "config/secret.h"

using namespace sqlmux::config;

namespace {

const std::string kListener = R"([[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
)";

// A temporary file with `text`, mode `mode`; removed at scope exit.
struct TempFile {
  std::string path;
  TempFile(const std::string& text, mode_t mode) {
    char tmpl[] = "/tmp/sqlmux-secret-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
    path = tmpl;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
  }
  ~TempFile() { std::filesystem::remove(path); }
};

LoadResult load(const std::string& text) {
  return load_string(text, "s.toml");
}

Config cfg(const std::string& text) {
  LoadResult r = load(text);
  std::string errors;
  for (const auto& e : r.errors) errors += e.to_string() + "\n";
  INFO(errors);
  REQUIRE(r.config.has_value());
  return *r.config;
}

std::string only_error(const std::string& text) {
  LoadResult r = load(text);
  std::string errors;
  for (const auto& e : r.errors) errors += e.to_string() + "\n";
  INFO(errors);
  REQUIRE(r.errors.size() == 1);
  return r.errors[0].to_string();
}

}  // namespace

TEST_CASE("secret file: trailing newline stripped, world-readable refused", "[config][secret]") {
  std::string out, err;
  {
    TempFile f("s3cret\n", 0600);
    REQUIRE(read_secret_file(f.path, out, err));
    CHECK(out == "s3cret");
  }
  {
    TempFile f("s3cret\r\n", 0640);
    REQUIRE(read_secret_file(f.path, out, err));
    CHECK(out == "s3cret");
  }
  {
    TempFile f("two\n\n", 0400);  // only one newline goes
    REQUIRE(read_secret_file(f.path, out, err));
    CHECK(out == "two\n");
  }
  {
    TempFile f("no newline\r", 0600);
    REQUIRE(read_secret_file(f.path, out, err));
    CHECK(out == "no newline\r");
  }
  {
    TempFile f("s3cret\n", 0644);
    out = "unchanged";
    CHECK_FALSE(read_secret_file(f.path, out, err));
    CHECK(err == "\"" + f.path +
                     "\" is readable by every user (mode 0644); a password file must "
                     "not be: chmod o-r");
    CHECK(out == "unchanged");
  }
  CHECK_FALSE(read_secret_file("/nonexistent/sqlmux-secret", out, err));
  CHECK(err == "cannot read \"/nonexistent/sqlmux-secret\": No such file or directory");
  CHECK_FALSE(read_secret_file("/tmp", out, err));
  CHECK(err == "\"/tmp\" is not a regular file");
}

TEST_CASE("secret env: set or refused", "[config][secret]") {
  std::string out, err;
  ::setenv("SQLMUX_TEST_SECRET", "from-env", 1);
  REQUIRE(read_secret_env("SQLMUX_TEST_SECRET", out, err));
  CHECK(out == "from-env");
  ::unsetenv("SQLMUX_TEST_SECRET_UNSET");
  CHECK_FALSE(read_secret_env("SQLMUX_TEST_SECRET_UNSET", out, err));
  CHECK(err == "environment variable SQLMUX_TEST_SECRET_UNSET is not set");
}

TEST_CASE("config: every password key takes password_file or password_env", "[config][secret]") {
  TempFile user_pw("userpass\n", 0600);
  TempFile health_pw("healthpass\n", 0600);
  ::setenv("SQLMUX_TEST_POOL_PW", "poolpass", 1);
  ::setenv("SQLMUX_TEST_MY_HEALTH_PW", "myhealth", 1);
  const Config c = cfg(kListener + R"(
[[user]]
name = "app"
password_file = ")" + user_pw.path +
                       R"("

[[pool]]
name = "appdb"
user = "app"
password_env = "SQLMUX_TEST_POOL_PW"
backends = [ { address = "127.0.0.1:5432" } ]

[health]
user = "probe"
password_file = ")" + health_pw.path +
                       R"("

[health.mysql]
user = "myprobe"
password_env = "SQLMUX_TEST_MY_HEALTH_PW"
)");
  REQUIRE(c.users.size() == 1);
  CHECK(c.users[0].password == "userpass");
  REQUIRE(c.pools.size() == 1);
  CHECK(c.pools[0].password == std::optional<std::string>("poolpass"));
  REQUIRE(c.health.has_value());
  CHECK(c.health->password == std::optional<std::string>("healthpass"));
  CHECK(c.health->per_protocol.at(Protocol::Mysql).password ==
        std::optional<std::string>("myhealth"));
}

TEST_CASE("config: password_file and password_env errors point at the key", "[config][secret]") {
  TempFile open_file("pw\n", 0644);
  ::unsetenv("SQLMUX_TEST_NOT_SET");
  CHECK(only_error(kListener + "[[user]]\nname = \"a\"\npassword_file = \"" + open_file.path +
                   "\"\n") == "s.toml:6:17: user[0].password_file: \"" + open_file.path +
                                  "\" is readable by every user (mode 0644); a password file "
                                  "must not be: chmod o-r");
  CHECK(only_error(kListener + "[[user]]\nname = \"a\"\npassword_file = \"/nonexistent/pw\"\n") ==
        "s.toml:6:17: user[0].password_file: cannot read \"/nonexistent/pw\": No such file or "
        "directory");
  CHECK(
      only_error(kListener + "[[user]]\nname = \"a\"\npassword_env = \"SQLMUX_TEST_NOT_SET\"\n") ==
      "s.toml:6:16: user[0].password_env: environment variable SQLMUX_TEST_NOT_SET is not set");
  CHECK(only_error(kListener +
                   "[[user]]\nname = \"a\"\npassword = \"x\"\npassword_env = \"HOME\"\n") ==
        "s.toml:7:16: user[0].password_env: set together with password; give only one of "
        "password, password_file, password_env");
  CHECK(only_error(kListener + "[[pool]]\nname = \"p\"\nuser = \"u\"\npassword_env = "
                               "\"SQLMUX_TEST_NOT_SET\"\nbackends = [ { address = \"h:1\" } ]\n") ==
        "s.toml:7:16: pool[0].password_env: environment variable SQLMUX_TEST_NOT_SET is not set");
  CHECK(only_error(kListener + "[health]\nuser = \"u\"\npassword_file = \"" + open_file.path +
                   "\"\npassword = \"x\"\n") ==
        "s.toml:6:17: health.password_file: set together with password; give only one of "
        "password, password_file, password_env");
  // None of the three: still the missing password.
  CHECK(only_error(kListener + "[[user]]\nname = \"a\"\n")
            .find("user[0].password: required key is missing") != std::string::npos);
}

TEST_CASE("config: server.peer_secret, peer_secret_file, peer_secret_env", "[config][secret]") {
  TempFile f("fleet-secret-from-file\n", 0600);
  ::setenv("SQLMUX_TEST_PEER_SECRET", "fleet-secret-from-env", 1);
  const std::string server = "[server]\npeer_id = 3\n";
  CHECK(cfg(server + "peer_secret = \"fleet-secret-in-place\"\n" + kListener).server.peer_secret ==
        "fleet-secret-in-place");
  CHECK(cfg(server + "peer_secret_file = \"" + f.path + "\"\n" + kListener).server.peer_secret ==
        "fleet-secret-from-file");
  CHECK(cfg(server + "peer_secret_env = \"SQLMUX_TEST_PEER_SECRET\"\n" + kListener)
            .server.peer_secret == "fleet-secret-from-env");
  CHECK(cfg(server + kListener).server.peer_secret.empty());  // default: KILLs not forwarded

  CHECK(only_error(server + "peer_secret = \"short\"\n" + kListener) ==
        "s.toml:3:15: server.peer_secret: expected at least 16 characters (the instances' shared "
        "key for forwarded KILLs)");
  CHECK(only_error("[server]\npeer_secret = \"fleet-secret-in-place\"\n" + kListener) ==
        "s.toml:2:15: server.peer_secret: needs server.peer_id: this instance's own id");
  const std::string both =
      only_error(server + "peer_secret = \"fleet-secret-in-place\"\n" +
                 "peer_secret_env = \"SQLMUX_TEST_PEER_SECRET\"\n" + kListener);
  CHECK(both.find("server.peer_secret_env: set together with peer_secret; give only one of "
                  "peer_secret, peer_secret_file, peer_secret_env") != std::string::npos);
  ::unsetenv("SQLMUX_TEST_PEER_SECRET_UNSET");
  CHECK(only_error(server + "peer_secret_env = \"SQLMUX_TEST_PEER_SECRET_UNSET\"\n" + kListener)
            .find("environment variable SQLMUX_TEST_PEER_SECRET_UNSET is not set") !=
        std::string::npos);
}
