"""Results: the printed table, the ratio lines, the JSON file and an SVG
bar chart. With several rounds, ratios are computed from the median of each
(scenario, target) over the rounds; the per-round values are kept too."""

from __future__ import annotations

import html
import json
import os
import statistics

# Ratios: (label, numerator (scenario, target), denominator (scenario, target), metric)
TPS, CPU, MEM, IDLE_CPU = "tps", "proxy_cpu_s_per_1k_tx", "rss_per_client_kib", "idle_cpu_s"
P50, P99, P999 = "p50_ms", "p99_ms", "p999_ms"
# Fixed rate (pgbench -R): the proxy's CPU and context switches per transaction
USER_US, SYS_US, VCSW, IVCSW = "proxy_user_us_per_tx", "proxy_sys_us_per_tx", "proxy_vcsw_per_tx", "proxy_ivcsw_per_tx"
RATE_METRICS = [(USER_US, "proxy CPU user per tx"), (SYS_US, "proxy CPU system per tx"),
                (VCSW, "voluntary context switches per tx"), (IVCSW, "involuntary context switches per tx"),
                (P50, "p50 latency"), (P99, "p99 latency"), (P999, "p99.9 latency")]
PGBENCH_SCENARIOS = ("select20", "select200", "prepared200", "connect20")
SELECT2000 = "select2000"  # 2,000 clients on the pool of 20: sqlmux vs PgBouncer
METRICS_SCENARIO = "select200_metrics"  # sqlmux-metrics (with [metrics]) vs sqlmux (without)
TLS_SCENARIO = "select200_tls"  # sqlmux-tls (clients over TLS) vs sqlmux (plaintext)
BASELINE = "sqlmux-base"  # --baseline-bin: sqlmux vs the same settings from the baseline binary
SERVER_CPU, TOTAL_CPU = "server_cpu_s_per_1k_tx", "total_cpu_s_per_1k_tx"  # MySQL: MariaDB's; + the proxy's
NOTIFY_CPU = "server_cpu_s_per_1k_deliveries"  # notify: PostgreSQL's CPU per 1,000 deliveries (rate phase)


def _fmt(v, spec: str, dash: str = "-") -> str:
    return dash if v is None else format(v, spec)


def shown(r: dict) -> str:
    """A run's target as printed: sqlmux-base's --baseline-label."""
    return r.get("label") or r["target"]


def baseline_label(runs: list[dict]) -> str:
    return next((r["label"] for r in runs if r["target"] == BASELINE and r.get("label")), BASELINE)


def error_text(r: dict) -> str:
    if r["tool"] == "pgbench":
        parts = []
        if r.get("failed_tx"):
            parts.append(f"{r['failed_tx']} failed tx")
        if r.get("aborted_clients"):
            parts.append(f"{r['aborted_clients']} clients aborted")
        if r.get("prepared_statement_errors"):
            parts.append(f"{r['prepared_statement_errors']} prepared-stmt errors")
        if r.get("connection_failures"):
            parts.append(f"{r['connection_failures']} connect failures")
    elif r["tool"] == "notify":
        parts = []
        for k, what in (("lost", "lost"), ("dup_or_reordered", "dup/reordered")):
            if r.get(k):
                parts.append(f"{r[k]} {what}")
        for ph in ("rate_phase", "saturation_phase"):
            p = r.get(ph) or {}
            if p.get("send_errors"):
                parts.append(f"{p['send_errors']} NOTIFY failed ({ph.split('_')[0]})")
            if p.get("dead_conns"):
                parts.append(f"{p['dead_conns']} listeners dropped ({ph.split('_')[0]})")
    elif r["tool"] == "sysbench":
        parts = [f"{r['ignored_errors']} ignored (deadlock etc.)"] if r.get("ignored_errors") else []
        if r.get("reconnects"):
            parts.append(f"{r['reconnects']} reconnects")
    else:
        parts = [f"{r['failed']} logins failed"] if r.get("failed") else []
        if r.get("dropped_while_idle"):
            parts.append(f"{r['dropped_while_idle']} dropped while idle")
    text = ", ".join(parts) or "0"
    status = r.get("status", "")
    if status == "failed (expected)":
        text = f"FAILED (EXPECTED): {text}"
    elif status not in ("ok", "errors"):
        text = status.splitlines()[0][:100]
    return text


