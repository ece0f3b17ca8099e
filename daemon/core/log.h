// Logging to stderr: one line per event, "time level [worker] message".
#pragma once

#include <atomic>
#include <cstdarg>
#include <string>

#include "config/config.h"

namespace sqlmux::log {

void set_level(config::LogLevel level);
[[nodiscard]] bool enabled(config::LogLevel level);
// Thread-local worker id shown in each line (-1 = main thread).
void set_thread_worker(int id);
void write(config::LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// A multi-line message (libpq's) on one line: newlines and tabs become one
// space; trailing blanks go.
[[nodiscard]] std::string one_line(const char* text);

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
