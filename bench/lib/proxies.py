"""The things a load generator connects to: PostgreSQL itself ("direct"),
PgBouncer and sqlmux, started with equivalent settings (transaction pooling,
pool size N, SCRAM-SHA-256 client auth for app/apppass, server login
app/apppass, no per-connection logging). "sqlmux-metrics" is a second sqlmux
with the same settings plus a [metrics] table (Prometheus endpoint on);
"sqlmux-tls" one with a [tls] table (a CA and a server certificate for
127.0.0.1 made with the openssl CLI in a temp dir) and client_tls =
"require" on its listener, so clients can only get in over TLS.
"sqlmux-base" (with --baseline-bin) is a second sqlmux started from another
binary (the commit before a change) with exactly the sqlmux target's
settings. "haproxy" is HAProxy in TCP mode, a relay without pooling (one
server connection per client). "pgbouncer-session" (notify scenario only) is PgBouncer in session
mode with a server connection per client.

MySQL (a MariaDB, `my`): "mysql-direct" is MariaDB itself, "mysql-haproxy"
HAProxy in TCP mode in front of it (as "haproxy" in front of PostgreSQL),
"mysql-sqlmux" a sqlmux with only a mysql listener and one transaction-mode
mysql pool (same pool size, workers and limits as "sqlmux")."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Callable

from env import HarnessError, harness, log, make_workdir, preexec_raise_nofile, proc_nofile

USER, PASSWORD, DB = "app", "apppass", "appdb"
SQLMUX_TARGETS = ("sqlmux", "sqlmux-metrics", "sqlmux-tls", "sqlmux-base")


@dataclasses.dataclass
class Target:
    # direct | pgbouncer[-session] | haproxy | sqlmux | sqlmux-metrics | sqlmux-tls | sqlmux-base
    # | mysql-direct | mysql-haproxy | mysql-sqlmux
    name: str
    host: str
    port: int
    db: str = DB
    pid: int | None = None         # the proxy's process (None: direct)
    metrics_port: int | None = None  # sqlmux-metrics: its /metrics endpoint on 127.0.0.1
    sslmode: str | None = None     # sqlmux-tls: libpq sslmode the clients use (PGSSLMODE)
    tls_ca: str | None = None      # sqlmux-tls: the CA that signed its certificate
    alive: Callable[[], bool] = lambda: True
    log_tail: Callable[[int], str] = lambda n=40: ""

    @property
    def is_proxy(self) -> bool:
        return self.pid is not None


def direct(pg) -> Target:
    return Target("direct", pg.host, pg.port)


def mysql_direct(my) -> Target:
    return Target("mysql-direct", my.host, my.port)


@dataclasses.dataclass
class ProxySettings:
    pool_size: int = 20
    max_client_conn: int = 11000
    workers: int | None = None     # sqlmux [server] workers; None: the daemon's default
    sqlmux_workers_seen: int | None = None  # what sqlmux said it started


# ---------------------------------------------------------------------------
# sqlmux (through harness.Sqlmux: its config writer, start/stop and checks)
# ---------------------------------------------------------------------------


def _started_workers(mux) -> int | None:
    """The worker count from sqlmux's "sqlmux started: N worker(s)" line."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        m = re.search(r"sqlmux started: (\d+) worker", mux.log_text())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    return None


