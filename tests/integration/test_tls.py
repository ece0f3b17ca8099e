#!/usr/bin/python3
"""TLS from clients: certificates made at test time with the openssl CLI; psql
with sslmode=require and verify-full, psycopg2 and asyncpg over TLS, large
values both ways, a wrong CA refused by the client, a plaintext client refused
under client_tls = "require", and a client certificate checked against
tls.ca."""

import asyncio
import atexit
import os
import shutil
import ssl
import subprocess
import tempfile

from harness import *


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args)}: {r.stderr}")


def make_ca(d: str, name: str):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d: str, ca: str, name: str, cn: str, san: str | None = None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    ext = []
    if san:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)


CERTS = None


def certs() -> str:
    global CERTS
    if CERTS is None:
        CERTS = tempfile.mkdtemp(prefix="smx-it-tls-")
        atexit.register(shutil.rmtree, CERTS, True)
        make_ca(CERTS, "ca")
        make_ca(CERTS, "otherca")
        make_cert(CERTS, "ca", "server", "localhost", "IP:127.0.0.1,DNS:localhost")
        make_cert(CERTS, "ca", "client", "app")
        os.chmod(os.path.join(CERTS, "client.key"), 0o600)
    return CERTS


def tls_tweak(client_tls: str | None = None, ca: bool = False):
    d = certs()

    def tweak(cfg):
        cfg["tls"] = {"cert": f"{d}/server.crt", "key": f"{d}/server.key"}
        if ca:
            cfg["tls"]["ca"] = f"{d}/ca.crt"
        if client_tls:
            cfg["listener"][0]["client_tls"] = client_tls
    return tweak


