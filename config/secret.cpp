#include "config/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sqlmux::config {
namespace {

constexpr size_t kMaxSecretFile = 64 * 1024;

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

}  // namespace

bool read_secret_file(const std::string& file, std::string& out, std::string& err) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    err = "cannot read \"" + file + "\": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  bool ok = false;
  if (::fstat(fd, &st) != 0) {
    err = "cannot read \"" + file + "\": " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    err = "\"" + file + "\" is not a regular file";
  } else if ((st.st_mode & S_IROTH) != 0) {
    err = "\"" + file + "\" is readable by every user (mode " + octal_mode(st.st_mode) +
          "); a password file must not be: chmod o-r";
  } else if (static_cast<size_t>(st.st_size) > kMaxSecretFile) {
    err = "\"" + file + "\" is larger than 64 KiB";
  } else {
    std::string text;
    char buf[4096];
    ok = true;
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err = "cannot read \"" + file + "\": " + std::strerror(errno);
        ok = false;
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxSecretFile) {
        err = "\"" + file + "\" is larger than 64 KiB";
        ok = false;
        break;
      }
    }
    if (ok) {
      if (!text.empty() && text.back() == '\n') {
        text.pop_back();
        if (!text.empty() && text.back() == '\r') text.pop_back();
      }
      out = std::move(text);
    }
  }
  ::close(fd);
  return ok;
}

bool read_secret_env(const std::string& var, std::string& out, std::string& err) {
  const char* v = var.empty() ? nullptr : std::getenv(var.c_str());
  if (v == nullptr) {
    err = "environment variable " + var + " is not set";
    return false;
  }
  out = v;
  return true;
}

}  // namespace sqlmux::config
