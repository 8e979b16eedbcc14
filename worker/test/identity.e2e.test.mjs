// The five identity examples (examples/identity/*.yaml) end to end: the bundled Worker in workerd,
// the Rust gateway (which verifies each token again itself) and the fake Kubernetes API server,
// all on 127.0.0.1. A local issuer per provider serves OIDC discovery and its JWK Set, and jose
// mints tokens in exactly that provider's shape and algorithm (docs/reference/identity-token-shapes.md;
// each example cites the provider's documentation). The examples are loaded as written; only
// each issuer URL is pointed at its local stand-in. For every provider the right caller creates
// a volume (the EdgeVolume appears in the API server) and a wrong account, tag, ref, namespace,
// tenant, scope or audience is refused with its reason.
//
// Needs the edgebind binary (EDGEBIND_BIN) and the project's Python (.venv, for PyYAML), as
// scripts/test.sh provides; without the Python the suite fails (it is not skipped).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import * as jose from 'jose';
import { startWorker, generateSigningKey, freePort, WORKER_DIR } from './harness.mjs';
import { compileBundle } from './compile.mjs';
import { skipReason as skip, startEdgebind, stopProc, waitFor, http as get, json } from './procs.mjs';

const GROUP = 'edgebind.dev';
const VERSION = 'v1alpha1';
const NS = 'team-a';
const KEYS_NS = 'edgebind-system';
const GiB = 1024 ** 3;
const REPO = path.resolve(WORKER_DIR, '..');
const PYTHON = path.join(REPO, '.venv', 'bin', 'python');

/** The YAML documents of one example, through PyYAML (the test has no YAML parser of its own). */
function loadExample(file) {
  const text = readFileSync(path.join(REPO, 'examples', 'identity', file), 'utf8');
  const out = execFileSync(PYTHON, ['-c', 'import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))'], { input: text });
  return JSON.parse(out.toString());
}

/**
 * Local stand-ins for the five issuers on one port, each under its own path with OIDC discovery
 * and a JWK Set holding one key per algorithm it signs with (alg declared on the key, as
 * providers publish them). tokens: mint(name, alg, payload) signs with that issuer's key.
 */
async function startIssuers(defs) {
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const issuers = new Map();
  for (const [name, { path: p, algs }] of Object.entries(defs)) {
    const keys = new Map();
    for (const alg of algs) {
      const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
      keys.set(alg, { privateKey, jwk: { ...(await jose.exportJWK(publicKey)), kid: `${name}-${alg}`, alg, use: 'sig' } });
    }
    issuers.set(name, { url: `${base}${p}`, path: p, keys });
  }
  server.on('request', (req, res) => {
    for (const i of issuers.values()) {
      const send = (body) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.url === `${i.path}/.well-known/openid-configuration`) return send({ issuer: i.url, jwks_uri: `${i.url}/.well-known/jwks.json` });
      if (req.url === `${i.path}/.well-known/jwks.json`) return send({ keys: [...i.keys.values()].map((k) => k.jwk) });
    }
    res.writeHead(404).end();
  });
  return {
    url: (name) => issuers.get(name).url,
    async mint(name, alg, payload, { iss } = {}) {
      const i = issuers.get(name);
      const k = i.keys.get(alg);
      const now = Math.floor(Date.now() / 1000);
      return new jose.SignJWT({ iat: now - 30, exp: now + 270, ...payload })
        .setProtectedHeader({ alg, kid: k.jwk.kid, typ: 'JWT' })
        .setIssuer(iss ?? i.url)
        .sign(k.privateKey);
    },
    stop: () => new Promise((r) => server.close(r)),
  };
}

const AUD = 'https://storage.example.com';
const AWS_NS = 'https://sts.amazonaws.com/';
const TID = '8d2e6f10-7c1a-4b8e-9d2f-0a1b2c3d4e5f';
const ENTRA_AUD = '6b1f0c2e-4d3a-4f7b-9a11-2c3d4e5f6a7b';
const READERS = '0e6c3a1d-5b7f-4c2e-8a9d-1f2e3d4c5b6a';

