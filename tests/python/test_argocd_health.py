"""The Argo CD health check (deploy/argocd/health.lua) run by a real Lua 5.1 interpreter (Debian's,
unpacked by scripts/install-debian.sh), as Argo CD runs it: `obj` is the live object, the script
returns `hs`. Each edgebind kind's status shapes give Healthy, Progressing or Degraded; and the
argocd-cm snippet registers exactly this script for every kind the CRDs define."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "deploy" / "argocd"
LUA_ROOT = Path(os.environ.get("EDGEBIND_DEBIAN_TOOLS", REPO / ".tools" / "debian"))


def lua_literal(v) -> str:
    """A Python value as a Lua table literal (what Argo CD hands the script as `obj`)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "{" + ", ".join(lua_literal(x) for x in v) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if v is None:
        return "nil"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def health(obj: dict) -> tuple[str, str]:
    lua = LUA_ROOT / "usr" / "bin" / "lua5.1"
    assert lua.exists(), "Lua 5.1 is unpacked by scripts/install-debian.sh"
    harness = (f"obj = {lua_literal(obj)}\n"
               f"local hs = assert(loadfile({lua_literal(str(ARGOCD / 'health.lua'))}))()\n"
               "io.write(hs.status, '\\t', hs.message)\n")
    env = dict(os.environ, LD_LIBRARY_PATH=str(LUA_ROOT / "usr" / "lib" / "x86_64-linux-gnu"))
    r = subprocess.run([str(lua), "-"], input=harness, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    status, message = r.stdout.split("\t", 1)
    return status, message


def cond(type_, status, reason, message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-07T17:00:00Z", "observedGeneration": 2}


def volume(conditions, generation=2, observed=2):
    return {"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
            "metadata": {"name": "db", "namespace": "team-a", "generation": generation},
            "status": {"observedGeneration": observed, "phase": "Pending", "conditions": conditions}}


CASES = [
    ("ready", volume([cond("Ready", "True", "Ready", "2 of 2 diskful replica(s) UpToDate"),
                      cond("Stalled", "False", "Ready")]), "Healthy"),
    ("placing", volume([cond("Ready", "False", "Placing", "placing 2 replicas"),
                        cond("Stalled", "False", "Placing")]), "Progressing"),
    ("invalid spec", volume([cond("Ready", "False", "InvalidSpec", "size must grow"),
                             cond("Stalled", "True", "InvalidSpec", "size must grow")]), "Degraded"),
    ("conflict", volume([cond("Ready", "False", "Conflict", "not created by edgebind"),
                         cond("Stalled", "True", "Conflict", "not created by edgebind")]), "Degraded"),
    ("new generation not yet seen", volume([cond("Ready", "True", "Ready")], generation=3, observed=2),
     "Progressing"),
    ("no status yet", {"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
                       "metadata": {"name": "db", "generation": 1}}, "Progressing"),
]


@pytest.mark.parametrize("what,obj,want", CASES, ids=[c[0] for c in CASES])
def test_health_of_each_status_shape(what, obj, want):
    status, message = health(obj)
    assert status == want, (what, message)
    if want == "Degraded":
        assert "InvalidSpec" in message or "Conflict" in message


def test_argocd_cm_registers_the_script_for_every_kind():
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    script = (ARGOCD / "health.lua").read_text()
    crds = [d for d in yaml.safe_load_all((REPO / "crds" / "edgebind.dev.yaml").read_text()) if d]
    kinds = {c["spec"]["names"]["kind"] for c in crds}
    keys = {k for k in cm["data"] if k.startswith("resource.customizations.health.")}
    assert keys == {f"resource.customizations.health.edgebind.dev_{k}" for k in kinds}
    assert all(cm["data"][k] == script for k in keys), "the snippet embeds deploy/argocd/health.lua"
