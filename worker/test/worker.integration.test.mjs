// The bundled Worker (dist/worker.js) in the real workerd runtime, with tokens from a real
// oidc-provider and a gateway stand-in that verifies edgebind-v1 independently (verify.mjs).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as jose from 'jose';
import { startIdp, startWorker, startGatewayStub, generateSigningKey, issuerFor, basicBundle, freePort, OTHER_RESOURCE } from './harness.mjs';

const NS = '/api/v1/namespaces/team-a';
const policies = [
  { namespace: 'team-a', name: 'admins', effect: 'Allow', subjects: [{ issuer: 'test-idp', groups: ['test-idp:admins'] }], actions: ['read', 'delete'] },
  { namespace: 'team-a', name: 'limited', effect: 'Allow', subjects: [{ issuer: 'test-idp', subjects: ['test-idp:limited'] }], actions: ['read'], rateLimit: { requestsPerMinute: 1, burst: 2 } },
  { namespace: 'team-a', name: 'no-prod-delete', effect: 'Deny', subjects: [{ issuer: 'test-idp' }], actions: ['delete'], volumes: { names: ['prod-*'] } },
  {
    namespace: 'team-a', name: 'readers', effect: 'Allow',
    subjects: [{ issuer: 'test-idp', groups: ['test-idp:readers'] }],
    actions: ['read', 'create'], conditions: { maxSizeBytes: 1073741824 },
  },
];

