"""The Grafana dashboard (deploy/grafana/edgebind.json): every query is valid PromQL (promtool
parses it, wrapped as a recording rule) and reads only metrics edgebind exports (the README's
metrics table, which the controller-process test checks against a running controller)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from test_alerts import promtool

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "edgebind.json"


def exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(out) == len(dash["panels"]) >= 8
    return out


def test_every_query_is_valid_promql(tmp_path: Path):
    # Grafana fills $job and $gateway; a literal stands in for promtool.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"edgebind:dashboard_{i}", "expr": e.replace("$job", "x").replace("$gateway", "y")}
        for i, e in enumerate(exprs())]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    r = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_metric_queried_is_exported():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`(edgebind_[a-z_]+)`", readme))
    for e in exprs():
        for name in re.findall(r"\b(edgebind_[a-z_]+)", e):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in documented, f"{name} in the dashboard is not an exported metric"
