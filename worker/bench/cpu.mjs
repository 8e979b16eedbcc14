// CPU cost per request of the edge Worker: token verification (JWKS cached) + policy + Ed25519
// signing. Not a test. Usage: node bench/cpu.mjs [requests] [alg]   (defaults: 400 RS256)
//
// Method. Inside a Worker, timers do not advance during computation (a Spectre mitigation), so
// the Worker cannot time itself. Instead:
//  1. workerd: the workerd process's CPU time (utime+stime from /proc/<pid>/stat, 10 ms ticks)
//     over N sequential full requests, minus the same over N requests refused at the first step
//     (token_missing: same HTTP handling, no crypto). The difference divided by N is the mean CPU
//     cost of verify + policy + sign in workerd. Wall-clock latency p50/p99 is printed for both.
//  2. Node (same V8, OpenSSL instead of BoringSSL): process.cpuUsage() around each in-process run of
//     the same modules (jose verify with a cached key, decide(), signEdgebind()), for p50/p99.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import * as jose from 'jose';
import { startIdp, startWorker, startGatewayStub, generateSigningKey, issuerFor, basicBundle } from '../test/harness.mjs';
import { validateBundle, decide } from '../src/policy.js';
import { mapPrincipal, edgeIdentity, encodeEdgeIdentity } from '../src/principal.js';
import { importSigningKey, signEdgebind, contentDigest } from '../src/signature.js';

const N = Number(process.argv[2] ?? 400);
const ALG = process.argv[3] ?? 'RS256';
const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

const cpuMs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (x) => x.toFixed(3);

const policies = [
  { namespace: 'team-a', name: 'deny-prod', effect: 'Deny', subjects: [{ issuer: 'test-idp' }], actions: ['delete'], volumes: { names: ['prod-*'] } },
  { namespace: 'team-a', name: 'readers', effect: 'Allow', subjects: [{ issuer: 'test-idp', groups: ['test-idp:readers'] }], actions: ['read', 'create'], volumes: { names: ['pvc-*'] }, conditions: { maxSizeBytes: 1 << 30 } },
];
const idp = await startIdp({ alg: ALG, clients: [{ id: 'bench', secret: 'bench-secret-0123456789abcdef', groups: ['readers'] }] });
const key = generateSigningKey('bench-key');
const gw = await startGatewayStub({ trustedKeys: { 'bench-key': key.publicKey }, respond: (_r, res) => res.end('{}') });
const bindings = { GATEWAY_URL: gw.url, ISSUERS: JSON.stringify([issuerFor(idp)]), POLICY_BUNDLE: basicBundle(policies), SIGNING_KEY: key.binding };
const worker = await startWorker({ bindings });
const token = await idp.token('bench');
const url = `${worker.url}/api/v1/namespaces/team-a/volumes/pvc-1`;

async function run(headers) {
  const lat = [];
  for (let i = 0; i < 30; i++) await (await fetch(url, { headers })).arrayBuffer(); // warm-up
  const c0 = cpuMs(worker.pid);
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    const res = await fetch(url, { headers });
    await res.arrayBuffer();
    lat.push(performance.now() - t);
  }
  return { cpu: (cpuMs(worker.pid) - c0) / N, lat };
}

const full = await run({ authorization: `Bearer ${token}` });
const base = await run({});
await worker.stop();
await gw.stop();

// In-process Node measurement of the same work.
const issuers = new Map([[idp.issuer, issuerFor(idp)]]);
const jwks = await (await fetch(`${idp.issuer}/jwks`)).json();
const localSet = jose.createLocalJWKSet(jwks);
const bundle = validateBundle(JSON.parse(bindings.POLICY_BUNDLE));
const { key: sk, keyId } = await importSigningKey(key.binding);
const cpuSamples = [];
for (let i = 0; i < N + 50; i++) {
  const u0 = process.cpuUsage();
  const { payload } = await jose.jwtVerify(token, localSet, { issuer: idp.issuer, audience: idp.audience, algorithms: [ALG], clockTolerance: 30 });
  const iss = issuers.get(payload.iss);
  const principal = mapPrincipal({ ...iss, claimMapping: { ...iss.claimMapping } }, payload);
  const d = decide(bundle, principal, { action: 'read', namespace: 'team-a', name: 'pvc-1', labels: null, sizeBytes: null, clientIp: null });
  const identity = encodeEdgeIdentity(edgeIdentity(principal, payload, { policyRevision: bundle.revision, decision: d.decision, policy: d.policy }));
  const digest = await contentDigest(new Uint8Array(0));
  await signEdgebind(sk, keyId, { method: 'GET', authority: 'gw', path: '/x', query: '', contentType: 'application/json', contentDigest: digest, edgeIdentity: identity, requestId: crypto.randomUUID() });
  const u = process.cpuUsage(u0);
  if (i >= 50) cpuSamples.push((u.user + u.system) / 1000);
}
await idp.stop();

console.log(`edgebind Worker CPU benchmark: ${N} sequential requests, ${ALG} access tokens, ${os.cpus().length} cores, workerd from npm`);
console.log(`workerd  full request  (verify+policy+sign+forward): wall p50 ${fmt(pct(full.lat, 50))} ms  p99 ${fmt(pct(full.lat, 99))} ms  process CPU ${fmt(full.cpu)} ms/request`);
console.log(`workerd  refused early (token_missing baseline):      wall p50 ${fmt(pct(base.lat, 50))} ms  p99 ${fmt(pct(base.lat, 99))} ms  process CPU ${fmt(base.cpu)} ms/request`);
console.log(`workerd  verify+policy+sign (difference of means):    CPU ${fmt(full.cpu - base.cpu)} ms/request (includes the outbound fetch handling)`);
console.log(`node     verify+policy+sign in-process (same modules): CPU p50 ${fmt(pct(cpuSamples, 50))} ms  p99 ${fmt(pct(cpuSamples, 99))} ms`);
