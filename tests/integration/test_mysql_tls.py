#!/usr/bin/python3
"""TLS on the MySQL side, certificates made at test time with the openssl
CLI (test_tls.py's helpers).

Clients (client_tls): PyMySQL with a verifying ssl context (its socket is an
SSLSocket), 20 MiB LONGBLOBs both ways over TLS, aiomysql with ssl,
mysqlclient (MySQLdb ssl={...}) and the mariadb CLI with --ssl
--ssl-verify-server-cert on a client_tls = "require" listener (so a login at
all means TLS), a plaintext client refused there with ER_SECURE_TRANSPORT_
REQUIRED (3159), and a client given the wrong CA refused by its own check.

Servers (server_tls): a pool with verify-full to a MariaDB started with
--ssl-cert/--ssl-key/--ssl-ca (SHOW STATUS LIKE 'Ssl_cipher' through sqlmux
is the server session's), a wrong server_tls_ca failing the login with an
error to the client, a log line and sqlmux_server_connect_failures_total,
and prefer / require against a MariaDB without TLS (plaintext / refused).
Health checks of MySQL hosts follow server_tls (Connector/C's TLS).

    SQLMUX_BIN=build/sqlmux /usr/bin/python3 tests/integration/test_mysql_tls.py [case-filter]"""

import asyncio
import hashlib
import os
import ssl
import subprocess
import urllib.request

import pymysql

from harness import *
from mysql_harness import *
from test_tls import certs

BLOB = 20 * 1024 * 1024


def _metric(port: int, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def my_tls_tweak(client_tls: str | None = None, metrics_port: int | None = None):
    d = certs()

    def tweak(cfg):
        cfg["tls"] = {"cert": f"{d}/server.crt", "key": f"{d}/server.key"}
        if client_tls:
            cfg["listener"][0]["client_tls"] = client_tls
        if metrics_port:
            cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return tweak


def tls_connect(mux, ca: str = "ca", **kw):
    """PyMySQL over TLS, the server's certificate and name checked."""
    d = certs()
    kw.setdefault("read_timeout", 60)
    kw.setdefault("write_timeout", 60)
    return mux.my_connect(ssl={"ca": f"{d}/{ca}.crt", "check_hostname": True}, **kw)


def check_tls_socket(c, what: str):
    sock = c._sock
    check(isinstance(sock, ssl.SSLSocket), f"{what}: the client's socket is {type(sock).__name__}, not TLS")
    check(sock.version() in ("TLSv1.2", "TLSv1.3"), f"{what}: TLS version {sock.version()}")


def blob_round_trip(c, what: str):
    data = os.urandom(BLOB)
    with c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS tls_blob")
        cur.execute("CREATE TABLE tls_blob (id INT PRIMARY KEY, b LONGBLOB)")
        cur.execute("INSERT INTO tls_blob VALUES (1, %s)", (data,))
        cur.execute("SELECT LENGTH(b), SHA2(b, 256) FROM tls_blob WHERE id = 1")
        check_eq(cur.fetchone(), (BLOB, hashlib.sha256(data).hexdigest()), f"{what}: 20 MiB to the server")
        cur.execute("SELECT b FROM tls_blob WHERE id = 1")
        got = cur.fetchone()[0]
        check(got == data, f"{what}: 20 MiB back from the server ({len(got)} bytes)")
        cur.execute("DROP TABLE tls_blob")


def case_pymysql_tls_and_blobs(my):
    require_sqlmux_my("TLS")
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=my_tls_tweak()) as mux:
        c = tls_connect(mux, autocommit=True)
        check_tls_socket(c, "PyMySQL")
        check_eq(one(c, "SELECT 40 + 2"), 42, "a query over TLS")
        blob_round_trip(c, "PyMySQL over TLS")
        c.close()
        # client_tls = "allow" (the default with [tls]): plaintext still logs in.
        c = mux.my_connect(autocommit=True)
        check(not isinstance(c._sock, ssl.SSLSocket), "a plaintext client stays plaintext")
        check_eq(one(c, "SELECT 'clear'"), "clear", "plaintext on an allow listener")
        c.close()
        check("login (TLS)" in mux.log_text(), f"sqlmux logs the TLS login:\n{mux.log_tail(20)}")


