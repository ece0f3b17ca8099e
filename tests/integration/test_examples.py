#!/usr/bin/python3
"""The shipped examples stay true: every config/examples/*.toml passes
`sqlmux --check-config`, and the Kubernetes example's embedded
configuration does too, with its probes (/healthz, /readyz) and ports
matching that configuration's [metrics] and listener addresses. The
Prometheus alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), and every metric the rules and the Grafana
dashboard name is one a running sqlmux serves."""

import glob
import json
import os
import re
import subprocess
import urllib.request

import yaml

from harness import *

EXAMPLES = os.path.join(REPO, "config", "examples")


def case_toml_examples_check(pg):
    require_sqlmux("--check-config")
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.toml"))):
        with open(path) as f:
            rc, out, _ = check_config(f.read(), os.path.basename(path))
        check_eq(rc, 0, f"{os.path.basename(path)}: --check-config: {out}")


def case_kubernetes_example(pg):
    require_sqlmux("--check-config")
    with open(os.path.join(EXAMPLES, "kubernetes.yaml")) as f:
        docs = {d["kind"]: d for d in yaml.safe_load_all(f) if d}
    check_eq(sorted(docs), ["Deployment", "Secret", "Service"], "kinds")
    toml_text = docs["Secret"]["stringData"]["sqlmux.toml"]
    rc, out, _ = check_config(toml_text)
    check_eq(rc, 0, f"the embedded sqlmux.toml: --check-config: {out}")
    metrics_port = int(re.search(r'\[metrics\]\s*\nlisten = "[^"]*:(\d+)"', toml_text).group(1))
    pg_port = int(re.search(r'protocol = "postgres"\s*\nlisten = "[^"]*:(\d+)"', toml_text).group(1))
    timeout = int(re.search(r'shutdown_timeout = "(\d+)s"', toml_text).group(1))

    spec = docs["Deployment"]["spec"]["template"]["spec"]
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check_eq(ports, {"postgres": pg_port, "metrics": metrics_port}, "container ports")
    check_eq((c["livenessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["port"]),
             ("/healthz", "metrics"), "liveness probe")
    check_eq((c["readinessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["port"]),
             ("/readyz", "metrics"), "readiness probe")
    check(spec["terminationGracePeriodSeconds"] > timeout,
          "terminationGracePeriodSeconds must exceed shutdown_timeout")
    mount = c["volumeMounts"][0]["mountPath"]
    check_eq(c["args"], ["--config", mount + "/sqlmux.toml"], "args name the mounted configuration")
    check_eq(spec["volumes"][0]["secret"]["secretName"], docs["Secret"]["metadata"]["name"], "volume")
    svc = docs["Service"]["spec"]
    check_eq(svc["selector"], docs["Deployment"]["spec"]["selector"]["matchLabels"], "service selector")
    check_eq(svc["ports"][0]["targetPort"], "postgres", "service target port")


def case_alert_rules_promtool(pg):
    for args in (["check", "rules", "prometheus-alerts.yml"], ["test", "rules", "prometheus-alerts.test.yml"]):
        r = subprocess.run(["promtool", *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=60)
        check_eq(r.returncode, 0, f"promtool {' '.join(args)}: {r.stdout}{r.stderr}")


def _names_in(expr):
    return set(re.findall(r"\b((?:sqlmux|process)_[a-z0-9_]+)", expr))


def case_rules_and_dashboard_name_served_metrics(pg):
    require_sqlmux("the metrics endpoint")
    with open(os.path.join(EXAMPLES, "prometheus-alerts.yml")) as f:
        rules = yaml.safe_load(f)
    wanted = set()
    for g in rules["groups"]:
        for r in g["rules"]:
            wanted |= _names_in(r["expr"])
    with open(os.path.join(EXAMPLES, "grafana-dashboard.json")) as f:
        dash = json.load(f)
    for p in dash["panels"]:
        for t in p["targets"]:
            wanted |= _names_in(t["expr"])
    check(len(wanted) >= 10, f"names found: {sorted(wanted)}")
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    served = set(re.findall(r"^([a-z_:][a-z0-9_:]*)(?:\{| )", text, re.M))
    missing = sorted(n for n in wanted if n not in served)
    check(not missing, f"named by the rules or the dashboard but not served: {missing}")


if __name__ == "__main__":
    run_cases(__file__, [case_toml_examples_check, case_kubernetes_example, case_alert_rules_promtool,
                         case_rules_and_dashboard_name_served_metrics], timeout=90)
