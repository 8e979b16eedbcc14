"""Deployment artefacts: the Helm chart rendered and linted by real Helm 4 (helm-python-sdk), every
object validated against the Kubernetes 1.33 OpenAPI schemas (kubernetes-validate --strict), the
values schema rejecting bad values, least-privilege RBAC, secure defaults, and the kustomize base
and overlay (kubectl kustomize) kept equal to the chart."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

import deploy_render as dr

KUBE_VERSION = "1.33"
# Kinds whose schemas are not part of Kubernetes itself, so kubernetes-validate has none.
THIRD_PARTY_GROUPS = ("monitoring.coreos.com/",)
CRD_FILE = dr.REPO / "crds" / "edgebind.dev.yaml"
CHART_CRDS = dr.CHART / "files" / "crds.yaml"
CRATE_SRC = dr.REPO / "crates" / "edgebind" / "src"

ALL_FEATURES: dict[str, Any] = {
    "image": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "commonLabels": {"team": "storage"},
    "controller": {
        "replicas": 2,
        "leaderElection": {"enabled": True},
        "logFormat": "text",
        "backendSecrets": {"namespaces": ["linstor", "piraeus-datastore"],
                           "names": ["linstor-client-tls", "linstor-token"]},
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/scrape": "true"},
        "podLabels": {"tier": "control"},
        "serviceAccount": {"annotations": {"example.com/role": "edgebind"}},
    },
    "gateway": {
        "replicas": 3,
        "service": {"type": "LoadBalancer", "port": 443, "annotations": {"example.com/lb": "internal"}},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "34%"},
        "extraEnv": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    },
    "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
                "prometheusRule": {"enabled": True, "labels": {"release": "prom"}}},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "gatewayFrom": [{"podSelector": {"matchLabels": {"app": "cloudflared"}}}],
        "egress": {"enabled": True, "ports": [443, 6443, 3371]},
    },
}


def validate_all(objs: list[dict[str, Any]]) -> list[str]:
    """Validates every object strictly; returns the kinds skipped for lack of a schema."""
    skipped = []
    for obj in objs:
        if obj["apiVersion"].startswith(THIRD_PARTY_GROUPS):
            skipped.append(obj["kind"])
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")
    return skipped


def kinds(objs):
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs)


def find(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} not rendered once: {kinds(objs)}"
    return found[0]


def rules_of(obj):
    """RBAC rules as a set of (group, resource, verb, resourceName-or-None) tuples."""
    out = set()
    for r in obj["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    for n in r.get("resourceNames") or [None]:
                        out.add((g, res, v, n))
    return out


@pytest.fixture(scope="module")
def default_objs():
    return dr.objects(dr.render())


@pytest.fixture(scope="module")
def full_objs():
    return dr.objects(dr.render(ALL_FEATURES))


# ---- CRDs ----

def test_chart_crd_copy_equals_generated_crds():
    assert CHART_CRDS.read_bytes() == CRD_FILE.read_bytes(), (
        "deploy/helm/edgebind/files/crds.yaml is stale: cp crds/edgebind.dev.yaml deploy/helm/edgebind/files/crds.yaml")


def test_rendered_crds_equal_generated_and_are_kept_on_uninstall(default_objs):
    generated = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    rendered = [o for o in default_objs if o["kind"] == "CustomResourceDefinition"]
    assert len(rendered) == len(generated) >= 3
    for crd in rendered:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    stripped = []
    for crd in rendered:
        crd = dict(crd, metadata={k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")})
        stripped.append(crd)
    # The fromYaml/toYaml round trip in the template must not change a single schema value.
    assert stripped == generated


def test_kustomize_crds_are_never_pruned_by_flux_or_argo():
    """The kustomize base keeps the CRDs as Helm's resource-policy does (issue 13)."""
    crds = [d for d in yaml.safe_load_all((dr.BASE / "crds.yaml").read_text())
            if d and d["kind"] == "CustomResourceDefinition"]
    assert {c["spec"]["names"]["plural"] for c in crds} == crd_plurals()
    for c in crds:
        ann = c["metadata"]["annotations"]
        assert ann["kustomize.toolkit.fluxcd.io/prune"] == "disabled", c["metadata"]["name"]
        assert set(ann["argocd.argoproj.io/sync-options"].split(",")) == {"Prune=false", "Delete=false"}
        assert "helm.sh/resource-policy" not in ann


