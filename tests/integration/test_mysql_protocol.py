"""MySQL protocol details through sqlmux's mysql listener, against a
throwaway MariaDB: a raw CLIENT_DEPRECATE_EOF client, CLIENT_FOUND_ROWS,
a client with no database, hostile bytes, health checks of MySQL hosts.
The client programs' cases are in test_mysql.py.

    SQLMUX_BIN=build/sqlmux /usr/bin/python3 tests/integration/test_mysql_protocol.py [case]
    SQLMUX_MY_DIRECT=1 /usr/bin/python3 tests/integration/test_mysql_protocol.py
"""
import contextlib
import hashlib
import os
import random
import time

from harness import *
from mysql_harness import *
from test_mysql import MODES, assert_my_serving, connect, mux_for, one, q


class _RawClient:
    """A minimal protocol-4.1 client that asks for CLIENT_DEPRECATE_EOF
    (none of the Python clients does), to check sqlmux's translation from
    the server's EOF-style result sets. Records every packet's sequence id."""
    CAPS = (0x0200 | 0x8000 | 0x80000 | 0x0008 | 0x2000 | 0x20000 | (1 << 24))

    def __init__(self, host, port, user, password, db, caps=0, charset=45, maria_caps=0):
        """maria_caps: MariaDB extended capabilities (bits 32+ shifted down)
        asked for, as Connector/C does: only those the greeting offers."""
        import socket
        import struct
        self.caps = self.CAPS | caps
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        seq, g = self.recv()
        i = g.index(b"\0", 1) + 1 + 4
        scramble = g[i:i + 8]
        lo = int.from_bytes(g[i + 9:i + 11], "little")
        hi = int.from_bytes(g[i + 14:i + 16], "little")
        self.greeting_caps = lo | hi << 16
        i += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
        # CLIENT_MYSQL clear: a MariaDB server, its extended capabilities
        # in the last 4 reserved bytes.
        self.greeting_maria_caps = 0 if lo & 1 else struct.unpack_from("<I", g, i - 4)[0]
        self.maria_caps = maria_caps & self.greeting_maria_caps
        scramble += g[i:i + 12]
        h1 = hashlib.sha1(password.encode()).digest()
        h2 = hashlib.sha1(scramble + hashlib.sha1(h1).digest()).digest()
        auth = bytes(a ^ b for a, b in zip(h1, h2))
        payload = (struct.pack("<IIB", self.caps, 16 << 20, charset) + b"\0" * 19
                   + struct.pack("<I", self.maria_caps) + user.encode() + b"\0"
                   + bytes([len(auth)]) + auth + db.encode() + b"\0" + b"mysql_native_password\0")
        self.send(seq + 1, payload)
        _, r = self.recv()
        check(r[0] == 0, f"raw client login: {r!r}")

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + n:
                    seq, p, self.buf = self.buf[3], self.buf[4:4 + n], self.buf[4 + n:]
                    return seq, p
            chunk = self.sock.recv(65536)
            check(chunk != b"", "raw client: connection closed")
            self.buf += chunk

    def send(self, seq, payload):
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload)

    def query(self, sql):
        """[(seq, payload)] of one text result set (DEPRECATE_EOF framing)."""
        self.send(0, b"\x03" + sql.encode())
        out = [self.recv()]
        ncols = out[0][1][0]
        check(0 < ncols < 251, f"column count packet {out[0][1]!r}")
        for _ in range(ncols):
            out.append(self.recv())
        while True:
            seq, p = self.recv()
            out.append((seq, p))
            if p[0] == 0xFE and len(p) < 0xFFFFFF:
                return out

    def _result_set(self, first):
        """The packets of a result set whose column count is `first`."""
        out = [first]
        ncols = first[0]
        for _ in range(ncols):
            out.append(self.recv()[1])
        if not self.caps & _DEPRECATE_EOF:
            out.append(self.recv()[1])  # EOF after the definitions
        while True:
            p = self.recv()[1]
            out.append(p)
            if p[0] == 0xFF or (p[0] == 0xFE and len(p) < 0xFFFFFF):
                return out

    def command(self, payload):
        """Every payload of the response to one command (all result sets)."""
        self.send(0, payload)
        out = []
        while True:
            p = self.recv()[1]
            if p[0] == 0xFF:
                return out + [p]
            if p[0] != 0x00:
                out += self._result_set(p)
            else:
                out.append(p)
            if not _status(out[-1]) & 0x08:  # SERVER_MORE_RESULTS_EXISTS
                return out

    def execute(self, sql):
        """COM_STMT_PREPARE then COM_STMT_EXECUTE (no parameters): the
        prepare's column definitions and the execute's response."""
        import struct
        self.send(0, b"\x16" + sql.encode())
        _, p = self.recv()
        check(p[0] == 0, f"COM_STMT_PREPARE {sql!r}: {p!r}")
        stmt, ncols, nparams = struct.unpack("<IHH", p[1:9])
        defs = [self.recv()[1] for _ in range(ncols + nparams)]
        if ncols + nparams and not self.caps & _DEPRECATE_EOF:
            self.recv()
        return defs, self.command(b"\x17" + struct.pack("<IBI", stmt, 0, 1))


