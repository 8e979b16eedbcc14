"""Renders the Helm chart with real Helm 4 (helm-python-sdk's libhelm) and derives the kustomize base.

The kustomize base under deploy/kustomize/base is the chart's default render with Helm-only metadata
removed. Regenerate it after changing the chart:

    .venv/bin/python tests/python/deploy_render.py --write-kustomize-base

tests/python/test_deploy.py checks that the files on disk equal a fresh render.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "edgebind"
KUSTOMIZE = REPO / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base"
LEADER_ELECTION = KUSTOMIZE / "components" / "leader-election"
# The chart's values that the leader-election component stands for.
LEADER_ELECTION_VALUES = {"controller": {"replicas": 2, "leaderElection": {"enabled": True}}}
RELEASE = "edgebind"
NAMESPACE = "edgebind-system"  # crates/edgebind/src/defaults.rs NAMESPACE; test_deploy.py checks they agree

# Metadata only Helm needs: a kustomize user's objects should not claim to be managed by Helm.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HELM_ANNOTATIONS = ("helm.sh/resource-policy",)
# What `helm.sh/resource-policy: keep` promises Helm users, for kustomize users: Flux and Argo CD
# never prune or delete the CRDs (deleting a CRD deletes every EdgeVolume, and through the
# finalizers, volumes whose deletionPolicy is Delete).
CRD_PRUNE_PROTECTION = {
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
    "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
}
HEADER = (
    "# Generated from deploy/helm/edgebind (default values) by tests/python/deploy_render.py.\n"
    "# Do not edit: change the chart and run\n"
    "#   .venv/bin/python tests/python/deploy_render.py --write-kustomize-base\n"
)


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce (schema checked)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render, in template order (NOTES.txt excluded)."""
    out = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifests[path]):
            if doc:
                out.append(doc)
    return out


def objects_by_template(manifests: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Template file name (e.g. `rbac-controller.yaml`) -> its objects; empty templates dropped."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        docs = [d for d in yaml.safe_load_all(manifests[path]) if d]
        if docs:
            out[Path(path).name] = docs
    return out


def _strip_meta(meta: dict[str, Any]) -> None:
    for key in HELM_LABELS:
        meta.get("labels", {}).pop(key, None)
    for key in HELM_ANNOTATIONS:
        meta.get("annotations", {}).pop(key, None)
    for field in ("labels", "annotations"):
        if field in meta and not meta[field]:
            del meta[field]


def strip_helm_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of obj as the kustomize base carries it: without Helm-only labels and annotations
    (object and pod template), and CRDs with the GitOps tools' prune protection instead of
    Helm's resource policy."""
    obj = copy.deepcopy(obj)
    _strip_meta(obj.get("metadata", {}))
    if obj.get("kind") == "CustomResourceDefinition":
        obj["metadata"].setdefault("annotations", {}).update(CRD_PRUNE_PROTECTION)
    template = obj.get("spec", {}).get("template") if isinstance(obj.get("spec"), dict) else None
    if isinstance(template, dict):
        _strip_meta(template.get("metadata", {}))
    return obj


def kustomize_base_files() -> dict[str, str]:
    """File name -> content of deploy/kustomize/base, derived from the chart's default render."""
    files: dict[str, str] = {}
    for name, docs in objects_by_template(render()).items():
        docs = [strip_helm_metadata(d) for d in docs]
        body = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
        files[name] = HEADER + "---\n" + body
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def leader_election_files() -> dict[str, str]:
    """deploy/kustomize/components/leader-election: what the chart adds with leader election on
    (the Lease Role and its binding; two replicas, rolling updates and the election env)."""
    on = {o["kind"] + "/" + o["metadata"]["name"]: o for o in objects(render(LEADER_ELECTION_VALUES))}
    off = {o["kind"] + "/" + o["metadata"]["name"] for o in objects(render())}
    added = [strip_helm_metadata(o) for k, o in on.items() if k not in off]
    ctrl = on["Deployment/edgebind-controller"]
    env = [e for e in ctrl["spec"]["template"]["spec"]["containers"][0]["env"]
           if e["name"] in ("EDGEBIND_LEADER_ELECTION", "EDGEBIND_LEASE_NAME")]
    patch = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "edgebind-controller", "namespace": NAMESPACE},
        "spec": {
            "replicas": ctrl["spec"]["replicas"],
            "strategy": ctrl["spec"]["strategy"],
            "template": {"spec": {"containers": [{"name": "controller", "env": env}]}},
        },
    }
    header = HEADER.replace("(default values)", "(controller.leaderElection.enabled, 2 replicas)")
    body = "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in added)
    component = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "resources": ["rbac-leader-election.yaml"],
        "patches": [{"path": "controller-patch.yaml"}],
    }
    return {
        "rbac-leader-election.yaml": header + "---\n" + body,
        "controller-patch.yaml": header + yaml.safe_dump(patch, sort_keys=False),
        "kustomization.yaml": header + yaml.safe_dump(component, sort_keys=False),
    }


def write_kustomize_base() -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    wanted = kustomize_base_files()
    for stale in BASE.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (BASE / name).write_text(text)
    LEADER_ELECTION.mkdir(parents=True, exist_ok=True)
    for name, text in leader_election_files().items():
        (LEADER_ELECTION / name).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-kustomize-base", action="store_true",
                        help="regenerate deploy/kustomize/base from the chart")
    args = parser.parse_args()
    if args.write_kustomize_base:
        write_kustomize_base()
        print(f"wrote {BASE.relative_to(REPO)} and {LEADER_ELECTION.relative_to(REPO)}")
    else:
        for obj in objects(render()):
            print(f"{obj['kind']}/{obj['metadata']['name']}")


if __name__ == "__main__":
    main()