def is_rate(r: dict) -> bool:
    """A fixed-rate run (pgbench: rate20, rate200, rate2000; sysbench:
    my_rate20, my_rate200), including one that could not start."""
    sc = str(r.get("scenario", ""))
    return ((r["tool"] == "pgbench" and (bool(r.get("rate")) or sc.startswith("rate")))
            or (r["tool"] == "sysbench" and (bool(r.get("rate")) or sc.startswith("my_rate"))))


def throughput_table(runs: list[dict], rounds: int) -> str:
    hdr = ["scenario", "target", "clients", "TPS", "p50 ms", "p99 ms", "CPU s/1k tx", "errors"]
    if rounds > 1:
        hdr.insert(1, "rnd")
    rows = [hdr]
    for r in runs:
        if r["tool"] in ("idle", "notify") or is_rate(r):
            continue
        row = [r["scenario"], shown(r), str(r["clients"])]
        if str(r.get("status", "")).startswith("skipped"):
            row += [r["status"], "", "", "", ""]
        else:
            row += [_fmt(r.get("tps"), ",.0f"), _fmt(r.get("p50_ms"), ".3f"), _fmt(r.get("p99_ms"), ".3f"),
                    _fmt(r.get("proxy_cpu_s_per_1k_tx"), ".4f"), error_text(r)]
        if rounds > 1:
            row.insert(1, str(r.get("round", 1)))
        rows.append(row)
    off = 1 if rounds > 1 else 0
    return _render(rows, right={2 + off, 3 + off, 4 + off, 5 + off, 6 + off}, span=3 + off)


def rate_table(runs: list[dict], rounds: int) -> str:
    """The fixed-rate runs: the rate asked and the TPS done, latency with
    -R (from the scheduled start: including schedule lag), and the proxy's
    user and system CPU microseconds and voluntary and involuntary context
    switches (all its threads) per transaction."""
    hdr = ["scenario", "target", "clients", "rate", "TPS", "p50 ms", "p99 ms", "p99.9 ms", "user us/tx",
           "sys us/tx", "vcsw/tx", "ivcsw/tx", "errors"]
    if rounds > 1:
        hdr.insert(1, "rnd")
    rows = [hdr]
    for r in runs:
        if not is_rate(r):
            continue
        row = [r["scenario"], shown(r), str(r["clients"]), _fmt(r.get("rate"), ",.0f"),
               _fmt(r.get("tps"), ",.0f") + ("" if r.get("rate_held", True) else " (!)"),
               _fmt(r.get("p50_ms"), ".3f"), _fmt(r.get("p99_ms"), ".3f"), _fmt(r.get("p999_ms"), ".3f"),
               _fmt(r.get(USER_US), ".1f"), _fmt(r.get(SYS_US), ".1f"), _fmt(r.get(VCSW), ".3f"),
               _fmt(r.get(IVCSW), ".3f"), error_text(r)]
        if rounds > 1:
            row.insert(1, str(r.get("round", 1)))
        rows.append(row)
    off = 1 if rounds > 1 else 0
    out = _render(rows, right=set(range(2 + off, 12 + off)), span=3 + off)
    return (out + "\nlatency: pgbench -R, from each transaction's scheduled start (includes schedule lag);"
            " my_rate*: sysbench --rate, from its histogram, from when a thread took the transaction off"
            " sysbench's queue (excludes the queue wait);\n"
            "CPU and context switches: the proxy process (direct: -); (!) = under 95 % of the rate")


def idle_table(runs: list[dict]) -> str:
    rows = [["target", "clients", "logged in", "login/s", "RSS before MiB", "RSS after MiB", "KiB/client",
             "login CPU us/client", "idle CPU s", "window s", "errors"]]
    for r in runs:
        if r["tool"] != "idle":
            continue
        if str(r.get("status", "")).startswith("skipped"):
            rows.append([r["target"], str(r["clients"]), r["status"]] + [""] * 8)
            continue
        rows.append([r["target"], str(r["clients"]), _fmt(r.get("ok"), "d"), _fmt(r.get("logins_per_s"), ",.0f"),
                     _fmt(r["rss_before_kib"] / 1024 if r.get("rss_before_kib") else None, ".1f"),
                     _fmt(r["rss_after_kib"] / 1024 if r.get("rss_after_kib") else None, ".1f"),
                     _fmt(r.get("rss_per_client_kib"), ".2f"), _fmt(r.get("login_cpu_us_per_client"), ",.0f"),
                     _fmt(r.get("idle_cpu_s"), ".2f"), _fmt(r.get("window_s"), ".0f"), error_text(r)])
    return _render(rows, right=set(range(1, 10)), span=2)