_DEPRECATE_EOF = 1 << 24
_SESSION_TRACK = 1 << 23


def _lenenc(p, i):
    b = p[i]
    if b < 251:
        return b, i + 1
    n = {0xFC: 2, 0xFD: 3, 0xFE: 8}[b]
    return int.from_bytes(p[i + 1:i + 1 + n], "little"), i + 1 + n


def _status(p):
    """Status flags of an OK (0x00 / 0xFE header) or EOF payload; 0 for others."""
    if p[0] == 0xFE and len(p) < 9:
        return int.from_bytes(p[3:5], "little")
    if p[0] in (0x00, 0xFE):
        _, i = _lenenc(p, 1)
        _, i = _lenenc(p, i)
        return int.from_bytes(p[i:i + 2], "little")
    return 0


def _charset_of_definition(p):
    """The character-set number of a column definition payload."""
    i = 0
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        n, i = _lenenc(p, i)
        i += n
    return int.from_bytes(p[i + 1:i + 3], "little")


def case_deprecate_eof_client(my):
    """A client with CLIENT_DEPRECATE_EOF gets result sets without the EOF
    after the column definitions and ending with an OK (0xFE header), with
    consecutive sequence ids: sqlmux's server connections use EOF packets."""
    for mode in MODES:
        with mux_for(my, mode) as mux:
            c = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"))
            for _ in range(2):  # the second on whichever connection the pool gives
                pkts = c.query("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'")
                seqs = [s for s, _ in pkts]
                check_eq(seqs, list(range(1, len(pkts) + 1)), f"{mode}: sequence ids")
                check_eq(len(pkts), 1 + 2 + 2 + 1, f"{mode}: count, 2 definitions, 2 rows, OK")
                rows = [p for _, p in pkts[3:5]]
                check(all(p[0] != 0xFE for p in rows), f"{mode}: an EOF where rows belong: {rows!r}")
                term = pkts[-1][1]
                check(len(term) >= 7, f"{mode}: the terminator is an OK packet, not an EOF: {term!r}")
            c.sock.close()


def _err_code(payload):
    return int.from_bytes(payload[1:3], "little") if payload and payload[0] == 0xFF else None


def case_hostile_bytes(my):
    """Random bytes before and after login, an oversized packet header and
    invalid commands: each gets an ERR or a clean close, never a crash;
    unknown commands and statement ids get 1047 / 1243 and the connection
    stays usable."""
    import socket
    if MY_DIRECT:
        raise Skip("sqlmux's handling")
    rnd = random.Random(7)
    with mux_for(my, "transaction") as mux:
        for i in range(100):
            s = socket.create_connection((mux.host, mux.my_port), timeout=5)
            s.recv(4096)  # greeting
            s.sendall(os.urandom(rnd.randint(0, 300)))
            s.settimeout(0.2)
            with contextlib.suppress(OSError):
                while s.recv(65536):
                    pass
            s.close()
        s = socket.create_connection((mux.host, mux.my_port), timeout=5)
        s.recv(4096)
        s.sendall(b"\xff\xff\xff\x01" + b"x" * 10)
        s.settimeout(2)
        reply = s.recv(4096)
        check_eq(_err_code(reply[4:]), 1153, "a 16 MiB login packet header")
        s.close()
        c = connect(mux, autocommit=True)
        sock = c._sock
        sock.settimeout(5)
        for cmd, want in [(b"\x99", 1047), (b"\x17\x01\x00\x00\x00", 1243), (b"\x1a\x05\x00\x00\x00", 1243),
                          (b"", 1047), (b"\x03", 1065)]:
            sock.sendall(len(cmd).to_bytes(3, "little") + b"\x00" + cmd)
            reply = sock.recv(4096)
            check_eq((_err_code(reply[4:]), reply[3]), (want, 1), f"reply to command {cmd!r}")
        check_eq(one(c, "SELECT 42"), 42, "the same connection after invalid commands")
        c.close()
        for i in range(30):
            c = connect(mux)
            body = os.urandom(rnd.randint(1, 50))
            c._sock.sendall(len(body).to_bytes(3, "little") + b"\x00" + body)
            c._sock.settimeout(0.3)
            with contextlib.suppress(OSError):
                c._sock.recv(4096)
            c._sock.close()
        assert_my_serving(mux)