def test_crds_switch_off():
    objs = dr.objects(dr.render({"crds": {"install": False}}))
    assert not [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    assert any(o["kind"] == "Deployment" for o in objs)


# ---- Helm lint and Kubernetes schemas ----

@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_helm_lint_strict_is_clean(values):
    report = helm.lint(dr.CHART, values, strict=True, namespace=dr.NAMESPACE, kube_version="v1.33.0")
    assert report["errors"] == []
    # Severity 2 = warning, 3 = error; only the info "icon is recommended" may remain.
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    assert bad == [], bad


def test_default_render_is_valid_kubernetes(default_objs):
    assert validate_all(default_objs) == []
    crds = {f"CustomResourceDefinition/{p}.edgebind.dev" for p in crd_plurals()}
    assert kinds(default_objs) == sorted(crds | {
        "ClusterRole/edgebind-controller", "ClusterRole/edgebind-gateway",
        "ClusterRoleBinding/edgebind-controller", "ClusterRoleBinding/edgebind-gateway",
        "Deployment/edgebind-controller", "Deployment/edgebind-gateway",
        "PodDisruptionBudget/edgebind-gateway",
        "Role/edgebind-controller-backend-secrets", "Role/edgebind-gateway-keys",
        "RoleBinding/edgebind-controller-backend-secrets", "RoleBinding/edgebind-gateway-keys",
        "Role/edgebind-gateway-replay", "RoleBinding/edgebind-gateway-replay",
        "Role/edgebind-controller-keys", "RoleBinding/edgebind-controller-keys",
        "Service/edgebind-controller-metrics", "Service/edgebind-gateway", "Service/edgebind-gateway-metrics",
        "ServiceAccount/edgebind-controller", "ServiceAccount/edgebind-gateway",
    })
    names = set(kinds(default_objs))
    assert not any(k.startswith(("NetworkPolicy/", "ServiceMonitor/", "Role/edgebind-controller-leader"))
                   for k in names), "optional features must be off by default"


def test_all_features_render_is_valid_kubernetes(full_objs):
    skipped = validate_all(full_objs)
    # ServiceMonitor and PrometheusRule are Prometheus Operator CRDs, not Kubernetes APIs: no
    # upstream schema exists (test_alerts.py checks the rules with promtool).
    assert sorted(skipped) == ["PrometheusRule", "ServiceMonitor"]
    names = set(kinds(full_objs))
    for must in ("NetworkPolicy/edgebind-controller", "NetworkPolicy/edgebind-gateway",
                 "ServiceMonitor/edgebind", "Role/edgebind-controller-leader-election",
                 "Role/edgebind-controller-backend-secrets"):
        assert must in names
    sm = find(full_objs, "ServiceMonitor", "edgebind")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    for svc in ("edgebind-controller-metrics", "edgebind-gateway-metrics"):
        labels = find(full_objs, "Service", svc)["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    gw = find(full_objs, "Deployment", "edgebind-gateway")
    assert gw["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/edgebind/edgebind@sha256:" + "a" * 64


# ---- secure defaults ----

@pytest.mark.parametrize("fixture", ["default_objs", "full_objs"])
def test_every_pod_is_locked_down(fixture, request):
    objs = request.getfixturevalue(fixture)
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "add" not in sc["capabilities"]
            for part in ("requests", "limits"):
                assert set(c["resources"][part]) >= {"cpu", "memory"}
            assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_controller_strategy_follows_leader_election(default_objs, full_objs):
    single = find(default_objs, "Deployment", "edgebind-controller")
    assert single["spec"]["replicas"] == 1
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"] for e in single["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "EDGEBIND_LEADER_ELECTION" not in env
    ha = find(full_objs, "Deployment", "edgebind-controller")
    assert ha["spec"]["replicas"] == 2
    assert ha["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e.get("value") for e in ha["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EDGEBIND_LEADER_ELECTION"] == "true"
    assert env["EDGEBIND_LEASE_NAME"] == "edgebind-controller"
    assert env["EDGEBIND_LOG_FORMAT"] == "text"
    assert env["RUST_BACKTRACE"] == "1"


def test_controller_env_matches_cli_flags():
    """Every EDGEBIND_* variable the chart sets for `controller` is one the CLI reads (src/cli.rs),
    except the leader-election ones that the CLI does not have yet."""
    cli = (CRATE_SRC / "cli.rs").read_text()
    d = find(dr.objects(dr.render()), "Deployment", "edgebind-controller")
    for e in d["spec"]["template"]["spec"]["containers"][0]["env"]:
        if e["name"].startswith("EDGEBIND_"):
            assert f'env = "{e["name"]}"' in cli, e["name"]


# ---- RBAC ----

CONTROLLER_KINDS = {"linstorbackends", "edgevolumes", "edgesnapshots", "cloudflareaccounts", "edgebindings"}
# Read by the controller (compiled into EdgeBindings), written only by people; the controller
# writes their status.
CONTROLLER_READS = {"identityissuers", "volumeaccesspolicies"}


def crd_plurals():
    return {d["spec"]["names"]["plural"] for d in yaml.safe_load_all(CRD_FILE.read_text()) if d}


def test_controller_cluster_role_is_exactly_what_it_uses(default_objs):
    got = rules_of(find(default_objs, "ClusterRole", "edgebind-controller"))
    want = set()
    for k in CONTROLLER_KINDS:
        want |= {("edgebind.dev", k, v, None) for v in ("get", "list", "watch")}
        want.add(("edgebind.dev", f"{k}/status", "patch", None))
    # Finalizers are added and removed by patching the object itself.
    for k in ("edgevolumes", "edgesnapshots", "edgebindings", "cloudflareaccounts"):
        want.add(("edgebind.dev", k, "patch", None))
    for k in CONTROLLER_READS:
        want |= {("edgebind.dev", k, v, None) for v in ("list", "watch")}
        want.add(("edgebind.dev", f"{k}/status", "patch", None))
    want |= {("events.k8s.io", "events", v, None) for v in ("create", "patch")}
    # The static PVs of EdgeVolumes (spec.persistentVolume), each read by its name.
    want |= {("", "persistentvolumes", v, None) for v in ("get", "create", "patch", "delete")}
    assert got == want
    # A new kind in crds/ must be granted deliberately (or these sets updated).
    assert crd_plurals() == CONTROLLER_KINDS | CONTROLLER_READS


def test_controller_writes_secrets_only_in_its_own_namespace(default_objs, full_objs):
    """Signing keys (public and private) live in the release namespace only (issue 12): no
    rule lets the controller write a Secret in any other namespace, whatever the values."""
    keys = find(default_objs, "Role", "edgebind-controller-keys")
    assert rules_of(keys) == {("", "secrets", v, None) for v in ("get", "create", "patch", "delete")}
    assert keys["metadata"]["namespace"] == dr.NAMESPACE
    for objs in (default_objs, full_objs):
        for o in objs:
            if o["kind"] != "Role" or "controller" not in o["metadata"]["name"]:
                continue
            verbs = {v for _, res, v, _ in rules_of(o) if res == "secrets"}
            if o["metadata"]["namespace"] != dr.NAMESPACE:
                assert verbs <= {"get"}, f"{o['metadata']['name']} writes Secrets in {o['metadata']['namespace']}"


@pytest.mark.parametrize("fixture", ["default_objs", "full_objs"])
def test_no_wildcards_no_cluster_wide_secrets_no_crd_writes(fixture, request):
    for o in request.getfixturevalue(fixture):
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        for g, res, verb, _ in rules_of(o):
            assert "*" not in (g, res, verb), o["metadata"]["name"]
            assert res != "customresourcedefinitions"
            if o["kind"] == "ClusterRole":
                assert res not in ("secrets", "leases"), f"{o['metadata']['name']} grants {res} cluster-wide"


def test_secrets_only_where_needed(default_objs, full_objs):
    role = find(default_objs, "Role", "edgebind-controller-backend-secrets")
    assert role["metadata"]["namespace"] == dr.NAMESPACE
    assert rules_of(role) == {("", "secrets", "get", None)}
    roles = [o for o in full_objs if o["kind"] == "Role" and o["metadata"]["name"] == "edgebind-controller-backend-secrets"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["linstor", "piraeus-datastore"]
    for r in roles:
        assert rules_of(r) == {("", "secrets", "get", "linstor-client-tls"), ("", "secrets", "get", "linstor-token")}
    bindings = [o for o in full_objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "edgebind-controller-backend-secrets"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["linstor", "piraeus-datastore"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "edgebind-controller", "namespace": dr.NAMESPACE}]
    keys = find(default_objs, "Role", "edgebind-gateway-keys")
    assert {n for *_, n in rules_of(keys)} == {"edgebind-gateway-keys"}
    assert {v for _, _, v, _ in rules_of(keys)} == {"get"}


def test_leases_only_in_release_namespace_with_leader_election(full_objs):
    role = find(full_objs, "Role", "edgebind-controller-leader-election")
    assert role["metadata"]["namespace"] == dr.NAMESPACE
    assert rules_of(role) == {
        ("coordination.k8s.io", "leases", "create", None),
        ("coordination.k8s.io", "leases", "get", "edgebind-controller"),
        ("coordination.k8s.io", "leases", "update", "edgebind-controller"),
        ("coordination.k8s.io", "leases", "patch", "edgebind-controller"),
    }


def test_gateway_limits_reach_the_gateway(default_objs):
    """The per-key and per-identity limits (issue 12, flood) are values the gateway receives."""
    def env(objs):
        c = find(objs, "Deployment", "edgebind-gateway")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in c["env"]}
    defaults = env(default_objs)
    # The chart's defaults are the binary's (crates/edgebind/src/gateway/server.rs).
    assert (defaults["EDGEBIND_GATEWAY_KEY_REQUESTS_PER_MINUTE"], defaults["EDGEBIND_GATEWAY_KEY_BURST"],
            defaults["EDGEBIND_GATEWAY_IDENTITY_QUERIES_PER_MINUTE"],
            defaults["EDGEBIND_GATEWAY_IDENTITY_QUERY_BURST"]) == ("12000", "400", "600", "60")
    objs = dr.objects(dr.render({"gateway": {"limits": {"keyRequestsPerMinute": 60, "keyBurst": 5}}}))
    assert env(objs)["EDGEBIND_GATEWAY_KEY_REQUESTS_PER_MINUTE"] == "60"
    assert env(objs)["EDGEBIND_GATEWAY_KEY_BURST"] == "5"


def test_gateway_records_nonces_only_in_release_namespace(default_objs):
    """Replays are stopped across replicas by one Lease per mutating request (issue 12)."""
    role = find(default_objs, "Role", "edgebind-gateway-replay")
    assert role["metadata"]["namespace"] == dr.NAMESPACE
    assert rules_of(role) == {("coordination.k8s.io", "leases", v, None) for v in ("create", "list", "delete")}
    gw = rules_of(find(default_objs, "ClusterRole", "edgebind-gateway"))
    assert not [r for r in gw if r[1] == "leases"], "never cluster-wide"


def test_gateway_never_writes_status_or_backends(default_objs):
    got = rules_of(find(default_objs, "ClusterRole", "edgebind-gateway"))
    assert not [r for r in got if r[1].endswith(("/status", "/finalizers")) or r[1] == "linstorbackends"]
    assert ("edgebind.dev", "edgesnapshots", "create", None) in got
    # DELETE .../snapshots/{snap} of the edge REST surface deletes the EdgeSnapshot.
    assert ("edgebind.dev", "edgesnapshots", "delete", None) in got
    # EdgeBindings only read (their volume defaults), never written.
    assert {v for _, res, v, _ in got if res == "edgebindings"} == {"get", "list", "watch"}


def test_gateway_can_be_switched_off():
    objs = dr.objects(dr.render({"gateway": {"enabled": False}, "networkPolicy": {"enabled": True}}))
    assert not [o for o in objs if "gateway" in o["metadata"]["name"]]
    assert validate_all(objs) == []


# ---- values schema ----

BAD_VALUES = [
    ({"controller": {"replicas": 2}}, "/controller/leaderElection/enabled"),
    ({"controller": {"replicas": 0, "leaderElection": {"enabled": True}}}, "/controller/replicas"),
    ({"controller": {"replicas": "1"}}, "/controller/replicas"),
    ({"controller": {"logFormat": "xml"}}, "/controller/logFormat"),
    ({"controller": {"resyncSeconds": 1}}, "/controller/resyncSeconds"),
    ({"controller": {"concurrency": 5000}}, "/controller/concurrency"),
    ({"controller": {"adminPort": 70000}}, "/controller/adminPort"),
    ({"controller": {"backendSecrets": {"namespaces": ["Not_A_Namespace"]}}}, "/controller/backendSecrets/namespaces/0"),
    # null deletes a default (Helm's coalesce): requests and limits must stay.
    ({"controller": {"resources": {"limits": None}}}, "/controller/resources"),
    ({"gateway": {"resources": {"limits": {"memory": None}}}}, "/gateway/resources/limits"),
    ({"controller": {"resources": {"requests": {"memory": "lots"}, "limits": {}}}}, "/controller/resources/requests/memory"),
    ({"controller": {"extraEnv": [{"value": "x"}]}}, "/controller/extraEnv/0"),
    ({"controller": {"leaderElection": {"enabled": "yes"}}}, "/controller/leaderElection/enabled"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ({"image": {"tag": "has space"}}, "/image/tag"),
    ({"crds": {"install": "true"}}, "/crds/install"),
    ({"gateway": {"port": 0}}, "/gateway/port"),
    ({"gateway": {"service": {"type": "ExternalName"}}}, "/gateway/service/type"),
    ({"gateway": {"podDisruptionBudget": {"maxUnavailable": 0}}}, "/gateway/podDisruptionBudget/maxUnavailable"),
    ({"gateway": {"keysSecretName": ""}}, "/gateway/keysSecretName"),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
    ({"networkPolicy": {"egress": {"ports": []}}}, "/networkPolicy/egress/ports"),
    ({"networkPolicy": {"enabeld": True}}, "enabeld"),
    ({"podSecurityContext": {"runAsUser": -1}}, "/podSecurityContext/runAsUser"),
    ({"replicaCount": 3}, "replicaCount"),
]


@pytest.mark.parametrize("values,field", BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_bad_values(values, field):
    with pytest.raises(helm.HelmValuesError) as err:
        dr.render(values)
    assert field in str(err.value)
    # Lint applies the same schema.
    report = helm.lint(dr.CHART, values, namespace=dr.NAMESPACE)
    assert any(field in m["error"] for m in report["messages"] if m["severity"] == 3), report


def test_port_clash_is_refused():
    with pytest.raises(helm.HelmError) as err:
        dr.render({"gateway": {"port": 8081, "adminPort": 8081}})
    assert "gateway.port and gateway.adminPort must differ" in str(err.value)


def test_schema_accepts_the_documented_values():
    with helm.Chart.load(dr.CHART) as chart:
        chart.validate_schema(chart.values)
        chart.validate_schema(ALL_FEATURES)


def test_notes_tell_what_to_do_next():
    notes = dr.render()["edgebind/templates/NOTES.txt"]
    assert "rollout status deployment/edgebind-controller" in notes
    assert "LinstorBackend" in notes
    assert "edgebind-gateway-keys" in notes
    notes = dr.render({"crds": {"install": False}})["edgebind/templates/NOTES.txt"]
    assert "kubectl apply -f crds/edgebind.dev.yaml" in notes


# ---- kustomize ----

def kustomize_bin() -> str:
    """kustomize built from its Go module by tests/apiserver/build.sh (scripts/test.sh does)."""
    path = os.environ.get("EDGEBIND_KUSTOMIZE") or str(dr.REPO / "target" / "kube-testenv" / "kustomize")
    assert Path(path).exists(), f"{path} is missing: run tests/apiserver/build.sh kustomize"
    return path


def test_kustomize_base_is_in_sync_with_chart():
    want = dr.kustomize_base_files()
    have = {p.name: p.read_text() for p in dr.BASE.glob("*.yaml")}
    assert sorted(have) == sorted(want), "run tests/python/deploy_render.py --write-kustomize-base"
    for name in want:
        assert have[name] == want[name], f"deploy/kustomize/base/{name} is stale: run deploy_render.py --write-kustomize-base"


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([kustomize_bin(), "build", str(path)], check=True, capture_output=True,
                         text=True, timeout=120)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_kustomize_base_builds_the_chart_defaults(default_objs):
    built = kustomize(dr.BASE)
    assert validate_all(built) == []
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
    assert sorted(map(key, built)) == sorted(map(key, default_objs))
    chart = {key(o): dr.strip_helm_metadata(o) for o in default_objs}
    for obj in built:
        assert obj == chart[key(obj)], key(obj)


def test_leader_election_component_is_in_sync_with_chart():
    want = dr.leader_election_files()
    have = {p.name: p.read_text() for p in dr.LEADER_ELECTION.glob("*.yaml")}
    assert sorted(have) == sorted(want), "run tests/python/deploy_render.py --write-kustomize-base"
    for name in want:
        assert have[name] == want[name], f"{name} is stale: run deploy_render.py --write-kustomize-base"


def test_base_with_leader_election_builds_the_charts_render(tmp_path):
    """base + components/leader-election == the chart with leader election on and 2 replicas."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(dr.BASE, tmp_path)],
        "components": [os.path.relpath(dr.LEADER_ELECTION, tmp_path)],
    }))
    built = kustomize(tmp_path)
    assert validate_all(built) == []
    chart = [dr.strip_helm_metadata(o) for o in dr.objects(dr.render(dr.LEADER_ELECTION_VALUES))]
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
    assert sorted(map(key, built)) == sorted(map(key, chart))
    by_key = {key(o): o for o in chart}

    def env_as_dict(o):
        # A strategic-merge patch appends list items; the order of env entries does not matter.
        o = copy.deepcopy(o)
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            c["env"] = {e["name"]: e for e in c.get("env", [])}
        return o

    for obj in built:
        assert env_as_dict(obj) == env_as_dict(by_key[key(obj)]), key(obj)


def test_kustomize_example_overlay_is_valid_and_consistent():
    built = kustomize(dr.KUSTOMIZE / "overlays" / "example")
    assert validate_all(built) == []
    ns = "edgebind-system"
    namespace = find(built, "Namespace", ns)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for o in built:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"]["namespace"] == ns, key_of(o)
        # Every binding must point at the service accounts where they now live.
        for s in o.get("subjects", []):
            assert s["namespace"] == ns, key_of(o)
    ctrl = find(built, "Deployment", "edgebind-controller")
    env = {e["name"]: e.get("value") for e in ctrl["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EDGEBIND_LOG_FORMAT"] == "text" and env["EDGEBIND_CONCURRENCY"] == "32"
    assert ctrl["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def key_of(o):
    return f"{o['kind']}/{o['metadata']['name']}"


# ---- one default namespace (crates/edgebind/src/defaults.rs) ----

def rust_default(name: str) -> str:
    m = re.search(rf'pub(?:\(crate\))? const {name}: &str = "([^"]+)";', (CRATE_SRC / "defaults.rs").read_text())
    assert m, f"crates/edgebind/src/defaults.rs defines no {name}"
    return m.group(1)


# Any spelling of a namespace that starts with "edgebind" in docs and manifests: `namespace: X`,
# `"namespace": "X"`, namespace `X`, `-n X`, `--namespace X`.
EDGEBIND_NAMESPACE = re.compile(
    r"""(?:\bnamespace["']?\s*[:=]?\s*[`"']?|(?<![\w-])-n\s+|--namespace[ =])(edgebind[a-z0-9-]*)""")


def test_one_default_namespace_everywhere():
    ns = rust_default("NAMESPACE")
    assert rust_default("GATEWAY_KEYS_SECRET") == yaml.safe_load((dr.CHART / "values.yaml").read_text())["gateway"]["keysSecretName"]
    # The binary: every flag read from POD_NAMESPACE falls back to the constant, not a literal.
    for rs in ("cli.rs", "gateway/server.rs"):
        attrs = re.findall(r'#\[arg\([^\]]*env = "POD_NAMESPACE"[^\]]*\]', (CRATE_SRC / rs).read_text())
        assert attrs and all("default_value = crate::defaults::NAMESPACE" in a for a in attrs), (rs, attrs)
    # kustomize: the base is rendered into it, and the example overlay creates it.
    assert dr.NAMESPACE == ns
    assert yaml.safe_load((dr.BASE / "kustomization.yaml").read_text())["namespace"] == ns
    overlay = dr.KUSTOMIZE / "overlays" / "example"
    assert yaml.safe_load((overlay / "kustomization.yaml").read_text())["namespace"] == ns
    assert yaml.safe_load((overlay / "namespace.yaml").read_text())["metadata"]["name"] == ns
    # Examples: the Cloudflare API token Secret lives in the operator namespace.
    accounts = [d for f in sorted((dr.REPO / "examples").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
                if d and d["kind"] == "CloudflareAccount"]
    assert accounts and all(a["spec"]["apiToken"]["namespace"] == ns for a in accounts)
    # Install commands in both READMEs; the operator namespace must stay readable when
    # --set controller.backendSecrets.namespaces replaces the default (the release namespace).
    for readme in ("README.md", "deploy/README.md"):
        text = (dr.REPO / readme).read_text()
        installs = re.findall(r"helm install \S+ \S+ (?:-n|--namespace)[ =](\S+) --create-namespace", text)
        assert installs and set(installs) == {ns}, (readme, installs)
        for listed in re.findall(r"backendSecrets\.namespaces='\{([^}]*)\}'", text):
            assert ns in listed.split(","), (readme, listed)
    # No other edgebind* namespace anywhere in the docs, examples and deploy files.
    files = [dr.REPO / "README.md", *sorted((dr.REPO / "docs").rglob("*.md")),
             *sorted((dr.REPO / "examples").glob("*.yaml")),
             *sorted(p for p in (dr.REPO / "deploy").rglob("*") if p.suffix in (".md", ".yaml", ".txt", ".tpl"))]
    seen = {}
    for f in files:
        for n in EDGEBIND_NAMESPACE.findall(f.read_text()):
            seen.setdefault(n, set()).add(str(f.relative_to(dr.REPO)))
    assert set(seen) == {ns}, seen
    assert {"README.md", "deploy/README.md", "examples/40-edge.yaml",
            "deploy/kustomize/base/kustomization.yaml"} <= seen[ns], seen


# The Dockerfile is tested in test_image.py.


def test_other_release_name_and_namespace_stay_consistent():
    objs = dr.objects(dr.render(ALL_FEATURES, name="prod", namespace="storage"))
    validate_all(objs)
    sas = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    assert sas == {"prod-edgebind-controller", "prod-edgebind-gateway"}
    for o in objs:
        for s in o.get("subjects", []):
            assert (s["name"], s["namespace"]) in {(n, "storage") for n in sas}, key_of(o)
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] in sas
            assert o["spec"]["selector"]["matchLabels"].items() <= o["spec"]["template"]["metadata"]["labels"].items()
    lease = find(objs, "Role", "prod-edgebind-controller-leader-election")
    assert lease["metadata"]["namespace"] == "storage"
    env = {e["name"]: e.get("value") for e in
           find(objs, "Deployment", "prod-edgebind-controller")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert ("coordination.k8s.io", "leases", "update", env["EDGEBIND_LEASE_NAME"]) in rules_of(lease)


@pytest.mark.parametrize("fixture", ["default_objs", "full_objs"])
def test_every_selector_selects_a_deployment_and_named_ports_exist(fixture, request):
    objs = request.getfixturevalue(fixture)
    pods = {o["metadata"]["name"]: o["spec"]["template"] for o in objs if o["kind"] == "Deployment"}
    for o in objs:
        if o["kind"] == "Service":
            sel = o["spec"]["selector"]
        elif o["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = (o["spec"].get("selector") or o["spec"]["podSelector"])["matchLabels"]
        else:
            continue
        matched = [t for t in pods.values() if sel.items() <= t["metadata"]["labels"].items()]
        assert len(matched) == 1, key_of(o)
        ports = {p["name"] for p in matched[0]["spec"]["containers"][0]["ports"]}
        if o["kind"] == "Service":
            assert {p["targetPort"] for p in o["spec"]["ports"]} <= ports, key_of(o)
        if o["kind"] == "NetworkPolicy":
            assert {p["port"] for r in o["spec"]["ingress"] for p in r["ports"]} <= ports, key_of(o)


# ---- common knobs (issue 13) ----

def _pod(objs, component):
    return find(objs, "Deployment", f"edgebind-{component}")["spec"]["template"]["spec"]


def test_global_image_registry_replaces_the_registry():
    objs = dr.objects(dr.render({"global": {"imageRegistry": "mirror.example.com/"}}))
    for component in ("controller", "gateway"):
        image = _pod(objs, component)["containers"][0]["image"]
        assert image.startswith("mirror.example.com/edgebind/edgebind:"), image
    objs = dr.objects(dr.render({"global": {"imageRegistry": "mirror.example.com"},
                                 "image": {"repository": "edgebind/edgebind"}}))
    assert _pod(objs, "controller")["containers"][0]["image"].startswith("mirror.example.com/edgebind/edgebind:")


def test_extra_args_spread_and_probe_timings_reach_the_pods():
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}]
    objs = dr.objects(dr.render({
        "controller": {"extraArgs": ["--log-format", "text"], "livenessProbe": {"periodSeconds": 30}},
        "gateway": {"extraArgs": ["--reload-seconds", "5"], "topologySpreadConstraints": spread,
                    "readinessProbe": {"failureThreshold": 6}},
    }))
    assert validate_all(objs) == []
    ctrl = _pod(objs, "controller")["containers"][0]
    assert ctrl["args"] == ["controller", "--log-format", "text"]
    assert ctrl["livenessProbe"]["periodSeconds"] == 30 and ctrl["livenessProbe"]["timeoutSeconds"] == 3
    assert ctrl["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    gw = _pod(objs, "gateway")
    assert gw["containers"][0]["args"] == ["gateway", "--reload-seconds", "5"]
    assert gw["topologySpreadConstraints"] == spread
    assert gw["containers"][0]["readinessProbe"]["failureThreshold"] == 6
    assert gw["containers"][0]["readinessProbe"]["periodSeconds"] == 5


def test_existing_service_accounts_and_no_rbac():
    objs = dr.objects(dr.render({
        "controller": {"serviceAccount": {"create": False, "name": "ops-controller"}},
        "gateway": {"serviceAccount": {"create": False, "name": "ops-gateway"}},
    }))
    assert not [o for o in objs if o["kind"] == "ServiceAccount"]
    assert _pod(objs, "controller")["serviceAccountName"] == "ops-controller"
    assert _pod(objs, "gateway")["serviceAccountName"] == "ops-gateway"
    subjects = {s["name"] for o in objs for s in o.get("subjects", [])}
    assert subjects == {"ops-controller", "ops-gateway"}, "every binding names the given accounts"
    objs = dr.objects(dr.render({"rbac": {"create": False}}))
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")]
    assert [o for o in objs if o["kind"] == "ServiceAccount"]


# ---- cloudflared (Cloudflare Tunnel) ----

def test_no_cloudflared_unless_an_account_is_listed(default_objs):
    assert not [o for o in default_objs if "cloudflared" in o["metadata"]["name"]]


def test_cloudflared_runs_each_listed_accounts_tunnel():
    objs = dr.objects(dr.render({"cloudflared": {"accounts": ["main", "backup"]}}))
    assert validate_all(objs) == []
    for account in ("main", "backup"):
        d = find(objs, "Deployment", f"edgebind-cloudflared-{account}")
        pod = d["spec"]["template"]["spec"]
        assert d["spec"]["replicas"] == 2
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        c = pod["containers"][0]
        # The official image, pinned by digest.
        assert c["image"].startswith("docker.io/cloudflare/cloudflared:2025.11.1@sha256:")
        assert len(c["image"].split("@sha256:")[1]) == 64
        # The token comes from the Secret the controller writes, never from the arguments.
        env = {e["name"]: e for e in c["env"]}
        ref = env["TUNNEL_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"edgebind-tunnel-{account}", "key": "token"}
        assert "--token" not in c["args"] and c["args"][-1] == "run"
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        svc = find(objs, "Service", f"edgebind-cloudflared-{account}-metrics")
        assert svc["metadata"]["labels"]["edgebind.dev/metrics"] == "true"
        assert svc["spec"]["selector"]["edgebind.dev/account"] == account


def test_controller_knows_the_gateway_service_for_tunnels(default_objs):
    d = find(default_objs, "Deployment", "edgebind-controller")
    env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    gw = find(default_objs, "Service", "edgebind-gateway")
    port = gw["spec"]["ports"][0]["port"]
    assert env["EDGEBIND_GATEWAY_SERVICE"] == f"http://edgebind-gateway.edgebind-system.svc:{port}"

# ---- the documented installs can run the examples ----

def example_secret_refs() -> list[tuple[str, str, str]]:
    """(resource, namespace, name) of every Secret the examples' custom resources reference."""
    refs = []
    for f in sorted((dr.REPO / "examples").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if not d:
                continue
            spec, who = d.get("spec", {}), f"{f.name}: {d['kind']}/{d['metadata']['name']}"
            fields = {"LinstorBackend": ("tls", "bearerToken"), "CloudflareAccount": ("apiToken",)}
            for field in fields.get(d["kind"], ()):
                if field in spec:
                    refs.append((who, spec[field]["namespace"], spec[field]["name"]))
    return refs


def helm_set_values(args: str) -> dict[str, Any]:
    """The values of `--set a.b='{x,y}'` / `--set a.b=v` arguments, as Helm reads them."""
    values: dict[str, Any] = {}
    for path, raw in re.findall(r"--set[ =]([\w.]+)=(\S+)", args):
        raw = raw.strip("'\"")
        value: Any = raw[1:-1].split(",") if raw.startswith("{") else raw
        node = values
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return values


def documented_helm_installs() -> list[tuple[str, str, dict[str, Any]]]:
    """(where, namespace, values) of every `helm install` command in the READMEs, with its --set
    arguments (continued lines joined)."""
    out = []
    for readme in ("README.md", "deploy/README.md"):
        text = (dr.REPO / readme).read_text().replace("\\\n", " ")
        for m in re.finditer(r"helm install edgebind deploy/helm/edgebind (?:-n|--namespace)[ =](\S+)"
                             r" --create-namespace([^\n`]*)", text):
            out.append((readme, m.group(1), helm_set_values(m.group(2))))
    return out


def controller_may_get_secret(objs: list[dict[str, Any]], ns: str, name: str) -> bool:
    """Whether the roles bound to the controller's ServiceAccount allow `get` on Secret ns/name."""
    sa = next(o for o in objs if o["kind"] == "ServiceAccount" and "controller" in o["metadata"]["name"])
    sa_key = (sa["metadata"]["name"], sa["metadata"].get("namespace"))
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    for b in objs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any((s.get("name"), s.get("namespace")) == sa_key for s in b.get("subjects", [])):
            continue
        where = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        if where not in (None, ns):
            continue
        ref = b["roleRef"]
        role = roles.get((ref["kind"], where if ref["kind"] == "Role" else None, ref["name"]))
        if role and rules_of(role) & {("", "secrets", "get", None), ("", "secrets", "get", name)}:
            return True
    return False


def test_every_documented_install_reads_every_secret_the_examples_name():
    """Issue 13: the README's and deploy/README's Helm commands and the kustomize overlay each
    grant the controller `get` on every Secret the examples reference, and no more than the
    namespaces those installs name."""
    refs = example_secret_refs()
    assert {ns for _, ns, _ in refs} and len(refs) >= 2, refs
    installs = [(f"{where}: helm install -n {ns} {values}", dr.objects(dr.render(values, namespace=ns)))
                for where, ns, values in documented_helm_installs()]
    assert {w.split(":")[0] for w, _ in installs} == {"README.md", "deploy/README.md"}, installs
    installs.append(("kustomize overlays/example", kustomize(dr.KUSTOMIZE / "overlays" / "example")))
    for where, objs in installs:
        missing = [f"{who} -> Secret {ns}/{name}" for who, ns, name in refs
                   if not controller_may_get_secret(objs, ns, name)]
        assert not missing, f"{where} cannot read:\n" + "\n".join(missing)
    # The check itself refuses what the chart does not grant.
    default = dr.objects(dr.render())
    assert not controller_may_get_secret(default, "piraeus-datastore", "linstor-client-tls")
    assert not controller_may_get_secret(default, "team-a", "anything")