const aws = (account, role, team, aud = AUD) => ({
  aud, sub: `arn:aws:iam::${account}:role/${role}`, jti: crypto.randomUUID(),
  [AWS_NS]: { aws_account: account, source_region: 'eu-central-1', org_id: 'o-exmpl12345', ou_path: 'o-exmpl12345/r-ab12/ou-ab12-aaaa1111/',
    principal_tags: { team, env: 'prod' }, request_tags: { team: 'storage' } },
});
const gha = (ref, { ownerId = '5001', aud = AUD } = {}) => ({
  aud, sub: 'repo:acme/storage-ops:environment:prod', environment: 'prod', repository: 'acme/storage-ops', repository_id: '90210',
  repository_owner: 'acme', repository_owner_id: ownerId, repository_visibility: 'private', ref, ref_type: 'branch', sha: 'e3b0c442',
  workflow_ref: `acme/storage-ops/.github/workflows/snap.yml@${ref}`, job_workflow_ref: 'acme/shared/.github/workflows/deploy.yml@refs/tags/v3',
  runner_environment: 'github-hosted', event_name: 'push', actor: 'octo', actor_id: '77', run_id: '1', run_number: '1', run_attempt: '1',
  jti: crypto.randomUUID(),
});
const k8s = (ns, sa, aud = AUD) => ({
  aud: [aud], sub: `system:serviceaccount:${ns}:${sa}`, jti: crypto.randomUUID(),
  'kubernetes.io': { namespace: ns, serviceaccount: { name: sa, uid: '3f0e' }, pod: { name: 'snapper-7c9d-x2', uid: 'b81a' }, node: { name: 'worker-3', uid: '0c55' } },
});
const entra = ({ tid = TID, roles = [], groups, aud = ENTRA_AUD } = {}) => ({
  aud, ver: '2.0', tid, oid: '1a2b3c4d-0000-4000-8000-00000000aaaa', sub: 'pQ9xpairwise', azp: 'c0ffee00-0000-4000-8000-000000000001', azpacr: '1',
  scp: 'volumes.read volumes.write', roles, preferred_username: 'kim@contoso.example', uti: 'u',
  ...(groups ? { groups } : { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.microsoft.com/v1.0/users/1a2b/getMemberObjects' } } }),
});
const okta = (groups, scp, aud = 'api://edgebind') => ({ ver: 1, jti: `AT.${crypto.randomUUID()}`, aud, cid: '0oa9client', sub: '0oa9client', scp, groups });

describe('identity examples end to end (local issuers -> Worker in workerd -> gateway -> API server)', { skip }, () => {
  let dir;
  let idps;
  let kube;
  let gateway;
  let worker;
  let kubeUrl;
  const procs = () => [kube, gateway].filter(Boolean);
  const crPath = (plural, ns, name) => `/apis/${GROUP}/${VERSION}${ns ? `/namespaces/${ns}` : ''}/${plural}${name ? `/${name}` : ''}`;
  const kubeCreate = async (apiPath, obj) => {
    const r = await json(`${kubeUrl}${apiPath}`, { method: 'POST', body: obj });
    assert.ok(r.status === 201 || r.status === 200, `POST ${apiPath}: ${r.status} ${r.text}`);
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edgebind-identity-'));
    const kubeconfig = path.join(dir, 'kubeconfig');
    idps = await startIssuers({
      'aws-prod': { path: '/aws/0f3c9a2e', algs: ['ES384', 'RS256'] },
      'github-actions': { path: '/gha', algs: ['RS256'] },
      'cluster-b': { path: '/cluster-b', algs: ['ES256'] },
      'entra-contoso': { path: `/entra/${TID}/v2.0`, algs: ['RS256'] },
      'okta-acme': { path: '/okta/oauth2/aus1edgeabc', algs: ['RS256'] },
      // Not one of the five: an issuer that signs with Ed25519, to show EdDSA is accepted.
      'ed-idp': { path: '/ed', algs: ['EdDSA'] },
    });
    const kubePort = await freePort();
    kubeUrl = `http://127.0.0.1:${kubePort}`;
    kube = startEdgebind('kube', ['simulate', 'kubernetes', '--listen', `127.0.0.1:${kubePort}`, '--kubeconfig', kubeconfig]);
    await waitFor('the fake Kubernetes API server', async () => (await get(`${kubeUrl}/api/v1/namespaces`)).ok && existsSync(kubeconfig), { procs: procs() });
    for (const ns of [NS, KEYS_NS]) await kubeCreate('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });

    // The examples as written, each issuer URL pointed at its local stand-in.
    for (const file of ['aws-iam.yaml', 'github-actions.yaml', 'kubernetes.yaml', 'entra-id.yaml', 'okta.yaml']) {
      for (const doc of loadExample(file)) {
        if (doc.kind === 'IdentityIssuer') {
          doc.spec.issuer = idps.url(doc.metadata.name);
          await kubeCreate(crPath('identityissuers'), doc);
        } else {
          assert.equal(doc.kind, 'VolumeAccessPolicy', file);
          await kubeCreate(crPath('volumeaccesspolicies', doc.metadata.namespace), doc);
        }
      }
    }
    await kubeCreate(crPath('identityissuers'), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'IdentityIssuer', metadata: { name: 'ed-idp' },
      spec: { issuer: idps.url('ed-idp'), audiences: [AUD], algorithms: ['EdDSA'] },
    });
    await kubeCreate(crPath('volumeaccesspolicies', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeAccessPolicy', metadata: { name: 'ed-idp-all', namespace: NS },
      spec: { effect: 'Allow', subjects: [{ issuer: 'ed-idp' }], actions: ['create'], volumes: { names: ['ed-*'] } },
    });
    const key = generateSigningKey('edge-identity-1');
    await kubeCreate(`/api/v1/namespaces/${KEYS_NS}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'edgebind-gateway-keys' }, type: 'Opaque',
      data: { [`${key.keyId}.pub`]: Buffer.from(key.publicJwk.x).toString('base64'), [`${key.keyId}.namespace`]: Buffer.from(NS).toString('base64') },
    });
    const issuers = (await json(`${kubeUrl}${crPath('identityissuers')}`)).body.items;
    const policies = (await json(`${kubeUrl}${crPath('volumeaccesspolicies')}`)).body.items;
    assert.equal(issuers.length, 6);
    const compiled = compileBundle(issuers, policies);

    const gwPort = await freePort();
    const gwAdmin = await freePort();
    gateway = startEdgebind(
      'gateway',
      ['gateway', '--listen', `127.0.0.1:${gwPort}`, '--admin-addr', `127.0.0.1:${gwAdmin}`, '--backend-ref', 'main', '--reload-seconds', '1'],
      { KUBECONFIG: kubeconfig, POD_NAMESPACE: KEYS_NS, EDGEBIND_GATEWAY_KEYS_SECRET: 'edgebind-gateway-keys' },
    );
    await waitFor('the gateway to load keys and policies', async () => (await get(`http://127.0.0.1:${gwAdmin}/readyz`)).ok, { procs: procs() });
    worker = await startWorker({
      bindings: {
        GATEWAY_URL: `http://127.0.0.1:${gwPort}`,
        ISSUERS: compiled.issuers,
        POLICY_BUNDLE: compiled.bundle,
        SIGNING_KEY: key.binding,
        EDGE_LOCATION: 'E2E',
        JWKS_COOLDOWN_SECONDS: '0',
      },
    });
  });

  after(async () => {
    await worker?.stop();
    await Promise.all([gateway, kube].map(stopProc));
    await idps?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  /** POSTs a create through the Worker; returns {status, code, name}. */
  const create = async (token, prefix) => {
    const name = `${prefix}-${++n}`;
    const r = await json(`${worker.url}/api/v1/namespaces/${NS}/volumes`, {
      method: 'POST', body: { name, sizeBytes: GiB }, headers: { authorization: `Bearer ${token}` }, timeoutMs: 30000,
    });
    return { status: r.status, code: r.body?.error?.code ?? null, name, text: r.text };
  };
  const allowed = async (token, prefix, what) => {
    const r = await create(token, prefix);
    assert.equal(r.status, 201, `${what}: ${r.text}\n${procs().map((p) => p.tail()).join('\n')}`);
    const v = await json(`${kubeUrl}${crPath('edgevolumes', NS, r.name)}`);
    assert.equal(v.status, 200, `${what}: the EdgeVolume ${r.name} exists`);
    assert.equal(v.body.spec.size, String(GiB));
  };
  const refused = async (token, prefix, status, code, what) => {
    const r = await create(token, prefix);
    assert.deepEqual([r.status, r.code], [status, code], `${what}: ${r.text}`);
    assert.equal((await json(`${kubeUrl}${crPath('edgevolumes', NS, r.name)}`)).status, 404, `${what}: nothing created`);
  };

  it('AWS IAM outbound federation: ES384 and RS256 role tokens; wrong account, tag, role path, audience refused', async () => {
    for (const alg of ['ES384', 'RS256']) {
      await allowed(await idps.mint('aws-prod', alg, aws('210987654321', 'app-writer', 'storage')), 'app', `AWS ${alg}`);
      await refused(await idps.mint('aws-prod', alg, aws('999999999999', 'app-writer', 'storage')), 'app', 403, 'policy_no_match', 'another account');
      await refused(await idps.mint('aws-prod', alg, aws('210987654321', 'app-writer', 'billing')), 'app', 403, 'policy_no_match', 'another team tag');
      await refused(await idps.mint('aws-prod', alg, aws('210987654321', 'team/app-writer', 'storage')), 'app', 403, 'policy_no_match', 'role under a path');
      await refused(await idps.mint('aws-prod', alg, aws('210987654321', 'app-writer', 'storage', 'https://other.example')), 'app', 401, 'audience_mismatch', 'another audience');
    }
  });

  it('GitHub Actions: main and release/* allowed; other refs, owner id and the default audience refused', async () => {
    await allowed(await idps.mint('github-actions', 'RS256', gha('refs/heads/main')), 'ci', 'main');
    await allowed(await idps.mint('github-actions', 'RS256', gha('refs/heads/release/1.2')), 'ci', 'release/1.2');
    await refused(await idps.mint('github-actions', 'RS256', gha('refs/heads/release/1/evil')), 'ci', 403, 'policy_no_match', 'two levels below release/');
    await refused(await idps.mint('github-actions', 'RS256', gha('refs/heads/feature/x')), 'ci', 403, 'policy_no_match', 'feature branch');
    await refused(await idps.mint('github-actions', 'RS256', gha('refs/heads/main', { ownerId: '6666' })), 'ci', 403, 'policy_no_match', 'another owner id');
    await refused(await idps.mint('github-actions', 'RS256', gha('refs/heads/main', { aud: 'https://github.com/acme' })), 'ci', 401, 'audience_mismatch', 'default audience');
  });

  it('Kubernetes service account of another cluster: nested kubernetes.io claims, audience-bound', async () => {
    await allowed(await idps.mint('cluster-b', 'ES256', k8s('backup', 'snapper')), 'backup', 'snapper');
    await refused(await idps.mint('cluster-b', 'ES256', k8s('backup', 'intruder')), 'backup', 403, 'policy_no_match', 'another service account');
    await refused(await idps.mint('cluster-b', 'ES256', k8s('other', 'snapper')), 'backup', 403, 'policy_no_match', 'another namespace');
    await refused(await idps.mint('cluster-b', 'ES256', k8s('backup', 'snapper', 'https://kubernetes.default.svc.cluster.local')), 'backup', 401, 'audience_mismatch', 'the API server audience');
  });

  it('Entra ID: app role allowed, also under groups overage; group without role only reads; wrong tenant or audience refused', async () => {
    await allowed(await idps.mint('entra-contoso', 'RS256', entra({ roles: ['Storage.Operator'], groups: [] })), 'app', 'operator role');
    await allowed(await idps.mint('entra-contoso', 'RS256', entra({ roles: ['Storage.Operator'] })), 'app', 'operator role, groups overage');
    await refused(await idps.mint('entra-contoso', 'RS256', entra({ groups: [READERS] })), 'app', 403, 'policy_no_match', 'readers group cannot create');
    await refused(await idps.mint('entra-contoso', 'RS256', entra({ roles: ['Storage.Operator'], groups: [], tid: '11111111-2222-4333-8444-555555555555' })), 'app', 403, 'policy_no_match', 'another tid');
    await refused(await idps.mint('entra-contoso', 'RS256', entra({ roles: ['Storage.Operator'], groups: [], aud: '00000003-0000-0000-c000-000000000000' })), 'app', 401, 'audience_mismatch', 'a Graph token');
    // The readers group may read (404: allowed, no such volume); under overage its groups are unknown.
    const read = async (token) => (await json(`${worker.url}/api/v1/namespaces/${NS}/volumes/app-none`, { headers: { authorization: `Bearer ${token}` } })).status;
    assert.equal(await read(await idps.mint('entra-contoso', 'RS256', entra({ groups: [READERS] }))), 404);
    assert.equal(await read(await idps.mint('entra-contoso', 'RS256', entra({}))), 403);
  });

  it('Okta custom authorization server: group and scope allowed; other group, scope or audience refused', async () => {
    await allowed(await idps.mint('okta-acme', 'RS256', okta(['storage-automation', 'oncall'], ['volumes.read', 'volumes.write'])), 'app', 'member with scope');
    await refused(await idps.mint('okta-acme', 'RS256', okta(['oncall'], ['volumes.write'])), 'app', 403, 'policy_no_match', 'another group');
    await refused(await idps.mint('okta-acme', 'RS256', okta(['storage-automation'], ['volumes.read'])), 'app', 403, 'policy_no_match', 'no write scope');
    await refused(await idps.mint('okta-acme', 'RS256', okta(['storage-automation'], ['volumes.write'], 'api://default')), 'app', 401, 'audience_mismatch', 'another audience');
  });

  it('algorithms: none and HMAC keyed with the public key are refused; an undeclared algorithm finds no key; EdDSA verifies', async () => {
    const good = await idps.mint('aws-prod', 'ES384', aws('210987654321', 'app-writer', 'storage'));
    const [, body] = good.split('.');
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    await refused(`${b64({ alg: 'none', kid: 'aws-prod-ES384' })}.${body}.`, 'app', 401, 'alg_not_allowed', 'alg none');
    const jwks = (await json(`${idps.url('aws-prod')}/.well-known/jwks.json`)).body;
    const pub = jwks.keys.find((k) => k.alg === 'ES384');
    for (const secret of [JSON.stringify(pub), pub.x]) {
      const forged = await new jose.SignJWT(JSON.parse(Buffer.from(body, 'base64url').toString()))
        .setProtectedHeader({ alg: 'HS256', kid: pub.kid })
        .sign(new TextEncoder().encode(secret));
      await refused(forged, 'app', 401, 'alg_not_allowed', 'HS256 keyed with the public key');
    }
    // cluster-b lists RS256 but its JWK Set holds only an ES256 key.
    const { privateKey } = await jose.generateKeyPair('RS256');
    const rs = await new jose.SignJWT({ ...k8s('backup', 'snapper'), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 })
      .setProtectedHeader({ alg: 'RS256', kid: 'cluster-b-ES256' })
      .setIssuer(idps.url('cluster-b'))
      .sign(privateKey);
    await refused(rs, 'backup', 401, 'key_unknown', 'RS256 against an ES256 key');
    // EdDSA, where the issuer lists it and its JWK Set holds an Ed25519 key: accepted on both sides.
    await allowed(await idps.mint('ed-idp', 'EdDSA', { aud: AUD, sub: 'robot' }), 'ed', 'EdDSA');
  });
});
