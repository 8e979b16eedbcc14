import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  serializeSignatureParams, signatureBase, importSigningKey, signEd25519, signEdgebind,
  edgebindSignatureBase, edgebindSignatureParams, contentDigest, queryComponent, pathComponent, base64url, randomNonce,
} from '../src/signature.js';

// RFC 9421 Appendix B.1.4 test key (test-key-ed25519).
const RFC_PKCS8 = 'MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF';
const RFC_SPKI = 'MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=';
const rfcPublic = crypto.createPublicKey({ key: Buffer.from(RFC_SPKI, 'base64'), format: 'der', type: 'spki' });

test('RFC 9421 B.2.6: base and Ed25519 signature reproduce the RFC example', async () => {
  const params = serializeSignatureParams(['date', '@method', '@path', '@authority', 'content-type', 'content-length'], [
    ['created', 1618884473],
    ['keyid', 'test-key-ed25519'],
  ]);
  const base = signatureBase(
    [
      ['date', 'Tue, 20 Apr 2021 02:07:55 GMT'],
      ['@method', 'POST'],
      ['@path', '/foo'],
      ['@authority', 'example.com'],
      ['content-type', 'application/json'],
      ['content-length', '18'],
    ],
    params,
  );
  // Hand-copied from RFC 9421 B.2.6.
  const expected = [
    '"date": Tue, 20 Apr 2021 02:07:55 GMT',
    '"@method": POST',
    '"@path": /foo',
    '"@authority": example.com',
    '"content-type": application/json',
    '"content-length": 18',
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
  ].join('\n');
  assert.equal(base, expected);
  const { key } = await importSigningKey(JSON.stringify({ keyId: 'test-key-ed25519', pkcs8: RFC_PKCS8 }));
  const sig = await signEd25519(key, base);
  assert.equal(sig, 'wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==');
});

// The edgebind-v1 test vector of docs/edge-protocol.md §9.
const IDENTITY_JSON = '{"v":1,"issuer":"okta-prod","issuerUrl":"https://idp.example.com","subject":"okta-prod:alice","groups":["okta-prod:storage-admins"],"claims":{},"tokenJti":"jti-1","tokenExp":1764240300,"clientIp":"203.0.113.7","edgeLocation":"FRA","rayId":null,"policyRevision":"sha256:00","decision":"allow","policy":"team-a/storage-admins"}';

test('edgebind-v1 vector: base, headers and signature match the document and verify with node:crypto', async () => {
  const identity = Buffer.from(IDENTITY_JSON, 'utf8').toString('base64url');
  const msg = {
    method: 'get',
    authority: 'GW.example.com',
    path: '/api/v1/namespaces/team-a/volumes/pvc-42',
    query: '',
    contentType: 'application/json',
    contentDigest: await contentDigest(new Uint8Array(0)),
    edgeIdentity: identity,
    requestId: '0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59',
  };
  const params = edgebindSignatureParams({ created: 1764240000, nonce: 'AAECAwQFBgcICQoLDA0ODw', keyId: 'test-key-ed25519' });
  const expectedParams = '("@method" "@authority" "@path" "@query" "content-type" "content-digest" "edge-identity" "edge-request-id");created=1764240000;expires=1764240060;nonce="AAECAwQFBgcICQoLDA0ODw";alg="ed25519";keyid="test-key-ed25519";tag="edgebind-v1"';
  assert.equal(params, expectedParams);
  const expectedBase = [
    '"@method": GET',
    '"@authority": gw.example.com',
    '"@path": /api/v1/namespaces/team-a/volumes/pvc-42',
    '"@query": ?',
    '"content-type": application/json',
    '"content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:',
    `"edge-identity": ${identity}`,
    '"edge-request-id": 0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59',
    `"@signature-params": ${expectedParams}`,
  ].join('\n');
  assert.equal(edgebindSignatureBase(msg, params), expectedBase);

  const { key, keyId } = await importSigningKey(JSON.stringify({ keyId: 'test-key-ed25519', pkcs8: RFC_PKCS8 }));
  const headers = await signEdgebind(key, keyId, msg, { created: 1764240000, nonce: 'AAECAwQFBgcICQoLDA0ODw' });
  assert.equal(headers['signature-input'], `sig1=${expectedParams}`);
  assert.equal(headers.signature, 'sig1=:hvY11vnA4VyIdIC4fwoO6EDCLFW+6vcXV2hFFqBCXWNkGlosQjxf52NyNy+WdQH2RPXwThDcftZslvGLDpHzDA==:');
  const raw = Buffer.from(headers.signature.slice(6, -1), 'base64');
  assert.ok(crypto.verify(null, Buffer.from(expectedBase), rfcPublic, raw), 'verifies with the public key');
  assert.ok(!crypto.verify(null, Buffer.from(expectedBase.replace('pvc-42', 'pvc-43')), rfcPublic, raw), 'a changed path fails');
});

test('content digest follows RFC 9530 (sha-256, standard base64)', async () => {
  const body = new TextEncoder().encode('{"hello": "world"}');
  const expected = `sha-256=:${crypto.createHash('sha256').update('{"hello": "world"}').digest('base64')}:`;
  assert.equal(await contentDigest(body), expected);
  assert.equal(await contentDigest(new Uint8Array(0)), 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
});

test('@query and @path component values', () => {
  assert.equal(queryComponent(''), '?');
  assert.equal(queryComponent('?'), '?');
  assert.equal(queryComponent('?a=1&b=%20'), '?a=1&b=%20');
  assert.equal(pathComponent(''), '/');
  assert.equal(pathComponent('/x%2Fy'), '/x%2Fy');
});

test('nonce is 22 base64url characters and differs per call', () => {
  const a = randomNonce();
  const b = randomNonce();
  assert.match(a, /^[A-Za-z0-9_-]{22}$/);
  assert.notEqual(a, b);
  assert.equal(base64url(new Uint8Array([0xfb, 0xff])), '-_8');
});

test('SIGNING_KEY: JWK form works, bad forms are refused without echoing the key', async () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const { key, keyId } = await importSigningKey(JSON.stringify({ keyId: 'k-1', jwk }));
  assert.equal(keyId, 'k-1');
  const sig = await signEd25519(key, 'hello');
  assert.ok(crypto.verify(null, Buffer.from('hello'), publicKey, Buffer.from(sig, 'base64')));
  const bad = [
    'not json',
    JSON.stringify({ jwk }),
    JSON.stringify({ keyId: 'bad id with spaces', jwk }),
    JSON.stringify({ keyId: 'k', jwk, pkcs8: RFC_PKCS8 }),
    JSON.stringify({ keyId: 'k', jwk: { ...jwk, crv: 'X25519' } }),
    JSON.stringify({ keyId: 'k', pkcs8: 'AAAA' }),
  ];
  for (const b of bad) {
    await assert.rejects(importSigningKey(b), (e) => {
      assert.ok(!e.message.includes(jwk.d), 'message must not contain key material');
      return true;
    });
  }
});

test('the serializer refuses strings that would need escaping', () => {
  assert.throws(() => serializeSignatureParams(['@method'], [['keyid', 'a"b']]));
  assert.throws(() => signatureBase([['x', 'a\nb']], '()'));
});
