#include "daemon/core/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

namespace sqlmux::log {

namespace {
std::atomic<int> g_level{static_cast<int>(config::LogLevel::Info)};
thread_local int t_worker = -1;
}  // namespace

void set_level(config::LogLevel level) {
  g_level.store(static_cast<int>(level));
}

bool enabled(config::LogLevel level) {
  return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

void set_thread_worker(int id) {
  t_worker = id;
}

void write(config::LogLevel level, const char* fmt, ...) {
  char line[2048];
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm tmv{};
  gmtime_r(&tv.tv_sec, &tmv);
  int n =
      snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d.%03dZ %-5s ", tmv.tm_year + 1900,
               tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
               static_cast<int>(tv.tv_usec / 1000), std::string(config::to_string(level)).c_str());
  if (t_worker >= 0)
    n += snprintf(line + n, sizeof line - n, "[w%d] ", t_worker);
  else
    n += snprintf(line + n, sizeof line - n, "[main] ");
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  // One write(2) per line keeps lines from different threads whole.
  ssize_t w = ::write(STDERR_FILENO, line, len);
  (void)w;
}

std::string one_line(const char* text) {
  std::string out;
  for (const char* p = text != nullptr ? text : ""; *p != '\0'; ++p) {
    if (*p == '\n' || *p == '\t' || *p == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += *p;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace sqlmux::log