def case_found_rows(my):
    """CLIENT_FOUND_ROWS (SQLAlchemy sets it): an UPDATE that matches a row
    without changing it reports 1 affected row, as on a direct connection;
    without the flag, 0."""
    from pymysql.constants import CLIENT
    for mode in MODES:
        with mux_for(my, mode) as mux:
            for flag, want in ((CLIENT.FOUND_ROWS, 1), (0, 0)):
                c = connect(mux, autocommit=True, client_flag=flag)
                with c.cursor() as cur:
                    cur.execute("CREATE TABLE IF NOT EXISTS found_rows (id INT PRIMARY KEY, v INT)")
                    cur.execute("REPLACE INTO found_rows VALUES (1, 5)")
                    n = cur.execute("UPDATE found_rows SET v = 5 WHERE id = 1")
                    check_eq(n, want, f"{mode}: rows affected with client_flag {flag}")
                    n = cur.execute("UPDATE found_rows SET v = 6 WHERE id = 1")
                    check_eq(n, 1, f"{mode}: a changed row, client_flag {flag}")
                c.close()


def case_default_pool_no_schema(my):
    """A client that names no database lands in its user's default_pool with
    no schema selected (DATABASE() is NULL), also on a server connection
    another client used with a schema (pool of 1: they alternate on it)."""
    for mode in ["transaction"] if not MY_DIRECT else MODES:
        with mux_for(my, mode, size=1) as mux:
            nodb = connect(mux, autocommit=True, db=None)
            withdb = connect(mux, autocommit=True)
            for i in range(3):
                check_eq(one(nodb, "SELECT DATABASE()"), None, f"{mode}: no database, round {i}")
                check_eq(one(withdb, "SELECT DATABASE()"), "appdb", f"{mode}: appdb, round {i}")
            q(nodb, "SET time_zone = '+03:00'")
            check_eq(q(withdb, "SELECT DATABASE(), @@time_zone")[0], ("appdb", "SYSTEM"), f"{mode}: other client")
            check_eq(q(nodb, "SELECT DATABASE(), @@time_zone")[0], (None, "+03:00"), f"{mode}: its own state")
            q(nodb, "USE appdb")
            check_eq(one(nodb, "SELECT DATABASE()"), "appdb", f"{mode}: after USE")
            nodb.close()
            withdb.close()


# Statements whose OKs a client with CLIENT_SESSION_TRACK sees: its own
# tracking settings (MariaDB's defaults, then its own changes) decide what
# they report, never sqlmux's trackers on the server connection.
_TRACKED = ["SELECT 1", "DO 1", "USE appdb", "SET autocommit=0", "SELECT 1", "SET autocommit=1",
            "SET time_zone='+01:00'", "SELECT @@time_zone", "BEGIN", "SELECT 2", "COMMIT",
            "SET NAMES utf8mb4", "SET @x=1", "SET session_track_state_change=ON", "SET @y=2",
            "SET time_zone='+02:00'", "SET session_track_system_variables='*'", "SET sql_mode=''",
            "SET session_track_schema=OFF", "USE appdb", "SET sql_mode=DEFAULT", "DO 1"]


def _ok_packets(resp):
    """The OK, EOF and ERR payloads of a response (what carries status flags
    and session state)."""
    return [p for p in resp if p[0] in (0x00, 0xFF) or (p[0] == 0xFE and len(p) < 0xFFFFFF)]


def _records_sorted(p):
    """An OK payload with its session-state records sorted: MariaDB writes
    system variables in its hash order, which differs between server runs
    and between a '*' tracker and a list, so only their order may differ."""
    if p[0] != 0x00 or not _status(p) & 0x4000:
        return p
    _, i = _lenenc(p, 1)
    _, i = _lenenc(p, i)
    i += 4
    n, i = _lenenc(p, i)  # info
    i += n
    size, j = _lenenc(p, i)
    data, records = p[j:j + size], []
    k = 0
    while k < len(data):
        n, m = _lenenc(data, k + 1)
        records.append(data[k:m + n])
        k = m + n
    return p[:j] + b"".join(sorted(records)) + p[j + size:]