def psql(dsn: str, sql: str, check_rc: int | None = 0):
    e = dict(os.environ)
    e.pop("PGPASSWORD", None)
    r = subprocess.run(["psql", "-X", "-A", "-t", "-d", dsn, "-c", sql], capture_output=True, text=True,
                       timeout=60, env=e)
    if check_rc is not None and r.returncode != check_rc:
        fail(f"psql exited {r.returncode} (want {check_rc})\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def case_psql_require_and_verify_full(pg):
    require_sqlmux("TLS")
    d = certs()
    with Sqlmux(pg, tweak=tls_tweak()) as mux:
        out = psql(mux.dsn(sslmode="require"), "SELECT 40 + 2").stdout.strip()
        check_eq(out, "42", "psql sslmode=require")
        # \conninfo says whether the session is encrypted.
        info = psql(mux.dsn(sslmode="verify-full", sslrootcert=f"{d}/ca.crt"), "\\conninfo").stdout
        check("SSL connection (protocol: TLSv1.3" in info or "SSL connection (protocol: TLSv1.2" in info,
              f"\\conninfo under verify-full: {info!r}")
        # A CA that did not sign the certificate: the client refuses.
        r = psql(mux.dsn(sslmode="verify-full", sslrootcert=f"{d}/otherca.crt"), "SELECT 1", check_rc=None)
        check(r.returncode != 0 and "certificate verify failed" in r.stderr,
              f"verify-full with the wrong CA: rc {r.returncode}, {r.stderr!r}")
        # allow: plaintext clients still work.
        out = psql(mux.dsn(sslmode="disable"), "SELECT 'clear'").stdout.strip()
        check_eq(out, "clear", "plaintext client under client_tls = allow")


def case_require_refuses_plaintext(pg):
    require_sqlmux("TLS")
    with Sqlmux(pg, tweak=tls_tweak("require")) as mux:
        import psycopg2
        try:
            psycopg2.connect(mux.dsn(sslmode="disable"))
            fail("a plaintext client was let in under client_tls = require")
        except psycopg2.OperationalError as e:
            check("requires TLS" in str(e), f"error for a plaintext client: {e}")
        c = psycopg2.connect(mux.dsn(sslmode="require"))
        with c.cursor() as cur:
            cur.execute("SELECT current_user")
            check_eq(cur.fetchone()[0], "app", "TLS client under require")
        check(c.info.ssl_in_use, "psycopg2 says the connection is not encrypted")
        c.close()
        check("tls_required" in mux.log_text() or "requires TLS" in mux.log_text(),
              "the refusal is logged")


def case_psycopg2_large_values_and_many_queries(pg):
    require_sqlmux("TLS")
    import psycopg2
    with Sqlmux(pg, tweak=tls_tweak()) as mux:
        c = psycopg2.connect(mux.dsn(sslmode="require"))
        c.autocommit = True
        with c.cursor() as cur:
            big = os.urandom(3 * 1024 * 1024).hex()  # 6 MB of text each way
            cur.execute("SELECT md5(%s), length(%s)", (big, big))
            import hashlib
            check_eq(cur.fetchone(), (hashlib.md5(big.encode()).hexdigest(), len(big)), "6 MB value in")
            cur.execute("SELECT repeat('ab', 2500000)")
            check_eq(cur.fetchone()[0], "ab" * 2500000, "5 MB value out")
            for i in range(500):
                cur.execute("SELECT %s::int * 2", (i,))
                check_eq(cur.fetchone()[0], 2 * i, "query over TLS")
        c.close()


def case_asyncpg_tls_concurrent(pg):
    require_sqlmux("TLS")
    import asyncpg
    d = certs()
    with Sqlmux(pg, tweak=tls_tweak()) as mux:
        ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")

        async def main():
            pool = await asyncpg.create_pool(host="127.0.0.1", port=mux.port, user="app", password="apppass",
                                             database="appdb", ssl=ctx, min_size=10, max_size=10)

            async def one(i):
                for k in range(20):
                    v = await pool.fetchval("SELECT $1::int + $2::int", i, k)
                    check_eq(v, i + k, "asyncpg over TLS")
            await asyncio.gather(*(one(i) for i in range(30)))
            await pool.close()
        asyncio.run(main())


def case_client_certificate(pg):
    require_sqlmux("TLS")
    d = certs()
    with Sqlmux(pg, tweak=tls_tweak(ca=True)) as mux:
        out = psql(mux.dsn(sslmode="verify-full", sslrootcert=f"{d}/ca.crt", sslcert=f"{d}/client.crt",
                           sslkey=f"{d}/client.key"), "SELECT 'with cert'").stdout.strip()
        check_eq(out, "with cert", "a client certificate signed by tls.ca")
        # A certificate from another CA is refused during the handshake.
        make_cert(d, "otherca", "rogue", "app")
        os.chmod(os.path.join(d, "rogue.key"), 0o600)
        r = psql(mux.dsn(sslmode="require", sslcert=f"{d}/rogue.crt", sslkey=f"{d}/rogue.key"), "SELECT 1",
                 check_rc=None)
        check(r.returncode != 0, f"a client certificate from an unknown CA was accepted: {r.stdout!r}")
        check(mux.log_has("TLS failed"), "the failed handshake is logged")
        mux.assert_serving(what="after a failed handshake")


def pg_with_tls() -> "PgServer":
    """A PostgreSQL that accepts TLS with a certificate from `ca` (for 127.0.0.1)."""
    d = certs()
    pgdir = tempfile.mkdtemp(prefix="smx-it-pgtls-")
    atexit.register(shutil.rmtree, pgdir, True)
    os.chmod(pgdir, 0o755)
    for name in ("crt", "key"):
        with open(os.path.join(d, f"server.{name}"), "rb") as src, open(os.path.join(pgdir, f"pg.{name}"), "wb") as dst:
            dst.write(src.read())
    subprocess.run(["chown", "postgres", os.path.join(pgdir, "pg.key")], check=True)
    os.chmod(os.path.join(pgdir, "pg.key"), 0o600)
    return PgServer(extra_conf=f"ssl = on\nssl_cert_file = '{pgdir}/pg.crt'\nssl_key_file = '{pgdir}/pg.key'\n")


def case_server_tls(pg):
    require_sqlmux("TLS")
    import psycopg2
    d = certs()
    with pg_with_tls() as pgs:
        def tweak_for(mode, ca):
            def tweak(cfg):
                cfg["pool"][0]["server_tls"] = mode
                if ca:
                    cfg["pool"][0]["server_tls_ca"] = f"{d}/{ca}.crt"
            return tweak
        with Sqlmux(pgs, tweak=tweak_for("verify-full", "ca")) as mux:
            c = psycopg2.connect(mux.dsn())
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ssl_on, version = cur.fetchone()
                check(ssl_on is True and version.startswith("TLSv1"), f"server connection TLS: {ssl_on} {version}")
                big = os.urandom(2 * 1024 * 1024).hex()
                cur.execute("SELECT md5(%s), length(%s)", (big, big))
                import hashlib
                check_eq(cur.fetchone(), (hashlib.md5(big.encode()).hexdigest(), len(big)), "4 MB value to the server")
                cur.execute("SELECT repeat('xy', 3000000)")
                check_eq(cur.fetchone()[0], "xy" * 3000000, "6 MB value from the server")
            c.close()
            import asyncpg

            async def main():
                pool = await asyncpg.create_pool(host="127.0.0.1", port=mux.port, user="app", password="apppass",
                                                 database="appdb", min_size=8, max_size=8)

                async def one(i):
                    for k in range(25):
                        v = await pool.fetchval("SELECT $1::int * 10 + $2::int", i, k)
                        check_eq(v, i * 10 + k, "asyncpg through a TLS server connection")
                await asyncio.gather(*(one(i) for i in range(20)))
                await pool.close()
            asyncio.run(main())
        # verify-full against a CA that did not sign the server's certificate.
        with Sqlmux(pgs, tweak=tweak_for("verify-full", "otherca")) as mux:
            try:
                c = psycopg2.connect(mux.dsn())
                c.cursor().execute("SELECT 1")
                fail("a server with an unverifiable certificate was used")
            except psycopg2.OperationalError as e:
                check("certificate verify failed" in str(e), f"the client hears why: {e}")
        # disable: clear text even though the server offers TLS.
        with Sqlmux(pgs, tweak=tweak_for("disable", None)) as mux:
            c = psycopg2.connect(mux.dsn())
            with c.cursor() as cur:
                cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                check_eq(cur.fetchone()[0], False, "server_tls = disable")
            c.close()


def case_check_config_errors(pg):
    require_sqlmux("TLS")
    with tempfile.TemporaryDirectory() as t:
        path = os.path.join(t, "bad.toml")
        with open(path, "w") as f:
            f.write(f"""
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:{free_port()}"
client_tls = "require"
[[pool]]
name = "appdb"
backends = [ {{ address = "127.0.0.1:5432" }} ]
""")
        r = subprocess.run([os.environ["SQLMUX_BIN"], "--check-config", path], capture_output=True, text=True)
        check(r.returncode != 0 and "listener[0].client_tls" in r.stderr and "needs a [tls] table" in r.stderr,
              f"client_tls without [tls]: {r.stderr!r}")
        with open(path, "a") as f:
            f.write('[tls]\ncert = "/nonexistent/server.crt"\nkey = "/nonexistent/server.key"\n')
        r = subprocess.run([os.environ["SQLMUX_BIN"], "--check-config", path], capture_output=True, text=True)
        check(r.returncode != 0 and "tls.cert: cannot read" in r.stderr, f"missing cert file: {r.stderr!r}")


if __name__ == "__main__":
    run_cases(__file__, [case_psql_require_and_verify_full, case_require_refuses_plaintext,
                         case_psycopg2_large_values_and_many_queries, case_asyncpg_tls_concurrent,
                         case_client_certificate, case_server_tls, case_check_config_errors])
