"""Shared helpers for sqlmux integration tests.

Every test script does roughly:

    from harness import *

    def case_simple(pg):
        with Sqlmux(pg, mode="transaction", size=10) as mux:
            conn = psycopg2.connect(mux.dsn())
            ...

    if __name__ == "__main__":
        run_cases(__file__, [case_simple, ...])

Environment:
    SQLMUX_BIN          path of the daemon (default: <repo>/build/sqlmux)
    SQLMUX_TEST_DIRECT  "1": the "sqlmux" address is PostgreSQL itself, so the
                        client side of the tests can be validated without the
                        daemon; sqlmux-only cases are skipped.
    SQLMUX_MY_DIRECT    "1": the same for the MySQL side only (see
                        mysql_harness.py: MariaDbServer, Sqlmux(my=...))
    LIBPQ_CLIENT        path of the libpq_client test program
    PG_BINDIR           PostgreSQL server binaries (default: newest
                        /usr/lib/postgresql/*/bin)
    SQLMUX_TEST_KEEP    "1": keep temp dirs of failed runs (for debugging)
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import glob
import hashlib
import hmac
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

__all__ = [
    "DIRECT", "REPO", "SQLMUX_BIN", "LIBPQ_CLIENT", "PG_BINDIR",
    "TestFailure", "Skip", "check", "check_eq", "fail", "require_sqlmux", "log",
    "PgServer", "MariaDbServer", "Sqlmux", "check_config", "default_config", "to_toml",
    "RawPg", "PgError", "ConnectionClosed", "parse_startup_reply", "ssl_request", "send_cancel",
    "scram_verifier", "md5_hash", "free_port", "wait_port",
    "expect_error", "run_cases", "timed", "CommitLedger", "scrape_metrics",
]

# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DIRECT = os.environ.get("SQLMUX_TEST_DIRECT", "") == "1"
SQLMUX_BIN = os.environ.get("SQLMUX_BIN") or os.path.join(REPO, "build", "sqlmux")
LIBPQ_CLIENT = os.environ.get("LIBPQ_CLIENT") or ""
KEEP = os.environ.get("SQLMUX_TEST_KEEP", "") == "1"
IS_ROOT = os.geteuid() == 0
# Temp dirs and the daemon's process name avoid the word "sqlmux", so that a
# broad `pkill sqlmux` / `pkill -f sqlmux` by someone else on a shared
# machine does not stop the daemon under test mid-test.
TMP_PREFIX = "smx-it-"


def _find_pg_bindir() -> str:
    env = os.environ.get("PG_BINDIR")
    if env:
        return env
    cands = glob.glob("/usr/lib/postgresql/*/bin")

    def ver(p):
        try:
            return int(p.split("/")[-2])
        except ValueError:
            return 0

    cands.sort(key=ver)
    if cands:
        return cands[-1]
    pgc = shutil.which("pg_config")
    if pgc:
        return subprocess.run([pgc, "--bindir"], capture_output=True, text=True).stdout.strip()
    return "/usr/bin"


PG_BINDIR = _find_pg_bindir()


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ---------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    pass


def fail(msg: str):
    raise TestFailure(msg)


def check(cond, msg: str):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what: str):
    if got != want:
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


def require_sqlmux(what: str = ""):
    """Skip the current case in direct mode."""
    if DIRECT:
        raise Skip(f"only meaningful against sqlmux{': ' + what if what else ''}")


@contextlib.contextmanager
def timed(what: str, limit: float | None = None):
    t0 = time.monotonic()
    box = {}
    yield box
    box["elapsed"] = el = time.monotonic() - t0
    if limit is not None and el > limit:
        fail(f"{what} took {el:.2f}s (limit {limit}s)")


# ---------------------------------------------------------------------------
# Cleanup registry: every server we start is stopped at exit, on signals and
# by the watchdog, even when the test body is stuck.
# ---------------------------------------------------------------------------

_live: list = []  # objects with .close()
_live_lock = threading.RLock()


def _register(obj):
    with _live_lock:
        _live.append(obj)


def _unregister(obj):
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


def _cleanup_all():
    with _live_lock:
        objs = list(reversed(_live))
    for o in objs:  # newest first: sqlmux before the PostgreSQL it uses
        try:
            o.close()
        except BaseException as e:  # noqa: BLE001
            print(f"cleanup of {o!r} failed: {e}", file=sys.stderr)


atexit.register(_cleanup_all)


def _signal_exit(signum, frame):
    # Unwind the main thread through the context managers.
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_sig, _signal_exit)
    except (ValueError, OSError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _reap_stale():
    """Stops servers left behind by earlier harness runs that were SIGKILLed
    (e.g. by a ctest timeout): only those whose recorded owner is dead."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), TMP_PREFIX + "*")):
        owner = os.path.join(d, "owner.pid")
        try:
            with open(owner) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            continue
        # sqlmux processes we started: recorded pid + our config path in cmdline
        for pf in glob.glob(os.path.join(d, "daemon.pid")):
            try:
                with open(pf) as f:
                    spid = int(f.read().strip())
                with open(f"/proc/{spid}/cmdline", "rb") as f:
                    cmd = f.read()
                if d.encode() in cmd:
                    os.kill(spid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        data = os.path.join(d, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            _pg_ctl_stop(data)
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _tail(path: str, n: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    if IS_ROOT:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def _pg_ctl_stop(datadir: str):
    subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", datadir, "-m", "immediate",
                                 "-w", "-t", "20", "stop"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=40)


class PgServer:
    """A throwaway PostgreSQL cluster on a free loopback port.

    pg_hba: trust for the superuser "postgres" (also for replication
    connections), scram-sha-256 for everybody else (so sqlmux's backend
    logins really do SCRAM). Role app/apppass and database appdb (owner app)
    are created.

    replica_of=<a running PgServer>: instead of initdb, the data directory is
    a pg_basebackup -R -X stream of that server, started as a hot standby
    streaming from it (roles, databases and pg_hba come from the primary)."""

    def __init__(self, max_connections: int = 300, extra_conf: str = "", replica_of: "PgServer | None" = None):
        self.max_connections = max_connections
        self.extra_conf = extra_conf
        self.replica_of = replica_of
        self.dir = None
        self.port = None
        self.host = "127.0.0.1"
        self._started = False

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self):
        _reap_stale()
        _register(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and exc_type not in (Skip,):
            print(f"--- PostgreSQL log tail ({self.logfile}) ---\n{_tail(self.logfile, 30)}", file=sys.stderr)
        self.close(failed=exc_type is not None and exc_type is not Skip)
        return False

    def _start(self):
        self.dir = tempfile.mkdtemp(prefix=TMP_PREFIX + "pg-")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.datadir = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.logfile = os.path.join(self.dir, "postgres.log")
        os.chmod(self.dir, 0o755)
        if IS_ROOT:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        standby_conf = ""
        if self.replica_of is not None:
            standby_conf = self._basebackup()
        else:
            r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "initdb"), "-D", self.datadir,
                                             "--auth=trust", "-U", "postgres", "-E", "UTF8",
                                             "--locale=C", "--no-sync"]),
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                fail(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
                f.write(
                    "# written by tests/integration/harness.py\n"
                    "local all postgres trust\n"
                    "host  all postgres 127.0.0.1/32 trust\n"
                    "host  all postgres ::1/128 trust\n"
                    "local replication postgres trust\n"
                    "host  replication postgres 127.0.0.1/32 trust\n"
                    "local all all scram-sha-256\n"
                    "host  all all 127.0.0.1/32 scram-sha-256\n"
                    "host  all all ::1/128 scram-sha-256\n")
        last_err = ""
        for _attempt in range(3):
            self.port = free_port()
            with open(os.path.join(self.datadir, "postgresql.auto.conf"), "w") as f:
                f.write(
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    f"max_connections = {self.max_connections}\n"
                    "fsync = off\n"
                    "synchronous_commit = off\n"
                    "full_page_writes = off\n"
                    "password_encryption = 'scram-sha-256'\n"
                    "shared_buffers = '128MB'\n"
                    "max_wal_size = '2GB'\n"
                    "log_min_messages = warning\n"
                    "log_line_prefix = '%m [%p] %q%u@%d '\n"
                    f"{self.extra_conf}\n"
                    f"{standby_conf}")
            r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir,
                                             "-l", self.logfile, "-w", "-t", "60", "start"]),
                               capture_output=True, text=True, timeout=90)
            if r.returncode == 0:
                self._started = True
                break
            last_err = f"{r.stdout}\n{r.stderr}\n{_tail(self.logfile, 20)}"
            if "already in use" not in last_err and "could not bind" not in last_err:
                break
        if not self._started:
            fail(f"pg_ctl start failed:\n{last_err}")
        if self.replica_of is not None:
            self.wait_replay()
            log(f"PostgreSQL standby of :{self.replica_of.port} up on 127.0.0.1:{self.port}")
            return
        self.psql("SET password_encryption = 'scram-sha-256'; "
                  "CREATE ROLE app LOGIN PASSWORD 'apppass';")
        self.psql("CREATE DATABASE appdb OWNER app;")
        log(f"PostgreSQL up on 127.0.0.1:{self.port} (socket dir {self.sockdir})")

    def _basebackup(self) -> str:
        """pg_basebackup -R of replica_of into self.datadir; returns the
        standby settings (primary_conninfo) -R wrote, for the config file
        that _start() writes over the copied one."""
        src = self.replica_of
        r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_basebackup"), "-h", src.sockdir,
                                         "-p", str(src.port), "-U", "postgres", "-D", self.datadir,
                                         "-R", "-X", "stream", "-c", "fast", "--no-sync"]),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail(f"pg_basebackup from :{src.port} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        with open(os.path.join(self.datadir, "postgresql.auto.conf")) as f:
            lines = [ln for ln in f if ln.startswith("primary_conninfo")]
        if not lines:
            fail("pg_basebackup -R wrote no primary_conninfo")
        return "hot_standby = on\n" + "".join(lines)

    def is_in_recovery(self) -> bool:
        return self.psql("SELECT pg_is_in_recovery()").strip() == "t"

    def wait_replay(self, timeout: float = 30.0):
        """A standby: waits until it has replayed everything its primary had
        written when this was called."""
        target = self.replica_of.psql("SELECT pg_current_wal_lsn()").strip()
        deadline = time.monotonic() + timeout
        while True:
            done = self.psql(f"SELECT coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false)",
                             check_rc=False).strip()
            if done == "t":
                return
            if time.monotonic() > deadline:
                fail(f"standby :{self.port} did not replay up to {target} within {timeout}s\n"
                     f"{_tail(self.logfile, 20)}")
            time.sleep(0.05)

    def close(self, failed: bool = False):
        if self.dir is None:
            _unregister(self)
            return
        if self._started:
            try:
                _pg_ctl_stop(self.datadir)
            except Exception as e:  # noqa: BLE001
                print(f"pg_ctl stop failed: {e}", file=sys.stderr)
            self._started = False
        if failed and KEEP:
            print(f"keeping {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        _unregister(self)

    def stop_server(self, mode: str = "fast"):
        """Stops PostgreSQL (same data dir and port; start_server() again)."""
        r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir, "-m", mode,
                                         "-w", "-t", "30", "stop"]), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(f"pg_ctl stop failed: {r.stdout}{r.stderr}")
        self._started = False

    def start_server(self):
        r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir,
                                         "-l", self.logfile, "-w", "-t", "60", "start"]),
                           capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            fail(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{_tail(self.logfile, 20)}")
        self._started = True

    def restart_server(self, mode: str = "fast"):
        """`pg_ctl restart -m MODE` (same data dir and port); returns when
        the server accepts connections again."""
        r = subprocess.run(_as_postgres([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.datadir, "-m", mode,
                                         "-l", self.logfile, "-w", "-t", "60", "restart"]),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            self._started = os.path.exists(os.path.join(self.datadir, "postmaster.pid"))
            fail(f"pg_ctl restart failed: {r.stdout}{r.stderr}\n{_tail(self.logfile, 20)}")
        self._started = True

    # -- helpers ------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres", user: str = "postgres", password: str | None = None,
             tcp: bool = False, check_rc: bool = True) -> str:
        """Runs SQL with psql (ON_ERROR_STOP, unaligned, tuples only) and
        returns stdout. Superuser over the unix socket by default."""
        env = dict(os.environ)
        if password is not None:
            env["PGPASSWORD"] = password
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", self.host if tcp else self.sockdir, "-p", str(self.port), "-U", user, "-d", db,
               "-c", sql]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if check_rc and r.returncode != 0:
            fail(f"psql failed ({r.returncode}) for {sql!r}:\n{r.stderr}")
        return r.stdout

    def super_dsn(self, db: str = "postgres") -> str:
        return f"host={self.sockdir} port={self.port} user=postgres dbname={db}"

    def connect_super(self, db: str = "postgres"):
        """psycopg2 connection as superuser over the unix socket (autocommit)."""
        import psycopg2
        c = psycopg2.connect(self.super_dsn(db), connect_timeout=10)
        c.autocommit = True
        return c

    def terminate_backend(self, pid: int):
        """pg_terminate_backend(pid); waits until the process is gone. (Not
        `with conn:`: psycopg2 2.9 opens a transaction there even in
        autocommit mode, and pg_stat_activity is a snapshot per transaction.)"""
        c = self.connect_super()
        try:
            with c.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (int(pid),))
                check(cur.fetchone()[0], f"pg_terminate_backend({pid}) returned false")
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (int(pid),))
                    if cur.fetchone()[0] == 0:
                        return
                    time.sleep(0.02)
            fail(f"backend {pid} still there 5s after pg_terminate_backend")
        finally:
            c.close()

    def dsn(self, db: str = "appdb", user: str = "app", password: str = "apppass", **extra) -> str:
        """Direct TCP connection string (bypasses sqlmux)."""
        return _conninfo(self.host, self.port, db, user, password, extra)

    def app_sessions(self, db: str = "appdb", user: str = "app") -> int:
        with self.connect_super() as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename=%s AND datname=%s", (user, db))
            return cur.fetchone()[0]


