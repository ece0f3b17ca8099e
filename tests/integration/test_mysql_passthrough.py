#!/usr/bin/python3
"""MySQL logins without the plaintext password in the config (issue 15).

A mysql pool without `user` logs each client in to the server as itself.
Here its [[user]] holds only the account's native hash ("*" + 40 hex, taken
from MariaDB's mysql.user.authentication_string), and:

  - PyMySQL and aiomysql (mysql_native_password) log in; SELECT
    CURRENT_USER() on the server shows the account (sqlmux logged in to
    MariaDB with SHA1(password) recovered from the client's reply), also on
    a second server connection opened for a second client at the same time;
  - a wrong password gets ERR 1045;
  - a client starting with caching_sha2_password (PyMySQL made to answer
    the greeting as a MySQL 8 client does, and the mariadb CLI with
    --default-auth=caching_sha2_password) gets perform_full_authentication:
    over TLS it sends its password in clear, over plaintext with [server]
    caching_sha2_private_key it asks for the RSA public key and sends the
    password encrypted; a wrong one gets 1045;
  - over plaintext without a key it is switched to mysql_native_password;
  - a client sending its password in clear over plaintext is refused;
  - the mariadb CLI with caching_sha2_password as a user whose password is
    plaintext in [[user]] (Connector/C sends no first reply then: sqlmux
    answers with an AuthSwitchRequest to caching_sha2_password);
  - a server account whose plugin (ed25519) needs the password fails the
    client with an ERR naming the plugin, and a log line.

    SQLMUX_BIN=build/sqlmux /usr/bin/python3 tests/integration/test_mysql_passthrough.py [case-filter]"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import atexit

import pymysql
import pymysql.connections

from harness import *
from mysql_harness import *
from test_tls import certs

PT_USER, PT_PASSWORD = "ptuser", "Pt-secret-42"
PLUGIN_DIR = "/usr/lib/x86_64-linux-gnu/libmariadb3/plugin"
_RSA_DIR = None


def rsa_key() -> str:
    """A 2048-bit RSA private key (PEM) made with the openssl CLI."""
    global _RSA_DIR
    if _RSA_DIR is None:
        _RSA_DIR = tempfile.mkdtemp(prefix="smx-it-rsa-")
        atexit.register(shutil.rmtree, _RSA_DIR, True)
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", f"{_RSA_DIR}/rsa.pem"], check=True, capture_output=True, timeout=60)
    return f"{_RSA_DIR}/rsa.pem"


def create_account(my) -> str:
    """The account on MariaDB, with a password; returns its stored hash."""
    my.sql_many([
        f"DROP USER IF EXISTS '{PT_USER}'@'%'",
        f"CREATE USER '{PT_USER}'@'%' IDENTIFIED BY '{PT_PASSWORD}'",
        f"GRANT ALL ON appdb.* TO '{PT_USER}'@'%'",
    ])
    h = my.scalar(f"SELECT authentication_string FROM mysql.user WHERE user = '{PT_USER}'")
    if isinstance(h, bytes):
        h = h.decode()
    check(len(h) == 41 and h.startswith("*"), f"mysql.user authentication_string {h!r} is a native hash")
    return h


def passthrough_tweak(stored_hash: str, tls: bool = False, rsa: bool = False):
    def tweak(cfg):
        pool = cfg["pool"][0]
        pool.pop("user", None)
        pool.pop("password", None)
        cfg["user"].append({"name": PT_USER, "password": stored_hash, "default_pool": pool["name"]})
        if tls:
            d = certs()
            cfg["tls"] = {"cert": f"{d}/server.crt", "key": f"{d}/server.key"}
        if rsa:
            cfg["server"]["caching_sha2_private_key"] = rsa_key()
    return tweak


class Sha2FirstConnection(pymysql.connections.Connection):
    """PyMySQL answering the greeting with caching_sha2_password, as MySQL 8
    clients do by default (PyMySQL itself answers with the plugin the
    greeting names)."""

    def _get_server_information(self):
        super()._get_server_information()
        self._auth_plugin_name = "caching_sha2_password"


def sha2_connect(mux, password=PT_PASSWORD, **kw):
    kw.setdefault("connect_timeout", 10)
    return Sha2FirstConnection(host=mux.host, port=mux.my_port, user=PT_USER, password=password,
                               database="appdb", **kw)


def current_user(c) -> str:
    with c.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        return cur.fetchone()[0]


def case_native_hash_pymysql(my):
    require_sqlmux_my("a pool without user whose [[user]] holds the native hash")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h)) as mux:
        c1 = mux.my_connect(user=PT_USER, password=PT_PASSWORD)
        check_eq(current_user(c1), f"{PT_USER}@%", "CURRENT_USER() through sqlmux")
        # A second client holding a transaction open while the first one
        # runs: a second server connection, logged in for it.
        c2 = mux.my_connect(user=PT_USER, password=PT_PASSWORD)
        c2.begin()
        check_eq(current_user(c2), f"{PT_USER}@%", "second client")
        check_eq(current_user(c1), f"{PT_USER}@%", "first client beside it")
        c2.commit()
        check(my.app_sessions(PT_USER) >= 2, "two server sessions of the account")
        with c1.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS pt_t (i INT)")
            cur.execute("INSERT INTO pt_t VALUES (1)")
            cur.execute("SELECT COUNT(*) FROM pt_t")
            check(cur.fetchone()[0] >= 1, "a write and a read as the account")
        c1.close()
        c2.close()
        log_text = mux.log_text()
        check(PT_PASSWORD not in log_text, "the password is not in the log")


def case_min_idle_waits_for_a_client(my):
    """min_idle on a pool whose user holds only a hash: nothing to log in
    with without a client, so the pool opens connections for clients only
    (one log line, no connect attempt without a client, no refused server
    login); the clients are served."""
    require_sqlmux_my("a native hash in [[user]] with min_idle")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, min_idle=2, tweak=passthrough_tweak(h)) as mux:
        c = mux.my_connect(user=PT_USER, password=PT_PASSWORD)
        check_eq(current_user(c), f"{PT_USER}@%", "CURRENT_USER() with min_idle")
        check(mux.log_has("min_idle 2 not kept"), "min_idle's absence is logged")
        time.sleep(2)
        check_eq(current_user(c), f"{PT_USER}@%", "still served")
        c.close()
        text = mux.log_text()
        denied = [l for l in text.splitlines() if "Access denied" in l or "failed" in l]
        check(not denied, f"no server login was refused or failed: {denied[:3]}")
        check_eq(text.count("not kept"), 1, "one line for the pool")


def case_native_hash_wrong_password(my):
    require_sqlmux_my("a native hash in [[user]]")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h)) as mux:
        expect_my_error(lambda: mux.my_connect(user=PT_USER, password="wrong"), 1045,
                        "Access denied", "wrong password")
        # The literal hash is not a password either.
        expect_my_error(lambda: mux.my_connect(user=PT_USER, password=h), 1045,
                        "Access denied", "the hash as a password")
        expect_my_error(lambda: sha2_connect(mux, password="wrong"), 1045, "Access denied",
                        "caching_sha2_password client, wrong password (switched to native)")
        check_eq(current_user(mux.my_connect(user=PT_USER, password=PT_PASSWORD)), f"{PT_USER}@%",
                 "the right password after them")


def case_native_hash_aiomysql(my):
    require_sqlmux_my("a native hash in [[user]]")
    import aiomysql
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h)) as mux:
        async def run():
            out = []
            conns = [await aiomysql.connect(host=mux.host, port=mux.my_port, user=PT_USER,
                                            password=PT_PASSWORD, db="appdb") for _ in range(3)]
            for c in conns:
                await c.begin()  # each holds its own server connection
            for c in conns:
                async with c.cursor() as cur:
                    await cur.execute("SELECT CURRENT_USER()")
                    out.append((await cur.fetchone())[0])
            for c in conns:
                await c.commit()
                c.close()
            try:
                await aiomysql.connect(host=mux.host, port=mux.my_port, user=PT_USER, password="nope",
                                       db="appdb")
                out.append("wrong password logged in")
            except Exception as e:  # noqa: BLE001
                # aiomysql raises 2003 "Can't connect" from the server's error.
                out.append(my_errno(e.__cause__) if e.__cause__ is not None else my_errno(e))
            return out

        check_eq(asyncio.run(run()), [f"{PT_USER}@%"] * 3 + [1045], "aiomysql: three clients, then a wrong password")


def case_caching_sha2_tls(my):
    require_sqlmux_my("caching_sha2_password full authentication")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h, tls=True)) as mux:
        d = certs()
        c = sha2_connect(mux, ssl={"ca": f"{d}/ca.crt", "check_hostname": True})
        check(c._secure, "PyMySQL's connection is TLS")
        check_eq(current_user(c), f"{PT_USER}@%", "caching_sha2_password over TLS")
        c.close()
        expect_my_error(lambda: sha2_connect(mux, password="wrong", ssl={"ca": f"{d}/ca.crt"}), 1045,
                        "Access denied", "caching_sha2_password over TLS, wrong password")
        # Plaintext on the same listener, no RSA key: switched to native.
        c = sha2_connect(mux)
        check_eq(current_user(c), f"{PT_USER}@%", "caching_sha2_password client over plaintext, no key")
        c.close()


def case_caching_sha2_rsa(my):
    require_sqlmux_my("caching_sha2_password full authentication with RSA")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h, rsa=True)) as mux:
        c = sha2_connect(mux)
        check(not c._secure, "plaintext")
        check(c.server_public_key is not None and b"BEGIN PUBLIC KEY" in c.server_public_key,
              "PyMySQL asked for sqlmux's public key and got it")
        check_eq(current_user(c), f"{PT_USER}@%", "caching_sha2_password over RSA")
        c.close()
        expect_my_error(lambda: sha2_connect(mux, password="wrong"), 1045, "Access denied",
                        "caching_sha2_password over RSA, wrong password")


def case_caching_sha2_cleartext_refused(my):
    """A client that answers perform_full_authentication with its password
    in clear over plaintext (no key asked for) is refused: 1045 and a log
    line, as MySQL does."""
    require_sqlmux_my("caching_sha2_password full authentication with RSA")
    h = create_account(my)
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=passthrough_tweak(h, rsa=True)) as mux:
        class Careless(Sha2FirstConnection):
            _secure = True  # PyMySQL then sends the password in clear, as over TLS

        def go():
            Careless(host=mux.host, port=mux.my_port, user=PT_USER, password=PT_PASSWORD,
                     database="appdb", connect_timeout=10)

        expect_my_error(go, 1045, "Access denied", "cleartext password over plaintext")
        check(mux.log_has("without TLS or RSA encryption; refused"), "the refusal is logged")


def case_server_plugin_needs_password(my):
    """The account on the server uses ed25519 (which needs the password),
    [[user]] holds the native hash of the same password: the client's
    native login passes sqlmux, the server login cannot be answered with
    SHA1(password): the client gets an ERR naming the plugin, and the log a
    line."""
    require_sqlmux_my("a server plugin sqlmux cannot answer from a hash")
    import hashlib
    try:
        my.sql("INSTALL SONAME 'auth_ed25519'")
    except Exception as e:  # noqa: BLE001
        if my_errno(e) != 1968:  # already installed
            raise Skip(f"no auth_ed25519 plugin: {e}")
    my.sql_many(["DROP USER IF EXISTS 'eduser'@'%'",
                 "CREATE USER 'eduser'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('Ed-pass-7')",
                 "GRANT ALL ON appdb.* TO 'eduser'@'%'"])
    native = "*" + hashlib.sha1(hashlib.sha1(b"Ed-pass-7").digest()).hexdigest().upper()

    def tweak(cfg):
        passthrough_tweak(create_account(my))(cfg)
        cfg["user"].append({"name": "eduser", "password": native, "default_pool": cfg["pool"][0]["name"]})

    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak) as mux:
        def go():
            c = mux.my_connect(user="eduser", password="Ed-pass-7")
            current_user(c)
        expect_my_error(go, 1105, "client_ed25519", "server account with ed25519")
        check(mux.log_has("client_ed25519"), "the failed server login is logged with the plugin")


def case_mariadb_cli_caching_sha2(my):
    require_sqlmux_my("the mariadb CLI with caching_sha2_password")
    if not os.path.exists(os.path.join(PLUGIN_DIR, "caching_sha2_password.so")):
        raise Skip(f"no caching_sha2_password.so in {PLUGIN_DIR}")
    h = create_account(my)
    d = certs()
    with Sqlmux(None, my=my, mode="transaction", size=4,
                tweak=passthrough_tweak(h, tls=True, rsa=True)) as mux:
        def cli(password, *extra, user=PT_USER):
            return subprocess.run(
                ["mariadb", "--no-defaults", "-h", mux.host, "-P", str(mux.my_port), "-u", user,
                 f"-p{password}", f"--plugin-dir={PLUGIN_DIR}", "--default-auth=caching_sha2_password",
                 *extra, "-N", "-B", "-e", "SELECT CURRENT_USER()", "appdb"],
                capture_output=True, text=True, timeout=30)
        r = cli(PT_PASSWORD, "--ssl", f"--ssl-ca={d}/ca.crt")
        check(r.returncode == 0, f"mariadb over TLS: rc {r.returncode}: {r.stderr.strip()}")
        check_eq(r.stdout.strip(), f"{PT_USER}@%", "mariadb CLI over TLS")
        r = cli(PT_PASSWORD, "--skip-ssl")
        check(r.returncode == 0, f"mariadb over plaintext (RSA): rc {r.returncode}: {r.stderr.strip()}")
        check_eq(r.stdout.strip(), f"{PT_USER}@%", "mariadb CLI over RSA")
        r = cli("wrong", "--skip-ssl")
        check(r.returncode != 0 and "1045" in r.stderr, f"mariadb, wrong password: {r.stderr.strip()}")
        # A user with a plaintext password: Connector/C's caching_sha2
        # plugin sends no reply to a greeting naming another plugin; an
        # AuthSwitchRequest to caching_sha2_password gets its fast-path reply.
        r = cli(MY_PASSWORD, "--skip-ssl", user=MY_USER)
        check(r.returncode == 0, f"mariadb as {MY_USER} (plaintext in [[user]]): rc {r.returncode}: {r.stderr.strip()}")
        check(r.stdout.strip().startswith(f"{MY_USER}@"), f"mariadb CLI, caching_sha2 fast path after the switch: {r.stdout.strip()!r}")
        r = cli("wrong", "--skip-ssl", user=MY_USER)
        check(r.returncode != 0 and "1045" in r.stderr, f"mariadb as {MY_USER}, wrong password: {r.stderr.strip()}")


if __name__ == "__main__":
    run_cases(__file__, [case_native_hash_pymysql, case_min_idle_waits_for_a_client, case_native_hash_wrong_password, case_native_hash_aiomysql,
                         case_caching_sha2_tls, case_caching_sha2_rsa, case_caching_sha2_cleartext_refused,
                         case_server_plugin_needs_password, case_mariadb_cli_caching_sha2],
              timeout=150, server=MariaDbServer, direct=MY_DIRECT)