def scrape_metrics(port: int) -> str:
    """The text of sqlmux's /metrics (Prometheus text format)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        if r.status != 200:
            raise HarnessError(f"/metrics on 127.0.0.1:{port} answered {r.status}")
        return r.read().decode("utf-8", "replace")


def metrics_sum(text: str, name: str) -> float | None:
    """The sum of the samples of `name` (all label sets); None if absent."""
    vals = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(vals) if vals else None


def _openssl(args: list[str], cwd: str):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise HarnessError(f"openssl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")


def make_tls_certs(d: str) -> dict:
    """A CA and a server certificate for 127.0.0.1 (SAN IP:127.0.0.1 and
    DNS:localhost) signed by it, made with the openssl CLI in `d` (as
    tests/integration/test_tls.py does). Returns the paths."""
    _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sqlmux-bench-ca",
              "-keyout", "ca.key", "-out", "ca.crt"], d)
    _openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
              "-out", "server.csr"], d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
              "-days", "2", "-extfile", "server.ext", "-out", "server.crt"], d)
    os.chmod(os.path.join(d, "server.key"), 0o600)
    return {"ca": os.path.join(d, "ca.crt"), "cert": os.path.join(d, "server.crt"),
            "key": os.path.join(d, "server.key")}


def _psql(dsn: str, sql: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(["psql", "-X", "-A", "-t", "-d", dsn, "-c", sql], capture_output=True, text=True,
                          timeout=30, env=e)


def check_tls(t: "Target") -> str:
    """That `t` (sqlmux-tls) serves clients over TLS only: a plaintext
    client (sslmode=disable) is refused with sqlmux's "requires TLS", and a
    client with sslmode=verify-full and the run's CA gets in over TLS (psql's
    \\conninfo names the protocol). Raises HarnessError otherwise; returns
    the TLS protocol version seen. Run outside the CPU window."""
    base = f"host={t.host} port={t.port} dbname={t.db} user={USER} password={PASSWORD} connect_timeout=10"
    r = _psql(base + " sslmode=disable", "SELECT 1")
    if r.returncode == 0 or "requires TLS" not in r.stderr:
        raise HarnessError(f"{t.name}: a plaintext client was not refused (rc {r.returncode}, "
                           f"stderr {r.stderr.strip()[:300]!r}): clients may not be using TLS")
    r = _psql(base + f" sslmode=verify-full sslrootcert={t.tls_ca}", "\\conninfo")
    m = re.search(r"SSL connection \(protocol: (TLSv[\d.]+)", r.stdout)
    if r.returncode != 0 or not m:
        raise HarnessError(f"{t.name}: no TLS session with sslmode=verify-full (rc {r.returncode}): "
                           f"{(r.stdout + r.stderr).strip()[:400]!r}")
    return m.group(1)


def _server_settings(cfg: dict, st: ProxySettings):
    """The [server] keys every sqlmux target shares: workers (left out:
    the daemon's default), max_client_conn, a quiet log, a short shutdown."""
    server = cfg["server"]
    server.pop("workers", None)
    if st.workers is not None:
        server["workers"] = st.workers
    server["max_client_conn"] = st.max_client_conn
    server["log_level"] = "info"      # quiet on the normal paths (no per-connection lines)
    server["shutdown_timeout"] = "5s"


@contextlib.contextmanager
def sqlmux_mysql(my, sqlmux_bin: str, st: ProxySettings, problems: list):
    """sqlmux with only a mysql listener and one transaction-mode mysql pool
    of st.pool_size in front of MariaDB `my` (as bench/mysql's); yields its
    Target "mysql-sqlmux". A failed start raises HarnessError; an unclean
    exit on SIGTERM is added to problems."""
    harness.SQLMUX_BIN = sqlmux_bin
    mux = harness.Sqlmux(None, my=my, mode="transaction", size=st.pool_size,
                         tweak=lambda cfg: _server_settings(cfg, st), start_timeout=15.0)
    try:
        mux.__enter__()
    except harness.TestFailure as e:
        raise HarnessError(f"mysql-sqlmux: {e}") from None
    pid = mux.proc.pid
    log(f"mysql-sqlmux up on 127.0.0.1:{mux.my_port} (mysql listener only, pid {pid}, "
        f"{_started_workers(mux)} worker(s), open-file limit {proc_nofile(pid)})")
    try:
        yield Target("mysql-sqlmux", mux.host, mux.my_port, pid=pid, alive=mux.running, log_tail=mux.log_tail)
    except BaseException:
        mux.__exit__(*sys.exc_info())
        raise
    try:
        mux.__exit__(None, None, None)
    except harness.TestFailure as e:
        problems.append(f"mysql-sqlmux shutdown: {e}")
        log(f"PROBLEM: mysql-sqlmux shutdown: {str(e)[:2000]}")


@contextlib.contextmanager
def sqlmux(pg, sqlmux_bin: str, st: ProxySettings, problems: list, metrics: bool = False, tls: bool = False,
           base: bool = False):
    """Runs sqlmux for the with-block; yields its Target. With `base`, the
    target is named sqlmux-base: the same settings as sqlmux (the caller
    passes the baseline binary as `sqlmux_bin`). With `metrics`,
    the config has a [metrics] table on a free loopback port (the target is
    then named sqlmux-metrics) and the endpoint must answer before the run.
    With `tls` (sqlmux-tls), a [tls] table with a certificate made for the
    run and client_tls = "require" on the listener; check_tls() must pass
    before the target is handed out, and its clients use sslmode=require.
    A failed start raises HarnessError; an unclean exit on SIGTERM is added
    to problems."""
    harness.SQLMUX_BIN = sqlmux_bin
    name = "sqlmux-metrics" if metrics else "sqlmux-tls" if tls else "sqlmux-base" if base else "sqlmux"
    certs = None
    if tls:
        certdir = make_workdir("tls")
        try:
            certs = make_tls_certs(certdir)
        except BaseException:
            shutil.rmtree(certdir, ignore_errors=True)
            raise
    metrics_port = []  # the port of the last start attempt (harness.Sqlmux retries on "in use")

    def tweak(cfg):
        _server_settings(cfg, st)
        cfg.pop("metrics", None)
        if metrics:
            metrics_port[:] = [harness.free_port()]
            cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port[0]}"}
        cfg.pop("tls", None)
        if certs:
            cfg["tls"] = {"cert": certs["cert"], "key": certs["key"]}
            cfg["listener"][0]["client_tls"] = "require"

    mux = harness.Sqlmux(pg, mode="transaction", size=st.pool_size, tweak=tweak, start_timeout=15.0)
    try:
        mux.__enter__()
    except harness.TestFailure as e:
        if certs:
            shutil.rmtree(os.path.dirname(certs["ca"]), ignore_errors=True)
        raise HarnessError(f"{name}: {e}") from None
    pid = mux.proc.pid
    workers_seen = _started_workers(mux)
    if not base:
        st.sqlmux_workers_seen = workers_seen
    mport = metrics_port[0] if metrics else None
    if mport is not None:
        try:
            text = scrape_metrics(mport)
            if "# TYPE sqlmux_" not in text:
                raise HarnessError("no sqlmux_* families in it")
        except (OSError, HarnessError) as e:
            mux.__exit__(HarnessError, None, None)  # stops it, prints its log tail
            raise HarnessError(f"{name}: /metrics on 127.0.0.1:{mport}: {e}") from None
    target = Target(name, mux.host, mux.port, pid=pid, alive=mux.running, log_tail=mux.log_tail,
                    metrics_port=mport, sslmode="require" if tls else None,
                    tls_ca=certs["ca"] if certs else None)
    tls_note = ""
    if tls:
        try:
            tls_note = f", clients over {check_tls(target)} only (plaintext refused)"
        except HarnessError:
            mux.__exit__(HarnessError, None, None)
            shutil.rmtree(os.path.dirname(certs["ca"]), ignore_errors=True)
            raise
    log(f"{name} up on 127.0.0.1:{mux.port} (pid {pid}, {workers_seen} worker(s)"
        f"{'' if st.workers is not None else ' by default'}, open-file limit {proc_nofile(pid)}"
        + (f", metrics on 127.0.0.1:{mport}" if mport is not None else "") + tls_note
        + (f", binary {sqlmux_bin}" if base else "") + ")")
    try:
        yield target
    except BaseException:
        mux.__exit__(*sys.exc_info())
        raise
    finally:
        if certs:
            shutil.rmtree(os.path.dirname(certs["ca"]), ignore_errors=True)
    try:
        mux.__exit__(None, None, None)
    except harness.TestFailure as e:
        problems.append(f"sqlmux shutdown: {e}")
        log(f"PROBLEM: sqlmux shutdown: {str(e)[:2000]}")