def case_aiomysql_tls(my):
    require_sqlmux_my("TLS")
    import aiomysql
    d = certs()
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=my_tls_tweak()) as mux:
        ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")

        async def main():
            pool = await aiomysql.create_pool(host="127.0.0.1", port=mux.my_port, user="app", password="apppass",
                                              db="appdb", ssl=ctx, minsize=8, maxsize=8, autocommit=True)

            async def one_task(i):
                async with pool.acquire() as conn:
                    check(conn._writer.get_extra_info("ssl_object") is not None, "aiomysql's transport is TLS")
                    async with conn.cursor() as cur:
                        for k in range(20):
                            await cur.execute("SELECT %s * 100 + %s", (i, k))
                            check_eq((await cur.fetchone())[0], i * 100 + k, "aiomysql over TLS")
            await asyncio.gather(*(one_task(i) for i in range(24)))
            pool.close()
            await pool.wait_closed()
        asyncio.run(main())


def case_mysqlclient_and_cli_on_require(my):
    require_sqlmux_my("TLS")
    import MySQLdb
    d = certs()
    with Sqlmux(None, my=my, mode="session", size=4, tweak=my_tls_tweak("require")) as mux:
        # A login at all means TLS on a require listener (mysqlclient shows no cipher).
        c = MySQLdb.connect(host="127.0.0.1", port=mux.my_port, user="app", password="apppass",
                            database="appdb", ssl={"ca": f"{d}/ca.crt"})
        cur = c.cursor()
        cur.execute("SELECT 6 * 7")
        check_eq(cur.fetchone()[0], 42, "mysqlclient over TLS")
        c.close()
        r = subprocess.run(["mariadb", "--ssl", "--ssl-verify-server-cert", f"--ssl-ca={d}/ca.crt",
                            "-h", "127.0.0.1", "-P", str(mux.my_port), "-u", "app", "-papppass", "appdb",
                            "-e", "SELECT 'cli' AS x; \\s"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"mariadb CLI over TLS exited {r.returncode}: {r.stderr}")
        check("cli" in r.stdout, f"the CLI's query: {r.stdout}")
        ssl_line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("SSL:")]
        check(ssl_line and "Cipher in use" in ssl_line[0], f"the CLI's status shows its cipher: {ssl_line}")


def case_require_refuses_plaintext(my):
    require_sqlmux_my("TLS")
    metrics_port = free_port()
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=my_tls_tweak("require", metrics_port)) as mux:
        e = expect_my_error(lambda: mux.my_connect(), (3159,), "insecure transport",
                            what="plaintext client on a require listener")
        check("require_secure_transport" in str(e), f"MySQL's words: {e}")
        check(_metric(metrics_port, "sqlmux_client_errors_total", 'reason="tls_required"') >= 1,
              "counted as tls_required")
        c = tls_connect(mux, autocommit=True)
        check_tls_socket(c, "require listener")
        check_eq(one(c, "SELECT 1"), 1, "TLS client on a require listener")
        c.close()


def case_wrong_ca_refused_by_client(my):
    require_sqlmux_my("TLS")
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=my_tls_tweak()) as mux:
        try:
            tls_connect(mux, ca="otherca").close()
            fail("a client trusting another CA logged in")
        except pymysql.err.OperationalError as e:
            check("CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate verify failed" in str(e),
                  f"the client's own check refused: {e}")
        c = tls_connect(mux, autocommit=True)  # sqlmux still serves
        check_eq(one(c, "SELECT 2"), 2, "after a refused handshake")
        c.close()


def my_with_tls() -> MariaDbServer:
    d = certs()
    return MariaDbServer(extra_args=[f"--ssl-cert={d}/server.crt", f"--ssl-key={d}/server.key",
                                     f"--ssl-ca={d}/ca.crt"])


def pool_tls(mode: str, ca: str | None, metrics_port: int | None = None):
    d = certs()

    def tweak(cfg):
        cfg["pool"][0]["server_tls"] = mode
        if ca:
            cfg["pool"][0]["server_tls_ca"] = f"{d}/{ca}.crt"
        if metrics_port:
            cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return tweak


def ssl_cipher(c) -> str:
    with c.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        return cur.fetchone()[1]


