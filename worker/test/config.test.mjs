import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIssuers, parseGatewayUrl, loadConfig, ConfigError } from '../src/config.js';
import { generateSigningKey } from './harness.mjs';

const good = { name: 'okta', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['RS256'] };

test('issuer defaults: skew 60, prefix <name>:, subject claim sub', () => {
  const { list, byIss } = parseIssuers(JSON.stringify([good]));
  assert.equal(list[0].clockSkewSeconds, 60);
  assert.deepEqual(list[0].claimMapping, { subjectClaim: 'sub', groupsClaim: undefined, prefix: 'okta:' });
  assert.equal(byIss.get('https://idp.example.com').name, 'okta');
});

test('issuers: none, HS*, unknown algorithms, plain http and duplicates are refused', () => {
  const bad = [
    [{ ...good, algorithms: ['none'] }],
    [{ ...good, algorithms: ['HS256'] }],
    [{ ...good, algorithms: ['RS256', 'HS512'] }],
    [{ ...good, algorithms: [] }],
    [{ ...good, audiences: [] }],
    [{ ...good, issuer: 'http://idp.example.com' }],
    [{ ...good, jwksUri: 'http://idp.example.com/keys' }],
    [good, { ...good, name: 'other' }],
    [good, { ...good, issuer: 'https://b.example.com' }],
    [good, { ...good, name: 'b', issuer: 'https://b.example.com', claimMapping: { prefix: '' } }],
    [{ ...good, clockSkewSeconds: 301 }],
    [{ ...good, claimMapping: { subjectClaim: '/a~2' } }],
    [{ ...good, claimMapping: { groupsClaim: '/groups~' } }],
    [{ ...good, claimMapping: { subjectClaim: '' } }],
    [],
  ];
  for (const b of bad) assert.throws(() => parseIssuers(JSON.stringify(b)), ConfigError, JSON.stringify(b));
  assert.ok(parseIssuers(JSON.stringify([{ ...good, issuer: 'http://127.0.0.1:9000' }])), 'http to loopback is allowed');
});

test('GATEWAY_URL must be an origin', () => {
  assert.deepEqual(parseGatewayUrl('https://GW.example.com:443/'), { origin: 'https://gw.example.com', authority: 'gw.example.com' });
  assert.deepEqual(parseGatewayUrl('http://127.0.0.1:8080'), { origin: 'http://127.0.0.1:8080', authority: '127.0.0.1:8080' });
  for (const u of ['https://gw.example.com/prefix', 'https://gw.example.com/?q', 'http://gw.example.com', 'https://u:p@gw.example.com', 'nope']) {
    assert.throws(() => parseGatewayUrl(u), ConfigError, u);
  }
});

test('GATEWAY_URL may be http to any host only behind the GATEWAY binding', async () => {
  const svc = 'http://edgebind-gateway.edgebind-system.svc:8080';
  assert.deepEqual(parseGatewayUrl(svc, true), { origin: svc, authority: 'edgebind-gateway.edgebind-system.svc:8080' });
  assert.throws(() => parseGatewayUrl(svc), ConfigError);
  for (const u of [`${svc}/x`, 'ftp://gw.example.com', 'http://u:p@gw.ns.svc']) assert.throws(() => parseGatewayUrl(u, true), ConfigError, u);
  const key = generateSigningKey('kid-v');
  const env = {
    GATEWAY_URL: svc,
    ISSUERS: JSON.stringify([good]),
    POLICY_BUNDLE: JSON.stringify({ version: 1, revision: 'r', policies: [] }),
    SIGNING_KEY: key.binding,
  };
  const binding = { fetch: async () => new Response('') };
  const cfg = await loadConfig({ ...env, GATEWAY: binding });
  assert.equal(cfg.gatewayBinding, binding);
  assert.equal(cfg.gateway.origin, svc);
  await assert.rejects(loadConfig(env), ConfigError);
  await assert.rejects(loadConfig({ ...env, GATEWAY: 'text' }), ConfigError);
  const direct = await loadConfig({ ...env, GATEWAY_URL: 'https://gw.example.com' });
  assert.equal(direct.gatewayBinding, null);
});

test('loadConfig reads every binding and refuses a missing secret without echoing values', async () => {
  const key = generateSigningKey('kid-1');
  const env = {
    GATEWAY_URL: 'https://gw.example.com',
    ISSUERS: JSON.stringify([good]),
    POLICY_BUNDLE: JSON.stringify({ version: 1, revision: 'r', policies: [] }),
    SIGNING_KEY: key.binding,
    GATEWAY_TIMEOUT_MS: '5000',
  };
  const cfg = await loadConfig(env);
  assert.equal(cfg.signing.keyId, 'kid-1');
  assert.equal(cfg.gatewayTimeoutMs, 5000);
  assert.equal(cfg.jwksCooldownSeconds, 30);
  await assert.rejects(loadConfig({ ...env, SIGNING_KEY: undefined }), ConfigError);
  const broken = JSON.stringify({ keyId: 'kid-1', jwk: { kty: 'OKP', crv: 'Ed25519', d: 'secretsecret', x: 'xx' } });
  await assert.rejects(loadConfig({ ...env, SIGNING_KEY: broken }), (e) => e instanceof ConfigError && !e.message.includes('secretsecret'));
  await assert.rejects(loadConfig({ ...env, GATEWAY_TIMEOUT_MS: '10' }), ConfigError);
});

test('claim paths: JSON Pointers are accepted in the mapping; a broken one in a policy refuses the bundle', async () => {
  const { list } = parseIssuers(JSON.stringify([{ ...good, claimMapping: { subjectClaim: '/kubernetes.io/serviceaccount/uid', groupsClaim: '/https:~1~1sts.amazonaws.com~1/principal_tags' } }]));
  assert.equal(list[0].claimMapping.subjectClaim, '/kubernetes.io/serviceaccount/uid');
  const { validateBundle, BundleError } = await import('../src/policy.js');
  const bundle = (claim) => ({ version: 1, revision: 'r', policies: [{ namespace: 'a', name: 'b', effect: 'Allow', subjects: [{ issuer: 'okta', claims: [{ claim, values: ['v'] }] }], actions: ['read'] }] });
  assert.deepEqual([...validateBundle(bundle('/a~1b/c')).claimsByIssuer.get('okta')], ['/a~1b/c']);
  assert.throws(() => validateBundle(bundle('/a~2')), BundleError);
});
