#!/usr/bin/env python3
"""Self-test of check_layout.py: runs it on a fake source tree whose files
mark the lines that must be reported with `// expect: rule N`, and checks
that exactly those (file, line, rule) are reported, then that a clean tree
passes."""
import os
import re
import subprocess
import sys
import tempfile

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_layout.py")

TREE = {
    "config/config.h": "#include <string>\n",
    "protocol/pg/codec.h": """\
#include <cstdint>
#include <openssl/evp.h>
// #include "daemon/core/log.h"
/* a comment over two lines
#include <uv.h> */
const char* s = "/* not a comment";
#include "protocol/pg/codec.h"
""",
    "protocol/pg/bad.cpp": """\
#include "protocol/pg/codec.h"
#include "protocol/mysql/packet.h"  // expect: rule 1
#  include <uv.h>  // expect: rule 1
#include "config/config.h"  // expect: rule 1
""",
    "protocol/mysql/packet.h": "#include <openssl/rand.h>\n",
    "pool/policy.h": '#include "config/config.h"\n#include <vector>\n',
    "pool/policy.cpp": """\
#include "pool/policy.h"
#include "pool/pg/prepared.h"  // expect: rule 2
#include <libpq-fe.h>  // expect: rule 2
""",
    "pool/pg/prepared.h": '#include "protocol/pg/codec.h"\n#include "pool/policy.h"\n',
    "pool/pg/bad.cpp": """\
#include "pool/pg/prepared.h"
#include "protocol/mysql/packet.h"  // expect: rule 3
#include "daemon/core/log.h"  // expect: rule 3
""",
    "daemon/net/conn.cpp": """\
#include "daemon/ops/metrics.h"
#include "daemon/core/log.h"  // expect: rule 5
#include "daemon/pg/client.h"  // expect: rule 4
""",
    "daemon/core/worker.h": "#include <uv.h>\n",
    "daemon/ops/metrics.h": "#include <atomic>\n",
    "daemon/core/log.h": '#include "config/config.h"\n',
    "daemon/core/pooled.cpp": """\
#include "daemon/core/worker.h"
#include <mysql.h>  // expect: rule 4
#include "pool/pg/prepared.h"  // expect: rule 4
""",
    "daemon/pg/client.h": '#include "pool/pg/prepared.h"\n#include <libpq-fe.h>\n',
    "daemon/pg/client.cpp": """\
#include "daemon/pg/client.h"
#include "daemon/admin/session.h"  // expect: rule 6
#include "daemon/mysql/client.h"  // expect: rule 6
""",
    "daemon/mysql/client.h": '#include "protocol/mysql/packet.h"\n',
    "daemon/mysql/client.cpp": '#include "daemon/mysql/client.h"\n#include <libpq-fe.h>  // expect: rule 6\n',
    "daemon/admin/session.h": '#include "daemon/pg/client.h"\n',
    "daemon/admin/session.cpp": '#include "daemon/admin/session.h"\n#include "daemon/pg/client.h"  // expect: rule 7\n',
    "daemon/admin/jobs.cpp": """\
#include "daemon/admin/session.h"
#include "daemon/pg/client.h"  // expect: rule 7
#include "protocol/pg/codec.h"
""",
    "daemon/main.cpp": """\
#include "daemon/pg/client.h"
#include "daemon/mysql/client.h"
#include "pool/pg/prepared.h"
#include "protocol/mysql/packet.h"
#include "version.h"
""",
    "config/mixed.cpp": """\
#include "config/config.h"
#include "protocol/mysql/packet.h"
#include "pool/pg/prepared.h"  // expect: rule 8
""",
    "daemon/ops/metrics.cpp": """\
#include "daemon/ops/missing.h"  // expect: rule 9
#include "log.h"  // expect: rule 9
#include "daemon/core/log.h"
""",
}
REPORT = re.compile(r"^(\S+):(\d+): rule (\d) \(.*\): (\S+)$")


def run(tree, *args):
    with tempfile.TemporaryDirectory() as d:
        for path, text in tree.items():
            os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
            with open(os.path.join(d, path), "w") as f:
                f.write(text)
        return subprocess.run([sys.executable, CHECKER, *args, d], capture_output=True, text=True)


def main():
    expected = {(path, n, int(m.group(1)))
                for path, text in TREE.items()
                for n, line in enumerate(text.splitlines(), 1)
                for m in [re.search(r"expect: rule (\d)", line)] if m}
    r = run(TREE)
    lines = r.stdout.splitlines()
    reported = set()
    for line in lines[:-1]:
        m = REPORT.match(line)
        assert m, f"unexpected output line: {line!r}"
        reported.add((m.group(1), int(m.group(2)), int(m.group(3))))
    assert reported == expected, (f"missed: {sorted(expected - reported)}\n"
                                  f"spurious: {sorted(reported - expected)}")
    assert len(lines) - 1 == len(expected), "a violation was reported twice"
    n_includes = sum(t.count("#include") + t.count("#  include") for t in TREE.values()) - 2
    assert lines[-1] == f"{len(TREE)} files, {n_includes} includes checked, " \
                       f"{len(expected)} violations", lines[-1]
    assert r.returncode == 1, r.returncode

    # Without its violating files the tree passes; --graph adds its edges.
    clean = {p: t for p, t in TREE.items() if "expect:" not in t}
    r = run(clean, "--graph")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  daemon -> daemon/mysql: 1\n" in r.stdout, r.stdout
    assert "  protocol/pg -> <openssl>: 1\n" in r.stdout, r.stdout
    assert r.stdout.endswith(" includes checked, 0 violations\n"), r.stdout
    print(f"ok: {len(expected)} expected violations reported, clean tree passes")


if __name__ == "__main__":
    main()