def notify_table(runs: list[dict], rounds: int) -> str:
    """The notify scenario: the latency phase (NOTIFY at a fixed rate:
    p50/p99/max from NOTIFY to delivery, proxy and PostgreSQL CPU per 1,000
    deliveries) and the saturation phase (deliveries per second)."""
    rows = [["target", "listeners", "srv conns", "rate/s", "p50 ms", "p99 ms", "max ms", "proxy CPU s/1k",
             "PG CPU s/1k", "sat. deliveries/s", "sat. proxy CPU s/1k", "lost", "dup", "errors"]]
    if rounds > 1:
        rows[0].insert(1, "rnd")
    for r in runs:
        if r["tool"] != "notify":
            continue
        rp, sp = r.get("rate_phase") or {}, r.get("saturation_phase") or {}
        row = [shown(r), str(r["clients"])]
        if r.get("status") not in ("ok", "errors"):
            row += ["", "", "", "", "", "", "", "", "", "", "", r.get("status", "").splitlines()[0]]
        else:
            row += [_fmt(r.get("server_conns"), "d"), _fmt(rp.get("sent_per_s"), ",.0f"),
                    _fmt(rp.get("p50_ms"), ".3f"), _fmt(rp.get("p99_ms"), ".3f"), _fmt(rp.get("max_ms"), ".1f"),
                    _fmt(rp.get("proxy_cpu_s_per_1k_deliveries"), ".4f"),
                    _fmt(rp.get("server_cpu_s_per_1k_deliveries"), ".4f"),
                    _fmt(sp.get("deliveries_per_s"), ",.0f"), _fmt(sp.get("proxy_cpu_s_per_1k_deliveries"), ".4f"),
                    _fmt(r.get("lost"), "d"), _fmt(r.get("dup_or_reordered"), "d"), error_text(r)]
        if rounds > 1:
            row.insert(1, str(r.get("round", 1)))
        rows.append(row)
    off = 1 if rounds > 1 else 0
    return _render(rows, right=set(range(1 + off, 13 + off)), span=2 + off)


def _render(rows: list[list[str]], right: set[int], span: int) -> str:
    """Aligned columns; a cell at index `span` starting with "skipped"
    stands for the rest of its row (left out of the column widths)."""
    def spanning(row):
        return row[span].startswith("skipped")

    widths = [max(len(row[i]) for row in rows if not (spanning(row) and i >= span))
              for i in range(len(rows[0]))]
    out = []
    for k, row in enumerate(rows):
        cells = []
        for i, c in enumerate(row):
            if spanning(row) and i >= span:
                cells.append(c)
                break
            cells.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        line = "  ".join(cells).rstrip()
        out.append(line)
        if k == 0:
            out.append("-" * len(line))
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Ratios
# ---------------------------------------------------------------------------


def _usable(r: dict) -> bool:
    return r.get("status") in ("ok", "errors")


def medians(runs: list[dict]) -> dict:
    """{(scenario, target): {metric: median over rounds, "_rounds": {round: run}}}"""
    by = {}
    for r in runs:
        if not _usable(r):
            continue
        by.setdefault((r["scenario"], r["target"]), []).append(r)
    out = {}
    for key, rs in by.items():
        m = {"_rounds": {r.get("round", 1): r for r in rs}}
        for metric in (TPS, CPU, MEM, IDLE_CPU, P50, P99, P999, NOTIFY_CPU, USER_US, SYS_US, VCSW, IVCSW, SERVER_CPU,
                       TOTAL_CPU):
            vals = [r[metric] for r in rs if r.get(metric) is not None]
            m[metric] = statistics.median(vals) if vals else None
        out[key] = m
    return out


def _ratio(med: dict, num: tuple, den: tuple, metric: str) -> dict | None:
    a, b = med.get(num), med.get(den)
    if not a or not b or a.get(metric) is None or not b.get(metric):
        return None
    per_round = {}
    for rnd, ra in a["_rounds"].items():
        rb = b["_rounds"].get(rnd)
        if rb and ra.get(metric) is not None and rb.get(metric):
            per_round[rnd] = ra[metric] / rb[metric]
    return {"value": a[metric] / b[metric], "per_round": per_round}


