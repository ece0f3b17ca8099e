// Logging to stderr: one line per event, "time level [thread] message", or
// one JSON object per line (log_format = "json"). When stderr is the
// journal (JOURNAL_STREAM), each line starts with its syslog priority
// ("<6>") and carries no time of its own: the journal stamps it.
//
// A client's lines name it the same way everywhere: its id, its address
// and, once logged in, its user, database and application name (ClientTag).
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"

namespace sqlmux::log {

void set_level(config::LogLevel level);
// Level, format, and the login / disconnect switches of [server].
void configure(const config::ServerConfig& s);
[[nodiscard]] bool enabled(config::LogLevel level);
// The level of a client's login and normal-end lines (log_connections,
// log_disconnections): info when switched on, else debug.
[[nodiscard]] config::LogLevel connections_level();
[[nodiscard]] config::LogLevel disconnections_level();
// Thread-local worker id shown in each line (-1 = main thread).
void set_thread_worker(int id);
// Reads JOURNAL_STREAM: whether stderr is the journal (called at startup).
void detect_journal();
void write(config::LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Who a client line is about.
struct ClientTag {
  const char* protocol = "postgres";  // "postgres" | "mysql"
  uint64_t id = 0;
  std::string address;  // "127.0.0.1:51234", "[::1]:51234" or "unix"
  std::string user;     // empty until the client has said
  std::string database;
  std::string application;  // application_name / MySQL program_name
  // The peer's address as "host:port" (getpeername), "unix" for a unix socket.
  [[nodiscard]] static std::string address_of(int fd);
};
void write_client(config::LogLevel level, const ClientTag& tag, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A multi-line message (libpq's) on one line: newlines and tabs become one
// space; trailing blanks go.
[[nodiscard]] std::string one_line(const char* text);
// `text` as the inside of a JSON string: quotes, backslashes and control
// characters escaped; bytes that are not UTF-8 become U+FFFD.
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace sqlmux::log

#define SQLMUX_LOG(level, ...)                                              \
  do {                                                                      \
    if (::sqlmux::log::enabled(::sqlmux::config::LogLevel::level))          \
      ::sqlmux::log::write(::sqlmux::config::LogLevel::level, __VA_ARGS__); \
  } while (0)
#define LOG_ERROR(...) SQLMUX_LOG(Error, __VA_ARGS__)
#define LOG_WARN(...) SQLMUX_LOG(Warn, __VA_ARGS__)
#define LOG_INFO(...) SQLMUX_LOG(Info, __VA_ARGS__)
#define LOG_DEBUG(...) SQLMUX_LOG(Debug, __VA_ARGS__)

// A line about a client (tag: a log::ClientTag).
#define SQLMUX_CLOG(level, tag, ...)                                                    \
  do {                                                                                  \
    if (::sqlmux::log::enabled(::sqlmux::config::LogLevel::level))                      \
      ::sqlmux::log::write_client(::sqlmux::config::LogLevel::level, tag, __VA_ARGS__); \
  } while (0)
#define CLOG_ERROR(tag, ...) SQLMUX_CLOG(Error, tag, __VA_ARGS__)
#define CLOG_WARN(tag, ...) SQLMUX_CLOG(Warn, tag, __VA_ARGS__)
#define CLOG_INFO(tag, ...) SQLMUX_CLOG(Info, tag, __VA_ARGS__)
#define CLOG_DEBUG(tag, ...) SQLMUX_CLOG(Debug, tag, __VA_ARGS__)
// At a level chosen at run time (connections_level(), ...).
#define CLOG_AT(lvl, tag, ...)                                                         \
  do {                                                                                 \
    const ::sqlmux::config::LogLevel l_ = (lvl);                                       \
    if (::sqlmux::log::enabled(l_)) ::sqlmux::log::write_client(l_, tag, __VA_ARGS__); \
  } while (0)