def case_server_tls(my):
    require_sqlmux_my("TLS")
    with my_with_tls() as mys:
        with Sqlmux(None, my=mys, mode="transaction", size=4, tweak=pool_tls("verify-full", "ca")) as mux:
            c = mux.my_connect(autocommit=True, read_timeout=60, write_timeout=60)
            cipher = ssl_cipher(c)
            check(cipher != "", "the server connection is TLS (Ssl_cipher of the server session)")
            log(f"server connection cipher: {cipher}")
            blob_round_trip(c, "through a TLS server connection")
            c.close()
        # disable: plaintext although the server offers TLS.
        with Sqlmux(None, my=mys, mode="transaction", size=4, tweak=pool_tls("disable", None)) as mux:
            c = mux.my_connect(autocommit=True)
            check_eq(ssl_cipher(c), "", "server_tls = disable")
            c.close()
        # verify-full against a CA that did not sign the server's certificate.
        metrics_port = free_port()
        with Sqlmux(None, my=mys, mode="transaction", size=4,
                    tweak=pool_tls("verify-full", "otherca", metrics_port)) as mux:
            try:
                c = mux.my_connect(autocommit=True)
                one(c, "SELECT 1")
                fail("a server with an unverifiable certificate was used")
            except pymysql.err.MySQLError as e:
                check("certificate verify failed" in str(e), f"the client hears why: {e}")
            check("certificate verify failed" in mux.log_text(), f"a log line:\n{mux.log_tail(20)}")
            check(_metric(metrics_port, "sqlmux_server_connect_failures_total") >= 1, "counted")


def case_server_tls_without_server_ssl(my):
    require_sqlmux_my("TLS")
    # The harness's MariaDB has no TLS: prefer falls back, require refuses.
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=pool_tls("prefer", None)) as mux:
        c = mux.my_connect(autocommit=True)
        check_eq(ssl_cipher(c), "", "prefer without server TLS: plaintext")
        check_eq(one(c, "SELECT 3"), 3, "prefer works")
        c.close()
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=pool_tls("require", None)) as mux:
        try:
            c = mux.my_connect(autocommit=True)
            one(c, "SELECT 1")
            fail("require used a server without TLS")
        except pymysql.err.MySQLError as e:
            check("does not offer TLS" in str(e), f"the client hears why: {e}")
        check("does not offer TLS" in mux.log_text(), f"a log line:\n{mux.log_tail(20)}")


def _backend_up(port: int, backend: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("sqlmux_backend_up{") and f'backend="{backend}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def case_health_checks_tls(my):
    """Health checks of a MySQL host follow server_tls: with verify-full and
    the right CA the probes are TLS sessions (the server's Ssl_accepts
    grows while no client is connected) and the host is up; with the wrong
    CA the probe fails its check and the host goes down; require against a
    MariaDB without TLS fails the probe too."""
    require_sqlmux_my("health checks")
    import time

    def wait_up(metrics_port, backend, want, what, timeout=15):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = _backend_up(metrics_port, backend)
            if got == want:
                return
            time.sleep(0.1)
        fail(f"{what}: sqlmux_backend_up is {got}, want {want}")

    def tweak_for(mode, ca, metrics_port):
        inner = pool_tls(mode, ca, metrics_port)

        def tweak(cfg):
            inner(cfg)
            cfg["health"] = {"interval": "200ms", "timeout": "2s", "fall": 2, "rise": 1}
        return tweak

    with my_with_tls() as mys:
        backend = f"127.0.0.1:{mys.port}"
        port = free_port()
        with Sqlmux(None, my=mys, mode="transaction", size=4, tweak=tweak_for("verify-full", "ca", port)) as mux:
            wait_up(port, backend, 1.0, "verify-full with the right CA")
            before = int(mys.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")[0][1])
            time.sleep(1.5)
            after = int(mys.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")[0][1])
            check(after >= before + 3, f"the probes are TLS sessions: Ssl_accepts {before} -> {after}")
        port = free_port()
        with Sqlmux(None, my=mys, mode="transaction", size=4, tweak=tweak_for("verify-ca", "otherca", port)) as mux:
            wait_up(port, backend, 0.0, "verify-ca with the wrong CA")
            check("certificate" in mux.log_text().lower(), f"the reason is logged:\n{mux.log_tail(20)}")
    port = free_port()
    backend = f"127.0.0.1:{my.port}"
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for("require", None, port)) as mux:
        wait_up(port, backend, 0.0, "require against a MariaDB without TLS")
        check("does not offer TLS" in mux.log_text(), f"the reason is logged:\n{mux.log_tail(20)}")


if __name__ == "__main__":
    run_cases(__file__, [case_pymysql_tls_and_blobs, case_aiomysql_tls, case_mysqlclient_and_cli_on_require,
                         case_require_refuses_plaintext, case_wrong_ca_refused_by_client, case_server_tls,
                         case_server_tls_without_server_ssl, case_health_checks_tls],
              timeout=260, server=MariaDbServer, direct=MY_DIRECT)
