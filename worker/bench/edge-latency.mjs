// Edge request latency, stage by stage (issue 15): N creates sent through the bundled Worker in
// workerd at a fixed rate, verified and signed there, decided by the gateway, reconciled by the
// controller against the LINSTOR simulator, on the fake Kubernetes API server. Each request's
// closing event (RequestCompleted, request_trace.rs) states its stage timings; this program
// reads them back and prints p50/p99 per stage, and the client's own view (sent -> 201) beside.
//
//   EDGEBIND_BIN=target/release/edgebind node worker/bench/edge-latency.mjs \
//     [--creates 1000] [--rate 20] [--linstor-rps 100] [--linstor-burst 50] [--latency-ms 2]
//
// A benchmark, not a test: it prints figures and fails only when requests are lost or refused.

import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startIdp, startWorker, generateSigningKey, freePort } from '../test/harness.mjs';
import { compileBundle } from '../test/compile.mjs';
import { startEdgebind, stopProc, sleep, waitFor, http, json } from '../test/procs.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const CREATES = arg('creates', 1000);
const RATE = arg('rate', 20);
const LINSTOR_RPS = arg('linstor-rps', 100);
const LINSTOR_BURST = arg('linstor-burst', 50);
const LATENCY_MS = arg('latency-ms', 2);
const NS = 'bench';
const KEYS_NS = 'edgebind-system';
const GROUP = 'edgebind.dev/v1alpha1';

if (!process.env.EDGEBIND_BIN || !existsSync(process.env.EDGEBIND_BIN)) {
  console.error('set EDGEBIND_BIN to a built edgebind binary (cargo build --release)');
  process.exit(2);
}