describe('edge Worker in workerd', () => {
  let idp;
  let otherIdp;
  let gw;
  let worker;
  let key;
  let bindings;

  before(async () => {
    idp = await startIdp({
      alg: 'RS256',
      clients: [
        { id: 'alice', secret: 'alice-secret-0123456789abcdef', groups: ['readers'] },
        { id: 'root', secret: 'root-secret-0123456789abcdef', groups: ['admins'] },
        { id: 'limited', secret: 'limited-secret-0123456789abcd', groups: [] },
      ],
    });
    otherIdp = await startIdp({ clients: [{ id: 'alice', secret: 'alice-secret-0123456789abcdef', groups: ['readers'] }] });
    key = generateSigningKey('edge-key-1');
    gw = await startGatewayStub({ trustedKeys: { 'edge-key-1': key.publicKey } });
    bindings = {
      GATEWAY_URL: gw.url,
      ISSUERS: JSON.stringify([issuerFor(idp)]), // no jwksUri: exercises OIDC discovery
      POLICY_BUNDLE: basicBundle(policies),
      SIGNING_KEY: key.binding,
      EDGE_LOCATION: 'TEST',
      JWKS_COOLDOWN_SECONDS: '0',
    };
    worker = await startWorker({ bindings });
  });

  after(async () => {
    await worker?.stop();
    await gw?.stop();
    await idp?.stop();
    await otherIdp?.stop();
  });

  const call = (path, { token, method = 'GET', body, headers = {} } = {}) =>
    fetch(`${worker.url}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });

  async function auditFor(requestId) {
    const deadline = Date.now() + 3000;
    for (;;) {
      const ev = worker.auditEvents().find((e) => e.requestId === requestId);
      if (ev) return ev;
      if (Date.now() > deadline) throw new Error(`no audit event for ${requestId}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Asserts a refusal: status, code, nothing at the gateway, and an audit event saying so. */
  async function expectRefusal(res, status, code) {
    const before = gw.requests.length;
    const body = await res.json();
    assert.equal(res.status, status, JSON.stringify(body));
    assert.equal(body.error.code, code);
    const rid = res.headers.get('edge-request-id');
    assert.equal(body.error.requestId, rid);
    assert.equal(gw.requests.length, before, 'nothing reached the gateway');
    const ev = await auditFor(rid);
    assert.deepEqual([ev.decision, ev.reasonCode, ev.result], ['deny', code, status]);
    assert.ok(!JSON.stringify(ev).includes('eyJ'), 'no token in the audit event');
    return { body, ev };
  }

  it('forwards a valid request, signed per edgebind-v1, without the token', async () => {
    const token = await idp.token('alice');
    const n = gw.requests.length;
    const res = await call(`${NS}/volumes/pvc-1?watch=false`, { token, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(gw.requests.length, n + 1);
    const rec = gw.requests.at(-1);
    assert.ok(rec.verdict.ok, JSON.stringify(rec.verdict));
    assert.equal(rec.verdict.keyId, 'edge-key-1');
    assert.equal(rec.verdict.expires - rec.verdict.created, 60);
    assert.ok(Math.abs(rec.verdict.created - Date.now() / 1000) < 5);
    assert.equal(rec.url, '/api/v1/namespaces/team-a/volumes/pvc-1?watch=false');
    assert.equal(rec.headers.authorization, undefined, 'the token is not forwarded');
    assert.equal(rec.headers.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    const id = rec.verdict.identity;
    assert.equal(id.issuer, 'test-idp');
    assert.equal(id.subject, 'test-idp:alice');
    assert.deepEqual(id.groups, ['test-idp:readers']);
    assert.equal(id.edgeLocation, 'TEST');
    assert.equal(id.decision, 'allow');
    assert.equal(id.policy, 'team-a/readers');
    assert.equal(rec.headers['edge-request-id'], res.headers.get('edge-request-id'));
    const ev = await auditFor(res.headers.get('edge-request-id'));
    assert.equal(ev.source, 'worker');
    assert.equal(ev.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.deepEqual([ev.decision, ev.reasonCode, ev.policy, ev.keyId, ev.result], ['allow', 'policy_allowed', 'team-a/readers', 'edge-key-1', 200]);
    assert.deepEqual(ev.object, { namespace: 'team-a', name: 'pvc-1', kind: 'EdgeVolume' });
  });

  it('signs the body: the gateway stub checks the content digest of a POST', async () => {
    const token = await idp.token('alice');
    const res = await call(`${NS}/volumes`, { token, method: 'POST', body: { name: 'pvc-new', sizeBytes: 1024, labels: { tier: 'gold' } } });
    assert.equal(res.status, 200);
    const rec = gw.requests.at(-1);
    assert.ok(rec.verdict.ok, JSON.stringify(rec.verdict));
    assert.equal(rec.method, 'POST');
    assert.deepEqual(JSON.parse(rec.body), { name: 'pvc-new', sizeBytes: 1024, labels: { tier: 'gold' } });
    assert.equal(rec.headers['content-digest'], `sha-256=:${crypto.createHash('sha256').update(rec.body).digest('base64')}:`);
  });

  it('refuses a request without a token', async () => {
    const res = await call(`${NS}/volumes/pvc-1`);
    assert.match(res.headers.get('www-authenticate'), /^Bearer/);
    await expectRefusal(res, 401, 'token_missing');
  });

  it('refuses a malformed token', async () => {
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token: 'not.a-jwt' }), 401, 'token_malformed');
  });

  it('refuses a token from an issuer that is not configured', async () => {
    const token = await otherIdp.token('alice');
    const { ev } = await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'issuer_unknown');
    assert.equal(ev.issuer, null, 'the untrusted iss is not recorded as the issuer');
  });

  it('refuses a token for another audience', async () => {
    const token = await idp.token('alice', { resource: OTHER_RESOURCE });
    assert.equal(jose.decodeJwt(token).aud, 'other-api');
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'audience_mismatch');
  });

  it('refuses a token without an audience as an audience failure', async () => {
    const jwk = idp.signingJwk;
    const k = await jose.importJWK(jwk, 'RS256');
    const now = Math.floor(Date.now() / 1000);
    const token = await new jose.SignJWT({ groups: ['readers'] })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'at+jwt' })
      .setIssuer(idp.issuer).setSubject('alice')
      .setIssuedAt(now).setExpirationTime(now + 60)
      .sign(k);
    assert.equal(jose.decodeJwt(token).aud, undefined);
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'audience_mismatch');
  });

  it('refuses an expired token signed by the real issuer key', async () => {
    const jwk = idp.signingJwk;
    const k = await jose.importJWK(jwk, 'RS256');
    const now = Math.floor(Date.now() / 1000);
    const token = await new jose.SignJWT({ groups: ['readers'] })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'at+jwt' })
      .setIssuer(idp.issuer).setAudience(idp.audience).setSubject('alice')
      .setIssuedAt(now - 600).setExpirationTime(now - 300)
      .sign(k);
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'token_expired');
  });

  it('refuses alg "none"', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = new jose.UnsecuredJWT({ groups: ['readers'] }).setIssuer(idp.issuer).setAudience(idp.audience).setSubject('alice').setIssuedAt(now).setExpirationTime(now + 60).encode();
    assert.equal(jose.decodeProtectedHeader(token).alg, 'none');
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'alg_not_allowed');
  });

  it('refuses algorithm confusion: HS256 keyed with the issuer RSA public key', async () => {
    const jwks = await (await fetch(`${idp.issuer}/jwks`)).json();
    const pub = crypto.createPublicKey({ key: jwks.keys[0], format: 'jwk' });
    const hmacKey = new TextEncoder().encode(pub.export({ type: 'spki', format: 'pem' }));
    const now = Math.floor(Date.now() / 1000);
    const token = await new jose.SignJWT({ groups: ['readers'] })
      .setProtectedHeader({ alg: 'HS256', kid: jwks.keys[0].kid })
      .setIssuer(idp.issuer).setAudience(idp.audience).setSubject('alice').setIssuedAt(now).setExpirationTime(now + 60)
      .sign(hmacKey);
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 401, 'alg_not_allowed');
  });

  it('refuses when no policy allows the action (default deny)', async () => {
    const token = await idp.token('alice');
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token, method: 'DELETE' }), 403, 'policy_no_match');
  });

  it('a condition limits an Allow: oversize create is refused', async () => {
    const token = await idp.token('alice');
    await expectRefusal(await call(`${NS}/volumes`, { token, method: 'POST', body: { name: 'big', sizeBytes: 2 * 1073741824 } }), 403, 'policy_no_match');
  });

  it('Deny wins over Allow', async () => {
    const token = await idp.token('root');
    const ok = await call(`${NS}/volumes/dev-1`, { token, method: 'DELETE' });
    assert.equal(ok.status, 200, 'the Allow applies where the Deny does not');
    const { ev } = await expectRefusal(await call(`${NS}/volumes/prod-1`, { token, method: 'DELETE' }), 403, 'policy_denied');
    assert.equal(ev.policy, 'team-a/no-prod-delete');
  });

  it('rate limits per subject with 429 and Retry-After', async () => {
    const token = await idp.token('limited');
    assert.equal((await call(`${NS}/volumes/pvc-1`, { token })).status, 200);
    assert.equal((await call(`${NS}/volumes/pvc-1`, { token })).status, 200);
    const res = await call(`${NS}/volumes/pvc-1`, { token });
    const retry = Number(res.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    await expectRefusal(res, 429, 'rate_limited');
    // Another subject is not affected.
    assert.equal((await call(`${NS}/volumes/pvc-1`, { token: await idp.token('alice') })).status, 200);
  });

  it('recovers from the issuer rotating its signing key (unknown kid -> JWKS refetch)', async () => {
    const oldToken = await idp.token('alice');
    assert.equal((await call(`${NS}/volumes/pvc-1`, { token: oldToken })).status, 200, 'JWKS now cached');
    const fetchesBefore = idp.jwksFetches;
    await idp.rotate();
    const newToken = await idp.token('alice');
    assert.notEqual(jose.decodeProtectedHeader(newToken).kid, jose.decodeProtectedHeader(oldToken).kid);
    const res = await call(`${NS}/volumes/pvc-1`, { token: newToken });
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok(idp.jwksFetches > fetchesBefore, 'the Worker refetched the JWKS');
    // The old key is gone from the JWKS: its tokens no longer verify.
    await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token: oldToken }), 401, 'key_unknown');
  });

  it('refuses unknown routes and bad bodies before anything is forwarded', async () => {
    const token = await idp.token('alice');
    await expectRefusal(await call('/api/v1/namespaces/team-a/secrets', { token }), 404, 'route_unknown');
    await expectRefusal(await call(`${NS}/volumes`, { token, method: 'POST', body: { name: 'x' } }), 400, 'request_invalid');
    const textBody = await fetch(`${worker.url}${NS}/volumes`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' }, body: '{}' });
    await expectRefusal(textBody, 415, 'content_type_unsupported');
  });

  it('uses a rotated SIGNING_KEY without code changes, and reports an unreachable gateway', async () => {
    const key2 = generateSigningKey('edge-key-2');
    const gw2 = await startGatewayStub({ trustedKeys: { 'edge-key-1': key.publicKey, 'edge-key-2': key2.publicKey } });
    try {
      await worker.restart({ ...bindings, GATEWAY_URL: gw2.url, SIGNING_KEY: key2.binding });
      const token = await idp.token('alice');
      assert.equal((await call(`${NS}/volumes/pvc-1`, { token })).status, 200);
      assert.equal(gw2.requests.at(-1).verdict.keyId, 'edge-key-2');
      assert.ok(gw2.requests.at(-1).verdict.ok);
      const closed = await freePort();
      await worker.restart({ ...bindings, GATEWAY_URL: `http://127.0.0.1:${closed}` });
      await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 502, 'gateway_unreachable');
      await worker.restart({ ...bindings, SIGNING_KEY: '{"keyId":"x"}' });
      await expectRefusal(await call(`${NS}/volumes/pvc-1`, { token }), 500, 'config_invalid');
      assert.ok(!worker.logs.some((l) => l.includes(JSON.parse(key2.binding).jwk.d)), 'the private key never appears in logs');
    } finally {
      await gw2.stop();
      await worker.restart(bindings);
    }
  });
});