def case_session_track_parity(my):
    """A client with CLIENT_SESSION_TRACK (with and without DEPRECATE_EOF)
    gets the status flags and session-state records byte for byte (system
    variables in any order) as on a direct connection with its own tracking
    settings: none of the trackers
    sqlmux turns on for its server connections, also after the client
    changes its session_track_* variables."""
    for mode in MODES:
        for extra in (_SESSION_TRACK | _DEPRECATE_EOF, _SESSION_TRACK):
            with mux_for(my, mode, size=1) as mux:
                direct = _RawClient(my.host, my.port, MY_USER, MY_PASSWORD, "appdb", caps=extra)
                c = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               caps=extra)
                for sql in _TRACKED:
                    want = _ok_packets(direct.command(b"\x03" + sql.encode()))
                    got = _ok_packets(c.command(b"\x03" + sql.encode()))
                    check_eq([_records_sorted(p).hex() for p in got],
                             [_records_sorted(p).hex() for p in want], f"{mode}, caps {extra:#x}: {sql}")
                c.sock.close()
                direct.sock.close()
    if MY_DIRECT:
        return
    # A client's SET session_track_... leaves sqlmux's own trackers on the
    # server connection: the schema still follows each client (pool of 1).
    with mux_for(my, "transaction", size=1) as mux:
        a = connect(mux, autocommit=True)
        b = connect(mux, autocommit=True)
        q(a, "SET session_track_schema=OFF, session_track_state_change=OFF")
        q(a, "USE information_schema")
        for i in range(2):
            check_eq(one(b, "SELECT DATABASE()"), "appdb", f"the other client, round {i}")
            check_eq(one(a, "SELECT DATABASE()"), "information_schema", f"round {i}")
        a.close()
        b.close()


def _definition_charsets(c, sql):
    """Character-set numbers of the column definitions of `sql` as a text
    query, then as a prepared statement (COM_STMT_PREPARE, then EXECUTE)."""
    resp = c.command(b"\x03" + sql.encode())
    text = [_charset_of_definition(p) for p in resp[1:1 + resp[0][0]]]
    defs, resp = c.execute(sql)
    return (text, [_charset_of_definition(p) for p in defs],
            [_charset_of_definition(p) for p in resp[1:1 + resp[0][0]]])


def case_column_charset(my):
    """Column definitions carry the client's handshake collation
    (utf8mb4_unicode_ci, 224) as on a direct connection, in text and prepared
    statement results, also on a server connection that served a client with
    another collation (latin1_swedish_ci, 8) before (pool of 1)."""
    sql = "SELECT v, 'lit' FROM coldefs"
    my.sql("CREATE TABLE IF NOT EXISTS coldefs (v VARCHAR(10))", db="appdb")
    my.sql("INSERT INTO coldefs VALUES ('a')", db="appdb")
    want = {}
    for cs in (224, 8, 45):
        d = _RawClient(my.host, my.port, MY_USER, MY_PASSWORD, "appdb", charset=cs)
        want[cs] = _definition_charsets(d, sql)
        check_eq(want[cs][0], [cs, cs], f"direct, charset {cs}")
        d.sock.close()
    for mode in MODES:
        with mux_for(my, mode, size=1) as mux:
            for cs in (224, 8, 224, 45, 224):  # one after another on the one connection
                c = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               charset=cs)
                check_eq(_definition_charsets(c, sql), want[cs], f"{mode}: charset {cs}")
                c.sock.close()
            if mode == "transaction":  # two clients alternating on it
                a = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               charset=224)
                b = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               charset=8)
                for i in range(2):
                    check_eq(_definition_charsets(a, sql), want[224], f"{mode}: 224, round {i}")
                    check_eq(_definition_charsets(b, sql), want[8], f"{mode}: 8, round {i}")
                a.sock.close()
                b.sock.close()


_MARIA_EXTENDED_METADATA = 1 << 3  # MARIADB_CLIENT_EXTENDED_METADATA (bit 35 >> 32)
_MARIA_CACHE_METADATA = 1 << 4  # MARIADB_CLIENT_CACHE_METADATA


