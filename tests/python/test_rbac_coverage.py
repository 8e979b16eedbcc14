"""RBAC coverage: every Kubernetes API call the controller made during the Rust test suite (the
fake API server records them; see tests/integration/support/bed.rs) must be allowed by the roles
the Helm chart grants its ServiceAccount; rules no call used are listed.

The Rust suite writes the calls to target/tmp/rbac-calls/*.jsonl; scripts/test.sh runs it first
and sets EDGEBIND_RBAC_CALLS_DIR. Run alone, this test is skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from deploy_render import objects, render

RELEASE = "edgebind"
# The topology the Rust suite runs: the controller's own namespace (leases, the gateway key
# Secret, the Cloudflare token), and team-a (volumes, snapshots, EdgeBindings).
NAMESPACE = "edgebind-system"
VALUES = {"controller": {"leaderElection": {"enabled": True},
                         "backendSecrets": {"namespaces": ["edgebind-system"]},
                         "edgeBindings": {"namespaces": ["team-a"]}}}
CALLS_DIR = os.environ.get("EDGEBIND_RBAC_CALLS_DIR")


def load_calls() -> list[dict[str, Any]]:
    assert CALLS_DIR is not None
    files = sorted(Path(CALLS_DIR).glob("controller-*.jsonl"))
    assert files, f"no recorded controller calls in {CALLS_DIR}: run the Rust suite first"
    calls = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                calls.append(json.loads(line))
    return calls


def controller_rules(objs: list[dict[str, Any]]) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace or None for cluster-wide, rule) for every rule bound to the controller's SA."""
    sa = next(
        o["metadata"]["name"]
        for o in objs
        if o["kind"] == "ServiceAccount" and "controller" in o["metadata"]["name"]
    )
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    out = []
    for b in objs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in b.get("subjects", [])):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, f"{b['metadata']['name']} binds a role the chart does not define"
        for rule in role.get("rules", []):
            out.append((ns, rule))
    return out


def allows(ns: str | None, rule: dict[str, Any], call: dict[str, Any]) -> bool:
    if ns is not None and call.get("namespace") != ns:
        return False
    resource = call["resource"] + (f"/{call['subresource']}" if call.get("subresource") else "")
    names = rule.get("resourceNames")
    if names and (call.get("name") not in names):
        return False
    return (
        call["group"] in rule.get("apiGroups", [])
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (call["verb"] in rule.get("verbs", []) or "*" in rule.get("verbs", []))
    )


@pytest.mark.skipif(CALLS_DIR is None, reason="run through scripts/test.sh, after the Rust suite")
def test_every_controller_call_is_allowed_by_the_chart() -> None:
    calls = load_calls()
    objs = objects(render(VALUES, name=RELEASE, namespace=NAMESPACE))
    rules = controller_rules(objs)
    assert rules, "the chart binds no rule to the controller"
    denied = sorted({
        f"{c['verb']} {c['group'] or 'core'}/{c['resource']}{'/' + c['subresource'] if c.get('subresource') else ''}"
        f" in {c.get('namespace') or '(cluster)'}"
        for c in calls
        if not any(allows(ns, r, c) for ns, r in rules)
    })
    assert not denied, "calls the chart's RBAC would refuse:\n" + "\n".join(denied)

    unused = []
    for ns, r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    probe = {"group": g, "resource": res.split("/")[0], "subresource": res.split("/")[1] if "/" in res else None, "verb": v}
                    if not any(
                        c["group"] == g and c["resource"] == probe["resource"]
                        and (c.get("subresource") or None) == probe["subresource"] and c["verb"] == v
                        and (ns is None or c.get("namespace") == ns)
                        for c in calls
                    ):
                        unused.append(f"{v} {g or 'core'}/{res}" + (f" in {ns}" if ns else ""))
    print(f"\n{len(calls)} controller calls checked against {len(rules)} rules")
    print("rules no recorded call used:\n  " + "\n  ".join(sorted(set(unused))) if unused else "every rule was used")
