// The edge request end to end: a real OpenID provider, the bundled Worker in workerd, the Rust
// gateway, the controller, the fake Kubernetes API server and the LINSTOR simulator, all on
// 127.0.0.1. A token carrying the right group creates, resizes and snapshots a volume through
// the edge, and the result is read where it lands: the custom resources and LINSTOR itself.
//
// The controller exports each closed request as an OpenTelemetry trace to a local OTLP receiver
// that decodes it with the official Python messages (tests/python/otlp_receiver.py, run with the
// repository's .venv, or EDGEBIND_PYTHON).
//
// Needs the edgebind binary: EDGEBIND_BIN=/path/to/target/debug/edgebind (scripts/test.sh sets it).
// Without it the suite is skipped with a message.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startIdp, startWorker, generateSigningKey, freePort } from './harness.mjs';
import { compileBundle } from './compile.mjs';
import { skipReason as skip, startEdgebind, stopProc, sleep, waitFor, http, json } from './procs.mjs';

const GROUP = 'edgebind.dev';
const VERSION = 'v1alpha1';
const NS = 'team-a';
const KEYS_NS = 'edgebind-system';
const GiB = 1024 ** 3;
const EDGE = `/api/v1/namespaces/${NS}`;
const AUDIT_PREFIX = '{"schema":"edgebind.dev/audit/v1"';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PYTHON = process.env.EDGEBIND_PYTHON ?? path.join(REPO, '.venv/bin/python');
// The OTLP receiver's credential: it must reach the receiver and nowhere else.
const OTLP_SECRET = `otlp-s3cret-${randomBytes(8).toString('hex')}`;

/** tests/python/otlp_receiver.py as a process: its URL, and every POST it decoded. */
async function startOtlpReceiver() {
  const child = spawn(PYTHON, [path.join(REPO, 'tests/python/otlp_receiver.py')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const rec = { child, posts: [], stderr: '', url: null };
  let partial = '';
  child.stdout.on('data', (d) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop();
    for (const l of parts.filter((x) => x.trim())) {
      const o = JSON.parse(l);
      if (o.url) rec.url = o.url;
      else rec.posts.push(o);
    }
  });
  child.stderr.on('data', (d) => { rec.stderr += d.toString(); });
  rec.exited = new Promise((resolve) => child.once('exit', resolve));
  await waitFor('the OTLP receiver', async () => {
    if (child.exitCode !== null) throw new Error(`the OTLP receiver exited: ${rec.stderr}`);
    return rec.url;
  }, { timeoutMs: 20000 });
  rec.spans = () => rec.posts.flatMap((p) => (p.request.resource_spans ?? []).flatMap((rs) => (rs.scope_spans ?? []).flatMap((ss) => ss.spans ?? [])));
  rec.stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await rec.exited;
  };
  return rec;
}

// ---------------------------------------------------------------------------------------------

