// The Workers VPC path (spec.workersVpc): GATEWAY_URL is the gateway Service's in-cluster URL
// (http, not resolvable from here) and the GATEWAY service binding stands in for the
// vpc_service binding: every request goes to the address behind it, whatever host the URL
// names. Requests must go through the binding, signed as on every other path.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startIdp, startWorker, startGatewayStub, generateSigningKey, issuerFor, basicBundle } from './harness.mjs';

const SERVICE_URL = 'http://edgebind-gateway.edgebind-system.svc:8080';
const NS = '/api/v1/namespaces/team-a';
const policies = [
  { namespace: 'team-a', name: 'readers', effect: 'Allow', subjects: [{ issuer: 'test-idp', groups: ['test-idp:readers'] }], actions: ['read'] },
];

describe('edge Worker through a Workers VPC binding', () => {
  let idp;
  let gw;
  let worker;
  let bindings;

  before(async () => {
    idp = await startIdp({ clients: [{ id: 'alice', secret: 'alice-secret-0123456789abcdef', groups: ['readers'] }] });
    const key = generateSigningKey('vpc-key-1');
    gw = await startGatewayStub({ trustedKeys: { 'vpc-key-1': key.publicKey } });
    bindings = {
      GATEWAY_URL: SERVICE_URL,
      ISSUERS: JSON.stringify([issuerFor(idp)]),
      POLICY_BUNDLE: basicBundle(policies),
      SIGNING_KEY: key.binding,
      JWKS_COOLDOWN_SECONDS: '0',
    };
    worker = await startWorker({ bindings, services: { GATEWAY: gw.url } });
  });

  after(async () => {
    await worker?.stop();
    await gw?.stop();
    await idp?.stop();
  });

  it('forwards through the binding, signed for the gateway Service authority', async () => {
    const token = await idp.token('alice');
    const n = gw.requests.length;
    const res = await fetch(`${worker.url}${NS}/volumes/pvc-1`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(gw.requests.length, n + 1, 'the request reached the gateway through the binding');
    const rec = gw.requests.at(-1);
    assert.ok(rec.verdict.ok, JSON.stringify(rec.verdict));
    assert.equal(rec.verdict.keyId, 'vpc-key-1');
    assert.equal(rec.headers.host, 'edgebind-gateway.edgebind-system.svc:8080');
    assert.equal(rec.url, '/api/v1/namespaces/team-a/volumes/pvc-1');
    assert.equal(rec.headers.authorization, undefined, 'the token is not forwarded');
  });

  it('refuses before the gateway when the token is missing', async () => {
    const n = gw.requests.length;
    const res = await fetch(`${worker.url}${NS}/volumes/pvc-1`);
    assert.equal(res.status, 401);
    assert.equal(gw.requests.length, n);
    // The refusal itself follows, in a signed report through the same binding (§7.2).
    const rid = res.headers.get('edge-request-id');
    let report;
    for (let i = 0; i < 50 && !report; i++) {
      report = gw.reports.find((r) => JSON.parse(r.body).records.some((x) => x.requestId === rid));
      if (!report) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(report, 'the refusal was reported to the gateway');
    assert.equal(report.headers.host, 'edgebind-gateway.edgebind-system.svc:8080');
    assert.match(report.headers['signature-input'], /keyid="/);
    assert.equal(report.headers['edge-token'], undefined, 'no token in a report');
    const rec = JSON.parse(report.body).records.find((x) => x.requestId === rid);
    assert.deepEqual([rec.reasonCode, rec.result], ['token_missing', 401]);
  });

  it('without the binding, an http URL to a cluster host is a configuration error', async () => {
    const plain = await startWorker({ bindings });
    try {
      const token = await idp.token('alice');
      const n = gw.requests.length;
      const res = await fetch(`${plain.url}${NS}/volumes/pvc-1`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 500);
      assert.equal(gw.requests.length, n, 'nothing left the Worker');
    } finally {
      await plain.stop();
    }
  });
});
