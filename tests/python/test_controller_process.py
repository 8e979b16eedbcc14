"""The controller as it runs in a pod: the real `edgebind controller` process against the
Kubernetes API simulator and the LINSTOR simulator (each its own process). It reconciles a
volume to Ready, serves /livez, /readyz and /metrics (parsed with the official Prometheus
client's OpenMetrics parser), logs JSON lines, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

BIN = os.environ.get("EDGEBIND_BIN")


@pytest.fixture(autouse=True)
def needs_bin():
    # A missing binary is a failure, not a skip: these tests must run in CI.
    if BIN is None:
        pytest.fail("EDGEBIND_BIN is not set: run scripts/test.sh, or set it to the edgebind binary", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def wait(what: str, f, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def simulators(env: dict[str, str], ns: str):
    """The Kubernetes and LINSTOR simulators (each its own process), namespace `ns` and a
    LinstorBackend `main`; yields the API URL, the kubeconfig, the temporary folder and the list
    of processes (the caller adds its own; all are killed on exit)."""
    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp())
    kport, lport = free_port(), free_port()
    kubeconfig = tmp / "kubeconfig"
    try:
        procs.append(subprocess.Popen([BIN, "simulate", "kubernetes", "--listen", f"127.0.0.1:{kport}", "--kubeconfig", str(kubeconfig)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([BIN, "simulate", "linstor", "--listen", f"127.0.0.1:{lport}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait("kubeconfig", kubeconfig.exists)
        wait("LINSTOR simulator", lambda: http("GET", f"http://127.0.0.1:{lport}/v1/controller/version")[0] == 200)
        api = f"http://127.0.0.1:{kport}"
        assert http("POST", f"{api}/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})[0] == 201
        assert http("POST", f"{api}/apis/edgebind.dev/v1alpha1/linstorbackends", {
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend", "metadata": {"name": "main"},
            "spec": {"urls": [f"http://127.0.0.1:{lport}"]}})[0] == 201
        yield api, kubeconfig, tmp, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def stack():
    aport = free_port()
    env = {**os.environ, "EDGEBIND_LOG": "info"}
    with simulators(env, "team-a") as (api, kubeconfig, tmp, procs):
        log = open(tmp / "controller.log", "w+")
        ctrl = subprocess.Popen([BIN, "controller", "--admin-addr", f"127.0.0.1:{aport}", "--resync-seconds", "5"],
                                env={**env, "KUBECONFIG": str(kubeconfig)}, stdout=subprocess.DEVNULL, stderr=log)
        procs.append(ctrl)
        yield {"api": api, "admin": f"http://127.0.0.1:{aport}", "ctrl": ctrl, "log": tmp / "controller.log"}


def test_controller_process_reconciles_serves_health_and_metrics_and_stops_on_sigterm(stack) -> None:
    admin, api = stack["admin"], stack["api"]
    wait("/livez", lambda: http("GET", f"{admin}/livez")[0] == 200)
    wait("/readyz", lambda: http("GET", f"{admin}/readyz")[0] == 200)
    status, _ = http("POST", f"{api}/apis/edgebind.dev/v1alpha1/namespaces/team-a/edgevolumes", {
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume", "metadata": {"name": "db", "namespace": "team-a"},
        "spec": {"backendRef": "main", "size": "1Gi", "placement": {"placeCount": 2}}})
    assert status == 201

    def ready():
        s, body = http("GET", f"{api}/apis/edgebind.dev/v1alpha1/namespaces/team-a/edgevolumes/db")
        conds = json.loads(body).get("status", {}).get("conditions", []) if s == 200 else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    wait("EdgeVolume Ready", ready)

    status, text = http("GET", f"{admin}/metrics")
    assert status == 200
    assert text.rstrip().endswith("# EOF"), "a complete OpenMetrics exposition"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    reconciles = families["edgebind_reconciles"]
    kinds = {s.labels["kind"] for s in reconciles.samples if s.name == "edgebind_reconciles_total"}
    assert {"EdgeVolume", "LinstorBackend"} <= kinds
    ext = families["edgebind_external_requests"]
    ops = {(s.labels["system"], s.labels["method"], s.labels["operation"]) for s in ext.samples}
    assert ("linstor", "POST", "/v1/resource-definitions/{name}/autoplace") in ops
    assert "edgebind_reconcile_duration_seconds" in families
    build = [s for s in families["edgebind_build_info"].samples]
    assert len(build) == 1 and build[0].value == 1 and re.fullmatch(r"\d+\.\d+\.\d+.*", build[0].labels["version"])
    # Without leader election the one controller reconciles.
    assert [s.value for s in families["edgebind_leader"].samples] == [1]
    depth = {s.labels["kind"]: s.value for s in families["edgebind_reconciles_in_progress"].samples}
    assert set(depth) >= {"EdgeVolume", "LinstorBackend"} and all(v >= 0 for v in depth.values())
    for f in families.values():
        for s in f.samples:
            # No object names in labels (cardinality): volume names never appear.
            assert "db" not in s.labels.values() and "eb-team-a_db" not in "".join(s.labels.values())

    # The volume gauges are recounted every 10 s: the Ready volume shows up as a count.
    def volume_counts():
        s, text = http("GET", f"{admin}/metrics")
        if s != 200:
            return None
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        phases = {x.labels["phase"]: x.value for x in fams["edgebind_volumes"].samples} if "edgebind_volumes" in fams else {}
        return (fams, phases) if phases.get("Ready") == 1 else None
    families, phases = wait("edgebind_volumes{phase=Ready} 1", volume_counts, timeout=40)
    assert phases == {"Pending": 0, "Ready": 1, "Failed": 0, "Deleting": 0}
    degraded = {x.labels["reason"]: x.value for x in families["edgebind_volumes_degraded"].samples}
    assert degraded == {"NodeOffline": 0, "ReplicaInactive": 0, "ReplicaNotUpToDate": 0, "TooFewReplicas": 0}
    granted = {x.labels["system"]: x.value for x in families["edgebind_budget_requests"].samples
               if x.name == "edgebind_budget_requests_total"}
    waits = {x.labels["system"]: x.value for x in families["edgebind_budget_waits"].samples
             if x.name == "edgebind_budget_waits_total"}
    # Every LINSTOR call went through the backend's budget.
    linstor_calls = sum(x.value for x in ext.samples if x.labels["system"] == "linstor" and x.name.endswith("_total"))
    assert granted["linstor"] >= linstor_calls > 0 and 0 <= waits["linstor"] <= granted["linstor"]

    stack["ctrl"].send_signal(signal.SIGTERM)
    assert stack["ctrl"].wait(timeout=20) == 0, "clean exit on SIGTERM"
    lines = [l for l in stack["log"].read_text().splitlines() if l.strip()]
    assert lines, "the controller logged"
    for l in lines:
        json.loads(l)  # every log line is a JSON object