const pct = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (ms) => (Number.isNaN(ms) ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const toMs = (v, unit) => Number(v) * (unit === 's' ? 1000 : 1);

const dir = await mkdtemp(path.join(tmpdir(), 'edgebind-latency-'));
const kubeconfig = path.join(dir, 'kubeconfig');
const procs = [];
let worker;
let idp;
try {
  idp = await startIdp({ clients: [{ id: 'bench', secret: 'bench-secret-0123456789abcdef', groups: ['storage'] }] });
  const kubePort = await freePort();
  const kubeUrl = `http://127.0.0.1:${kubePort}`;
  procs.push(startEdgebind('kube', ['simulate', 'kubernetes', '--listen', `127.0.0.1:${kubePort}`, '--kubeconfig', kubeconfig]));
  const linstorPort = await freePort();
  const linstorUrl = `http://127.0.0.1:${linstorPort}`;
  procs.push(startEdgebind('linstor', ['simulate', 'linstor', '--listen', `127.0.0.1:${linstorPort}`, '--latency-ms', String(LATENCY_MS)]));
  await waitFor('the fake API server', async () => (await http(`${kubeUrl}/api/v1/namespaces`)).ok && existsSync(kubeconfig), { procs });
  await waitFor('the LINSTOR simulator', async () => (await http(`${linstorUrl}/v1/controller/version`)).ok, { procs });

  const create = async (p, obj) => {
    const r = await json(`${kubeUrl}${p}`, { method: 'POST', body: obj });
    if (r.status !== 201 && r.status !== 200) throw new Error(`POST ${p}: ${r.status} ${r.text}`);
    return r.body;
  };
  for (const ns of [NS, KEYS_NS]) await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await create(`/apis/edgebind.dev/v1alpha1/linstorbackends`, {
    apiVersion: GROUP, kind: 'LinstorBackend', metadata: { name: 'main' },
    spec: { urls: [linstorUrl], budget: { requestsPerSecond: LINSTOR_RPS, burst: LINSTOR_BURST } },
  });
  await create(`/apis/edgebind.dev/v1alpha1/identityissuers`, {
    apiVersion: GROUP, kind: 'IdentityIssuer', metadata: { name: 'bench-idp' },
    spec: { issuer: idp.issuer, audiences: [idp.audience], algorithms: ['ES256'], claimMapping: { groupsClaim: 'groups' } },
  });
  await create(`/apis/edgebind.dev/v1alpha1/namespaces/${NS}/volumeaccesspolicies`, {
    apiVersion: GROUP, kind: 'VolumeAccessPolicy', metadata: { name: 'bench', namespace: NS },
    spec: { effect: 'Allow', subjects: [{ issuer: 'bench-idp', groups: ['bench-idp:storage'] }], actions: ['create'], volumes: { names: ['v-*'] } },
  });
  const key = generateSigningKey('edge-bench-1');
  await create(`/api/v1/namespaces/${KEYS_NS}/secrets`, {
    apiVersion: 'v1', kind: 'Secret', metadata: { name: 'edgebind-gateway-keys' }, type: 'Opaque',
    data: {
      [`${key.keyId}.pub`]: Buffer.from(key.publicJwk.x).toString('base64'),
      [`${key.keyId}.namespace`]: Buffer.from(NS).toString('base64'),
    },
  });
  const issuers = (await json(`${kubeUrl}/apis/edgebind.dev/v1alpha1/identityissuers`)).body.items;
  const policies = (await json(`${kubeUrl}/apis/edgebind.dev/v1alpha1/volumeaccesspolicies`)).body.items;
  const compiled = compileBundle(issuers, policies);

  const env = { KUBECONFIG: kubeconfig };
  const ctrlAdmin = `127.0.0.1:${await freePort()}`;
  procs.push(startEdgebind('controller', ['controller', '--admin-addr', ctrlAdmin], env));
  const gwPort = await freePort();
  const gwAdmin = await freePort();
  procs.push(startEdgebind('gateway', ['gateway', '--listen', `127.0.0.1:${gwPort}`, '--admin-addr', `127.0.0.1:${gwAdmin}`, '--backend-ref', 'main'],
    { ...env, POD_NAMESPACE: KEYS_NS, EDGEBIND_GATEWAY_KEYS_SECRET: 'edgebind-gateway-keys' }));
  await waitFor('the gateway', async () => (await http(`http://127.0.0.1:${gwAdmin}/readyz`)).ok, { procs });
  await waitFor('the backend', async () => {
    const b = (await json(`${kubeUrl}/apis/edgebind.dev/v1alpha1/linstorbackends/main`)).body;
    return (b?.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  }, { procs, timeoutMs: 60000 });
  worker = await startWorker({
    bindings: { GATEWAY_URL: `http://127.0.0.1:${gwPort}`, ISSUERS: compiled.issuers, POLICY_BUNDLE: compiled.bundle, SIGNING_KEY: key.binding, EDGE_LOCATION: 'BENCH' },
  });

  // One token for all (the Worker caches the JWK Set; each request is still verified).
  const token = await idp.token('bench');
  const sent = new Map(); // request id -> { at, status, acceptedMs }
  const refused = [];
  const started = Date.now();
  const inflight = [];
  for (let i = 0; i < CREATES; i++) {
    const due = started + (i * 1000) / RATE;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    const t0 = performance.now();
    inflight.push(
      json(`${worker.url}/api/v1/namespaces/${NS}/volumes`, {
        // 64 MiB: the standalone LINSTOR simulator's three pools hold 1,000 of these twice over
        // (1 GiB volumes fill them after about 750, and the rest wait for space: NotEnoughNodes).
        method: 'POST', body: { name: `v-${i}`, sizeBytes: 64 << 20 }, headers: { authorization: `Bearer ${token}` }, timeoutMs: 60000,
      }).then((r) => {
        const id = r.headers.get('edge-request-id');
        if (r.status !== 201) refused.push(`${r.status} ${r.text.slice(0, 200)}`);
        else sent.set(id, { acceptedMs: performance.now() - t0 });
      }),
    );
  }
  await Promise.all(inflight);
  const sendSeconds = (Date.now() - started) / 1000;
  if (refused.length) throw new Error(`${refused.length} creates refused, e.g. ${refused[0]}`);

  // The closing events, one per request.
  const stages = { 'edge verify': [], 'gateway decision': [], 'first reconcile': [], 'LINSTOR placement': [], Ready: [], 'total from the edge': [] };
  const re = /^request (\S+) (completed|failed): (.*)$/;
  let failed = 0;
  await waitFor(`${CREATES} completion events`, async () => {
    const items = (await json(`${kubeUrl}/apis/events.k8s.io/v1/namespaces/${NS}/events`, { timeoutMs: 60000 })).body?.items ?? [];
    const closing = items.filter((e) => e.reason === 'RequestCompleted' || e.reason === 'RequestFailed');
    return closing.length >= CREATES ? closing : null;
  }, { procs, timeoutMs: 600000, intervalMs: 2000 }).then((closing) => {
    for (const e of closing) {
      const m = re.exec(e.note);
      if (!m || !sent.has(m[1])) continue;
      if (m[2] === 'failed') failed++;
      for (const part of m[3].split(', ')) {
        const p = /^(.*) ([0-9.]+) (m?s)$/.exec(part);
        if (p && stages[p[1]]) stages[p[1]].push(toMs(p[2], p[3]));
      }
    }
  });
  const accepted = [...sent.values()].map((s) => s.acceptedMs);
  console.log(`edge latency: ${CREATES} creates at ${RATE}/s (sent in ${sendSeconds.toFixed(1)} s), LINSTOR budget ${LINSTOR_RPS}/s burst ${LINSTOR_BURST}, simulator latency ${LATENCY_MS} ms; ${failed} failed`);
  console.log(`  ${'stage'.padEnd(22)} ${'p50'.padStart(10)} ${'p99'.padStart(10)} ${'max'.padStart(10)}   n`);
  const row = (name, xs) => console.log(`  ${name.padEnd(22)} ${fmt(pct(xs, 50)).padStart(10)} ${fmt(pct(xs, 99)).padStart(10)} ${fmt(Math.max(...xs)).padStart(10)}   ${xs.length}`);
  row('client: sent -> 201', accepted);
  for (const [name, xs] of Object.entries(stages)) row(name, xs);
  const metrics = await (await http(`http://${ctrlAdmin}/metrics`)).text();
  const hist = metrics.split('\n').filter((l) => l.startsWith('edgebind_edge_request_duration_seconds_count'));
  console.log(`  histogram: ${hist.join('; ')}`);
} finally {
  await worker?.stop();
  for (const p of procs.reverse()) await stopProc(p);
  await idp?.stop();
  await rm(dir, { recursive: true, force: true });
}
