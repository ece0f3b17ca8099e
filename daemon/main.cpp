// sqlmux: a connection-pooling proxy for PostgreSQL and MySQL/MariaDB.
#include <unistd.h>
#include <cstdio>

#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "daemon/server.h"
#include "version.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: sqlmux --config FILE        run in the foreground, logging to stderr\n"
      "                                   (also --config=FILE, -c FILE)\n"
      "       sqlmux --upgrade --config FILE\n"
      "                                   take over from the sqlmux serving on FILE's\n"
      "                                   [server] upgrade_socket: its listening sockets,\n"
      "                                   then it serves its clients until they leave\n"
      "                                   (also --upgrade --config=FILE, -u -c FILE)\n"
      "       sqlmux --check-config FILE  validate FILE; exit 0 when valid, 1 otherwise\n"
      "                                   (also --check-config=FILE, -t FILE)\n"
      "       sqlmux --version\n"
      "       sqlmux --help\n",
      out);
}

int print_errors(const sqlmux::config::LoadResult& r) {
  for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  return 1;
}

// The option and its FILE: "--config FILE", "--config=FILE", "-c FILE"
// (and the same for --check-config / -t). Empty when argv is not that.
std::optional<std::string> file_option(int argc, char** argv, std::string_view long_name,
                                       std::string_view short_name) {
  if (argc == 3 && (argv[1] == long_name || argv[1] == short_name)) return std::string(argv[2]);
  if (argc == 2) {
    const std::string_view a = argv[1];
    if (a.size() > long_name.size() + 1 && a.substr(0, long_name.size()) == long_name &&
        a[long_name.size()] == '=') {
      return std::string(a.substr(long_name.size() + 1));
    }
  }
  return std::nullopt;
}

// The path this binary was started from (what SIGUSR2 starts for an
// online upgrade: after a package upgrade, the new binary there).
std::string exe_path() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string p(buf, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (p.size() > kDeleted.size() && p.substr(p.size() - kDeleted.size()) == kDeleted) {
    p.resize(p.size() - kDeleted.size());
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  if (argc == 2 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "-V") == 0)) {
    std::printf("sqlmux %s\n", SQLMUX_VERSION);
    return 0;
  }
  if (const auto file = file_option(argc, argv, "--check-config", "-t")) {
    auto r = sqlmux::config::load_file(*file);
    if (!r.errors.empty()) return print_errors(r);
    std::printf("%s: configuration is valid\n", file->c_str());
    return 0;
  }
  // "--upgrade" (or "-u") before the --config option.
  const bool upgrade =
      argc >= 2 && (std::strcmp(argv[1], "--upgrade") == 0 || std::strcmp(argv[1], "-u") == 0);
  if (const auto file = upgrade ? file_option(argc - 1, argv + 1, "--config", "-c")
                                : file_option(argc, argv, "--config", "-c")) {
    auto r = sqlmux::config::load_file(*file);
    if (!r.errors.empty()) return print_errors(r);
    sqlmux::Server server(std::move(*r.config));
    server.set_exe_path(exe_path());
    if (upgrade) server.set_upgrade_mode();
    return server.run();
  }
  usage(stderr);
  return 2;
}
