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
# The topology the Rust suite runs: the controller's own namespace (leases, the signing-key
# Secrets, the Cloudflare token), and team-a (volumes, snapshots, EdgeBindings).
NAMESPACE = "edgebind-system"
VALUES = {"controller": {"leaderElection": {"enabled": True},
                         "backendSecrets": {"namespaces": ["edgebind-system"]}}}
CALLS_DIR = os.environ.get("EDGEBIND_RBAC_CALLS_DIR")


def load_calls(component: str) -> list[dict[str, Any]]:
    assert CALLS_DIR is not None
    files = sorted(Path(CALLS_DIR).glob(f"{component}-*.jsonl"))
    assert files, f"no recorded {component} calls in {CALLS_DIR}: run the Rust suite first"
    calls = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                calls.append(json.loads(line))
    return calls


def component_rules(objs: list[dict[str, Any]], component: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(namespace or None for cluster-wide, rule) for every rule bound to the component's SA."""
    sa = next(
        o["metadata"]["name"]
        for o in objs
        if o["kind"] == "ServiceAccount" and component in o["metadata"]["name"]
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


@pytest.mark.parametrize("component", ["controller", "gateway"])
def test_every_call_is_allowed_by_the_chart(component: str) -> None:
    # Without the recorded calls this proves nothing: a failure, not a skip.
    if CALLS_DIR is None:
        pytest.fail("EDGEBIND_RBAC_CALLS_DIR is not set: run through scripts/test.sh, after the Rust suite", pytrace=False)
    calls = load_calls(component)
    objs = objects(render(VALUES, name=RELEASE, namespace=NAMESPACE))
    rules = component_rules(objs, component)
    assert rules, f"the chart binds no rule to the {component}"
    denied = sorted({
        f"{c['verb']} {c['group'] or 'core'}/{c['resource']}{'/' + c['subresource'] if c.get('subresource') else ''}"
        f" in {c.get('namespace') or '(cluster)'}"
        for c in calls
        if not any(allows(ns, r, c) for ns, r in rules)
    })
    assert not denied, f"calls the chart's RBAC would refuse the {component}:\n" + "\n".join(denied)

    unused = []
    for ns, r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    base, sub = (res.split("/", 1) + [None])[:2]
                    if not any(
                        c["group"] == g and c["resource"] == base
                        and (c.get("subresource") or None) == sub and c["verb"] == v
                        and (ns is None or c.get("namespace") == ns)
                        for c in calls
                    ):
                        unused.append(f"{v} {g or 'core'}/{res}" + (f" in {ns}" if ns else ""))
    print(f"\n{component}: {len(calls)} calls checked against {len(rules)} rules")
    print("rules no recorded call used:\n  " + "\n  ".join(sorted(set(unused))) if unused else "every rule was used")