def _extended_metadata(p):
    """The (type, value) pairs of a column definition's MariaDB extended
    metadata field (type 0: the type name, 1: the format name)."""
    i = 0
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        n, i = _lenenc(p, i)
        i += n
    n, i = _lenenc(p, i)
    data, out, k = p[i:i + n], [], 0
    while k < len(data):
        t = data[k]
        ln, k = _lenenc(data, k + 1)
        out.append((t, data[k:k + ln].decode()))
        k += ln
    return out


_EXTMETA_SELECT = "SELECT id, doc, pt, v, JSON_OBJECT('k', 1) AS j FROM extmeta"


def _metadata_responses(c):
    """Column and parameter definitions (and rows) a client gets: a text
    query, COM_STMT_PREPARE + EXECUTE, a PREPARE with a parameter and
    COM_FIELD_LIST, as lists of payloads."""
    import struct
    out = {}
    resp = c.command(b"\x03" + _EXTMETA_SELECT.encode())
    n = resp[0][0]
    out["text"] = resp[1:1 + n]
    out["text rows"] = resp[1 + n:-1]
    defs, resp = c.execute(_EXTMETA_SELECT)
    out["prepare"] = defs
    out["execute"] = resp[1:1 + resp[0][0]]
    out["execute rows"] = resp[1 + resp[0][0]:-1]
    # The same statement executed again: its metadata is sent again (it
    # would not be under MARIADB_CLIENT_CACHE_METADATA).
    c.send(0, b"\x16" + _EXTMETA_SELECT.encode())
    _, p = c.recv()
    check(p[0] == 0, f"COM_STMT_PREPARE: {p!r}")
    stmt, ncols, nparams = struct.unpack("<IHH", p[1:9])
    for _ in range(ncols + nparams):
        c.recv()
    for i in range(2):
        resp = c.command(b"\x17" + struct.pack("<IBI", stmt, 0, 1))
        out[f"execute {i}"] = resp
    c.send(0, b"\x19" + struct.pack("<I", stmt))
    c.send(0, b"\x16SELECT doc, ? FROM extmeta WHERE id = ?")
    _, p = c.recv()
    check(p[0] == 0, f"COM_STMT_PREPARE with parameters: {p!r}")
    stmt, ncols, nparams = struct.unpack("<IHH", p[1:9])
    out["prepare params"] = [c.recv()[1] for _ in range(ncols + nparams)]
    c.send(0, b"\x19" + struct.pack("<I", stmt))  # COM_STMT_CLOSE: no reply
    c.send(0, b"\x04extmeta\0")
    defs = []
    while True:
        p = c.recv()[1]
        if p[0] in (0xFE, 0xFF):
            break
        defs.append(p)
    out["field list"] = defs
    return out


def case_extended_metadata(my):
    """MariaDB's extended metadata (MARIADB_CLIENT_EXTENDED_METADATA, how a
    MariaDB server marks JSON columns): sqlmux offers it in its greeting
    (and not CACHE_METADATA); a client that asks for it gets the column and
    parameter definitions of text and prepared-statement results and of
    COM_FIELD_LIST byte for byte as from MariaDB, with the format name "json"
    on JSON columns; one that does not ask gets them as MariaDB sends them
    without it, also when both kinds of clients share one server connection
    (pool of 1) and for a client that also asks for CACHE_METADATA."""
    my.sql("CREATE TABLE IF NOT EXISTS extmeta (id INT PRIMARY KEY, doc JSON, pt POINT, v VARCHAR(10))",
           db="appdb")
    my.sql("REPLACE INTO extmeta VALUES (1, JSON_OBJECT('a', JSON_ARRAY(1, 2)), POINT(1, 2), 'x')",
           db="appdb")
    want = {}
    for maria in (_MARIA_EXTENDED_METADATA, 0):
        d = _RawClient(my.host, my.port, MY_USER, MY_PASSWORD, "appdb", maria_caps=maria)
        check_eq(d.maria_caps, maria, "MariaDB offers MARIADB_CLIENT_EXTENDED_METADATA")
        want[maria] = _metadata_responses(d)
        d.sock.close()
    ext = want[_MARIA_EXTENDED_METADATA]
    check_eq(_extended_metadata(ext["text"][1]), [(1, "json")], "direct: doc has the format json")
    check_eq(_extended_metadata(ext["text"][4]), [(1, "json")], "direct: JSON_OBJECT() has the format json")
    check_eq(_extended_metadata(ext["text"][2]), [(0, "point")], "direct: pt is a point")
    check_eq(_extended_metadata(ext["text"][0]), [], "direct: id has none")
    check(ext["text"][1] != want[0]["text"][1], "direct: the field changes the definition")

    def compare(got, maria, what):
        for k in want[maria]:
            check_eq([p.hex() for p in got[k]], [p.hex() for p in want[maria][k]], f"{what}: {k}")

    for mode in MODES:
        with mux_for(my, mode, size=1) as mux:
            for ask, get in ((_MARIA_EXTENDED_METADATA, _MARIA_EXTENDED_METADATA), (0, 0),
                             (_MARIA_EXTENDED_METADATA | _MARIA_CACHE_METADATA, _MARIA_EXTENDED_METADATA)):
                if MY_DIRECT and ask & _MARIA_CACHE_METADATA:
                    continue  # MariaDB itself negotiates it
                c = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               maria_caps=ask)
                check_eq(c.greeting_caps & 1, 0, f"{mode}: the greeting clears CLIENT_MYSQL")
                if not MY_DIRECT:
                    check_eq(c.greeting_maria_caps, _MARIA_EXTENDED_METADATA,
                             f"{mode}: the MariaDB capabilities sqlmux offers")
                check_eq(c.maria_caps, get, f"{mode}: negotiated")
                for i in range(2):
                    compare(_metadata_responses(c), get, f"{mode}, asked {ask:#x}, round {i}")
                c.sock.close()
            if mode != "session":  # two kinds of clients alternating on one server connection
                a = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"),
                               maria_caps=_MARIA_EXTENDED_METADATA)
                b = _RawClient(mux.host, mux.my_port, MY_USER, MY_PASSWORD, mux.dbname("appdb"))
                for i in range(2):
                    compare(_metadata_responses(a), _MARIA_EXTENDED_METADATA, f"{mode}: with it, round {i}")
                    compare(_metadata_responses(b), 0, f"{mode}: without it, round {i}")
                a.sock.close()
                b.sock.close()


