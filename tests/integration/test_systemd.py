#!/usr/bin/python3
"""systemd integration: sd_notify (READY=1 / STATUS= / STOPPING=1 on
NOTIFY_SOCKET), socket activation (LISTEN_FDS, by hand and through
systemd-socket-activate), the installed files (`cmake --install` with a
prefix and with DESTDIR) and `systemd-analyze verify` of the generated unit."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

from harness import *
from harness import TMP_PREFIX, _asan_findings

BUILD_DIR = os.environ.get("SQLMUX_BUILD_DIR") or os.path.dirname(os.path.abspath(SQLMUX_BIN))


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
    Every datagram is kept with its arrival time; on READY=1 it connects to
    `ready_probe()` (host, port) at once and records whether that worked."""

    def __init__(self, directory: str, ready_probe=None):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.ready_probe = ready_probe
        self.messages = []  # (monotonic time, {key: value}, raw text)
        self.ready_connect = None  # None: no READY yet; True/False: probe result
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            if fields.get("READY") == "1" and self.ready_connect is None and self.ready_probe:
                try:
                    with socket.create_connection(self.ready_probe(), timeout=1):
                        self.ready_connect = True
                except OSError:
                    self.ready_connect = False
            with self.lock:
                self.messages.append((time.monotonic(), fields, text))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float, what: str, after: float = 0.0):
        """The first notification since `after` (monotonic) for which pred(fields)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, f, raw in self.snapshot():
                if t >= after and pred(f):
                    return t, f
            time.sleep(0.05)
        fail(f"no notification {what} within {timeout}s; got: {[m[2] for m in self.snapshot()]}")

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


STATUS_RE = re.compile(r"^(ready|stopping): (\d+) clients?, (\d+) server connections?$")


def status_counts(fields, state="ready"):
    m = STATUS_RE.match(fields.get("STATUS", ""))
    if not m or m.group(1) != state:
        return None
    return int(m.group(2)), int(m.group(3))


def case_notify_ready_status_stopping(pg):
    require_sqlmux("sd_notify")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "notify-")
    mux = None
    try:
        mux = Sqlmux(pg, mode="transaction", size=4, env={"NOTIFY_SOCKET": os.path.join(d, "notify.sock")})
        nl = NotifyListener(d, ready_probe=lambda: (mux.host, mux.port))
        try:
            with mux:
                t_ready, ready = nl.wait_for(lambda f: f.get("READY") == "1", 10, "READY=1")
                check(nl.ready_connect is True,
                      "READY=1 arrived before the listener accepted connections (connect at READY failed)")
                check_eq(status_counts(ready), (0, 0), f"STATUS with READY=1 ({ready.get('STATUS')!r})")
                log(f"READY=1 with STATUS={ready['STATUS']!r}; the listener accepted a connection at once")

                clients = [mux.raw() for _ in range(3)]
                for c in clients:
                    c.query_ok("SELECT 1")
                _, st = nl.wait_for(lambda f: (status_counts(f) or (0, 0))[0] == 3, 8,
                                    "STATUS= with 3 clients (refreshed every 2s)")
                n_clients, n_servers = status_counts(st)
                check(1 <= n_servers <= 4, f"server connections in {st['STATUS']!r} (pool size 4, 3 queries ran)")
                log(f"with 3 clients: STATUS={st['STATUS']!r}")
                t_left = time.monotonic()
                for c in clients:
                    c.terminate()
                _, st = nl.wait_for(lambda f: (status_counts(f) or (1, 0))[0] == 0, 8,
                                    "STATUS= back to 0 clients", after=t_left)
                log(f"after they left: STATUS={st['STATUS']!r}")

                check(not any("STOPPING" in f for _, f, _ in nl.snapshot()), "STOPPING=1 before any signal")
                held = mux.raw()
                held.query_ok("BEGIN")
                t_sig = time.monotonic()
                mux.send_signal(signal.SIGTERM)
                t_stop, stopping = nl.wait_for(lambda f: f.get("STOPPING") == "1", 5, "STOPPING=1 after SIGTERM")
                check(t_stop >= t_sig, "STOPPING=1 before SIGTERM was sent")
                check(status_counts(stopping, "stopping") is not None,
                      f"STATUS with STOPPING=1: {stopping.get('STATUS')!r}")
                check(mux.running(), "sqlmux exited while a transaction was open (STOPPING=1 must come first)")
                log(f"STOPPING=1 with STATUS={stopping['STATUS']!r} {t_stop - t_sig:.3f}s after SIGTERM")
                held.query_ok("COMMIT")
                check_eq(mux.wait_exit(5), 0, "exit code after SIGTERM")
                check_eq(sum(1 for _, f, _ in nl.snapshot() if f.get("READY") == "1"), 1, "READY=1 messages")
                check("sd_notify" not in mux.log_text(), "sd_notify failure logged although NOTIFY_SOCKET worked")
        finally:
            nl.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_notify_socket_unreachable(pg):
    """NOTIFY_SOCKET naming nothing: the daemon serves anyway, with one warning."""
    require_sqlmux("sd_notify")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "notify-")
    try:
        with Sqlmux(pg, env={"NOTIFY_SOCKET": os.path.join(d, "nobody-listens")}) as mux:
            mux.assert_serving()
            time.sleep(2.5)  # a status refresh or two
            mux.assert_serving()
            lines = [ln for ln in mux.log_text().splitlines() if "sd_notify" in ln]
            check_eq(len(lines), 1, f"warnings about the unreachable NOTIFY_SOCKET ({lines})")
            check(os.path.join(d, "nobody-listens") in lines[0], f"warning names the socket: {lines[0]!r}")
            log(f"logged once: {lines[0].strip()}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_no_notify_socket_logs_nothing(pg):
    require_sqlmux("sd_notify")
    with Sqlmux(pg, env={"NOTIFY_SOCKET": ""}) as mux:
        mux.assert_serving()
        check_eq(mux.wait_exit(0.1), None, "sqlmux exited")
        mux.send_signal(signal.SIGTERM)
        check_eq(mux.wait_exit(5), 0, "exit code")
        text = mux.log_text()
        check("sd_notify" not in text and "NOTIFY_SOCKET" not in text and "socket activation" not in text,
              f"systemd messages logged without systemd:\n{text}")


# A stand-in for systemd's fork+exec: moves the inherited sockets to fds
# 3, 4, ... and sets LISTEN_PID to its own pid, then execs (keeping the pid).
WRAPPER = r"""
import fcntl, os, sys
sep = sys.argv.index("--")
fds = [int(x) for x in sys.argv[1:sep]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_FDNAMES"] = ":".join(f"test{i}" for i in range(len(fds)))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[sep + 1], sys.argv[sep + 1:])
"""


class Activated:
    """sqlmux started with sockets passed in LISTEN_FDS, by `argv_prefix`
    (a wrapper that execs the daemon). Logs to DIR/mux.log."""

    def __init__(self, pg, directory, config_text, argv_prefix, pass_fds=(), env=None):
        self.dir = directory
        self.cfg = os.path.join(directory, "mux.toml")
        with open(self.cfg, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(directory, "mux.log")
        self.logf = open(self.log_path, "ab")
        exe = os.path.join(directory, "daemon-under-test")
        os.symlink(os.path.abspath(SQLMUX_BIN), exe)
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.pop("NOTIFY_SOCKET", None)
        e.update(env or {})
        self.proc = subprocess.Popen(argv_prefix + [exe, "--config", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, pass_fds=pass_fds, env=e)
        with open(os.path.join(directory, "daemon.pid"), "w") as f:
            f.write(str(self.proc.pid))

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        fail(f"{needle!r} not in the log (exit code {self.proc.poll()}):\n{self.log_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                rc = "killed"
        else:
            rc = self.proc.returncode
        self.logf.close()
        bad = _asan_findings(self.log_text())
        if bad:
            fail(f"sanitizer report in sqlmux log:\n{bad}")
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.logf.closed:
            self.logf.close()


def listening(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    if family != socket.AF_UNIX:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(64)
    return s


def daemon_socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            out.add(int(m.group(1)))
    return out


def query_42(dsn):
    import psycopg2
    c = psycopg2.connect(dsn)
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SELECT 41 + 1")
            return cur.fetchone()[0]
    finally:
        c.close()


def case_socket_activation_listen_fds(pg):
    """Three passed sockets: a TCP one and a unix one that match listeners,
    and a TCP one that matches none (logged and closed). A third listener
    gets no socket and is opened by the daemon."""
    require_sqlmux("socket activation")
    import psycopg2  # noqa: F401
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "act-")
    socks = []
    act = None
    try:
        with open(os.path.join(d, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        os.chmod(d, 0o755)
        p_tcp, p_extra, p_own = free_port(), free_port(), free_port()
        unix_path = os.path.join(d, f".s.PGSQL.{p_tcp}")
        s_tcp = listening(socket.AF_INET, ("127.0.0.1", p_tcp))
        s_unix = listening(socket.AF_UNIX, unix_path)
        s_extra = listening(socket.AF_INET, ("127.0.0.1", p_extra))
        socks = [s_tcp, s_unix, s_extra]
        cfg = default_config(pg.port, p_tcp)
        cfg["listener"] = [{"protocol": "postgres", "listen": f"127.0.0.1:{p_own}"},
                           {"protocol": "postgres", "listen": f"unix:{unix_path}"},
                           {"protocol": "postgres", "listen": f"127.0.0.1:{p_tcp}"}]
        fds = [s.fileno() for s in socks]
        act = Activated(pg, d, to_toml(cfg), [sys.executable, "-c", WRAPPER] + [str(x) for x in fds] + ["--"],
                        pass_fds=fds)
        act.wait_log("sqlmux started")
        text = act.log_text()
        log("\n" + "\n".join(ln for ln in text.splitlines() if "listen" in ln or "socket" in ln))
        check("socket activation: systemd passed 3 socket(s)" in text, "log of the passed sockets")
        check(re.search(rf"listening on 127\.0\.0\.1:{p_tcp} \(postgres\): socket from systemd \(fd \d, test\d\)",
                        text), f"TCP listener 127.0.0.1:{p_tcp} taken from systemd")
        check(re.search(rf"listening on unix:{re.escape(unix_path)} \(postgres\): socket from systemd", text),
              "unix listener taken from systemd")
        check(re.search(rf"listening on 127\.0\.0\.1:{p_own} \(postgres\)\n", text + "\n") and
              f"127.0.0.1:{p_own} (postgres): socket from systemd" not in text,
              f"listener 127.0.0.1:{p_own} opened by the daemon itself")
        check(re.search(rf"socket fd \d, test\d \(127\.0\.0\.1:{p_extra}\) matches no configured listener; "
                        r"closing it", text), "the unmatched socket is logged")
        inodes = daemon_socket_inodes(act.proc.pid)
        check(os.fstat(s_extra.fileno()).st_ino not in inodes, "the daemon still holds the unmatched socket")
        check(os.fstat(s_tcp.fileno()).st_ino in inodes, "the daemon does not hold the passed TCP socket")
        check(os.fstat(s_unix.fileno()).st_ino in inodes, "the daemon does not hold the passed unix socket")

        check_eq(query_42(f"host=127.0.0.1 port={p_tcp} dbname=appdb user=app password=apppass "
                          "connect_timeout=10"), 42, "query through the passed TCP socket")
        check_eq(query_42(f"host={d} port={p_tcp} dbname=appdb user=app password=apppass connect_timeout=10"),
                 42, "query through the passed unix socket")
        check_eq(query_42(f"host=127.0.0.1 port={p_own} dbname=appdb user=app password=apppass "
                          "connect_timeout=10"), 42, "query through the listener the daemon opened")
        rc = act.stop()
        check_eq(rc, 0, "exit code after SIGTERM")
        check(os.path.exists(unix_path), "sqlmux unlinked the unix socket that systemd owns")
    finally:
        if act:
            act.kill()
        for s in socks:
            s.close()
        shutil.rmtree(d, ignore_errors=True)


def case_socket_activation_wrong_pid_ignored(pg):
    """LISTEN_FDS meant for another process (LISTEN_PID differs) is ignored:
    the daemon opens its listener itself and does not touch fd 3."""
    require_sqlmux("socket activation")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "act-")
    act = None
    try:
        with open(os.path.join(d, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        port = free_port()
        cfg = default_config(pg.port, port)
        act = Activated(pg, d, to_toml(cfg), [], env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
        act.wait_log("sqlmux started")
        text = act.log_text()
        check("socket activation" not in text and "socket from systemd" not in text,
              f"LISTEN_FDS for another pid was used:\n{text}")
        check_eq(query_42(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass "
                          "connect_timeout=10"), 42, "query through the listener")
        check_eq(act.stop(), 0, "exit code after SIGTERM")
    finally:
        if act:
            act.kill()
        shutil.rmtree(d, ignore_errors=True)


def find_socket_activate():
    for p in ("/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("systemd-socket-activate")


def case_systemd_socket_activate(pg):
    """systemd's own tool: it binds, waits for the first connection, then
    execs sqlmux with the socket; that first client is served."""
    require_sqlmux("socket activation")
    tool = find_socket_activate()
    if not tool:
        raise Skip("systemd-socket-activate not installed (Debian package systemd)")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "act-")
    act = None
    try:
        with open(os.path.join(d, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        port = free_port()
        cfg = default_config(pg.port, port)
        # systemd-socket-activate passes on only PATH, TERM, USER, HOME and --setenv ones.
        env_args = [f"--setenv={k}" for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")
                    if k in os.environ or k == "ASAN_OPTIONS"]
        act = Activated(pg, d, to_toml(cfg), [tool, f"--listen=127.0.0.1:{port}", "--fdname=sqlmux.socket"]
                        + env_args)
        act.wait_log(f"Listening on 127.0.0.1:{port}")
        check("sqlmux started" not in act.log_text(), "sqlmux ran before the first connection")
        # The first client triggers the exec and waits in the backlog meanwhile.
        check_eq(query_42(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass "
                          "connect_timeout=15"), 42, "first query through the activated socket")
        text = act.log_text()
        check(re.search(rf"listening on 127\.0\.0\.1:{port} \(postgres\): socket from systemd "
                        r"\(fd 3, sqlmux\.socket\)", text), f"log says the socket came from systemd:\n{text}")
        log(next(ln for ln in text.splitlines() if "socket from systemd" in ln))
        check_eq(query_42(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass "
                          "connect_timeout=10"), 42, "second query")
        check_eq(act.stop(), 0, "exit code after SIGTERM")
    finally:
        if act:
            act.kill()
        shutil.rmtree(d, ignore_errors=True)


def cmake_install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    r = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                       env=env, timeout=60)
    if r.returncode != 0:
        fail(f"cmake --install {BUILD_DIR} --prefix {prefix} (DESTDIR={destdir}) failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def unit_line(path, key):
    with open(path) as f:
        vals = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith(key + "=")]
    check(vals, f"{key}= missing in {path}")
    return vals[-1]


def require_build_dir():
    if not os.path.exists(os.path.join(BUILD_DIR, "cmake_install.cmake")):
        raise Skip(f"{BUILD_DIR} is not a CMake build directory (set SQLMUX_BUILD_DIR)")


def case_install_destdir_and_prefix(pg):
    require_build_dir()
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "inst-")
    try:
        # A package build: prefix /usr staged in DESTDIR.
        stage = os.path.join(d, "stage")
        cmake_install("/usr", stage)
        unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                                 capture_output=True, text=True).stdout.strip() or "/usr/lib/systemd/system"
        files = {
            "binary": f"{stage}/usr/bin/sqlmux",
            "service": f"{stage}{unitdir}/sqlmux.service",
            "socket": f"{stage}{unitdir}/sqlmux.socket",
            "config": f"{stage}/etc/sqlmux/sqlmux.toml",
            "example": f"{stage}/etc/sqlmux/sqlmux.toml.example",
        }
        for what, p in files.items():
            check(os.path.isfile(p), f"{what} not installed at {p}; installed: "
                                     f"{sorted(os.path.relpath(os.path.join(r, x), stage) for r, _, fs in os.walk(stage) for x in fs)}")
        check(os.access(files["binary"], os.X_OK), "installed binary not executable")
        sysusers = subprocess.run(["pkg-config", "--variable=sysusersdir", "systemd"],
                                  capture_output=True, text=True).stdout.strip() or "/usr/lib/sysusers.d"
        check(os.path.isfile(f"{stage}{sysusers}/sqlmux.conf"), f"{sysusers}/sqlmux.conf not installed")
        mode = stat.S_IMODE(os.stat(files["config"]).st_mode)
        check(mode & 0o007 == 0, f"sqlmux.toml (holds passwords) is world-accessible: {oct(mode)}")
        svc = files["service"]
        check_eq(unit_line(svc, "ExecStart"), "/usr/bin/sqlmux --config /etc/sqlmux/sqlmux.toml", "ExecStart")
        check_eq(unit_line(svc, "ExecStartPre"), "/usr/bin/sqlmux --check-config /etc/sqlmux/sqlmux.toml",
                 "ExecStartPre")
        check_eq(unit_line(svc, "Type"), "notify", "Type")
        with open(svc) as f:
            reloads = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("ExecReload=")]
        check_eq(reloads, ["/usr/bin/sqlmux --check-config /etc/sqlmux/sqlmux.toml", "/bin/kill -HUP $MAINPID"],
                 "ExecReload validates the file before SIGHUP")
        check("@" not in open(svc).read().replace("@system-service", "").replace("@privileged", "")
              .replace("@resources", ""), "unsubstituted @VAR@ in the unit")
        with open(files["config"]) as a, open(os.path.join(REPO, "config/examples/installed.toml")) as b:
            check_eq(a.read(), b.read(), "installed sqlmux.toml is the inert config")
        with open(files["example"]) as a, open(os.path.join(REPO, "config/examples/postgres.toml")) as b:
            check_eq(a.read(), b.read(), "sqlmux.toml.example is the example config")
        live = [ln for ln in open(files["config"]) if not ln.lstrip().startswith("#")]
        check(not any(ln.startswith(("[[pool]]", "[[user]]", "password")) for ln in live),
              f"the installed sqlmux.toml is not inert (a pool, user or password in it): {live}")

        # A reinstall keeps the operator's configuration.
        with open(files["config"], "a") as f:
            f.write("# edited by the operator\n")
        out = cmake_install("/usr", stage)
        check("edited by the operator" in open(files["config"]).read(), "reinstall overwrote sqlmux.toml")
        check("Keeping:" in out, f"reinstall does not say it kept sqlmux.toml:\n{out}")

        # A relocated install: the unit's paths follow the prefix.
        prefix = os.path.join(d, "pfx")
        cmake_install(prefix)
        svc2 = f"{prefix}/lib/systemd/system/sqlmux.service"
        check(os.path.isfile(svc2), f"{svc2} not installed")
        check_eq(unit_line(svc2, "ExecStart"), f"{prefix}/bin/sqlmux --config {prefix}/etc/sqlmux/sqlmux.toml",
                 "ExecStart under a custom prefix")
        r = subprocess.run(unit_line(svc2, "ExecStartPre").split(), capture_output=True, text=True, timeout=30)
        check_eq(r.returncode, 0, f"installed ExecStartPre (--check-config) on the installed config: {r.stderr}")
        log(f"installed ok: {r.stdout.strip()}")
        # A broken file fails the reload's first step (systemctl reload then
        # fails) instead of a SIGHUP that reports success.
        with open(f"{prefix}/etc/sqlmux/sqlmux.toml", "a") as f:
            f.write("[pool\n")
        with open(svc2) as f:
            first_reload = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("ExecReload=")][0]
        r = subprocess.run(first_reload.split(), capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "sqlmux.toml:" in r.stderr,
              f"ExecReload's check on a broken file: rc={r.returncode} {r.stderr}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_systemd_analyze(pg):
    """systemd-analyze verify / security on the installed units (offline:
    works without systemd running as PID 1)."""
    require_build_dir()
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skip("systemd-analyze not installed (Debian package systemd)")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "inst-")
    try:
        prefix = os.path.join(d, "pfx")  # so that ExecStart= names an existing binary
        cmake_install(prefix)
        units = [f"{prefix}/lib/systemd/system/sqlmux.service", f"{prefix}/lib/systemd/system/sqlmux.socket"]
        r = subprocess.run([tool, "verify"] + units, capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 and ("System has not been booted with systemd" in out or "Failed to connect" in out):
            raise Skip(f"systemd-analyze verify cannot run here: {out}")
        check_eq(r.returncode, 0, f"systemd-analyze verify exit code (output: {out!r})")
        check_eq(out, "", "systemd-analyze verify output (warnings)")
        r = subprocess.run([tool, "security", "--offline=yes", units[0]], capture_output=True, text=True,
                           timeout=60)
        m = re.search(r"Overall exposure level for sqlmux\.service: ([\d.]+)", r.stdout + r.stderr)
        check(m, f"systemd-analyze security printed no exposure level:\n{r.stdout}{r.stderr}")
        check(float(m.group(1)) <= 2.0, f"exposure level {m.group(1)} (want <= 2.0):\n{r.stdout}")
        log(f"systemd-analyze verify: clean; security exposure {m.group(1)}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_reload_dropin_upgrades(pg):
    """The installed example drop-in (upgrade-on-reload.conf) makes
    `systemctl reload` an online upgrade: systemd-analyze verify accepts the
    unit with it, and its ExecReload= lines, run as systemd would against
    the installed ExecStart=, check the file and hand the running process
    over to a new one that keeps an idle client; a broken file fails the
    first line and starts nothing."""
    import psycopg2
    require_build_dir()
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "inst-")
    proc = None
    new_pid = None
    logf = None
    try:
        prefix = os.path.join(d, "pfx")
        cmake_install(prefix)
        dropin = f"{prefix}/share/doc/sqlmux/examples/upgrade-on-reload.conf"
        check(os.path.isfile(dropin), f"{dropin} not installed")
        unitdir = f"{prefix}/lib/systemd/system"
        os.makedirs(f"{unitdir}/sqlmux.service.d")
        shutil.copy(dropin, f"{unitdir}/sqlmux.service.d/")
        tool = shutil.which("systemd-analyze")
        if tool:
            r = subprocess.run([tool, "verify", f"{unitdir}/sqlmux.service"], capture_output=True, text=True,
                               timeout=60)
            out = (r.stdout + r.stderr).strip()
            if not (r.returncode != 0 and ("System has not been booted" in out or "Failed to connect" in out)):
                check_eq((r.returncode, out), (0, ""), "systemd-analyze verify of the unit with the drop-in")
        with open(dropin) as f:
            reloads = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("ExecReload=")]
        conf = f"{prefix}/etc/sqlmux/sqlmux.toml"
        check_eq(reloads, ["", f"{prefix}/bin/sqlmux --check-config {conf}", "/bin/kill -USR2 $MAINPID"],
                 "the drop-in's ExecReload= lines (reset, check the file, SIGUSR2)")
        port = free_port()
        cfg = default_config(pg.port, port)
        cfg["server"]["upgrade_socket"] = os.path.join(d, "upgrade.sock")
        cfg["server"]["shutdown_timeout"] = "20s"
        with open(conf, "w") as f:
            f.write(to_toml(cfg))
        log_path = os.path.join(d, "mux.log")
        logf = open(log_path, "ab")
        proc = subprocess.Popen(unit_line(f"{unitdir}/sqlmux.service", "ExecStart").split(),
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)

        def text():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        def wait_log(needle, timeout=20.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if needle in text():
                    return
                time.sleep(0.05)
            fail(f"{needle!r} not in the log:\n{text()}")

        check(wait_port("127.0.0.1", port, 15, proc), f"the installed sqlmux does not listen:\n{text()}")

        def run_reload():
            rcs = []
            for line in reloads[1:]:
                r = subprocess.run(line.replace("$MAINPID", str(proc.pid)).split(), capture_output=True,
                                   text=True, timeout=30)
                rcs.append((r.returncode, r.stderr.strip()))
                if r.returncode != 0:
                    break  # systemd stops at a failing ExecReload= line
            return rcs

        # A broken file: the reload fails at its first line; no upgrade.
        good = open(conf).read()
        with open(conf, "a") as f:
            f.write("[pool\n")
        rcs = run_reload()
        check(len(rcs) == 1 and rcs[0][0] != 0 and "sqlmux.toml:" in rcs[0][1],
              f"a broken file fails the reload at --check-config: {rcs}")
        with open(conf, "w") as f:
            f.write(good)
        check("SIGUSR2: started" not in text(), f"an upgrade started although the check failed:\n{text()}")

        idle = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass "
                                "connect_timeout=10")
        idle.autocommit = True
        with idle.cursor() as cur:
            cur.execute("SET application_name = 'reload_upgrade'")
            cur.execute("SELECT 1")
        rcs = run_reload()
        check_eq([rc for rc, _ in rcs], [0, 0], f"the reload's lines ({rcs})")
        wait_log("took over from pid")
        m = re.search(r"SIGUSR2: started .* --upgrade --config .* \(pid (\d+)\)", text())
        check(m, f"the log names the new process:\n{text()}")
        new_pid = int(m.group(1))
        check_eq(proc.wait(30), 0, "the old process's exit code after the upgrade")
        with idle.cursor() as cur:
            cur.execute("SELECT current_setting('application_name'), 7")
            check_eq(cur.fetchone(), ("reload_upgrade", 7), "the idle client after the upgrade")
        idle.close()
        c = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass connect_timeout=10")
        with c.cursor() as cur:
            cur.execute("SELECT 42")
            check_eq(cur.fetchone()[0], 42, "a new client on the new process")
        c.close()
        check("refused" not in text(), f"connections refused:\n{text()[-3000:]}")
        log(f"reload through the drop-in: pid {proc.pid} handed over to pid {new_pid}")
        os.kill(new_pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and os.path.exists(f"/proc/{new_pid}"):
            try:
                with open(f"/proc/{new_pid}/stat") as f:
                    if f.read().split(") ", 1)[1][0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
        new_pid = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if new_pid is not None:
            try:
                os.kill(new_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if logf is not None:
            logf.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run_cases(__file__, [case_notify_ready_status_stopping, case_notify_socket_unreachable,
                         case_no_notify_socket_logs_nothing, case_socket_activation_listen_fds,
                         case_socket_activation_wrong_pid_ignored, case_systemd_socket_activate,
                         case_install_destdir_and_prefix, case_systemd_analyze,
                         case_reload_dropin_upgrades], timeout=180)
