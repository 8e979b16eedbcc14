"""OpenTelemetry export of edge requests (issue 15): the real `edgebind controller` process, with
the standard OTEL_* variables pointing at a local OTLP/HTTP receiver, sends one trace per closed
edge request. The receiver decodes each body with the official OpenTelemetry protobuf messages
(PyPI `opentelemetry-proto`), an implementation independent of edgebind's hand-written encoder.

The request is one the gateway accepted: the EdgeVolume carries the request id and the edge and
gateway stage stamps exactly as the gateway writes them (`edgebind.dev/request-id`,
`edgebind.dev/request-stages`); the Worker e2e suite drives the same chain from the edge."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import time

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otlp_receiver import Receiver
from test_controller_process import BIN, free_port, http, needs_bin, simulators, wait  # noqa: F401 (needs_bin: autouse)

SECRET = "otlp-s3cret-" + secrets.token_hex(8)
NS = "team-a"


@pytest.fixture
def stack():
    """The Kubernetes and LINSTOR simulators, a namespace and a LinstorBackend; `start(env)`
    runs the controller with extra environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["EDGEBIND_LOG"] = "info,edgebind=debug"
    with simulators(env, NS) as (api, kubeconfig, tmp, procs):
        ctx = {"api": api, "log": tmp / "controller.log"}

        def start(extra: dict[str, str]):
            aport = free_port()
            log = open(ctx["log"], "w+")
            ctrl = subprocess.Popen([BIN, "controller", "--admin-addr", f"127.0.0.1:{aport}", "--resync-seconds", "5"],
                                    env={**env, **extra, "KUBECONFIG": str(kubeconfig)}, stdout=subprocess.DEVNULL, stderr=log)
            procs.append(ctrl)
            ctx["admin"], ctx["ctrl"] = f"http://127.0.0.1:{aport}", ctrl
            wait("/readyz", lambda: http("GET", f"{ctx['admin']}/readyz")[0] == 200)
        ctx["start"] = start
        yield ctx