def _backend_up(port, backend):
    """sqlmux_backend_up{pool="appdb",backend=...} from /metrics, or None."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("sqlmux_backend_up{") and f'backend="{backend}"' in line \
                and 'pool="appdb"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def case_health_checks(my):
    """[health] checks MySQL hosts with Connector/C's non-blocking API: up
    while MariaDB runs, down (backend_up 0) after it stops, up again after
    it starts, and clients are served again."""
    if MY_DIRECT:
        raise Skip("sqlmux's health checks")
    metrics_port = free_port()
    backend = f"127.0.0.1:{my.port}"

    def tweak(cfg):
        cfg["health"] = {"interval": "200ms", "timeout": "1s", "fall": 2, "rise": 1}
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    def wait_up(want, what, timeout=15):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = _backend_up(metrics_port, backend)
            if got == want:
                return
            time.sleep(0.1)
        fail(f"{what}: sqlmux_backend_up is {got}, want {want}")

    with mux_for(my, "transaction", tweak=tweak) as mux:
        wait_up(1.0, "MariaDB running")
        c = connect(mux, autocommit=True)
        check_eq(one(c, "SELECT 1"), 1, "query with the host up")
        c.close()
        my.stop_server()
        try:
            wait_up(0.0, "MariaDB stopped")
            check(f"backend host {backend} is down" in mux.log_tail(200),
                  "sqlmux logs the host going down")
        finally:
            my.start_server()
        wait_up(1.0, "MariaDB started again")
        c = connect(mux, autocommit=True)
        check_eq(one(c, "SELECT 2"), 2, "query after the host came back")
        c.begin()
        q(c, "SELECT 3")
        q(c, "SELECT 4")
        c.commit()
        c.close()
        assert_my_serving(mux)
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()

        def total(name):
            return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                       if l.startswith(name + "{") and 'pool="appdb"' in l)
        # SELECT 1, SELECT 2, BEGIN, SELECT 3, SELECT 4, COMMIT: six commands
        # (PyMySQL's own at login too); one transaction of four, and the
        # two single statements.
        check(total("sqlmux_queries_total") >= 6, f"queries_total: {total('sqlmux_queries_total')}")
        check(total("sqlmux_transactions_total") >= 3,
              f"transactions_total: {total('sqlmux_transactions_total')}")


if __name__ == "__main__":
    run_cases(__file__, [case_deprecate_eof_client, case_session_track_parity, case_column_charset,
                         case_extended_metadata, case_found_rows, case_default_pool_no_schema,
                         case_hostile_bytes, case_health_checks],
              timeout=150, server=MariaDbServer, direct=MY_DIRECT)
