"""The official Cloudflare Python SDK (PyPI `cloudflare`) against edgebind's Cloudflare simulator.

The simulator is started with `$EDGEBIND_BIN simulate cloudflare --listen 127.0.0.1:PORT` when
EDGEBIND_BIN is set, otherwise through the ignored Rust test `serve_cf_for_python`.
Values below are the simulator's documented test fixtures (CfSimConfig::realistic()).
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import cloudflare
import httpx
import pytest

ACCOUNT = "9a7806061c88ada191ed06f989cc3dac"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
TOKEN = "test-token-edgebind-sim-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]
WORKER = b"export default { async fetch(request, env) { return new Response(env.GREETING); } };"
START_TIMEOUT = float(os.environ.get("CF_SIM_START_TIMEOUT", "600"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    def __init__(self, rate_limit: int | None = None):
        self.port = free_port()
        env = dict(os.environ, CF_SIM_PORT=str(self.port))
        if rate_limit is not None:
            env["CF_SIM_RATE_LIMIT"] = str(rate_limit)
        binary = os.environ.get("EDGEBIND_BIN")
        if binary:
            cmd = [binary, "simulate", "cloudflare", "--listen", f"127.0.0.1:{self.port}"]
        else:
            cmd = ["cargo", "test", "--quiet", "--test", "integration", "serve_cf_for_python",
                   "--", "--ignored", "--nocapture"]
        # A new session so that stopping it also stops the test binary cargo starts.
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base_url = f"http://127.0.0.1:{self.port}/client/v4"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}")
            try:
                httpx.get(self.base_url + "/user/tokens/verify", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("simulator did not start in time")
                time.sleep(0.2)

    def client(self, token: str = TOKEN) -> cloudflare.Cloudflare:
        # No retries: the tests look at the first answer's error class.
        return cloudflare.Cloudflare(api_token=token, base_url=self.base_url, max_retries=0, timeout=10.0)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sim():
    s = Simulator()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cf(sim):
    with sim.client() as c:
        yield c


def upload(cf, name, bindings=(), keep=()):
    return cf.workers.scripts.update(
        name,
        account_id=ACCOUNT,
        metadata={"main_module": "worker.js", "compatibility_date": "2025-01-01",
                  "bindings": list(bindings), "keep_bindings": list(keep)},
        files=[("worker.js", WORKER, "application/javascript+module")],
    )


def error_code(exc: cloudflare.APIStatusError) -> int:
    return exc.body["errors"][0]["code"]


def test_verify_token(cf, sim):
    result = cf.user.tokens.verify()
    assert result.status == "active"
    assert len(result.id) == 32
    # A user token is not an account-owned token: the account path refuses it.
    with pytest.raises(cloudflare.AuthenticationError) as e:
        cf.accounts.tokens.verify(account_id=ACCOUNT)
    assert error_code(e.value) == 1000
    with sim.client("not-a-real-token") as bad:
        with pytest.raises(cloudflare.AuthenticationError) as e:
            bad.user.tokens.verify()
        assert error_code(e.value) == 1000
        with pytest.raises(cloudflare.PermissionDeniedError) as e:
            bad.workers.scripts.list(account_id=ACCOUNT)
        assert error_code(e.value) == 10000


def test_upload_module_worker_and_list(cf):
    res = upload(cf, "sdk-gw", bindings=[{"type": "plain_text", "name": "GREETING", "text": "hi"}])
    assert res.id == "sdk-gw"
    assert res.handlers == ["fetch"]
    assert len(res.etag) == 64
    names = [s.id for s in cf.workers.scripts.list(account_id=ACCOUNT)]
    assert "sdk-gw" in names
    content = cf.workers.scripts.get("sdk-gw", account_id=ACCOUNT)
    assert "env.GREETING" in content


def test_missing_worker_is_not_found(cf):
    with pytest.raises(cloudflare.NotFoundError) as e:
        cf.workers.scripts.secrets.list("no-such-worker", account_id=ACCOUNT)
    assert error_code(e.value) == 10007


def test_secrets_put_list_and_keep_bindings(cf):
    upload(cf, "sdk-secrets")
    put = cf.workers.scripts.secrets.update(
        "sdk-secrets", account_id=ACCOUNT, name="HMAC_KEY", text="very-secret", type="secret_text")
    assert put.name == "HMAC_KEY" and put.type == "secret_text"
    listed = list(cf.workers.scripts.secrets.list("sdk-secrets", account_id=ACCOUNT))
    assert [(s.name, s.type) for s in listed] == [("HMAC_KEY", "secret_text")]
    assert all(getattr(s, "text", None) is None for s in listed)
    # Re-upload keeping secret bindings: the secret survives.
    upload(cf, "sdk-secrets", keep=["secret_text", "secret_key"])
    assert [s.name for s in cf.workers.scripts.secrets.list("sdk-secrets", account_id=ACCOUNT)] == ["HMAC_KEY"]
    # Re-upload without keep_bindings: the secret is gone.
    upload(cf, "sdk-secrets")
    assert list(cf.workers.scripts.secrets.list("sdk-secrets", account_id=ACCOUNT)) == []


def test_secret_refused_while_latest_version_not_deployed(cf):
    upload(cf, "sdk-versions")
    # cloudflare 5.9.0 cannot build its VersionCreateResponse model (ResourcesBindings is not a
    # pydantic model), so read this one answer raw; the request is still the SDK's own.
    raw = cf.workers.scripts.versions.with_raw_response.create(
        "sdk-versions", account_id=ACCOUNT,
        metadata={"main_module": "worker.js", "compatibility_date": "2025-01-01"},
        files=[("worker.js", WORKER, "application/javascript+module")],
    )
    version_id = raw.http_response.json()["result"]["id"]
    with pytest.raises(cloudflare.BadRequestError) as e:
        cf.workers.scripts.secrets.update(
            "sdk-versions", account_id=ACCOUNT, name="K", text="v", type="secret_text")
    assert error_code(e.value) == 10215
    cf.workers.scripts.deployments.create(
        "sdk-versions", account_id=ACCOUNT, strategy="percentage",
        versions=[{"version_id": version_id, "percentage": 100}])
    put = cf.workers.scripts.secrets.update(
        "sdk-versions", account_id=ACCOUNT, name="K", text="v", type="secret_text")
    assert put.name == "K"
    # The spec's list shape is {"deployments": [...]}; cloudflare 5.9.0 pages it as
    # {"items": [...]}, so read the answer raw.
    raw = cf.workers.scripts.deployments.with_raw_response.list("sdk-versions", account_id=ACCOUNT)
    deployments = raw.http_response.json()["result"]["deployments"]
    assert len(deployments) == 3
    assert deployments[0]["annotations"]["workers/triggered_by"] == "secret"


def test_workers_logs_setting_is_checked_and_kept(cf):
    # The SDK's own metadata type (MetadataObservability): enabled is required, the sampling
    # rate is a fraction. The simulator keeps it as a script setting and returns it.
    res = cf.workers.scripts.update(
        "sdk-logs", account_id=ACCOUNT,
        metadata={"main_module": "worker.js", "compatibility_date": "2025-01-01",
                  "observability": {"enabled": True, "head_sampling_rate": 1}},
        files=[("worker.js", WORKER, "application/javascript+module")],
    )
    assert res.observability.enabled is True
    assert res.observability.head_sampling_rate == 1
    for bad in ({"head_sampling_rate": 1}, {"enabled": True, "head_sampling_rate": 2},
                {"enabled": "yes"}, {"enabled": True, "logs": {"enabled": True}}):
        with pytest.raises(cloudflare.BadRequestError) as e:
            cf.workers.scripts.update(
                "sdk-logs", account_id=ACCOUNT,
                metadata={"main_module": "worker.js", "compatibility_date": "2025-01-01",
                          "observability": bad},
                files=[("worker.js", WORKER, "application/javascript+module")],
            )
        assert error_code(e.value) == 10021, bad
    # An upload without the setting leaves it as it was.
    assert upload(cf, "sdk-logs").observability.enabled is True


def test_secrets_ride_in_the_upload_and_win_over_kept_ones(cf):
    upload(cf, "sdk-carry", bindings=[{"type": "secret_text", "name": "A", "text": "1"},
                                      {"type": "secret_text", "name": "B", "text": "2"}])
    # Named secret beats the kept one of the same name; the other kept one survives.
    upload(cf, "sdk-carry", bindings=[{"type": "secret_text", "name": "A", "text": "3"}],
           keep=["secret_text", "secret_key"])
    names = sorted(s.name for s in cf.workers.scripts.secrets.list("sdk-carry", account_id=ACCOUNT))
    assert names == ["A", "B"]


def test_secret_delete_refused_during_a_gradual_deployment(cf):
    first = upload(cf, "sdk-gradual", bindings=[{"type": "secret_text", "name": "K", "text": "v"}])
    raw = cf.workers.scripts.deployments.with_raw_response.list("sdk-gradual", account_id=ACCOUNT)
    ours = raw.http_response.json()["result"]["deployments"][0]["versions"][0]["version_id"]
    raw = cf.workers.scripts.versions.with_raw_response.create(
        "sdk-gradual", account_id=ACCOUNT,
        metadata={"main_module": "worker.js", "compatibility_date": "2025-01-01",
                  "keep_bindings": ["secret_text"]},
        files=[("worker.js", WORKER, "application/javascript+module")],
    )
    theirs = raw.http_response.json()["result"]["id"]
    cf.workers.scripts.deployments.create(
        "sdk-gradual", account_id=ACCOUNT, strategy="percentage",
        versions=[{"version_id": ours, "percentage": 90}, {"version_id": theirs, "percentage": 10}])
    # Deleting is an edit too: 10215 while the latest version is not the one fully deployed.
    with pytest.raises(cloudflare.BadRequestError) as e:
        cf.workers.scripts.secrets.delete("K", account_id=ACCOUNT, script_name="sdk-gradual")
    assert error_code(e.value) == 10215
    assert first.id == "sdk-gradual"
    # The script itself can still be deleted (what a finalizer without keepScriptOnDelete does).
    cf.workers.scripts.delete("sdk-gradual", account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError):
        cf.workers.scripts.secrets.list("sdk-gradual", account_id=ACCOUNT)


def test_a_zone_out_of_reach_is_403_while_the_token_verifies(cf):
    # What edgebind tells apart: the token is active (verify needs no permission), yet a zone
    # it may not act on answers 403 / 10000, the code of a wrong token.
    assert cf.user.tokens.verify().status == "active"
    with pytest.raises(cloudflare.PermissionDeniedError) as e:
        list(cf.workers.routes.list(zone_id="b1e105f4ecef8ad9ca31a8372d0c3530"))
    assert error_code(e.value) == 10000
    assert list(cf.workers.routes.list(zone_id=ZONE)) is not None


def test_routes_create_list_and_conflict(cf):
    upload(cf, "sdk-routes")
    route = cf.workers.routes.create(zone_id=ZONE, pattern="sdk.example.com/*", script="sdk-routes")
    assert route.pattern == "sdk.example.com/*"
    listed = list(cf.workers.routes.list(zone_id=ZONE))
    assert [(r.id, r.script) for r in listed if r.pattern == "sdk.example.com/*"] == [(route.id, "sdk-routes")]
    with pytest.raises(cloudflare.ConflictError) as e:
        cf.workers.routes.create(zone_id=ZONE, pattern="sdk.example.com/*", script="sdk-routes")
    assert error_code(e.value) == 10020
    with pytest.raises(cloudflare.BadRequestError) as e:
        cf.workers.routes.create(zone_id=ZONE, pattern="sdk.other.org/*", script="sdk-routes")
    assert error_code(e.value) == 10022
    cf.workers.routes.delete(route.id, zone_id=ZONE)
    assert all(r.id != route.id for r in cf.workers.routes.list(zone_id=ZONE))


def test_tunnel_lifecycle_and_its_dns_record(cf):
    """The SDK's tunnel and DNS calls, as edgebind's controller makes them, on the simulator."""
    t = cf.zero_trust.tunnels.cloudflared.create(account_id=ACCOUNT, name="sdk-tunnel", config_src="cloudflare")
    assert t.name == "sdk-tunnel" and t.status == "inactive"
    with pytest.raises(cloudflare.ConflictError) as e:
        cf.zero_trust.tunnels.cloudflared.create(account_id=ACCOUNT, name="sdk-tunnel", config_src="cloudflare")
    assert error_code(e.value) == 1013
    found = list(cf.zero_trust.tunnels.cloudflared.list(account_id=ACCOUNT, name="sdk-tunnel", is_deleted=False))
    assert [x.id for x in found] == [t.id]
    ingress = [{"hostname": "sdk-gw.example.com", "service": "http://gw.ns.svc:8443"},
               {"service": "http_status:404"}]
    cf.zero_trust.tunnels.cloudflared.configurations.update(t.id, account_id=ACCOUNT, config={"ingress": ingress})
    got = cf.zero_trust.tunnels.cloudflared.configurations.get(t.id, account_id=ACCOUNT)
    assert got.config.ingress[0].hostname == "sdk-gw.example.com"
    assert got.version == 1
    with pytest.raises(cloudflare.BadRequestError) as e:
        cf.zero_trust.tunnels.cloudflared.configurations.update(
            t.id, account_id=ACCOUNT, config={"ingress": ingress[:1]})
    assert error_code(e.value) == 1055
    token = cf.zero_trust.tunnels.cloudflared.token.get(t.id, account_id=ACCOUNT)
    assert isinstance(token, str) and len(token) > 40
    assert list(cf.zero_trust.tunnels.cloudflared.connections.get(t.id, account_id=ACCOUNT)) == []

    rec = cf.dns.records.create(zone_id=ZONE, type="CNAME", name="sdk-gw", ttl=1, proxied=True,
                                content=f"{t.id}.cfargotunnel.com", comment="edgebind test")
    assert rec.name == "sdk-gw.example.com" and rec.proxied is True
    with pytest.raises(cloudflare.BadRequestError) as e:
        cf.dns.records.create(zone_id=ZONE, type="A", name="sdk-gw.example.com", ttl=1, content="192.0.2.1")
    assert error_code(e.value) == 81053
    listed = list(cf.dns.records.list(zone_id=ZONE, name={"exact": "sdk-gw.example.com"}))
    assert [r.id for r in listed] == [rec.id]
    cf.dns.records.delete(rec.id, zone_id=ZONE)
    assert list(cf.dns.records.list(zone_id=ZONE, name={"exact": "sdk-gw.example.com"})) == []

    cf.zero_trust.tunnels.cloudflared.delete(t.id, account_id=ACCOUNT)
    assert list(cf.zero_trust.tunnels.cloudflared.list(account_id=ACCOUNT, name="sdk-tunnel", is_deleted=False)) == []


def test_workers_vpc_service_lifecycle_and_binding(cf):
    """The SDK's connectivity directory calls (client.connectivity.directory.services), as
    edgebind's controller makes them, and a Worker upload binding the service."""
    t = cf.zero_trust.tunnels.cloudflared.create(account_id=ACCOUNT, name="sdk-vpc", config_src="cloudflare")
    services = cf.connectivity.directory.services
    host = {"hostname": "gw.ns.svc", "resolver_network": {"tunnel_id": t.id}}
    svc = services.create(account_id=ACCOUNT, type="http", name="sdk-gw", http_port=8080, host=host)
    assert svc.service_id and svc.name == "sdk-gw" and svc.http_port == 8080
    assert svc.host.hostname == "gw.ns.svc" and svc.host.resolver_network.tunnel_id == t.id
    with pytest.raises(cloudflare.BadRequestError) as e:
        services.create(account_id=ACCOUNT, type="http", name="bad",
                        host={"hostname": "gw.ns.svc", "resolver_network": {"tunnel_id": "not-a-uuid"}})
    assert error_code(e.value) == 1001
    listed = list(services.list(account_id=ACCOUNT, type="http"))
    assert [x.service_id for x in listed] == [svc.service_id]
    got = services.get(svc.service_id, account_id=ACCOUNT)
    assert got.http_port == 8080
    services.update(svc.service_id, account_id=ACCOUNT, type="http", name="sdk-gw", http_port=9090, host=host)
    assert services.get(svc.service_id, account_id=ACCOUNT).http_port == 9090

    binding = {"type": "vpc_service", "name": "GATEWAY", "service_id": svc.service_id}
    res = upload(cf, "sdk-vpc-gw", bindings=[binding])
    assert res.id == "sdk-vpc-gw"
    with pytest.raises(cloudflare.BadRequestError) as e:
        upload(cf, "sdk-vpc-gw", bindings=[{**binding, "service_id": "00000000-0000-4000-8000-000000000000"}])
    assert error_code(e.value) == 10021

    services.delete(svc.service_id, account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError) as e:
        services.get(svc.service_id, account_id=ACCOUNT)
    assert error_code(e.value) == 1002
    cf.zero_trust.tunnels.cloudflared.delete(t.id, account_id=ACCOUNT)


def test_rate_limit_raises_rate_limit_error():
    # Its own simulator, so exhausting the token's budget does not affect the other tests.
    # A small limit is asked for; a simulator that ignores it still stops at 1,200.
    s = Simulator(rate_limit=5)
    try:
        with s.client() as c:
            with pytest.raises(cloudflare.RateLimitError) as e:
                for _ in range(1300):
                    c.user.tokens.verify()
            assert error_code(e.value) == 10429
            assert int(e.value.response.headers["retry-after"]) >= 1
    finally:
        s.stop()