def _conninfo(host, port, db, user, password, extra) -> str:
    def q(v):
        v = str(v)
        if v == "" or any(ch in v for ch in " '\\"):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return v

    parts = [f"host={q(host)}", f"port={port}", f"dbname={q(db)}", f"user={q(user)}"]
    if password is not None:
        parts.append(f"password={q(password)}")
    extra.setdefault("connect_timeout", 15)
    for k, v in extra.items():
        parts.append(f"{k}={q(v)}")
    return " ".join(parts)


# ---------------------------------------------------------------------------
# TOML (just enough for sqlmux's schema)
# ---------------------------------------------------------------------------


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_toml_value(x) for x in v) + " ]"
    raise TypeError(f"cannot write {type(v)} as TOML")


def to_toml(cfg: dict) -> str:
    """{"server": {...}, "listener": [{...}], ...} -> TOML text. dict values
    become tables, lists of dicts become arrays of tables."""
    out = []
    for key, val in cfg.items():
        if isinstance(val, dict):
            out.append(f"[{key}]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in val.items())
            out.append("")
        elif isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
            for item in val:
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
                out.append("")
        else:
            out.insert(0, f"{key} = {_toml_value(val)}")
    return "\n".join(out) + "\n"


def default_config(pg_port: int | None, listen_port: int | None, mode: str = "transaction", size: int = 10,
                   pool_name: str = "appdb", *, my_port: int | None = None, my_listen_port: int | None = None,
                   **pool_opts) -> dict:
    """A listener and a pool (named pool_name, database appdb, server login
    app/apppass) per protocol: PostgreSQL on pg_port (None: none), MySQL on
    my_port (None: none). The postgres listener and pool come first. With
    a MySQL pool, user app's default_pool is it (MySQL clients that name no
    database). pool_opts apply to every pool (a None value drops the key)."""
    def pool(protocol: str, port: int) -> dict:
        p = {
            "name": pool_name,
            "protocol": protocol,
            "mode": mode,
            "size": size,
            "min_idle": 0,
            "database": "appdb",
            "user": "app",
            "password": "apppass",
            "backends": [{"address": f"127.0.0.1:{port}"}],
            "query_wait_timeout": "120s",
            "server_idle_timeout": "600s",
            "server_lifetime": "3600s",
        }
        for k, v in pool_opts.items():
            if v is None:
                p.pop(k, None)
            else:
                p[k] = v
        return p

    listeners, pools = [], []
    user = {"name": "app", "password": "apppass"}
    if pg_port is not None:
        listeners.append({"protocol": "postgres", "listen": f"127.0.0.1:{listen_port}"})
        pools.append(pool("postgres", pg_port))
    if my_port is not None:
        listeners.append({"protocol": "mysql", "listen": f"127.0.0.1:{my_listen_port}"})
        pools.append(pool("mysql", my_port))
        user["default_pool"] = pool_name
    return {
        "server": {"workers": 2, "max_client_conn": 10000, "log_level": "info", "shutdown_timeout": "5s"},
        "listener": listeners,
        "user": [user],
        "pool": pools,
    }


# ---------------------------------------------------------------------------
# sqlmux
# ---------------------------------------------------------------------------


def _asan_findings(text: str) -> str | None:
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer"):
        i = text.find(marker)
        if i >= 0:
            return text[max(0, i - 200): i + 3000]
    return None


class Sqlmux:
    """Runs `$SQLMUX_BIN --config FILE` for the duration of a with-block.

    config: None (default config from mode/size/pool_opts), a dict (written
    as TOML) or a string (TOML text in which @LISTEN_PORT@, @PG_PORT@,
    @MY_LISTEN_PORT@, @MY_PORT@ and @DIR@ are replaced). `tweak(cfg)` may
    edit the default dict in place.

    pg: the PostgreSQL behind it (None: no postgres listener and pool);
    my: a MariaDbServer (mysql_harness.py) behind a mysql listener on
    .my_port and a mysql pool (None: no MySQL side). `port` is the postgres
    listener, `my_port` the mysql one.

    In direct mode (SQLMUX_TEST_DIRECT=1; for a MySQL-only Sqlmux also
    SQLMUX_MY_DIRECT=1) nothing is started and the addresses are the
    servers' own.

    nofile: (soft, hard) open file limit (RLIMIT_NOFILE) the daemon starts
    with (None: the test's own)."""

    def __init__(self, pg: PgServer | None, mode: str = "transaction", size: int = 10, config=None, *,
                 my=None, tweak=None, expect_exit_code: int | None = 0, start_timeout: float = 10.0,
                 env: dict | None = None, nofile: tuple[int, int] | None = None, **pool_opts):
        if pg is None and my is None:
            raise ValueError("Sqlmux needs a PostgreSQL (pg) or a MariaDB (my) behind it")
        self.pg = pg
        self.my = my
        self.my_port = None
        my_direct = DIRECT or os.environ.get("SQLMUX_MY_DIRECT", "") == "1"
        self.direct = (pg is None or DIRECT) and (my is None or my_direct)
        self.mode = mode
        self.size = size
        self.config = config
        self.tweak = tweak
        self.pool_opts = pool_opts
        self.expect_exit_code = expect_exit_code
        self.start_timeout = start_timeout
        self.extra_env = env or {}
        self.nofile = nofile
        self.proc = None
        self.dir = None
        self.host = "127.0.0.1"
        self.port = None
        self.pool_db = {}  # pool name -> backend database (for direct mode)
        self.exit_code = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self):
        if self.direct:
            self.port = self.pg.port if self.pg is not None else None
            self.my_port = self.my.port if self.my is not None else None
            self.pool_db = {"appdb": "appdb"}
            return self
        _register(self)
        try:
            for attempt in range(3):
                if self._start(last_attempt=attempt == 2):
                    break
        except BaseException:
            self._kill()
            self._rmdir(failed=True)
            _unregister(self)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.direct:
            return False
        failed = exc_type is not None and exc_type is not Skip
        if failed:
            print(f"--- sqlmux log tail ({self.log_path}) ---\n{self.log_tail(80)}", file=sys.stderr)
            note = self.outside_interference()
            if note:
                print(f"NOTE: {note}", file=sys.stderr)
            self._stop(check=False)
            self._rmdir(failed=True)
            _unregister(self)
            return False
        try:
            self._stop(check=True)
        finally:
            self._rmdir(failed=False)
            _unregister(self)
        return False

    def _build_config_text(self) -> str:
        if isinstance(self.config, str):
            text = self.config
        else:
            if isinstance(self.config, dict):
                cfg = self.config
            else:
                cfg = default_config(self.pg.port if self.pg is not None else None, self.port, self.mode,
                                     self.size, my_port=self.my.port if self.my is not None else None,
                                     my_listen_port=self.my_port, **self.pool_opts)
            if self.tweak:
                self.tweak(cfg)
            self.cfg = cfg
            for p in cfg.get("pool", []):
                self.pool_db[p["name"]] = p.get("database", p["name"])
            text = to_toml(cfg)
        subst = {"@LISTEN_PORT@": self.port, "@PG_PORT@": self.pg.port if self.pg is not None else None,
                 "@MY_LISTEN_PORT@": self.my_port, "@MY_PORT@": self.my.port if self.my is not None else None,
                 "@DIR@": self.dir}
        for k, v in subst.items():
            if v is not None:
                text = text.replace(k, str(v))
        return text

    def _start(self, last_attempt: bool) -> bool:
        if not os.path.exists(SQLMUX_BIN):
            fail(f"sqlmux binary not found at {SQLMUX_BIN} (set SQLMUX_BIN, or SQLMUX_TEST_DIRECT=1)")
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix=TMP_PREFIX + "mux-")
            with open(os.path.join(self.dir, "owner.pid"), "w") as f:
                f.write(str(os.getpid()))
        self.port = free_port() if self.pg is not None else None
        self.my_port = free_port() if self.my is not None else None
        self.config_path = os.path.join(self.dir, "mux.toml")
        self.log_path = os.path.join(self.dir, "mux.log")
        text = self._build_config_text()
        with open(self.config_path, "w") as f:
            f.write(text)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.update(self.extra_env)
        self._logf = open(self.log_path, "ab")
        exe = os.path.join(self.dir, "daemon-under-test")
        if not os.path.lexists(exe):
            os.symlink(os.path.abspath(SQLMUX_BIN), exe)
        preexec = None
        if self.nofile is not None:
            import resource
            soft, hard = self.nofile

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.proc = subprocess.Popen([exe, "--config", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
        with open(os.path.join(self.dir, "daemon.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + self.start_timeout
        ports = [p for p in (self.port, self.my_port) if p is not None]
        if all(wait_port(self.host, p, max(0.1, deadline - time.monotonic()), self.proc) for p in ports):
            return True
        rc = self.proc.poll()
        tail = self.log_tail(40)
        self._kill()
        if not last_attempt and ("in use" in tail.lower()):
            with open(self.log_path, "ab") as f:
                f.write(b"\n--- retrying on another port ---\n")
            return False
        fail(f"sqlmux did not start listening on 127.0.0.1:{'/'.join(map(str, ports))} within {self.start_timeout}s "
             f"(exit code {rc}). Config:\n{text}\n--- log tail ---\n{tail}")
        return False

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_logf", None):
            self._logf.close()
            self._logf = None

    def send_signal(self, sig: int):
        self._signalled = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """Waits for sqlmux to exit by itself; returns its exit code, or
        None if it is still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, check: bool = True) -> int:
        """SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit code."""
        return self._stop(check)

    def _stop(self, check: bool) -> int | None:
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._kill()
                self.exit_code = "killed"
                self.proc = None
                if check:
                    fail("sqlmux did not exit within 10s of SIGTERM (SIGKILLed)\n--- log tail ---\n"
                         + self.log_tail(60))
                return None
        self.exit_code = self.proc.returncode
        self._kill()
        self.proc = None
        if check:
            # The report first: a sanitizer also changes the exit code (TSan's
            # exitcode=66), and the report may be far from the log's tail.
            bad = _asan_findings(self.log_text())
            if bad:
                fail(f"sanitizer report in sqlmux log (exit code {self.exit_code}):\n{bad}")
            if self.expect_exit_code is not None and self.exit_code != self.expect_exit_code:
                fail(f"sqlmux exited with code {self.exit_code} on SIGTERM (want {self.expect_exit_code})"
                     f"\n--- log tail ---\n{self.log_tail(60)}")
        return self.exit_code

    def close(self):  # for the cleanup registry
        if self.proc is not None:
            self._stop(check=False)
        self._rmdir(failed=True)

    def _rmdir(self, failed: bool):
        if self.dir and not (failed and KEEP):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- state --------------------------------------------------------------
    def outside_interference(self) -> str | None:
        """Says so when sqlmux died or got a stop signal that the test did
        not send (e.g. someone's `pkill sqlmux` on a shared machine)."""
        if self.proc is None or getattr(self, "_signalled", False):
            return None
        rc = self.proc.poll()
        if rc is not None:
            return f"sqlmux exited (code {rc}) before the test stopped it"
        for line in self.log_text().splitlines():
            if "SIGTERM" in line or "SIGINT" in line:
                return f"sqlmux received a stop signal the test did not send: {line.strip()}"
        return None

    def running(self) -> bool:
        return self.direct or (self.proc is not None and self.proc.poll() is None)

    def log_text(self) -> str:
        if self.direct or not self.dir:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_has(self, needle: str, timeout: float = 5.0) -> bool:
        """Whether `needle` shows up in the log within `timeout` seconds (a
        line is written after what the client saw, so it may come late)."""
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, n: int = 60) -> str:
        if self.direct:
            return "<direct mode: no sqlmux log>"
        return _tail(self.log_path, n)

    # -- connecting ---------------------------------------------------------
    def dbname(self, pool: str) -> str:
        return self.pool_db.get(pool, pool) if self.direct else pool

    def my_connect(self, db: str | None = "appdb", user: str = "app", password: str = "apppass", **kw):
        """PyMySQL to the mysql listener (direct mode: to MariaDB itself).
        kw go to pymysql.connect (autocommit, client_flag, local_infile...)."""
        import pymysql
        kw.setdefault("connect_timeout", 10)
        return pymysql.connect(host=self.host, port=self.my_port, user=user, password=password,
                               database=self.dbname(db) if db is not None else None, **kw)

    def dsn(self, db: str = "appdb", user: str = "app", password: str | None = "apppass", **extra) -> str:
        return _conninfo(self.host, self.port, self.dbname(db), user, password, extra)

    def url(self, db: str = "appdb", user: str = "app", password: str = "apppass",
            scheme: str = "postgresql") -> str:
        return f"{scheme}://{user}:{password}@{self.host}:{self.port}/{self.dbname(db)}"

    def connect(self, db: str = "appdb", user: str = "app", password: str = "apppass", autocommit=False,
                **extra):
        import psycopg2
        c = psycopg2.connect(self.dsn(db, user, password, **extra))
        c.autocommit = autocommit
        return c

    def raw(self, db: str = "appdb", user: str = "app", password: str | None = "apppass",
            params: dict | None = None, timeout: float = 15.0) -> "RawPg":
        r = RawPg(self.host, self.port, timeout=timeout)
        r.startup(user, self.dbname(db), password, params=params)
        return r

    def assert_serving(self, db: str = "appdb", user: str = "app", password: str = "apppass",
                       what: str = "sqlmux still serves a new client"):
        """A brand-new client can connect and query."""
        if not self.running():
            fail(f"{what}: sqlmux is not running (exit code {self.proc.poll() if self.proc else None})"
                 f"\n--- log tail ---\n{self.log_tail(60)}")
        try:
            import psycopg2
            c = psycopg2.connect(self.dsn(db, user, password, connect_timeout=10))
            try:
                c.autocommit = True
                with c.cursor() as cur:
                    cur.execute("SELECT 41 + 1")
                    v = cur.fetchone()[0]
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001
            fail(f"{what}: {type(e).__name__}: {e}")
        check_eq(v, 42, what)


def check_config(text: str, name: str = "sqlmux.toml") -> tuple[int, str, str]:
    """Runs `sqlmux --check-config FILE`; returns (rc, stdout+stderr, path)."""
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "cfg-")
    try:
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([SQLMUX_BIN, "--check-config", path], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr, path
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# Password formats
# ---------------------------------------------------------------------------


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def md5_hash(password: str, user: str) -> str:
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


# ---------------------------------------------------------------------------
# A raw PostgreSQL v3 protocol client: lets tests see exactly what the
# server (sqlmux) sends, including errors during startup.
# ---------------------------------------------------------------------------


class PgError(Exception):
    def __init__(self, fields: dict, context: str = ""):
        self.fields = fields
        self.sqlstate = fields.get("C")
        self.severity = fields.get("V") or fields.get("S")
        self.message = fields.get("M", "")
        super().__init__(f"{context}{self.severity} {self.sqlstate}: {self.message}")


class ConnectionClosed(Exception):
    pass


def _parse_fields(body: bytes) -> dict:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class Result:
    def __init__(self):
        self.rows: list[list] = []
        self.columns: list[str] = []
        self.tags: list[str] = []
        self.error: dict | None = None
        self.notices: list[dict] = []
        self.status: str | None = None  # ReadyForQuery status: I, T, E

    @property
    def sqlstate(self):
        return self.error.get("C") if self.error else None


class RawPg:
    AUTH_NAMES = {0: "ok", 2: "kerberos", 3: "password", 5: "md5", 7: "gss", 9: "sspi", 10: "sasl"}

    def __init__(self, host: str = "127.0.0.1", port: int = 5432, timeout: float = 15.0,
                 unix_path: str | None = None, source_address: str | None = None):
        """source_address: the local IP to connect from (e.g. "127.0.0.2":
        Linux routes all of 127/8 to lo), so a test can be another client host."""
        self.timeout = timeout
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection(
                (host, port), timeout=timeout,
                source_address=(source_address, 0) if source_address else None)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.params: dict[str, str] = {}
        self.backend_pid = None
        self.backend_key = None
        self.auth_methods: list[str] = []
        self.notices: list[dict] = []
        self.closed = False
        self.status = None

    # -- wire ---------------------------------------------------------------
    def send(self, data: bytes):
        self.sock.sendall(data)

    def send_msg(self, tag: bytes, body: bytes = b""):
        self.send(tag + struct.pack("!I", len(body) + 4) + body)

    def _recv_exact(self, n: int, timeout: float | None) -> bytes:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete message within {timeout or self.timeout}s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError(f"no complete message within {timeout or self.timeout}s") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise ConnectionClosed(f"connection closed by server ({len(self.buf)} bytes pending)")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_msg(self, timeout: float | None = None) -> tuple[str, bytes]:
        hdr = self._recv_exact(5, timeout)
        tag = chr(hdr[0])
        (ln,) = struct.unpack("!I", hdr[1:])
        if ln < 4 or ln > (1 << 30) + 8:
            raise ConnectionClosed(f"bad message length {ln} for tag {tag!r}")
        body = self._recv_exact(ln - 4, timeout)
        return tag, body

    def read_byte(self, timeout: float | None = None) -> bytes:
        return self._recv_exact(1, timeout)

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout`
        (discarding anything it sends before that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return False
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not chunk:
                self.closed = True
                return True
        return False

    # -- startup ------------------------------------------------------------
    def send_startup(self, user: str, database: str, params: dict | None = None, protocol: int = 196608):
        kv = {"user": user, "database": database}
        kv.update(params or {})
        body = struct.pack("!I", protocol)
        for k, v in kv.items():
            body += k.encode() + b"\0" + str(v).encode() + b"\0"
        body += b"\0"
        self.send(struct.pack("!I", len(body) + 4) + body)

    def startup(self, user: str, database: str, password: str | None = None, params: dict | None = None,
                protocol: int = 196608):
        self.send_startup(user, database, params, protocol)
        scram = None
        while True:
            tag, m = self.read_msg()
            if tag == "R":
                (code,) = struct.unpack("!I", m[:4])
                if code == 0:
                    self.auth_methods.append("ok")
                elif code == 3:
                    self.auth_methods.append("password")
                    if password is None:
                        raise RuntimeError("server asked for a password and none was given")
                    self.send_msg(b"p", password.encode() + b"\0")
                elif code == 5:
                    self.auth_methods.append("md5")
                    if password is None:
                        raise RuntimeError("server asked for a password and none was given")
                    salt = m[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                    self.send_msg(b"p", b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0")
                elif code == 10:
                    mechs = [x.decode() for x in m[4:].split(b"\0") if x]
                    self.auth_methods.append("sasl:" + ",".join(mechs))
                    if "SCRAM-SHA-256" not in mechs:
                        raise RuntimeError(f"no SCRAM-SHA-256 among {mechs}")
                    if password is None:
                        raise RuntimeError("server asked for a password and none was given")
                    scram = _ScramClient(password)
                    first = scram.client_first().encode()
                    self.send_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11:
                    self.send_msg(b"p", scram.client_final(m[4:].decode()).encode())
                elif code == 12:
                    scram.verify_server_final(m[4:].decode())
                else:
                    raise RuntimeError(f"unsupported auth request {code}")
            elif tag == "E":
                raise PgError(_parse_fields(m), "during startup: ")
            elif tag == "S":
                k, v, _ = m.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif tag == "K":
                self.backend_pid, self.backend_key = struct.unpack("!iI", m[:8])
            elif tag == "N":
                self.notices.append(_parse_fields(m))
            elif tag == "Z":
                self.status = m.decode()
                return self
            else:
                raise RuntimeError(f"unexpected message {tag!r} during startup")

    # -- queries ------------------------------------------------------------
    def query(self, sql: str, timeout: float | None = None) -> Result:
        """Simple query; reads until ReadyForQuery. Never raises for an
        ErrorResponse (see Result.error); raises ConnectionClosed if the
        server hangs up (the error it sent first is in .last_error)."""
        self.send_msg(b"Q", sql.encode() + b"\0")
        return self.read_result(timeout)

    def read_result(self, timeout: float | None = None) -> Result:
        res = Result()
        self.last_result = res
        while True:
            tag, m = self.read_msg(timeout)
            if tag == "T":
                (n,) = struct.unpack("!H", m[:2])
                off = 2
                cols = []
                for _ in range(n):
                    end = m.index(b"\0", off)
                    cols.append(m[off:end].decode())
                    off = end + 1 + 18
                res.columns = cols
            elif tag == "D":
                (n,) = struct.unpack("!H", m[:2])
                off = 2
                row = []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", m[off:off + 4])
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(m[off:off + ln].decode("utf-8", "replace"))
                        off += ln
                res.rows.append(row)
            elif tag == "C":
                res.tags.append(m.rstrip(b"\0").decode())
            elif tag == "E":
                res.error = _parse_fields(m)
            elif tag == "N":
                res.notices.append(_parse_fields(m))
                self.notices.append(res.notices[-1])
            elif tag == "Z":
                res.status = self.status = m.decode()
                return res
            elif tag in ("I", "1", "2", "3", "n", "s", "t", "A"):
                pass
            elif tag == "S":
                k, v, _ = m.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif tag == "G":  # COPY IN: refuse
                self.send_msg(b"f", b"raw client does not do COPY\0")
            elif tag in ("H", "d", "c"):
                pass
            else:
                raise RuntimeError(f"unexpected message {tag!r}")

    def query_ok(self, sql: str, timeout: float | None = None) -> Result:
        r = self.query(sql, timeout)
        if r.error:
            raise PgError(r.error, f"{sql!r}: ")
        return r

    def scalar(self, sql: str):
        r = self.query_ok(sql)
        return r.rows[0][0]

    def read_raw_until_eof(self, timeout: float = 10.0) -> bytes:
        """Everything the server sends until it closes (or the timeout)."""
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                self.closed = True
                break
            data += chunk
        return data

    def read_until_error_or_eof(self, timeout: float = 10.0) -> tuple[dict | None, bool]:
        """Reads messages until the server closes; returns (first error
        fields or None, closed)."""
        err = None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return err, False
            try:
                tag, m = self.read_msg(left)
            except ConnectionClosed:
                return err, True
            except TimeoutError:
                return err, False
            except OSError:
                return err, True
            if tag == "E" and err is None:
                err = _parse_fields(m)

    def terminate(self):
        try:
            self.send_msg(b"X")
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def abort(self):
        """Closes with RST (SO_LINGER 0): a client that vanishes."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


class _ScramClient:
    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def client_first(self) -> str:
        self.first_bare = f"n=,r={self.nonce}"
        return "n,," + self.first_bare

    def client_final(self, server_first: str) -> str:
        attrs = dict(x.split("=", 1) for x in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise RuntimeError("SCRAM: server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(self.salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final: str):
        attrs = dict(x.split("=", 1) for x in server_final.split(","))
        if "e" in attrs:
            raise RuntimeError(f"SCRAM server error: {attrs['e']}")
        server_key = hmac.new(self.salted, b"Server Key", hashlib.sha256).digest()
        want = hmac.new(server_key, self.auth_message, hashlib.sha256).digest()
        if base64.b64decode(attrs["v"]) != want:
            raise RuntimeError("SCRAM: wrong server signature")


def parse_startup_reply(data: bytes) -> dict:
    """Parses what a server answered to a startup packet it rejects: a v3
    ErrorResponse (fields dict) or a protocol-2 style error ('E' + text).
    Returns {"format": "v3"|"v2"|"none", "fields": {...}, "text": str}."""
    if not data:
        return {"format": "none", "fields": {}, "text": ""}
    if data[:1] == b"E" and len(data) >= 5:
        (ln,) = struct.unpack("!I", data[1:5])
        if 4 < ln <= len(data) - 1 and data[ln] == 0:
            f = _parse_fields(data[5:1 + ln])
            return {"format": "v3", "fields": f, "text": f.get("M", "")}
        text = data[1:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"format": "v2", "fields": {}, "text": text}
    return {"format": "other", "fields": {}, "text": data[:200].decode("latin-1")}


def ssl_request(host: str, port: int, timeout: float = 10.0) -> tuple[bytes, socket.socket]:
    """Sends SSLRequest; returns the one-byte answer and the socket."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(struct.pack("!II", 8, 80877103))
    b = s.recv(1)
    return b, s


def scrape_metrics(port: int) -> dict:
    """sqlmux's /metrics on 127.0.0.1:port as {'name{labels}': value}."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def send_cancel(host: str, port: int, pid: int, key: int):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack("!IIiI", 16, 80877102, pid, key))
        try:
            s.recv(1)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Error expectations
# ---------------------------------------------------------------------------


def _sqlstate_of(e: BaseException):
    for attr in ("pgcode", "sqlstate"):
        v = getattr(e, attr, None)
        if v:
            return v
    diag = getattr(e, "diag", None)
    if diag is not None and getattr(diag, "sqlstate", None):
        return diag.sqlstate
    return None


def expect_error(fn, sqlstates, contains: str | None = None, what: str = ""):
    """Calls fn(); it must raise an exception carrying one of `sqlstates`
    (a str or a tuple) and, if given, `contains` in its text. Returns it."""
    if isinstance(sqlstates, str):
        sqlstates = (sqlstates,)
    try:
        fn()
    except (TestFailure, Skip):
        raise
    except Exception as e:  # noqa: BLE001
        st = _sqlstate_of(e)
        text = str(e)
        if st not in sqlstates:
            fail(f"{what}: want SQLSTATE {'/'.join(sqlstates)}, got {st} ({type(e).__name__}: {text.strip()})")
        if contains and contains.lower() not in text.lower():
            fail(f"{what}: error text {text.strip()!r} lacks {contains!r}")
        return e
    fail(f"{what}: no error raised (want SQLSTATE {'/'.join(sqlstates)})")


# ---------------------------------------------------------------------------
# Commit accounting for load tests
# ---------------------------------------------------------------------------


class CommitLedger:
    """What clients under load were told about their transactions, checked
    against the rows the server(s) hold afterwards.

    Each transaction inserts rows identified by a unique key. A client
    records the key with ack() once its COMMIT was acknowledged, with
    doubt() when the COMMIT was sent but its answer never came (an error
    or a lost connection during COMMIT: the rows may or may not be there),
    and with abort() when it failed before COMMIT was sent (the rows
    must not be there). Thread-safe."""

    def __init__(self):
        self.acked: set = set()
        self.doubtful: set = set()
        self.aborted: set = set()
        self._lock = threading.Lock()

    def ack(self, key):
        with self._lock:
            self.acked.add(key)

    def doubt(self, key):
        with self._lock:
            self.doubtful.add(key)

    def abort(self, key):
        with self._lock:
            self.aborted.add(key)

    def failed(self, key, in_commit: bool):
        (self.doubt if in_commit else self.abort)(key)

    def problems(self, present: list) -> list[str]:
        """present: the keys of every row found (from one or several
        servers; a key listed twice is a duplicated row). Returns what is
        wrong (empty when the rows are exactly the acknowledged commits plus
        some of those whose outcome is unknown)."""
        counts: dict = {}
        for k in present:
            counts[k] = counts.get(k, 0) + 1
        have = set(counts)
        out = []
        dups = sorted(k for k, n in counts.items() if n > 1)
        if dups:
            out.append(f"{len(dups)} duplicated row(s): {dups[:10]}")
        lost = sorted(self.acked - have)
        if lost:
            out.append(f"{len(lost)} acknowledged commit(s) missing: {lost[:10]}")
        ghosts = sorted(have & self.aborted)
        if ghosts:
            out.append(f"{len(ghosts)} row(s) of transactions that failed before COMMIT: {ghosts[:10]}")
        strangers = sorted(have - self.acked - self.doubtful - self.aborted)
        if strangers:
            out.append(f"{len(strangers)} row(s) nobody inserted: {strangers[:10]}")
        want = len(self.acked) + len(have & self.doubtful)
        if len(present) != want:
            out.append(f"{len(present)} rows, want {want} (acknowledged {len(self.acked)} + "
                       f"{len(have & self.doubtful)} of {len(self.doubtful)} with unknown outcome)")
        return out

    def expected_checksum(self, present: list, value) -> int:
        """sum(value(k)) over the acknowledged keys and the present keys of
        unknown outcome: what the server's own sum over the rows must be."""
        have = set(present)
        return sum(value(k) for k in self.acked | (have & self.doubtful))

    def verify(self, present: list, what: str = "rows", checksum: tuple | None = None):
        """Fails with every problem() found. checksum: (the server's sum
        over the rows, value function) to compare with expected_checksum()."""
        out = self.problems(present)
        if checksum is not None:
            got, value = checksum
            want = self.expected_checksum(present, value)
            if got != want:
                out.append(f"checksum of the rows {got}, want {want}")
        if out:
            fail(f"{what}:\n  " + "\n  ".join(out))

    def summary(self) -> str:
        return (f"{len(self.acked)} acknowledged, {len(self.doubtful)} commit outcome unknown, "
                f"{len(self.aborted)} failed before COMMIT")


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------


def _watchdog(deadline: float, grace: float):
    time.sleep(deadline + grace)
    print(f"\nFAIL: hard timeout ({deadline:.0f}s + {grace:.0f}s): test stuck; stopping servers",
          file=sys.stderr, flush=True)
    _cleanup_all()
    time.sleep(10)
    os._exit(124)


class _Timeout(BaseException):
    pass


def run_cases(script: str, cases: list, timeout: float = 110, setup=None, server=None, direct: bool | None = None):
    """Runs each case(pg) against one shared PgServer; prints PASS/FAIL/SKIP
    per case and a closing 'N passed, N failed, N skipped' line; exits 1 if
    any case failed. Cases may be filtered by names given on the command
    line. The whole run is bounded by `timeout` seconds.

    server: a callable making the shared server instead of PgServer (e.g.
    MariaDbServer: each case then gets that); direct: whether the clients
    talk to that server itself (default: SQLMUX_TEST_DIRECT)."""
    server = server or PgServer
    direct = DIRECT if direct is None else direct
    name = os.path.splitext(os.path.basename(script))[0]
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")]
    if wanted:
        cases = [c for c in cases if any(w in c.__name__ for w in wanted)]
    timeout = float(os.environ.get("SQLMUX_TEST_TIMEOUT", timeout))

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(timeout))
    threading.Thread(target=_watchdog, args=(timeout, 20.0), daemon=True).start()
    label = getattr(server, "LABEL", "PostgreSQL")
    mode = f"direct ({label} itself)" if direct else f"sqlmux {SQLMUX_BIN}"
    log(f"{name}: {len(cases)} case(s) against {mode}")
    passed, failed, skipped = [], [], []
    t_all = time.monotonic()
    try:
        with server() as pg:
            if setup:
                setup(pg)
            for case in cases:
                cname = case.__name__.removeprefix("case_")
                log(f"--- {cname}")
                t0 = time.monotonic()
                try:
                    case(pg)
                except Skip as e:
                    skipped.append(cname)
                    log(f"SKIP {cname}: {e}")
                except _Timeout:
                    failed.append(cname)
                    log(f"FAIL {cname}: whole script exceeded its {timeout:.0f}s time limit")
                    traceback.print_exc()
                    raise
                except TestFailure as e:
                    failed.append(cname)
                    log(f"FAIL {cname} ({time.monotonic() - t0:.1f}s): {e}")
                    traceback.print_exc(limit=4)
                    print(f"--- {label} log tail ---\n{_tail(pg.logfile, 15)}", file=sys.stderr)
                except Exception as e:  # noqa: BLE001
                    failed.append(cname)
                    log(f"FAIL {cname} ({time.monotonic() - t0:.1f}s): unexpected {type(e).__name__}: {e}")
                    traceback.print_exc()
                    print(f"--- {label} log tail ---\n{_tail(pg.logfile, 15)}", file=sys.stderr)
                else:
                    passed.append(cname)
                    log(f"PASS {cname} ({time.monotonic() - t0:.1f}s)")
    except _Timeout:
        pass
    except (TestFailure, Exception) as e:  # noqa: BLE001  (server start-up or setup())
        log(f"FAIL setup: {type(e).__name__}: {e}")
        traceback.print_exc()
        failed.append("setup")
    except KeyboardInterrupt:
        log("interrupted")
        failed.append("interrupted")
    finally:
        signal.alarm(0)
    print(f"{name}: passed: {', '.join(passed) or '-'}")
    if skipped:
        print(f"{name}: skipped: {', '.join(skipped)}")
    if failed:
        print(f"{name}: FAILED: {', '.join(failed)}")
    print(f"{name} ({time.monotonic() - t_all:.1f}s): {len(passed)} passed, {len(failed)} failed, "
          f"{len(skipped)} skipped", flush=True)
    sys.exit(1 if failed else 0)


# The MySQL side (MariaDbServer, MySQL client helpers) lives in
# mysql_harness.py; imported last, as it builds on the helpers above.
from mysql_harness import MariaDbServer  # noqa: E402
