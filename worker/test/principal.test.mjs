import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mapPrincipal, normalizeClaim, edgeIdentity, encodeEdgeIdentity, ClaimError, MAX_IDENTITY_BYTES } from '../src/principal.js';

const issuer = {
  name: 'okta',
  issuer: 'https://idp.example.com',
  claimMapping: { subjectClaim: 'sub', groupsClaim: 'groups', prefix: 'okta:' },
};

test('subject and groups get the issuer prefix; duplicates removed, order kept', () => {
  const p = mapPrincipal(issuer, { sub: 'alice', groups: ['b', 'a', 'b'] });
  assert.deepEqual(p, { issuer: 'okta', issuerUrl: 'https://idp.example.com', subject: 'okta:alice', groups: ['okta:b', 'okta:a'], groupsUnknown: false, claims: {} });
});

test('a string groups claim is one group; no groups claim is no groups', () => {
  assert.deepEqual(mapPrincipal(issuer, { sub: 'a', groups: 'admins' }).groups, ['okta:admins']);
  assert.deepEqual(mapPrincipal(issuer, { sub: 'a' }).groups, []);
  const noGroups = { ...issuer, claimMapping: { subjectClaim: 'sub', prefix: 'okta:' } };
  assert.deepEqual(mapPrincipal(noGroups, { sub: 'a', groups: ['x'] }).groups, []);
});

test('custom subject claim and empty prefix', () => {
  const i = { ...issuer, claimMapping: { subjectClaim: 'client_id', groupsClaim: 'roles', prefix: '' } };
  const p = mapPrincipal(i, { sub: 'ignored', client_id: 'ci-bot', roles: ['r'] });
  assert.equal(p.subject, 'ci-bot');
  assert.deepEqual(p.groups, ['r']);
});

test('invalid subject or groups are claim errors (fail closed, never dropped silently)', () => {
  for (const payload of [{}, { sub: '' }, { sub: 42 }, { sub: 'a', groups: ['x', 1] }, { sub: 'a', groups: { x: 1 } }, { sub: 'a', groups: null }]) {
    assert.throws(() => mapPrincipal(issuer, payload), ClaimError, JSON.stringify(payload));
  }
});

test('referenced claims are normalized to string lists (maps as key=value), unevaluable as null, absent as []', () => {
  const p = mapPrincipal(issuer, { sub: 'a', tenant: 'acme', level: 3, admin: true, tags: ['x', 2], meta: { a: 1 }, nested: [[1]], nil: null }, [
    'tenant', 'level', 'admin', 'tags', 'meta', 'nested', 'nil', 'absent',
  ]);
  assert.deepEqual(p.claims, { tenant: ['acme'], level: ['3'], admin: ['true'], tags: ['x', '2'], meta: ['a=1'], nested: null, nil: null, absent: [] });
  assert.deepEqual(normalizeClaim(undefined), []);
});

test('Edge-Identity is base64url JSON with the documented members and no token', () => {
  const p = mapPrincipal(issuer, { sub: 'alice', groups: ['g'] });
  const obj = edgeIdentity(p, { jti: 'j1', exp: 100, sub: 'alice' }, { clientIp: '192.0.2.1', edgeLocation: 'FRA', rayId: 'r', policyRevision: 'rev', decision: 'allow', policy: 'ns/p' });
  assert.deepEqual(Object.keys(obj), ['v', 'issuer', 'issuerUrl', 'subject', 'groups', 'groupsUnknown', 'claims', 'tokenJti', 'tokenExp', 'tokenHash', 'clientIp', 'edgeLocation', 'rayId', 'policyRevision', 'decision', 'policy', 'receivedAt', 'verifyMs']);
  const enc = encodeEdgeIdentity(obj);
  assert.match(enc, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(JSON.parse(Buffer.from(enc, 'base64url').toString('utf8')), obj);
  const noJti = edgeIdentity(p, { exp: 1 }, { policyRevision: 'r', decision: 'undecided' });
  assert.equal(noJti.tokenJti, null);
  assert.equal(noJti.clientIp, null);
});

test('an identity over the size limit is refused (null)', () => {
  const groups = Array.from({ length: 400 }, (_, i) => `okta:group-with-a-long-name-${i}`);
  const obj = { v: 1, issuer: 'okta', subject: 'okta:a', groups };
  assert.equal(encodeEdgeIdentity(obj), null);
  assert.ok(JSON.stringify(obj).length > MAX_IDENTITY_BYTES * 0.75);
});