# ---------------------------------------------------------------------------
# PgBouncer
# ---------------------------------------------------------------------------


class _ProxyProcess:
    """The lifecycle PgBouncer and HAProxy share: a proxy daemon in the
    foreground for one scenario, in a workdir of its own, started on a free
    port (again on another one when the port was taken), read as a Target,
    stopped with SIGTERM (SIGKILL after 10 s) and its workdir removed.
    Subclasses give `label`, `name`, `config_text()` and `_start()`, which
    prepares the workdir and calls `_spawn()`."""

    label = "proxy"
    host = "127.0.0.1"

    def __init__(self):
        self.proc = None
        self.dir = None
        self.port = None
        self.log_path = None
        self._logf = None

    def __enter__(self):
        harness._register(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            print(f"--- {self.label} log tail ---\n{self.log_tail(40)}", file=sys.stderr)
        self.close()
        return False

    def _spawn(self, config_name: str, argv: Callable[[str], list[str]], describe: Callable[[], str],
               prepare: Callable[[str], None] = lambda cfg: None, **popen_kw):
        """Writes config_text() to `config_name` in the workdir and runs
        argv(config path) until it listens on self.port (3 ports at most)."""
        self.log_path = os.path.join(self.dir, f"{self.name}.log")
        for attempt in range(3):
            self.port = harness.free_port()
            cfg = os.path.join(self.dir, config_name)
            with open(cfg, "w") as f:
                f.write(self.config_text())
            prepare(cfg)
            self._logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(argv(cfg), stdin=subprocess.DEVNULL, stdout=self._logf,
                                         stderr=subprocess.STDOUT, preexec_fn=preexec_raise_nofile, cwd=self.dir,
                                         **popen_kw)
            # harness's stale-run reaper kills a recorded daemon.pid whose
            # command line names this dir, if our harness process died.
            with open(os.path.join(self.dir, "daemon.pid"), "w") as f:
                f.write(str(self.proc.pid))
            if harness.wait_port(self.host, self.port, 10.0, self.proc):
                log(f"{describe()} up on {self.host}:{self.port} "
                    f"(pid {self.proc.pid}, open-file limit {proc_nofile(self.proc.pid)})")
                return
            tail = self.log_tail(30)
            self._kill()
            if "in use" not in tail.lower() or attempt == 2:
                raise HarnessError(f"{self.label} did not start listening on {self.host}:{self.port} "
                                   f"(exit code {self.proc.returncode}):\n{tail}")

    def target(self) -> Target:
        return Target(self.name, self.host, self.port, pid=self.proc.pid, alive=self.running,
                      log_tail=self.log_tail)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return harness._tail(self.log_path, n) if self.dir and self.log_path else ""

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._logf:
            self._logf.close()
            self._logf = None

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # PgBouncer: immediate shutdown; HAProxy: hard stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        harness._unregister(self)


class PgBouncer(_ProxyProcess):
    """PgBouncer in the foreground, as the postgres user (it refuses to run as
    root). Popen's user=/group= switch identity before exec, so our child
    *is* pgbouncer: its pid is the one whose CPU and memory we read (runuser
    would fork and leave a PAM session process in between)."""

    label = "PgBouncer"

    def __init__(self, pg, st: ProxySettings, mode: str = "transaction", pool_size: int | None = None):
        super().__init__()
        self.pg = pg
        self.st = st
        self.mode = mode
        self.pool_size = pool_size or st.pool_size
        self.name = "pgbouncer" if mode == "transaction" else f"pgbouncer-{mode}"

    def config_text(self) -> str:
        return "\n".join([
            "[databases]",
            f"{DB} = host={self.pg.host} port={self.pg.port} dbname={DB} user={USER} password={PASSWORD}",
            "",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {self.dir}/userlist.txt",
            f"pool_mode = {self.mode}",
            f"default_pool_size = {self.pool_size}",
            "min_pool_size = 0",
            "reserve_pool_size = 0",
            f"max_client_conn = {self.st.max_client_conn}",
            "max_db_connections = 0",
            "listen_backlog = 4096",
            "log_connections = 0",
            "log_disconnections = 0",
            "log_pooler_errors = 1",
            "query_wait_timeout = 120",
            "server_idle_timeout = 600",
            "server_lifetime = 3600",
            "server_connect_timeout = 15",
            "ignore_startup_parameters = extra_float_digits",
            f"pidfile = {self.dir}/pgbouncer.pid",
            "logfile =",
            "",
        ])

    def _start(self):
        self.dir = make_workdir("bouncer")
        pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # The SCRAM verifier PostgreSQL stores for app (same salt and
        # iterations): PgBouncer then authenticates to the server with the
        # keys the client proved (SCRAM pass-through). A verifier with
        # another salt fails the server login: a [databases] user= that is
        # also in auth_file takes its auth_file entry, not password=.
        verifier = self.pg.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{USER}'").strip()
        if not verifier.startswith("SCRAM-SHA-256$"):
            raise HarnessError(f"no SCRAM verifier for {USER} in pg_authid: {verifier[:40]!r}")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write(f'"{USER}" "{verifier}"\n')

        def prepare(cfg: str):
            if pw:
                for name in (self.dir, cfg, os.path.join(self.dir, "userlist.txt")):
                    os.chown(name, pw.pw_uid, pw.pw_gid)

        kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[]) if pw else {}
        self._spawn("pgbouncer.ini", lambda cfg: ["pgbouncer", cfg],
                    lambda: f"PgBouncer ({self.mode} pooling, pool of {self.pool_size})", prepare, **kw)