describe('edge request end to end (Worker -> gateway -> custom resources -> controller -> LINSTOR)', { skip }, () => {
  let dir;
  let idp;
  let kube;
  let linstor;
  let controller;
  let gateway;
  let worker;
  let kubeUrl;
  let linstorUrl;
  let compiled;
  let controllerAdmin;
  let otlp;
  const procs = () => [kube, linstor, controller, gateway].filter(Boolean);

  const kubeCreate = async (apiPath, obj) => {
    const r = await json(`${kubeUrl}${apiPath}`, { method: 'POST', body: obj });
    assert.ok(r.status === 201 || r.status === 200, `POST ${apiPath}: ${r.status} ${r.text}`);
    return r.body;
  };
  const crPath = (plural, ns, name) => `/apis/${GROUP}/${VERSION}${ns ? `/namespaces/${ns}` : ''}/${plural}${name ? `/${name}` : ''}`;
  const getVolume = async (name) => json(`${kubeUrl}${crPath('edgevolumes', NS, name)}`);
  const ready = (obj) => (obj?.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

  const call = (p, { token, method = 'GET', body, headers = {} } = {}) =>
    json(`${worker.url}${p}`, { method, body, headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) }, timeoutMs: 30000 });

  const gatewayAudit = () => gateway.stdout.filter((l) => l.startsWith(AUDIT_PREFIX)).map((l) => JSON.parse(l));
  // The gateway's own decisions on edge requests (not the Worker's reported refusals, §7.2).
  const gatewayDecisions = () => gatewayAudit().filter((e) => e.source === 'gateway' && e.action !== 'report-refusals');

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edgebind-e2e-'));
    const kubeconfig = path.join(dir, 'kubeconfig');

    idp = await startIdp({
      clients: [
        { id: 'alice', secret: 'alice-secret-0123456789abcdef', groups: ['storage'] },
        { id: 'mallory', secret: 'mallory-secret-0123456789abcd', groups: ['viewers'] },
      ],
    });

    const kubePort = await freePort();
    kubeUrl = `http://127.0.0.1:${kubePort}`;
    kube = startEdgebind('kube', ['simulate', 'kubernetes', '--listen', `127.0.0.1:${kubePort}`, '--kubeconfig', kubeconfig]);
    const linstorPort = await freePort();
    linstorUrl = `http://127.0.0.1:${linstorPort}`;
    linstor = startEdgebind('linstor', ['simulate', 'linstor', '--listen', `127.0.0.1:${linstorPort}`]);
    await waitFor('the fake Kubernetes API server', async () => (await http(`${kubeUrl}/api/v1/namespaces`)).ok && existsSync(kubeconfig), { procs: procs() });
    await waitFor('the LINSTOR simulator', async () => (await http(`${linstorUrl}/v1/controller/version`)).ok, { procs: procs() });

    // Cluster state: namespaces, the backend, the issuer, the policies and the gateway's key Secret.
    for (const ns of [NS, KEYS_NS]) await kubeCreate('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await kubeCreate(crPath('linstorbackends'), { apiVersion: `${GROUP}/${VERSION}`, kind: 'LinstorBackend', metadata: { name: 'main' }, spec: { urls: [linstorUrl] } });
    await kubeCreate(crPath('identityissuers'), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'IdentityIssuer', metadata: { name: 'test-idp' },
      spec: { issuer: idp.issuer, audiences: [idp.audience], algorithms: ['ES256'], clockSkewSeconds: 30, claimMapping: { groupsClaim: 'groups' } },
    });
    await kubeCreate(crPath('volumeaccesspolicies', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeAccessPolicy', metadata: { name: 'edge-storage', namespace: NS },
      spec: {
        effect: 'Allow',
        subjects: [{ issuer: 'test-idp', groups: ['test-idp:storage'] }],
        actions: ['read', 'create', 'resize', 'snapshot'],
        volumes: { names: ['edge-*'] },
        conditions: { maxSizeBytes: 8 * GiB },
      },
    });
    await kubeCreate(crPath('volumeaccesspolicies', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeAccessPolicy', metadata: { name: 'no-prod-from-edge', namespace: NS },
      spec: { effect: 'Deny', subjects: [{ issuer: 'test-idp' }], actions: ['create'], volumes: { names: ['edge-prod-*'] } },
    });
    const key = generateSigningKey('edge-e2e-1');
    // §8.1: entry `<keyId>.pub` holding the base64url of the raw public key (the JWK x), and
    // `<keyId>.namespace` the one namespace the key may sign for.
    await kubeCreate(`/api/v1/namespaces/${KEYS_NS}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'edgebind-gateway-keys' }, type: 'Opaque',
      data: {
        [`${key.keyId}.pub`]: Buffer.from(key.publicJwk.x).toString('base64'),
        [`${key.keyId}.namespace`]: Buffer.from(NS).toString('base64'),
      },
    });

    // The Worker's configuration, compiled from the resources as the API server stores them.
    const issuers = (await json(`${kubeUrl}${crPath('identityissuers')}`)).body.items;
    const policies = (await json(`${kubeUrl}${crPath('volumeaccesspolicies')}`)).body.items;
    assert.equal(policies.length, 2);
    compiled = compileBundle(issuers, policies);

    const env = { KUBECONFIG: kubeconfig };
    otlp = await startOtlpReceiver();
    controllerAdmin = `http://127.0.0.1:${await freePort()}`;
    controller = startEdgebind('controller', ['controller', '--admin-addr', controllerAdmin.slice('http://'.length), '--resync-seconds', '5'], {
      ...env,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${OTLP_SECRET}`,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    const gwPort = await freePort();
    const gwAdmin = await freePort();
    gateway = startEdgebind(
      'gateway',
      ['gateway', '--listen', `127.0.0.1:${gwPort}`, '--admin-addr', `127.0.0.1:${gwAdmin}`, '--backend-ref', 'main', '--reload-seconds', '1'],
      { ...env, POD_NAMESPACE: KEYS_NS, EDGEBIND_GATEWAY_KEYS_SECRET: 'edgebind-gateway-keys' },
    );
    await waitFor('the gateway to load keys and policies', async () => (await http(`http://127.0.0.1:${gwAdmin}/readyz`)).ok, { procs: procs() });
    await waitFor('the LinstorBackend to be Ready', async () => ready((await json(`${kubeUrl}${crPath('linstorbackends', null, 'main')}`)).body), { procs: procs() });

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
    // Every process goes, also when a step above failed half way.
    await worker?.stop();
    await Promise.all([gateway, controller, linstor, kube].map(stopProc));
    await otlp?.stop();
    await idp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const created = []; // request ids of the allowed requests, for the audit check
  let linstorName;

  it('creates a volume through the edge; the controller makes it Ready with replicas in LINSTOR', async () => {
    const token = await idp.token('alice');
    // As Cloudflare's edge sets it: the request id starts with the ray (docs/edge-protocol.md §7.1).
    const r = await call(`${EDGE}/volumes`, { token, method: 'POST', body: { name: 'edge-data-1', sizeBytes: 1 * GiB, labels: { app: 'e2e' } }, headers: { 'cf-ray': '8f1e2d3c4b5a6978-FRA' } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.name, 'edge-data-1');
    assert.equal(r.body.sizeBytes, GiB);
    created.push(r.headers.get('edge-request-id'));

    const vol = await waitFor('EdgeVolume edge-data-1 Ready', async () => {
      const v = (await getVolume('edge-data-1')).body;
      return ready(v) && v;
    }, { procs: procs() });
    assert.equal(vol.spec.backendRef, 'main');
    assert.deepEqual(vol.metadata.labels, { app: 'e2e' });
    linstorName = vol.status.linstorName;
    assert.ok(linstorName, 'status names the LINSTOR resource definition');

    const rds = (await json(`${linstorUrl}/v1/resource-definitions`)).body;
    assert.ok(rds.some((d) => d.name === linstorName), `resource definition ${linstorName} in LINSTOR`);
    const resources = (await json(`${linstorUrl}/v1/resource-definitions/${linstorName}/resources`)).body;
    const diskful = resources.filter((x) => !(x.flags ?? []).includes('DISKLESS'));
    assert.ok(diskful.length >= 2, `replicated: ${JSON.stringify(resources.map((x) => [x.node_name, x.flags]))}`);
    assert.equal(vol.status.diskfulReplicas, diskful.length);
    const vds = (await json(`${linstorUrl}/v1/resource-definitions/${linstorName}/volume-definitions`)).body;
    assert.equal(vds[0].size_kib, GiB / 1024);

    // Read back through the edge: the gateway reports what the controller wrote.
    const g = await call(`${EDGE}/volumes/edge-data-1`, { token });
    assert.equal(g.status, 200, g.text);
    assert.equal(g.body.phase, 'Ready');
    created.push(g.headers.get('edge-request-id'));
  });

  it('follows the request id from the Worker to the LINSTOR write and the completion event', async () => {
    const id = created[0];
    assert.match(id ?? '', /^8f1e2d3c4b5a6978-[0-9a-f]{16}$/, 'cf-ray hex plus our own random part');
    // The gateway wrote it, with the edge and gateway stages, on the volume it created.
    const vol = (await getVolume('edge-data-1')).body;
    assert.equal(vol.metadata.annotations['edgebind.dev/request-id'], id);
    const stages = JSON.parse(vol.metadata.annotations['edgebind.dev/request-stages']);
    for (const k of ['edgeReceivedAt', 'edgeVerifyMs', 'gatewayDecisionMs', 'acceptedAt']) assert.equal(typeof stages[k], 'number', `stage ${k}`);
    // The controller named it on the resource definition it created, and in its log line.
    const rd = (await json(`${linstorUrl}/v1/resource-definitions/${vol.status.linstorName}`)).body;
    assert.equal(rd.props?.['Aux/edgebind.dev/request-id'], id, JSON.stringify(rd.props));
    const writes = controller.stderr.filter((l) => l.includes('LINSTOR write') && l.includes(id));
    assert.ok(writes.length >= 1, `a LINSTOR write logged with the request id:\n${controller.tail()}`);
    // Its events carry it, and one event closes it with the stage timings.
    const events = async () => ((await json(`${kubeUrl}/apis/events.k8s.io/v1/namespaces/${NS}/events`)).body?.items ?? [])
      .filter((e) => e.regarding?.name === 'edge-data-1');
    const done = await waitFor('the RequestCompleted event', async () => (await events()).filter((e) => e.reason === 'RequestCompleted'), { procs: procs() });
    assert.equal(done.length, 1, 'exactly one completion event');
    assert.equal(done[0].type, 'Normal');
    assert.match(done[0].note, new RegExp(`^request ${id} completed: edge verify [0-9.]+ m?s, gateway decision [0-9.]+ m?s, first reconcile [0-9.]+ m?s, LINSTOR placement [0-9.]+ m?s, Ready [0-9.]+ m?s, total from the edge [0-9.]+ m?s$`));
    assert.ok((await events()).some((e) => e.reason === 'Applied' && e.note.endsWith(`(request ${id})`)), 'the Applied event names the request');
    // And the latency histogram from the edge to Ready counted it.
    const metrics = await (await http(`${controllerAdmin}/metrics`)).text();
    const count = /^edgebind_edge_request_duration_seconds_count\{outcome="ready"\} (\d+)/m.exec(metrics);
    assert.ok(count && Number(count[1]) >= 1, `edge request histogram:\n${metrics.split('\n').filter((l) => l.includes('edge_request')).join('\n')}`);

    // And one OpenTelemetry trace (README "Traces"), as the official protobuf messages decode it:
    // the trace id is the first 16 bytes of SHA-256 of the request id.
    const traceId = createHash('sha256').update(id).digest().subarray(0, 16).toString('base64');
    const spans = await waitFor(`the trace of ${id} at the OTLP receiver`, async () => {
      const s = otlp.spans().filter((x) => x.trace_id === traceId);
      return s.length >= 6 && s;
    }, { timeoutMs: 15000, procs: procs() });
    assert.deepEqual(spans.map((x) => x.name), ['edge request', 'edge verify', 'gateway decision', 'first reconcile', 'LINSTOR placement', 'Ready']);
    const [root, ...children] = spans;
    assert.equal(root.parent_span_id, undefined, 'the root has no parent');
    for (const c of children) assert.equal(c.parent_span_id, root.span_id, `${c.name} is a child of the root`);
    const attrs = Object.fromEntries(root.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
    assert.equal(attrs['edgebind.request_id'], id);
    assert.equal(attrs['k8s.namespace.name'], NS);
    assert.equal(attrs['edgebind.object.kind'], 'EdgeVolume');
    assert.equal(attrs['edgebind.object.name'], 'edge-data-1');
    assert.equal(attrs['edgebind.outcome'], 'ready');
    assert.equal(root.status?.code, 'STATUS_CODE_OK');
    // It links to the W3C trace the Worker started, which both audit lines of the request name.
    const audited = gatewayAudit().find((e) => e.requestId === id && e.source === 'gateway');
    assert.match(audited?.traceId ?? '', /^[0-9a-f]{32}$/);
    assert.equal(root.links?.length, 1);
    assert.equal(Buffer.from(root.links[0].trace_id, 'base64').toString('hex'), audited.traceId);
    assert.equal(worker.auditEvents().find((e) => e.requestId === id)?.traceId, audited.traceId);
    // The instants are the stamps the Worker and the gateway made, then the controller's.
    const ns = (x) => [BigInt(x.start_time_unix_nano), BigInt(x.end_time_unix_nano)];
    const byName = Object.fromEntries(spans.map((x) => [x.name, ns(x)]));
    const MS = 1_000_000n;
    assert.equal(byName['edge verify'][0], BigInt(stages.edgeReceivedAt) * MS);
    assert.equal(byName['edge verify'][1] - byName['edge verify'][0], BigInt(Math.round(stages.edgeVerifyMs * 1e6)));
    assert.equal(byName['gateway decision'][1], BigInt(stages.acceptedAt) * MS);
    assert.equal(byName['gateway decision'][1] - byName['gateway decision'][0], BigInt(Math.round(stages.gatewayDecisionMs * 1e6)));
    assert.equal(byName['first reconcile'][0], BigInt(stages.acceptedAt) * MS);
    assert.equal(byName['first reconcile'][1], byName['LINSTOR placement'][0]);
    assert.equal(byName['LINSTOR placement'][1], byName.Ready[0]);
    assert.equal(byName.Ready[1], ns(root)[1]);
    for (const [name, [a, b]] of Object.entries(byName)) assert.ok(ns(root)[0] <= a && a <= b && b <= ns(root)[1], `${name} within the root`);
    // The same durations the completion event states (0.1 ms, or 10 ms from a second on).
    for (const stage of ['first reconcile', 'LINSTOR placement', 'Ready']) {
      const m = new RegExp(`${stage} ([0-9.]+) (m?s)`).exec(done[0].note);
      const stated = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
      const [a, b] = byName[stage];
      const got = Number(b - a) / 1e6;
      assert.ok(Math.abs(got - stated) <= (got >= 1000 ? 5.01 : 0.051), `${stage}: span ${got} ms, event ${stated} ms`);
    }
    // The receiver's credential reached it, and only it.
    const post = otlp.posts.find((p) => JSON.stringify(p.request).includes(traceId));
    assert.equal(post.path, '/v1/traces');
    assert.equal(post.headers['content-type'], 'application/x-protobuf');
    assert.equal(post.headers.authorization, `Bearer ${OTLP_SECRET}`);
    assert.ok(!JSON.stringify(otlp.posts.map((p) => p.request)).includes(OTLP_SECRET), 'no credential in a trace');
    assert.ok(!controller.stderr.some((l) => l.includes(OTLP_SECRET)), 'no credential in the controller log');
  });

  it('resizes it through the edge; the LINSTOR volume definition grows', async () => {
    assert.ok(linstorName, 'needs the volume of the previous step');
    const token = await idp.token('alice');
    const r = await call(`${EDGE}/volumes/edge-data-1/resize`, { token, method: 'POST', body: { sizeBytes: 2 * GiB } });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.sizeBytes, 2 * GiB);
    created.push(r.headers.get('edge-request-id'));
    await waitFor('the LINSTOR volume definition at 2 GiB', async () => {
      const vds = (await json(`${linstorUrl}/v1/resource-definitions/${linstorName}/volume-definitions`)).body;
      return vds?.[0]?.size_kib === (2 * GiB) / 1024;
    }, { procs: procs() });
    await waitFor('EdgeVolume status size 2Gi', async () => (await getVolume('edge-data-1')).body?.status?.size === '2Gi', { procs: procs() });
    // The resize request now names the volume, and closes with its own completion event.
    const id = r.headers.get('edge-request-id');
    assert.equal((await getVolume('edge-data-1')).body.metadata.annotations['edgebind.dev/request-id'], id);
    await waitFor(`the RequestCompleted event of ${id}`, async () => {
      const items = (await json(`${kubeUrl}/apis/events.k8s.io/v1/namespaces/${NS}/events`)).body?.items ?? [];
      return items.some((e) => e.reason === 'RequestCompleted' && e.note.startsWith(`request ${id} completed: `));
    }, { procs: procs() });
  });

  it('snapshots it through the edge; the snapshot appears in LINSTOR', async () => {
    assert.ok(linstorName, 'needs the volume of the first step');
    const token = await idp.token('alice');
    const r = await call(`${EDGE}/volumes/edge-data-1/snapshots`, { token, method: 'POST', body: { name: 'edge-data-1-snap' } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.volume, 'edge-data-1');
    created.push(r.headers.get('edge-request-id'));
    const snap = await waitFor('EdgeSnapshot ready to use', async () => {
      const s = (await json(`${kubeUrl}${crPath('edgesnapshots', NS, 'edge-data-1-snap')}`)).body;
      return s?.status?.readyToUse && s;
    }, { procs: procs() });
    const inLinstor = (await json(`${linstorUrl}/v1/view/snapshots`)).body;
    const found = inLinstor.find((s) => s.resource_name === linstorName && s.name === snap.status.linstorName);
    assert.ok(found, `LINSTOR snapshot ${snap.status.linstorName} of ${linstorName}: ${JSON.stringify(inLinstor)}`);
    // The snapshot request names the EdgeSnapshot and closes with its own completion event.
    const id = r.headers.get('edge-request-id');
    assert.equal(snap.metadata.annotations['edgebind.dev/request-id'], id);
    await waitFor(`the RequestCompleted event of ${id}`, async () => {
      const items = (await json(`${kubeUrl}/apis/events.k8s.io/v1/namespaces/${NS}/events`)).body?.items ?? [];
      return items.some((e) => e.reason === 'RequestCompleted' && e.regarding?.kind === 'EdgeSnapshot' && e.note.startsWith(`request ${id} completed: `));
    }, { procs: procs() });
  });

  it('refuses a token without the group (403 policy_no_match) and a Deny (403 policy_denied); creates nothing', async () => {
    const token = await idp.token('mallory');
    const before = gatewayDecisions().length;
    const r = await call(`${EDGE}/volumes`, { token, method: 'POST', body: { name: 'edge-data-2', sizeBytes: GiB } });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.body.error.code, 'policy_no_match');
    assert.equal(r.body.error.requestId, r.headers.get('edge-request-id'));
    // Also an allowed group is refused by a Deny, and reads are refused for mallory.
    const alice = await idp.token('alice');
    const d = await call(`${EDGE}/volumes`, { token: alice, method: 'POST', body: { name: 'edge-prod-1', sizeBytes: GiB } });
    assert.equal(d.status, 403, d.text);
    assert.equal(d.body.error.code, 'policy_denied');
    const g = await call(`${EDGE}/volumes/edge-data-1`, { token });
    assert.equal(g.status, 403, g.text);
    assert.equal(g.body.error.code, 'policy_no_match');

    await sleep(1500); // give a wrongly forwarded request time to land, then look
    for (const name of ['edge-data-2', 'edge-prod-1']) assert.equal((await getVolume(name)).status, 404, `${name} was not created`);
    const rds = (await json(`${linstorUrl}/v1/resource-definitions`)).body;
    assert.deepEqual(rds.map((x) => x.name), [linstorName], 'only the allowed volume exists in LINSTOR');
    assert.equal(gatewayDecisions().length, before, 'the Worker refused these; none was forwarded');
    for (const res of [r, d, g]) {
      const ev = worker.auditEvents().find((e) => e.requestId === res.headers.get('edge-request-id'));
      assert.ok(ev, 'the Worker audited the refusal');
      assert.deepEqual([ev.decision, ev.reasonCode, ev.result], ['deny', res.body.error.code, 403]);
    }
    // Each refusal also reaches the cluster's audit trail: the gateway writes the Worker's
    // signed report as audit lines with source "worker" and the request's id (§7.2).
    const ids = [r, d, g].map((res) => res.headers.get('edge-request-id'));
    const reported = await waitFor('the refusals in the gateway audit trail', async () => {
      const lines = gatewayAudit().filter((e) => e.source === 'worker');
      return ids.every((id) => lines.some((e) => e.requestId === id)) && lines;
    }, { timeoutMs: 10000, procs: procs() });
    for (const [i, res] of [r, d, g].entries()) {
      const line = reported.find((e) => e.requestId === ids[i]);
      assert.deepEqual([line.decision, line.reasonCode, line.result], ['deny', res.body.error.code, 403]);
      assert.equal(line.keyId, 'edge-e2e-1', 'attributed to the key that signed the report');
      assert.equal(line.subject, i === 1 ? 'test-idp:alice' : 'test-idp:mallory');
      assert.ok(!JSON.stringify(line).includes('eyJ'), 'no token in a reported refusal');
    }
  });

  it('the audit trail joins both sides of every allowed request by request id', async () => {
    assert.equal(created.length, 4, 'the allowed requests of the previous steps');
    const gw = await waitFor('gateway audit events', async () => {
      const evs = gatewayAudit();
      return created.every((id) => evs.some((e) => e.requestId === id)) && evs;
    }, { timeoutMs: 5000, procs: procs() });
    const wk = worker.auditEvents();
    const expected = [['create', 201, null], ['read', 200, 'edge-data-1'], ['resize', 202, 'edge-data-1'], ['snapshot', 201, 'edge-data-1']];
    for (const [i, id] of created.entries()) {
      const w = wk.filter((e) => e.requestId === id);
      const g = gw.filter((e) => e.requestId === id);
      assert.equal(w.length, 1, `one Worker event for ${id}`);
      assert.equal(g.length, 1, `one gateway event for ${id}`);
      const [action, status, name] = expected[i];
      for (const [side, ev] of [['worker', w[0]], ['gateway', g[0]]]) {
        assert.equal(ev.source, side);
        assert.equal(ev.action, action, `${side} action`);
        assert.equal(ev.decision, 'allow', `${side} decision`);
        assert.equal(ev.result, status, `${side} result`);
        assert.equal(ev.issuer, 'test-idp');
        assert.equal(ev.subject, 'test-idp:alice');
        assert.equal(ev.policy, `${NS}/edge-storage`);
        assert.equal(ev.keyId, 'edge-e2e-1');
        assert.equal(ev.edgeLocation, 'E2E');
        assert.equal(ev.object?.namespace, NS);
        if (name) assert.equal(ev.object?.name, name);
        // Same bundle on both sides: the JS compilation above equals the gateway's.
        assert.equal(ev.policyRevision, compiled.revision, `${side} policy revision`);
      }
      assert.equal(w[0].traceId, g[0].traceId, 'one trace across both sides');
      for (const ev of [w[0], g[0]]) assert.ok(!JSON.stringify(ev).includes('eyJ'), 'no token in an audit event');
    }
  });
});