def ratios(runs: list[dict]) -> list[dict]:
    med = medians(runs)
    base = baseline_label(runs)
    specs = []
    for sc in PGBENCH_SCENARIOS:
        specs += [
            (f"{sc}: sqlmux/PgBouncer TPS", (sc, "sqlmux"), (sc, "pgbouncer"), TPS),
            (f"{sc}: sqlmux/PgBouncer proxy CPU per 1k tx", (sc, "sqlmux"), (sc, "pgbouncer"), CPU),
            (f"{sc}: sqlmux/direct TPS", (sc, "sqlmux"), (sc, "direct"), TPS),
            (f"{sc}: PgBouncer/direct TPS", (sc, "pgbouncer"), (sc, "direct"), TPS),
            (f"{sc}: sqlmux/HAProxy TPS", (sc, "sqlmux"), (sc, "haproxy"), TPS),
            (f"{sc}: sqlmux/HAProxy proxy CPU per 1k tx", (sc, "sqlmux"), (sc, "haproxy"), CPU),
            (f"{sc}: HAProxy/direct TPS", (sc, "haproxy"), (sc, "direct"), TPS),
            # --baseline-bin: this build against the baseline one, same settings, same run
            (f"{sc}: sqlmux/{base} TPS", (sc, "sqlmux"), (sc, BASELINE), TPS),
            (f"{sc}: sqlmux/{base} p50 latency", (sc, "sqlmux"), (sc, BASELINE), P50),
            (f"{sc}: sqlmux/{base} p99 latency", (sc, "sqlmux"), (sc, BASELINE), P99),
            (f"{sc}: sqlmux/{base} proxy CPU per 1k tx", (sc, "sqlmux"), (sc, BASELINE), CPU),
        ]
    specs += [
        ("prepared/simple TPS through sqlmux (prepared200 vs select200)", ("prepared200", "sqlmux"),
         ("select200", "sqlmux"), TPS),
        ("prepared/simple TPS direct (prepared200 vs select200)", ("prepared200", "direct"),
         ("select200", "direct"), TPS),
    ]
    specs += [
        (f"{METRICS_SCENARIO}: metrics on/off TPS through sqlmux", (METRICS_SCENARIO, "sqlmux-metrics"),
         (METRICS_SCENARIO, "sqlmux"), TPS),
        (f"{METRICS_SCENARIO}: metrics on/off proxy CPU per 1k tx", (METRICS_SCENARIO, "sqlmux-metrics"),
         (METRICS_SCENARIO, "sqlmux"), CPU),
    ]
    specs += [
        (f"{TLS_SCENARIO}: TLS/plain TPS through sqlmux", (TLS_SCENARIO, "sqlmux-tls"), (TLS_SCENARIO, "sqlmux"), TPS),
        (f"{TLS_SCENARIO}: TLS/plain p50 latency", (TLS_SCENARIO, "sqlmux-tls"), (TLS_SCENARIO, "sqlmux"), P50),
        (f"{TLS_SCENARIO}: TLS/plain p99 latency", (TLS_SCENARIO, "sqlmux-tls"), (TLS_SCENARIO, "sqlmux"), P99),
        (f"{TLS_SCENARIO}: TLS/plain proxy CPU per 1k tx", (TLS_SCENARIO, "sqlmux-tls"),
         (TLS_SCENARIO, "sqlmux"), CPU),
    ]
    specs += [(f"{SELECT2000}: sqlmux/{den_shown} {what}", (SELECT2000, "sqlmux"), (SELECT2000, den), metric)
              for den, den_shown in (("pgbouncer", "PgBouncer"), (BASELINE, base))
              for metric, what in ((TPS, "TPS"), (P50, "p50 latency"), (P99, "p99 latency"),
                                   (CPU, "proxy CPU per 1k tx"))]
    for sc in sorted({r["scenario"] for r in runs if is_rate(r)}, key=lambda n: (len(n), n)):
        my = "mysql-" if any(r["scenario"] == sc and r["target"].startswith("mysql-") for r in runs) else ""
        dens = [("pgbouncer", "PgBouncer"), ("haproxy", "HAProxy")] + ([] if my else [(BASELINE, base)])
        for den, den_shown in dens:
            specs += [(f"{sc}: sqlmux/{den_shown} {what}", (sc, my + "sqlmux"), (sc, my + den), metric)
                      for metric, what in RATE_METRICS]
    for sc in sorted({r["scenario"] for r in runs if r["tool"] == "sysbench" and not is_rate(r)}):
        specs += [
            (f"{sc}: sqlmux/direct TPS", (sc, "sqlmux"), (sc, "direct"), TPS),
            # MySQL: sqlmux's mysql listener and HAProxy in front of MariaDB
            (f"{sc}: MySQL sqlmux/direct TPS", (sc, "mysql-sqlmux"), (sc, "mysql-direct"), TPS),
            (f"{sc}: MySQL sqlmux/HAProxy TPS", (sc, "mysql-sqlmux"), (sc, "mysql-haproxy"), TPS),
            (f"{sc}: MySQL sqlmux/HAProxy proxy CPU per 1k tx", (sc, "mysql-sqlmux"), (sc, "mysql-haproxy"), CPU),
            (f"{sc}: MySQL HAProxy/direct TPS", (sc, "mysql-haproxy"), (sc, "mysql-direct"), TPS),
            # CPU per transaction in all (MariaDB + the proxy; direct: MariaDB alone) and MariaDB's own
            (f"{sc}: MySQL sqlmux/direct CPU per 1k tx (MariaDB + proxy)", (sc, "mysql-sqlmux"),
             (sc, "mysql-direct"), TOTAL_CPU),
            (f"{sc}: MySQL HAProxy/direct CPU per 1k tx (MariaDB + proxy)", (sc, "mysql-haproxy"),
             (sc, "mysql-direct"), TOTAL_CPU),
            (f"{sc}: MySQL sqlmux/HAProxy CPU per 1k tx (MariaDB + proxy)", (sc, "mysql-sqlmux"),
             (sc, "mysql-haproxy"), TOTAL_CPU),
            (f"{sc}: MySQL sqlmux/direct MariaDB CPU per 1k tx", (sc, "mysql-sqlmux"), (sc, "mysql-direct"),
             SERVER_CPU),
        ]
    for sc in sorted({r["scenario"] for r in runs if r["tool"] == "idle"}):
        specs += [
            (f"{sc}: sqlmux/PgBouncer memory per idle client", (sc, "sqlmux"), (sc, "pgbouncer"), MEM),
            (f"{sc}: sqlmux/PgBouncer CPU over the idle window", (sc, "sqlmux"), (sc, "pgbouncer"), IDLE_CPU),
        ]
    for sc in sorted({r["scenario"] for r in runs if r["tool"] == "notify"}):
        for other, shown_as in (("sqlmux", "sqlmux"), ("pgbouncer-session", "PgBouncer session")):
            specs += [
                (f"{sc}: {shown_as}/direct deliveries per second (saturation)", (sc, other), (sc, "direct"), TPS),
                (f"{sc}: {shown_as}/direct p50 latency (fixed rate)", (sc, other), (sc, "direct"), P50),
                (f"{sc}: {shown_as}/direct p99 latency (fixed rate)", (sc, other), (sc, "direct"), P99),
                (f"{sc}: {shown_as}/direct PostgreSQL CPU per 1k deliveries", (sc, other), (sc, "direct"),
                 NOTIFY_CPU),
            ]
        specs += [
            (f"{sc}: sqlmux/PgBouncer session deliveries per second", (sc, "sqlmux"), (sc, "pgbouncer-session"),
             TPS),
            (f"{sc}: sqlmux/PgBouncer session proxy CPU per 1k deliveries", (sc, "sqlmux"),
             (sc, "pgbouncer-session"), CPU),
        ]
    out = []
    for label, num, den, metric in specs:
        r = _ratio(med, num, den, metric)
        if r is not None:
            out.append({"name": label, "numerator": list(num), "denominator": list(den), "metric": metric, **r})
    # Runs that could not give a ratio because the other side failed as expected
    for r in runs:
        if r["tool"] == "notify" and str(r.get("status", "")).startswith("n/a"):
            name = f"{r['scenario']}: {shown(r)} {r['status']}: {r.get('why', '')}"
            if all(o["name"] != name for o in out):  # the same in every round: once
                out.append({"name": name, "value": None})
        if r.get("status") == "failed (expected)":
            out.append({"name": f"{r['scenario']}: {shown(r)} failed as expected "
                                f"(round {r.get('round', 1)}): {error_text(r)}", "value": None})
    return out


