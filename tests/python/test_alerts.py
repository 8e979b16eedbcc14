"""The chart's PrometheusRule: `promtool check rules` accepts it and `promtool test rules` shows each
alert firing on the series that mean trouble and staying quiet on healthy ones. promtool is
Debian's (package prometheus), unpacked by scripts/install-debian.sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

import deploy_render as dr

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("EDGEBIND_DEBIAN_TOOLS", REPO / ".tools" / "debian"))
JOB = 'job="edgebind-controller-metrics",namespace="edgebind-system"'
GW = 'job="edgebind-gateway-metrics",namespace="edgebind-system"'


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = TOOLS / "usr" / "bin" / "promtool"
    assert exe.exists(), "promtool is unpacked by scripts/install-debian.sh"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True)


def rules_file(tmp_path: Path) -> Path:
    objs = dr.objects(dr.render({"metrics": {"prometheusRule": {"enabled": True}}}))
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(rule["spec"]))
    return p


def test_promtool_accepts_the_rules(tmp_path: Path):
    r = promtool("check", "rules", str(rules_file(tmp_path)), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_each_alert_fires_on_trouble_and_not_on_health(tmp_path: Path):
    rules = yaml.safe_load(rules_file(tmp_path).read_text())["groups"][0]["rules"]
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rules}
    series = [
        # LINSTOR mostly failing, Cloudflare healthy.
        {"series": f'edgebind_external_requests_total{{{JOB},system="linstor",status="error"}}', "values": "0+10x40"},
        {"series": f'edgebind_external_requests_total{{{JOB},system="linstor",status="200"}}', "values": "0+1x40"},
        {"series": f'edgebind_external_requests_total{{{JOB},system="cloudflare",status="200"}}', "values": "0+5x40"},
        # Volume reconciles failing, snapshot reconciles fine.
        {"series": f'edgebind_reconciles_total{{{JOB},kind="EdgeVolume",result="error"}}', "values": "0+2x40"},
        {"series": f'edgebind_reconciles_total{{{JOB},kind="EdgeSnapshot",result="ok"}}', "values": "0+2x40"},
        # One replica up but none holds the Lease.
        {"series": f'up{{{JOB}}}', "values": "1x40"},
        {"series": f'edgebind_leader{{{JOB},pod="a"}}', "values": "0x40"},
        # The gateway answers a third of its requests with 503.
        {"series": f'edgebind_gateway_requests_total{{{GW},status="503"}}', "values": "0+10x40"},
        {"series": f'edgebind_gateway_requests_total{{{GW},status="200"}}', "values": "0+20x40"},
    ]

    def alert(name, labels, time="30m"):
        if not labels:
            return {"eval_time": time, "alertname": name, "exp_alerts": []}
        summary = summaries[name]
        for k in ("kind", "reason", "system", "state"):
            summary = summary.replace("{{ $labels.%s }}" % k, labels.get(k, ""))
        return {"eval_time": time, "alertname": name,
                "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}]}

    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": series, "alert_rule_test": [
                alert("EdgebindLinstorUnreachable", {"severity": "critical"}),
                alert("EdgebindCloudflareUnreachable", None),
                alert("EdgebindReconcileErrors", {"severity": "warning", "kind": "EdgeVolume"}),
                alert("EdgebindNoActiveController", {"severity": "critical"}),
                alert("EdgebindControllerDown", None),
                alert("EdgebindGatewayUnavailable", {"severity": "critical"}),
                # Not yet: each waits for its `for`.
                alert("EdgebindLinstorUnreachable", None, time="5m"),
            ]},
            {"interval": "1m", "input_series": [], "alert_rule_test": [
                alert("EdgebindControllerDown", {"severity": "critical"}, time="10m"),
            ]},
            # Volumes degraded for one reason (not another), none Failed; LINSTOR calls mostly
            # waiting for their budget, Cloudflare calls rarely.
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_volumes_degraded{{{JOB},reason="NodeOffline"}}', "values": "2x60"},
                {"series": f'edgebind_volumes_degraded{{{JOB},reason="TooFewReplicas"}}', "values": "0x60"},
                {"series": f'edgebind_volumes{{{JOB},phase="Ready"}}', "values": "10x60"},
                {"series": f'edgebind_volumes{{{JOB},phase="Failed"}}', "values": "0x60"},
                {"series": f'edgebind_budget_requests_total{{{JOB},system="linstor"}}', "values": "0+10x60"},
                {"series": f'edgebind_budget_waits_total{{{JOB},system="linstor"}}', "values": "0+8x60"},
                {"series": f'edgebind_budget_requests_total{{{JOB},system="cloudflare"}}', "values": "0+10x60"},
                {"series": f'edgebind_budget_waits_total{{{JOB},system="cloudflare"}}', "values": "0+1x60"},
            ], "alert_rule_test": [
                alert("EdgebindVolumesDegraded", {"severity": "warning", "reason": "NodeOffline"}, time="20m"),
                alert("EdgebindVolumesFailed", None, time="45m"),
                alert("EdgebindBudgetExhausted", {"severity": "warning", "system": "linstor"}, time="45m"),
                # Not yet: a node reboot, a bulk create.
                alert("EdgebindVolumesDegraded", None, time="10m"),
                alert("EdgebindBudgetExhausted", None, time="20m"),
            ]},
            # Healed: the degraded count falls to 0; a Failed volume stays.
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_volumes_degraded{{{JOB},reason="NodeOffline"}}', "values": "2x10 0x50"},
                {"series": f'edgebind_volumes{{{JOB},phase="Failed"}}', "values": "1x60"},
            ], "alert_rule_test": [
                alert("EdgebindVolumesDegraded", None, time="45m"),
                alert("EdgebindVolumesFailed", {"severity": "warning"}, time="45m"),
            ]},
            # A LINSTOR node offline past a restart fires; an evacuating one (planned) does not,
            # nor one that came back within minutes.
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_linstor_nodes{{{JOB},state="OFFLINE"}}', "values": "1x60"},
                {"series": f'edgebind_linstor_nodes{{{JOB},state="EVACUATE"}}', "values": "1x60"},
                {"series": f'edgebind_linstor_nodes{{{JOB},state="ONLINE"}}', "values": "3x60"},
            ], "alert_rule_test": [
                alert("EdgebindLinstorNodesDown", None, time="5m"),
                alert("EdgebindLinstorNodesDown", {"severity": "warning", "state": "OFFLINE"}, time="20m"),
            ]},
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_linstor_nodes{{{JOB},state="OFFLINE"}}', "values": "1x3 0x57"},
                {"series": f'edgebind_linstor_nodes{{{JOB},state="EVACUATE"}}', "values": "2x60"},
            ], "alert_rule_test": [
                alert("EdgebindLinstorNodesDown", None, time="30m"),
            ]},
            # Token expiry: promtool's clock starts at 0, so the gauge holds seconds from then.
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_cloudflare_token_expiry_timestamp_seconds{{{JOB}}}', "values": "259200x200"},
            ], "alert_rule_test": [
                alert("EdgebindCloudflareTokenExpiresSoon", {"severity": "warning"}, time="2h"),
            ]},
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_cloudflare_token_expiry_timestamp_seconds{{{JOB}}}', "values": "0x200"},
            ], "alert_rule_test": [
                alert("EdgebindCloudflareTokenExpiresSoon", None, time="2h"),
            ]},
            {"interval": "1m", "input_series": [
                {"series": f'edgebind_cloudflare_token_expiry_timestamp_seconds{{{JOB}}}', "values": "5000000x200"},
            ], "alert_rule_test": [
                alert("EdgebindCloudflareTokenExpiresSoon", None, time="2h"),
            ]},
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    r = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
