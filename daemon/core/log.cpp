#include "daemon/core/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace sqlmux::log {

namespace {
std::atomic<int> g_level{static_cast<int>(config::LogLevel::Info)};
std::atomic<int> g_format{static_cast<int>(config::LogFormat::Text)};
std::atomic<bool> g_connections{true};
std::atomic<bool> g_disconnections{true};
std::atomic<bool> g_journal{false};
thread_local int t_worker = -1;

// A line longer than this is cut: one write(2) of at most PIPE_BUF bytes
// keeps lines from different threads whole on a pipe.
constexpr size_t kMaxLine = 4000;
constexpr size_t kMaxMessage = 2048;

// syslog priorities, as sd-daemon.h's SD_ERR ... SD_DEBUG.
char priority(config::LogLevel l) {
  switch (l) {
    case config::LogLevel::Error:
      return '3';
    case config::LogLevel::Warn:
      return '4';
    case config::LogLevel::Info:
      return '6';
    case config::LogLevel::Debug:
      return '7';
  }
  return '6';
}

// Text lines: a control character from a peer (a user name with a newline)
// must not start a line of its own.
void append_printable(std::string& out, std::string_view text) {
  for (char c : text) out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
}

void append_time(std::string& out) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm tmv{};
  gmtime_r(&tv.tv_sec, &tmv);
  char ts[40];
  int n = snprintf(ts, sizeof ts, "%04d-%02d-%02d %02d:%02d:%02d.%03dZ", tmv.tm_year + 1900,
                   tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
                   static_cast<int>(tv.tv_usec / 1000));
  out.append(ts, n > 0 ? static_cast<size_t>(n) : 0);
}

void append_thread(std::string& out) {
  if (t_worker >= 0) {
    out += 'w';
    out += std::to_string(t_worker);
  } else {
    out += "main";
  }
}

void json_field(std::string& out, const char* key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":\"";
  append_json_escaped(out, value);
  out += '"';
}

void emit(config::LogLevel level, const ClientTag* tag, const char* fmt, va_list ap) {
  char msg[kMaxMessage];
  int m = vsnprintf(msg, sizeof msg, fmt, ap);
  const size_t mlen = m < 0 ? 0 : std::min(static_cast<size_t>(m), sizeof msg - 1);
  const std::string_view message(msg, mlen);
  const bool journal = g_journal.load(std::memory_order_relaxed);
  std::string line;
  line.reserve(mlen + 200);
  if (journal) {
    line += '<';
    line += priority(level);
    line += '>';
  }
  if (g_format.load(std::memory_order_relaxed) == static_cast<int>(config::LogFormat::Json)) {
    line += '{';
    if (!journal) {
      line += "\"time\":\"";
      append_time(line);
      line += "\",";
    }
    line += "\"level\":\"";
    line += config::to_string(level);
    line += "\",\"thread\":\"";
    append_thread(line);
    line += '"';
    if (tag != nullptr) {
      line += ",\"client\":";
      line += std::to_string(tag->id);
      json_field(line, "protocol", tag->protocol);
      json_field(line, "address", tag->address);
      if (!tag->user.empty()) json_field(line, "user", tag->user);
      if (!tag->database.empty()) json_field(line, "database", tag->database);
      if (!tag->application.empty()) json_field(line, "application", tag->application);
    }
    json_field(line, "message", message);
    line += '}';
  } else {
    if (!journal) {
      append_time(line);
      line += ' ';
    }
    const std::string_view lv = config::to_string(level);
    line += lv;
    line.append(lv.size() < 5 ? 5 - lv.size() + 1 : 1, ' ');
    line += '[';
    append_thread(line);
    line += "] ";
    if (tag != nullptr) {
      if (std::string_view(tag->protocol) == "mysql") line += "mysql ";
      line += "client ";
      line += std::to_string(tag->id);
      line += " (";
      append_printable(line, tag->address);
      if (!tag->user.empty()) {
        line += " user=";
        append_printable(line, tag->user);
      }
      if (!tag->database.empty()) {
        line += " db=";
        append_printable(line, tag->database);
      }
      if (!tag->application.empty()) {
        line += " app=\"";
        append_printable(line, tag->application);
        line += '"';
      }
      line += "): ";
    }
    append_printable(line, message);
  }
  if (line.size() > kMaxLine - 1) line.resize(kMaxLine - 1);
  line += '\n';
  ssize_t w = ::write(STDERR_FILENO, line.data(), line.size());
  (void)w;
}
}  // namespace

void set_level(config::LogLevel level) {
  g_level.store(static_cast<int>(level));
}

void configure(const config::ServerConfig& s) {
  g_level.store(static_cast<int>(s.log_level));
  g_format.store(static_cast<int>(s.log_format));
  g_connections.store(s.log_connections);
  g_disconnections.store(s.log_disconnections);
}

bool enabled(config::LogLevel level) {
  return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

config::LogLevel connections_level() {
  return g_connections.load(std::memory_order_relaxed) ? config::LogLevel::Info
                                                       : config::LogLevel::Debug;
}

config::LogLevel disconnections_level() {
  return g_disconnections.load(std::memory_order_relaxed) ? config::LogLevel::Info
                                                          : config::LogLevel::Debug;
}

void set_thread_worker(int id) {
  t_worker = id;
}

void detect_journal() {
  // systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected
  // stdout and stderr to; it only counts while stderr is still that stream.
  const char* env = getenv("JOURNAL_STREAM");
  bool journal = false;
  if (env != nullptr) {
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    struct stat st {};
    if (sscanf(env, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0) {
      journal = static_cast<unsigned long long>(st.st_dev) == dev &&
                static_cast<unsigned long long>(st.st_ino) == ino;
    }
  }
  g_journal.store(journal);
}

void write(config::LogLevel level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, nullptr, fmt, ap);
  va_end(ap);
}

void write_client(config::LogLevel level, const ClientTag& tag, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, &tag, fmt, ap);
  va_end(ap);
}

std::string ClientTag::address_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  char host[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    std::string out = "[";
    out.append(host).append("]:").append(std::to_string(ntohs(a->sin6_port)));
    return out;
  }
  return "unix";
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

void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c < 0x20 || c == 0x7f) {
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlong forms, no surrogates, at
    // most U+10FFFF) is copied; anything else is one U+FFFD per byte.
    size_t len = 0;
    uint32_t min = 0;
    uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xc0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    ok = ok && cp >= min && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    if (ok) {
      out.append(reinterpret_cast<const char*>(p + i), len);
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
}

}  // namespace sqlmux::log
