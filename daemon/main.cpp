// sqlmux: a connection-pooling proxy for PostgreSQL (and, later, MySQL).
#include <cstdio>
#include <cstring>
#include <string>

#include "config/config.h"
#include "daemon/server.h"
#include "version.h"

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: sqlmux --config FILE        run in the foreground, logging to stderr\n"
      "       sqlmux --check-config FILE  validate FILE; exit 0 when valid, 1 otherwise\n"
      "       sqlmux --version\n"
      "       sqlmux --help\n",
      out);
}

int print_errors(const sqlmux::config::LoadResult& r) {
  for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  return 1;
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
  if (argc == 3 && std::strcmp(argv[1], "--check-config") == 0) {
    auto r = sqlmux::config::load_file(argv[2]);
    if (!r.errors.empty()) return print_errors(r);
    std::printf("%s: configuration is valid\n", argv[2]);
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "--config") == 0) {
    auto r = sqlmux::config::load_file(argv[2]);
    if (!r.errors.empty()) return print_errors(r);
    sqlmux::Server server(std::move(*r.config));
    return server.run();
  }
  usage(stderr);
  return 2;
}
