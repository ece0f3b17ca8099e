"""The MySQL side of the integration-test harness: a throwaway MariaDB
server (MariaDbServer) and helpers for MySQL clients. harness.py re-exports
MariaDbServer; test scripts do

    from harness import *
    from mysql_harness import *

    def case_simple(my):
        with Sqlmux(None, my=my, mode="transaction", size=4) as mux:
            c = mux.my_connect()          # PyMySQL to sqlmux's mysql listener
            ...

    if __name__ == "__main__":
        run_cases(__file__, [case_simple, ...], server=MariaDbServer, direct=MY_DIRECT)

Environment:
    SQLMUX_MY_DIRECT    "1": a Sqlmux with only a MariaDB behind it starts
                        nothing and its my_port is MariaDB's own, so the
                        client side of the MySQL tests can be validated
                        without the daemon (SQLMUX_TEST_DIRECT=1 does the
                        same); sqlmux-only cases are skipped.
    MARIADBD            the server binary (default: mariadbd on PATH or
                        /usr/sbin/mariadbd)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness
from harness import DIRECT, KEEP, Skip, _register, _reap_stale, _tail, _unregister, fail, free_port, log

__all__ = ["MY_DIRECT", "MariaDbServer", "require_sqlmux_my", "my_errno", "expect_my_error",
           "MY_USER", "MY_PASSWORD", "MY_DB", "q", "one"]

MY_DIRECT = DIRECT or os.environ.get("SQLMUX_MY_DIRECT", "") == "1"
MY_USER, MY_PASSWORD, MY_DB = "app", "apppass", "appdb"


def _find_mariadbd() -> str:
    env = os.environ.get("MARIADBD")
    if env:
        return env
    for name in ("mariadbd", "mysqld"):
        p = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
        if p:
            return p
    return "/usr/sbin/mariadbd"


MARIADBD = _find_mariadbd()


def q(c, sql, args=None):
    """The rows of one statement on a PyMySQL / MySQLdb connection."""
    with c.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def one(c, sql, args=None):
    """The first column of the first row."""
    return q(c, sql, args)[0][0]


def require_sqlmux_my(what: str = ""):
    """Skips the current case when the MySQL clients talk to MariaDB itself."""
    if MY_DIRECT:
        raise Skip(f"only meaningful against sqlmux{': ' + what if what else ''}")


def my_errno(e: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL / aiomysql / MySQLdb exception."""
    args = getattr(e, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def expect_my_error(fn, codes, contains: str | None = None, what: str = "") -> BaseException:
    """Calls fn(); it must raise an exception carrying one of the MySQL
    error numbers `codes` (an int or a tuple) and, if given, `contains` in
    its text. Returns the exception."""
    if isinstance(codes, int):
        codes = (codes,)
    try:
        fn()
    except (harness.TestFailure, Skip):
        raise
    except Exception as e:  # noqa: BLE001
        code = my_errno(e)
        if code not in codes:
            fail(f"{what}: want MySQL error {'/'.join(map(str, codes))}, got {code} ({type(e).__name__}: {e})")
        if contains and contains.lower() not in str(e).lower():
            fail(f"{what}: error text {str(e)!r} lacks {contains!r}")
        return e
    fail(f"{what}: no error raised (want MySQL error {'/'.join(map(str, codes))})")


class MariaDbServer:
    """A throwaway MariaDB on a free loopback port, run as a child process
    (`mariadbd --no-defaults --user=root`) with its own data directory and
    unix socket in a temp dir.

    Small InnoDB files and buffers (starts in well under a second),
    --skip-name-resolve, max_connections 500, max_allowed_packet 64M,
    local_infile ON, utf8mb4 server charset (as Debian's packaged config
    has). Root has no password (unix socket, or TCP from 127.0.0.1). User
    app/apppass (hosts '%' and '127.0.0.1', mysql_native_password) has all
    privileges on database appdb.

    Its pid is recorded in daemon.pid and its command line names the temp
    dir, so a SIGKILLed run's server is reaped by the next run
    (harness._reap_stale), as a left-behind sqlmux is."""

    LABEL = "MariaDB"

    def __init__(self, max_connections: int = 500, extra_args: list[str] | None = None,
                 charset: str = "utf8mb4", collation: str = "utf8mb4_general_ci"):
        self.max_connections = max_connections
        self.extra_args = list(extra_args or [])
        self.charset = charset
        self.collation = collation
        self.dir = None
        self.port = None
        self.host = "127.0.0.1"
        self.proc = None
        self.logfile = os.devnull
        self._logf = None

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
        failed = exc_type is not None and exc_type is not Skip
        if failed:
            print(f"--- MariaDB log tail ({self.logfile}) ---\n{_tail(self.logfile, 30)}", file=sys.stderr)
        self.close(failed=failed)
        return False

    def _innodb_args(self) -> list[str]:
        # The same for mariadb-install-db's bootstrap and the server.
        return ["--innodb-data-file-path=ibdata1:4M:autoextend", "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=32M"]

    def _server_args(self) -> list[str]:
        return [
            MARIADBD, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
            f"--port={self.port}", f"--bind-address={self.host}", f"--socket={self.sock}",
            f"--pid-file={self.dir}/mariadb.pid", f"--log-error={self.logfile}",
            "--skip-name-resolve", "--skip-log-bin", "--performance-schema=OFF",
            f"--max-connections={self.max_connections}", "--max-allowed-packet=64M",
            "--local-infile=1", f"--character-set-server={self.charset}",
            f"--collation-server={self.collation}",
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--sync-binlog=0",
            *self._innodb_args(), *self.extra_args,
        ]

    def _start(self):
        self.dir = tempfile.mkdtemp(prefix=harness.TMP_PREFIX + "my-")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.datadir = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "mysqld.sock")
        self.logfile = os.path.join(self.dir, "mariadb.err")
        r = subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            *self._innodb_args()], capture_output=True, text=True, timeout=120, cwd=self.dir)
        if r.returncode != 0:
            fail(f"mariadb-install-db failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            if self._spawn(timeout=60):
                break
            last = _tail(self.logfile, 20)
            if "already in use" not in last and "Can't start server" not in last:
                fail(f"mariadbd did not start (exit code {self.proc.poll() if self.proc else None}):\n{last}")
        else:
            fail(f"mariadbd did not start after 3 ports:\n{last}")
        self.sql_many([
            "CREATE DATABASE appdb",
            "CREATE USER 'app'@'%' IDENTIFIED BY 'apppass'",
            "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'apppass'",
            "GRANT ALL PRIVILEGES ON appdb.* TO 'app'@'%'",
            "GRANT ALL PRIVILEGES ON appdb.* TO 'app'@'127.0.0.1'",
        ])
        log(f"MariaDB {self.version()} up on 127.0.0.1:{self.port} (socket {self.sock})")

    def _spawn(self, timeout: float) -> bool:
        """Starts mariadbd; True once it accepts root on its socket."""
        self._logf = open(os.path.join(self.dir, "mariadbd.out"), "ab")
        self.proc = subprocess.Popen(self._server_args(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir)
        with open(os.path.join(self.dir, "daemon.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                return False
            if os.path.exists(self.sock):
                try:
                    self.connect_root().close()
                    return True
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(0.05)
        self._kill()
        return False

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._logf:
            self._logf.close()
            self._logf = None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop_server(self, mode: str = "fast"):
        """Stops mariadbd (same data dir and port; start_server() again).
        mode "fast": SIGTERM (a clean shutdown); "immediate": SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        if mode == "immediate":
            self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap()
        self.proc = None
        try:
            os.unlink(self.sock)
        except OSError:
            pass

    def start_server(self):
        if not self._spawn(timeout=60):
            fail(f"mariadbd did not start again on :{self.port}:\n{_tail(self.logfile, 20)}")

    def restart_server(self, mode: str = "fast"):
        self.stop_server(mode)
        self.start_server()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self, failed: bool = False):
        if self.dir is None:
            _unregister(self)
            return
        if self.proc is not None:
            try:
                self.stop_server("fast" if not failed else "immediate")
            except Exception as e:  # noqa: BLE001
                print(f"stopping mariadbd failed: {e}", file=sys.stderr)
                self._kill()
        if failed and KEEP:
            print(f"keeping {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        _unregister(self)

    # -- connecting ---------------------------------------------------------
    def connect_root(self, db: str | None = None, **kw):
        """PyMySQL as root over the unix socket, autocommit."""
        import pymysql
        return pymysql.connect(unix_socket=self.sock, user="root", database=db, autocommit=True,
                               connect_timeout=10, **kw)

    def connect(self, db: str | None = MY_DB, user: str = MY_USER, password: str = MY_PASSWORD, **kw):
        """PyMySQL over TCP straight to MariaDB (bypasses sqlmux)."""
        import pymysql
        kw.setdefault("connect_timeout", 10)
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, database=db, **kw)

    def sql(self, stmt: str, args=None, db: str | None = None) -> list[tuple]:
        """Runs one statement as root; returns its rows (empty for none)."""
        c = self.connect_root(db)
        try:
            with c.cursor() as cur:
                cur.execute(stmt, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            c.close()

    def sql_many(self, stmts: list[str], db: str | None = None):
        c = self.connect_root(db)
        try:
            with c.cursor() as cur:
                for s in stmts:
                    cur.execute(s)
        finally:
            c.close()

    def scalar(self, stmt: str, args=None):
        rows = self.sql(stmt, args)
        return rows[0][0] if rows else None

    def version(self) -> str:
        return self.scalar("SELECT VERSION()")

    def app_sessions(self, user: str = MY_USER) -> int:
        """Server-side connections of `user` (information_schema.PROCESSLIST)."""
        return int(self.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)))

    def sessions(self, user: str = MY_USER) -> list[dict]:
        """id, db, command, time, state, info of each connection of `user`."""
        c = self.connect_root()
        try:
            import pymysql.cursors
            with c.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SELECT ID AS id, DB AS db, COMMAND AS command, TIME AS time, STATE AS state, "
                            "INFO AS info FROM information_schema.PROCESSLIST WHERE USER = %s ORDER BY ID",
                            (user,))
                return list(cur.fetchall())
        finally:
            c.close()

    def kill(self, conn_id: int, query_only: bool = False):
        """KILL [QUERY] <id> as root."""
        self.sql(f"KILL {'QUERY ' if query_only else ''}{int(conn_id)}")

    def __repr__(self):
        return f"<MariaDbServer :{self.port} {self.dir}>"
