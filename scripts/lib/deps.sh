# shellcheck shell=bash
# Build and test dependencies of sqlmux (Debian 12 package names), shared by
# scripts/test and scripts/demo. Source it, then call sqlmux_install_deps.
#
# Packages that are already installed are left alone; apt-get update and
# apt-get install run only when something is missing, and only as root (or
# through passwordless sudo). Otherwise the missing packages are listed and
# the caller goes on (the build or the tests will say what is lacking).

SQLMUX_DEPS=(
  # build
  build-essential cmake pkg-config
  libuv1-dev libpq-dev libmariadb-dev libtomlplusplus-dev prometheus-cpp-dev
  catch2 libssl-dev libsystemd-dev
  # integration tests: servers and clients
  postgresql postgresql-contrib pgbouncer
  # PgBouncer tooling against the admin console (test_pgbouncer_exporter.py)
  prometheus-pgbouncer-exporter
  # MySQL side (tests/integration/test_mysql.py, bench/mysql, scripts/demo):
  # MariaDB server and CLI, the Python clients; the C test client links
  # libmariadb (libmariadb-dev, above)
  mariadb-server mariadb-client
  python3-pymysql python3-aiomysql python3-mysqldb
  # PyMySQL's RSA for caching_sha2_password (test_mysql_passthrough.py)
  python3-cryptography
  # systemd tests: systemd-socket-activate, systemd-analyze (not in a minimal container)
  systemd
  # benchmarks (bench/run; its smoke mode runs with the tests)
  sysbench
  python3-asyncpg python3-psycopg python3-psycopg2 python3-aiopg python3-sqlalchemy
  # aiopg imports async_timeout, but Debian's python3-aiopg does not depend on it
  python3-async-timeout
  # the Kubernetes example is parsed by a test; promtool checks the alert rules
  prometheus
  # the relay in front of two instances (tests/integration/test_peers.py) and
  # the relay floor in benchmarks
  haproxy
  python3-yaml
  # style
  clang-format clang-tidy
  # fuzz targets (libFuzzer)
  clang libclang-rt-14-dev
)

# Prints the packages of SQLMUX_DEPS (or of the arguments) not installed.
sqlmux_missing_deps() {
  local p
  for p in "${@:-${SQLMUX_DEPS[@]}}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
      echo "$p"
    fi
  done
}

sqlmux_install_deps() {
  local missing=()
  local sudo=()
  mapfile -t missing < <(sqlmux_missing_deps "$@")
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      echo "warning: missing packages (run as root to install them): ${missing[*]}" >&2
      return 0
    fi
  fi
  echo "installing missing packages: ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