def ratio_lines(rs: list[dict], rounds: int) -> str:
    lines = []
    for r in rs:
        if r.get("value") is None:
            lines.append(f"  {r['name']}")
            continue
        extra = ""
        if rounds > 1 and r.get("per_round"):
            extra = "  (rounds: " + ", ".join(f"{v:.2f}" for _, v in sorted(r["per_round"].items())) + ")"
        lines.append(f"  {r['name']}: {r['value']:.2f}x{extra}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def write_json(path: str, doc: dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


COLORS = {"direct": "#7f8c8d", "pgbouncer": "#2980b9", "haproxy": "#27ae60", "pgbouncer-session": "#5dade2",
          "sqlmux": "#c0392b",
          "sqlmux-base": "#e6a09a", "sqlmux-metrics": "#e67e22", "sqlmux-tls": "#8e44ad",
          "mysql-direct": "#95a5a6", "mysql-haproxy": "#52be80", "mysql-sqlmux": "#e74c3c"}


def write_svg(path: str, runs: list[dict], title: str):
    """Horizontal bars per scenario and target (each scenario scaled to its
    own largest bar): median TPS; for the fixed-rate scenarios (where TPS
    is the rate) the proxy's CPU microseconds per transaction, user + system
    (direct has no proxy: no bar); memory per idle client. Under each
    scenario, its ratio lines for TPS, CPU and p99 (at most 8)."""
    med = medians(runs)
    labels = {BASELINE: baseline_label(runs)}
    groups = []  # (heading, [(label, value, text)], [ratio lines])
    notes: dict[str, list[str]] = {}
    for rt in ratios(runs):
        if rt.get("value") is None or rt.get("metric") not in (TPS, CPU, TOTAL_CPU, USER_US, SYS_US, P99):
            continue
        sc, _, what = rt["name"].partition(": ")
        notes.setdefault(sc, []).append(f"{what}: {rt['value']:.2f}x")
    scenarios = []
    for r in runs:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    for sc in scenarios:
        is_idle = any(r["tool"] == "idle" and r["scenario"] == sc for r in runs)
        is_notify = any(r["tool"] == "notify" and r["scenario"] == sc for r in runs)
        is_rate_sc = any(is_rate(r) and r["scenario"] == sc for r in runs)
        metric, unit = (MEM, "KiB/client") if is_idle else (TPS, "deliveries/s" if is_notify else "tps")
        bars = []
        for tgt in COLORS:
            m = med.get((sc, tgt))
            if is_rate_sc:
                if m and m.get(USER_US) is not None and m.get(SYS_US) is not None:
                    bars.append((tgt, m[USER_US] + m[SYS_US],
                                 f"{m[USER_US]:.1f} user + {m[SYS_US]:.1f} sys us/tx at {m[TPS] or 0:,.0f} tps"))
            elif m and m.get(metric) is not None:
                bars.append((tgt, m[metric], f"{m[metric]:,.0f} {unit}" if metric == TPS
                             else f"{m[metric]:.2f} {unit}"))
        failed = [r["target"] for r in runs if r["scenario"] == sc and r.get("status") == "failed (expected)"]
        for tgt in dict.fromkeys(failed):
            bars.append((tgt, 0.0, "failed (expected)"))
        if bars:
            clients = next(r["clients"] for r in runs if r["scenario"] == sc)
            what = " - memory" if is_idle else " - proxy CPU per transaction at a fixed rate" if is_rate_sc else ""
            groups.append((f"{sc} ({clients} clients){what}", bars, notes.get(sc, [])[:8]))
    left, bar_w, bar_h, gap, head, line_h = 110, 420, 18, 4, 24, 14
    height = 40 + sum(head + len(b) * (bar_h + gap) + len(n) * line_h + 8 for _, b, n in groups)
    width = left + bar_w + 230
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{html.escape(title)}</text>']
    y = 40
    for heading, bars, lines in groups:
        out.append(f'<text x="10" y="{y + 15}" font-weight="bold">{html.escape(heading)}</text>')
        y += head
        top = max(v for _, v, _ in bars) or 1.0
        for tgt, v, text in bars:
            w = max(1.0, bar_w * v / top) if v else 0
            out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">'
                       f'{html.escape(labels.get(tgt, tgt))}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{COLORS.get(tgt, "#555")}"/>')
            out.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{html.escape(text)}</text>')
            y += bar_h + gap
        for ln in lines:
            out.append(f'<text x="{left}" y="{y + 11}" font-size="11" fill="#333">{html.escape(ln)}</text>')
            y += line_h
        y += 8
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