@contextlib.contextmanager
def pgbouncer(pg, st: ProxySettings, mode: str = "transaction", pool_size: int | None = None):
    with PgBouncer(pg, st, mode, pool_size) as b:
        yield b.target()


# ---------------------------------------------------------------------------
# HAProxy in TCP mode: a relay without pooling (issue 17)
# ---------------------------------------------------------------------------


class HAProxy(_ProxyProcess):
    """Debian's HAProxy (`haproxy -db -f cfg`: foreground, one process, no
    master) in TCP mode relaying each client connection to the server (`db`:
    PostgreSQL, or MariaDB for "mysql-haproxy") on a connection of its own:
    no pooling, no protocol parsing, so the server sees one backend per
    client. One thread (`nbthread 1`), like PgBouncer, so its CPU is one
    event loop's, as theirs; its pid is the process whose CPU is measured.
    `maxconn` leaves room for 2,000 clients and more."""

    label = "HAProxy"

    def __init__(self, db, maxconn: int = 5000, name: str = "haproxy"):
        super().__init__()
        self.db = db
        self.maxconn = maxconn
        self.name = name

    def config_text(self) -> str:
        return "\n".join([
            "global",
            f"    maxconn {self.maxconn}",
            "    nbthread 1",
            "defaults",
            "    mode tcp",
            "    timeout connect 10s",
            "    timeout client 1h",
            "    timeout server 1h",
            f"listen {self.name}",
            f"    bind {self.host}:{self.port}",
            f"    maxconn {self.maxconn}",
            f"    server db {self.db.host}:{self.db.port}",
            "",
        ])

    def _start(self):
        self.dir = make_workdir("haproxy")
        self._spawn("haproxy.cfg", lambda cfg: [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", cfg],
                    lambda: f"{self.name}: HAProxy (TCP mode, no pooling, nbthread 1, maxconn {self.maxconn})")


@contextlib.contextmanager
def haproxy(db, name: str = "haproxy"):
    with HAProxy(db, name=name) as h:
        yield h.target()


# ---------------------------------------------------------------------------
# A set of targets for one scenario
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def targets(pg, names: list[str], sqlmux_bin: str, st: ProxySettings, problems: list,
            baseline_bin: str | None = None, session_pool_size: int | None = None, my=None):
    """Starts the proxies among `names` (fresh instances for each scenario);
    yields ({name: Target}, {name: why it could not start}). A proxy that
    does not start leaves the others to run. sqlmux-base runs
    `baseline_bin`, the other sqlmux targets `sqlmux_bin`. pgbouncer-session
    is PgBouncer in session mode with `session_pool_size` server
    connections (the notify scenario's reference: one per client). The
    mysql-* targets need `my`, the run's MariaDB."""
    with contextlib.ExitStack() as stack:
        out, failed = {}, {}
        for name in names:
            try:
                if name.startswith("mysql-") and my is None:
                    raise HarnessError("no MariaDB in this run")
                if name == "mysql-direct":
                    out[name] = mysql_direct(my)
                elif name == "mysql-haproxy":
                    out[name] = stack.enter_context(haproxy(my, name))
                elif name == "mysql-sqlmux":
                    out[name] = stack.enter_context(sqlmux_mysql(my, sqlmux_bin, st, problems))
                elif name == "direct":
                    out[name] = direct(pg)
                elif name == "pgbouncer":
                    out[name] = stack.enter_context(pgbouncer(pg, st))
                elif name == "haproxy":
                    out[name] = stack.enter_context(haproxy(pg))
                elif name == "pgbouncer-session":
                    out[name] = stack.enter_context(pgbouncer(pg, st, "session", session_pool_size))
                elif name == "sqlmux-base":
                    if not baseline_bin:
                        raise HarnessError("sqlmux-base needs --baseline-bin")
                    out[name] = stack.enter_context(sqlmux(pg, baseline_bin, st, problems, base=True))
                elif name in SQLMUX_TARGETS:
                    out[name] = stack.enter_context(sqlmux(pg, sqlmux_bin, st, problems,
                                                           metrics=name == "sqlmux-metrics",
                                                           tls=name == "sqlmux-tls"))
                else:
                    raise ValueError(f"unknown target {name}")
            except HarnessError as e:
                failed[name] = str(e)
        yield out, failed