def create_edge_volume(api: str, name: str) -> tuple[str, dict]:
    """An EdgeVolume as the gateway writes it for an accepted edge create."""
    rid = f"{secrets.token_hex(8)}-{secrets.token_hex(8)}"
    now = int(time.time() * 1000)
    stages = {"edgeReceivedAt": now - 40, "edgeVerifyMs": 2.5, "gatewayDecisionMs": 1.25, "acceptedAt": now - 30,
              "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
    status, body = http("POST", f"{api}/apis/edgebind.dev/v1alpha1/namespaces/{NS}/edgevolumes", {
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
        "metadata": {"name": name, "namespace": NS, "annotations": {
            "edgebind.dev/request-id": rid, "edgebind.dev/request-stages": json.dumps(stages)}},
        "spec": {"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}})
    assert status == 201, body
    return rid, stages


def completion_event(api: str, rid: str) -> dict:
    def find():
        s, body = http("GET", f"{api}/apis/events.k8s.io/v1/namespaces/{NS}/events")
        items = json.loads(body).get("items", []) if s == 200 else []
        return next((e for e in items if e.get("reason") == "RequestCompleted" and e["note"].startswith(f"request {rid} ")), None)
    return wait(f"the RequestCompleted event of {rid}", find, timeout=40)


def note_ms(note: str, stage: str) -> float:
    """A stage's duration as the completion event states it (`12.3 ms` or `1.23 s`)."""
    m = re.search(rf"{stage} ([0-9.]+) (m?s)", note)
    assert m, f"{stage} in {note!r}"
    return float(m.group(1)) * (1 if m.group(2) == "ms" else 1000)


def attrs(kvs) -> dict:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def otlp_spans(admin: str) -> dict[str, float]:
    s, text = http("GET", f"{admin}/metrics")
    assert s == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {x.labels["result"]: x.value for x in fams["edgebind_otlp_spans"].samples
            if x.name == "edgebind_otlp_spans_total"} if "edgebind_otlp_spans" in fams else {}


def test_a_closed_edge_request_is_exported_as_one_trace_with_its_stages(stack) -> None:
    # The retry is answered with a partial success that rejects one span.
    recv = Receiver(fail_first=1, partial=(1, "span too old for this tenant"))
    try:
        stack["start"]({
            "OTEL_EXPORTER_OTLP_ENDPOINT": recv.url,
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{SECRET},x-tenant=edge",
            "OTEL_SERVICE_NAME": "edgebind-test",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        })
        rid, stages = create_edge_volume(stack["api"], "db")
        event = completion_event(stack["api"], rid)
        # The first POST is answered 503 with Retry-After: 1; the same batch comes again.
        wait("the retried export", lambda: len(recv.posts) >= 2, timeout=15)
        time.sleep(0.5)
        assert recv.errors == [] and len(recv.posts) == 2, ([p["path"] for p in recv.posts], recv.errors)
        first, second = recv.posts
        assert first["body"] == second["body"], "the retry resends the same batch"
        for p in recv.posts:
            assert p["path"] == "/v1/traces"
            assert p["headers"]["content-type"] == "application/x-protobuf"
            assert p["headers"]["authorization"] == f"Bearer {SECRET}"
            assert p["headers"]["x-tenant"] == "edge"
        req = second["request"]

        assert len(req.resource_spans) == 1
        rs = req.resource_spans[0]
        res = attrs(rs.resource.attributes)
        assert res["service.name"] == "edgebind-test"
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", res["service.version"])
        assert res["deployment.environment.name"] == "test"
        assert len(rs.scope_spans) == 1 and rs.scope_spans[0].scope.name == "edgebind"
        spans = list(rs.scope_spans[0].spans)
        by_name = {s.name: s for s in spans}
        assert [s.name for s in spans] == ["edge request", "edge verify", "gateway decision", "first reconcile",
                                           "LINSTOR placement", "Ready"]
        root = by_name["edge request"]
        # Anyone holding the request id finds the trace: the first 16 bytes of SHA-256 of it.
        assert root.trace_id == hashlib.sha256(rid.encode()).digest()[:16]
        assert root.parent_span_id == b"" and len(root.span_id) == 8
        assert root.kind == Span.SPAN_KIND_SERVER
        assert root.status.code == Status.STATUS_CODE_OK
        root_attrs = attrs(root.attributes)
        assert root_attrs == {
            "edgebind.request_id": rid, "k8s.namespace.name": NS, "edgebind.object.kind": "EdgeVolume",
            "edgebind.object.name": "db", "edgebind.outcome": "ready", "edgebind.total_ms": root_attrs["edgebind.total_ms"]}
        # The root links to the W3C trace the Worker forwarded (the caller's, or the Worker's own).
        _, w3c_trace, w3c_span, _ = stages["traceparent"].split("-")
        assert [(l.trace_id.hex(), l.span_id.hex()) for l in root.links] == [(w3c_trace, w3c_span)]
        for s in spans[1:]:
            assert s.trace_id == root.trace_id and s.parent_span_id == root.span_id, s.name
            assert len(s.links) == 0
            assert s.kind == Span.SPAN_KIND_INTERNAL
            assert root.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano <= root.end_time_unix_nano, s.name
        assert len({s.span_id for s in spans}) == len(spans)

        # Real instants from the stamps: the edge's and the gateway's, then the controller's.
        ms = 1_000_000
        ev, gd = by_name["edge verify"], by_name["gateway decision"]
        assert ev.start_time_unix_nano == root.start_time_unix_nano == stages["edgeReceivedAt"] * ms
        assert ev.end_time_unix_nano - ev.start_time_unix_nano == 2.5 * ms
        assert gd.end_time_unix_nano == stages["acceptedAt"] * ms
        assert gd.end_time_unix_nano - gd.start_time_unix_nano == 1.25 * ms
        chain = [by_name[n] for n in ("first reconcile", "LINSTOR placement", "Ready")]
        assert chain[0].start_time_unix_nano == stages["acceptedAt"] * ms
        for a, b in zip(chain, chain[1:]):
            assert a.end_time_unix_nano == b.start_time_unix_nano, (a.name, b.name)
        assert chain[-1].end_time_unix_nano == root.end_time_unix_nano
        # The same durations as the completion event states (it rounds to 0.1 ms, or 10 ms
        # from a second on).
        note = event["note"]
        for s, stage in zip(chain, ("first reconcile", "LINSTOR placement", "Ready")):
            got = (s.end_time_unix_nano - s.start_time_unix_nano) / ms
            assert abs(got - note_ms(note, stage)) <= (5.01 if got >= 1000 else 0.051), (stage, got, note)
        total = (root.end_time_unix_nano - root.start_time_unix_nano) / ms
        assert abs(total - note_ms(note, "total from the edge")) <= (5.01 if total >= 1000 else 0.051)
        assert root_attrs["edgebind.total_ms"] == round(total)

        # The export is counted, the span the receiver rejected as failed (not retried); the
        # header value is never shown.
        wait("exported spans counted", lambda: otlp_spans(stack["admin"]).get("exported") == 5)
        assert otlp_spans(stack["admin"]) == {"exported": 5, "failed": 1}
        for p in recv.posts:
            assert SECRET.encode() not in p["body"]
        stack["ctrl"].send_signal(signal.SIGTERM)
        assert stack["ctrl"].wait(timeout=20) == 0
        log = stack["log"].read_text()
        assert "OTLP trace export on" in log
        rejected = [json.loads(l) for l in log.splitlines() if "the OTLP receiver rejected spans" in l]
        assert len(rejected) == 1 and rejected[0]["rejected"] == 1 and rejected[0]["reason"] == "span too old for this tenant", rejected
        assert SECRET not in log
    finally:
        recv.close()


def test_without_an_endpoint_nothing_is_sent(stack) -> None:
    # A receiver on the specification's default endpoint (localhost:4318), and every other OTEL
    # setting: no endpoint configured means no export, not the default one.
    recv = Receiver(port=4318)
    try:
        stack["start"]({
            "OTEL_SERVICE_NAME": "edgebind-test",
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{SECRET}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        })
        rid, _ = create_edge_volume(stack["api"], "db")
        completion_event(stack["api"], rid)
        time.sleep(1.5)
        assert recv.posts == []
        assert otlp_spans(stack["admin"]) == {}
        assert "OTLP trace export on" not in stack["log"].read_text()
    finally:
        recv.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/json"])
def test_a_protocol_other_than_http_protobuf_stops_the_start(protocol: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{SECRET}",
                "KUBECONFIG": "/nonexistent/kubeconfig"})
    r = subprocess.run([BIN, "controller", "--admin-addr", f"127.0.0.1:{free_port()}"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f'OTLP protocol "{protocol}" is not supported' in r.stderr, r.stderr
    assert "http/protobuf" in r.stderr
    assert SECRET not in r.stderr + r.stdout
