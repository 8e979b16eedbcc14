// Signing key rotation under continuous traffic through the real Worker (docs/edge-protocol.md
// §8): the controller publishes an EdgeBinding to the Cloudflare simulator, the bundled Worker
// runs in workerd with the SIGNING_KEY Cloudflare holds, and the Rust gateway verifies every
// request against the public keys the controller maintains. An on-demand rotation must not fail
// a single request, and the retired key must be refused afterwards.
//
// Cloudflare's side of a secret write is modelled here: when the EdgeBinding status records a new
// SIGNING_KEY hash (written after Cloudflare accepted the secret), the test takes the binding's
// current key from its Secret, checks that its hash is the recorded one, starts a new workerd with
// it, sends new requests there, and stops the old workerd once its in-flight requests are done
// (new requests go to the new version while old ones finish on the old).
//
// tests/integration/cloudflare_rotation.rs checks the controller's timing more finely with a
// Rust signer in place of the Worker.
//
// Needs the edgebind binary: EDGEBIND_BIN=/path/to/target/debug/edgebind (scripts/test.sh sets it).
// Without it the suite is skipped with a message.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startIdp, startWorker, freePort } from './harness.mjs';
import { compileBundle } from './compile.mjs';
import { skipReason as skip, startEdgebind, stopProc, sleep, waitFor, http, json } from './procs.mjs';

const GROUP = 'edgebind.dev';
const VERSION = 'v1alpha1';
const NS = 'team-a';
const KEYS_NS = 'edgebind-system';
const KEYS_SECRET = 'edgebind-gateway-keys';
const BINDING = 'edge';
const SCRIPT = 'edgebind-gw';
const VOLUME = 'edge-data-1';
const READ_PATH = `/api/v1/namespaces/${NS}/volumes/${VOLUME}`;
const AUDIT_PREFIX = '{"schema":"edgebind.dev/audit/v1"';
// The Cloudflare simulator's account, zone and test token (src/sim/cloudflare/mod.rs,
// CfSimConfig::realistic): public test values that grant nothing outside the simulator.
const CF_ACCOUNT = '9a7806061c88ada191ed06f989cc3dac';
const CF_ZONE = '023e105f4ecef8ad9ca31a8372d0c353';
const CF_TOKEN = 'test-token-edgebind-sim-0123456789abcdef';

// Production waits 30 s and overlaps 600 s against a 10 s gateway reload; here the same order:
// the propagation wait is above the gateway's 1 s reload, and the overlap leaves room for a
// workerd start after the switch.
const PROPAGATION_S = 2;
const OVERLAP_S = 4;
const RELOAD_S = 1;
/** Pause between two requests of the traffic (they are not awaited: several may be in flight). */
const PACE_MS = 25;
/** Bounds of the traffic, whatever happens. */
const MAX_REQUESTS = 3000;
const MAX_TRAFFIC_MS = 45000;
const MAX_IN_FLIGHT = 32;

const sha256Tagged = (s) => `sha256:${crypto.createHash('sha256').update(s, 'utf8').digest('hex')}`;

describe('signing key rotation under traffic through the Worker in workerd', { skip }, () => {
  let dir;
  let idp;
  let kube;
  let linstor;
  let cfsim;
  let controller;
  let gateway;
  let kubeUrl;
  let gwPort;
  let compiled;
  const workers = new Set(); // every workerd started, for after()
  const procs = () => [kube, linstor, cfsim, controller, gateway].filter(Boolean);
  /** Key id -> gateway time (ms) of the first reload that trusted it; and the last set loaded. */
  const trustedSince = new Map();
  let trustedNow = [];

  const crPath = (plural, ns, name) => `/apis/${GROUP}/${VERSION}${ns ? `/namespaces/${ns}` : ''}/${plural}${name ? `/${name}` : ''}`;
  const kubeCreate = async (apiPath, obj) => {
    const r = await json(`${kubeUrl}${apiPath}`, { method: 'POST', body: obj });
    assert.ok(r.status === 201 || r.status === 200, `POST ${apiPath}: ${r.status} ${r.text}`);
    return r.body;
  };
  const ready = (obj) => (obj?.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  const bindingObject = async () => (await json(`${kubeUrl}${crPath('edgebindings', NS, BINDING)}`)).body ?? {};
  const bindingStatus = async () => (await bindingObject()).status ?? {};
  const gatewayKeyIds = async () => {
    const s = (await json(`${kubeUrl}/api/v1/namespaces/${KEYS_NS}/secrets/${KEYS_SECRET}`)).body;
    return Object.keys(s?.data ?? {}).filter((k) => k.endsWith('.pub')).map((k) => k.slice(0, -4));
  };
  const gatewayAudit = () => gateway.stdout.filter((l) => l.startsWith(AUDIT_PREFIX)).map((l) => JSON.parse(l));

  /** The gateway's key reloads (debug log): when it first trusted each key id, what it trusts now. */
  const onGatewayLog = (line) => {
    let ev;
    try {
      ev = JSON.parse(line);
    } catch {
      return;
    }
    if (ev.message !== 'edge keys loaded' || typeof ev.keys !== 'string') return;
    let ids;
    try {
      ids = JSON.parse(ev.keys); // Debug of a Vec<String>: ["a", "b"]
    } catch {
      return;
    }
    const t = Date.parse(ev.timestamp);
    for (const id of ids) if (!trustedSince.has(id)) trustedSince.set(id, t);
    trustedNow = ids;
  };

  /**
   * What Cloudflare holds as SIGNING_KEY now: the binding's current key, provided its hash is the
   * one the controller recorded after the Cloudflare write (else null: not written yet).
   */
  const cloudflareSigningKey = async () => {
    const b = await bindingObject();
    const st = b.status ?? {};
    const recorded = st.secretHashes?.SIGNING_KEY;
    if (!recorded) return null;
    // Private keys live in the operator's namespace only, named after the binding's uid.
    const s = (await json(`${kubeUrl}/api/v1/namespaces/${KEYS_NS}/secrets/edgebind-signing-${b.metadata?.uid}`)).body;
    const b64 = s?.data?.current;
    if (!b64) return null;
    const value = Buffer.from(b64, 'base64').toString('utf8');
    if (sha256Tagged(value) !== recorded) return null;
    const keyId = JSON.parse(value).keyId;
    assert.equal(keyId, st.currentKeyId, 'the key Cloudflare holds is the current key of the status');
    return { value, keyId, hash: recorded };
  };

  const startEdge = (signingKey) =>
    startWorker({
      bindings: {
        GATEWAY_URL: `http://127.0.0.1:${gwPort}`,
        ISSUERS: compiled.issuers,
        POLICY_BUNDLE: compiled.bundle,
        SIGNING_KEY: signingKey,
        EDGE_LOCATION: 'ROT',
        JWKS_COOLDOWN_SECONDS: '0',
      },
    }).then((w) => {
      workers.add(w);
      return w;
    });

  const read = (worker, token) => json(`${worker.url}${READ_PATH}`, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10000 });

  let initial; // {value, keyId, hash} Cloudflare held before the rotation

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edgebind-rotation-'));
    const kubeconfig = path.join(dir, 'kubeconfig');
    idp = await startIdp({ clients: [{ id: 'alice', secret: 'alice-secret-0123456789abcdef', groups: ['storage'] }] });

    const kubePort = await freePort();
    kubeUrl = `http://127.0.0.1:${kubePort}`;
    kube = startEdgebind('kube', ['simulate', 'kubernetes', '--listen', `127.0.0.1:${kubePort}`, '--kubeconfig', kubeconfig]);
    const linstorPort = await freePort();
    const linstorUrl = `http://127.0.0.1:${linstorPort}`;
    linstor = startEdgebind('linstor', ['simulate', 'linstor', '--listen', `127.0.0.1:${linstorPort}`]);
    const cfPort = await freePort();
    const cfUrl = `http://127.0.0.1:${cfPort}/client/v4`;
    cfsim = startEdgebind('cloudflare', ['simulate', 'cloudflare', '--listen', `127.0.0.1:${cfPort}`]);
    await waitFor('the fake Kubernetes API server', async () => (await http(`${kubeUrl}/api/v1/namespaces`)).ok && existsSync(kubeconfig), { procs: procs() });
    await waitFor('the LINSTOR simulator', async () => (await http(`${linstorUrl}/v1/controller/version`)).ok, { procs: procs() });
    await waitFor('the Cloudflare simulator', async () => (await http(`${cfUrl}/user/tokens/verify`, { headers: { authorization: `Bearer ${CF_TOKEN}` } })).ok, { procs: procs() });

    // The resources of tests/integration/cloudflare_rotation.rs, with the IdP of the harness and a
    // volume in LINSTOR the policy lets alice read.
    for (const ns of [NS, KEYS_NS]) await kubeCreate('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    await kubeCreate(crPath('linstorbackends'), { apiVersion: `${GROUP}/${VERSION}`, kind: 'LinstorBackend', metadata: { name: 'main' }, spec: { urls: [linstorUrl] } });
    await kubeCreate(crPath('edgevolumes', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'EdgeVolume', metadata: { name: VOLUME, namespace: NS }, spec: { backendRef: 'main', size: '1Gi' },
    });
    await kubeCreate(`/api/v1/namespaces/${KEYS_NS}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cf-token' }, type: 'Opaque', data: { token: Buffer.from(CF_TOKEN).toString('base64') },
    });
    await kubeCreate(crPath('cloudflareaccounts'), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'CloudflareAccount', metadata: { name: 'cf' },
      spec: { accountId: CF_ACCOUNT, apiUrl: cfUrl, timeoutSeconds: 5, apiToken: { namespace: KEYS_NS, name: 'cf-token', key: 'token' }, budget: { requestsPerSecond: 3, burst: 20 } },
    });
    await kubeCreate(crPath('identityissuers'), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'IdentityIssuer', metadata: { name: 'test-idp' },
      spec: { issuer: idp.issuer, audiences: [idp.audience], algorithms: ['ES256'], clockSkewSeconds: 30, claimMapping: { groupsClaim: 'groups' } },
    });
    await kubeCreate(crPath('volumeaccesspolicies', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeAccessPolicy', metadata: { name: 'readers', namespace: NS },
      spec: { effect: 'Allow', subjects: [{ issuer: 'test-idp', groups: ['test-idp:storage'] }], actions: ['read'], volumes: { names: ['edge-*'] } },
    });
    gwPort = await freePort();
    await kubeCreate(crPath('edgebindings', NS), {
      apiVersion: `${GROUP}/${VERSION}`, kind: 'EdgeBinding', metadata: { name: BINDING, namespace: NS },
      spec: { accountRef: 'cf', zoneId: CF_ZONE, routes: ['api.example.com/*'], scriptName: SCRIPT, gatewayUrl: `http://127.0.0.1:${gwPort}` },
    });

    const env = { KUBECONFIG: kubeconfig, POD_NAMESPACE: KEYS_NS };
    controller = startEdgebind('controller', [
      'controller', '--admin-addr', `127.0.0.1:${await freePort()}`, '--resync-seconds', '5',
      '--key-propagation-seconds', String(PROPAGATION_S), '--key-overlap-seconds', String(OVERLAP_S),
    ], env);
    const gwAdmin = await freePort();
    gateway = startEdgebind(
      'gateway',
      ['gateway', '--listen', `127.0.0.1:${gwPort}`, '--admin-addr', `127.0.0.1:${gwAdmin}`, '--backend-ref', 'main', '--reload-seconds', String(RELOAD_S)],
      // The key reload is logged at debug: it tells when the gateway started trusting each key.
      { ...env, EDGEBIND_GATEWAY_KEYS_SECRET: KEYS_SECRET, EDGEBIND_LOG: 'info,edgebind::gateway::server=debug' },
      { onStderr: onGatewayLog },
    );

    await waitFor('the EdgeBinding published with a signing key', async () => {
      const b = (await json(`${kubeUrl}${crPath('edgebindings', NS, BINDING)}`)).body;
      return ready(b) && b.status?.secretHashes?.SIGNING_KEY;
    }, { procs: procs() });
    initial = await cloudflareSigningKey();
    assert.ok(initial, 'the binding Secret holds the key whose hash the controller recorded');

    // The Worker's other secrets, compiled from the resources; their hashes must be the ones the
    // controller recorded for what it wrote to Cloudflare.
    const issuers = (await json(`${kubeUrl}${crPath('identityissuers')}`)).body.items;
    const policies = (await json(`${kubeUrl}${crPath('volumeaccesspolicies', NS)}`)).body.items;
    compiled = compileBundle(issuers, policies);
    const hashes = (await bindingStatus()).secretHashes;
    assert.equal(sha256Tagged(compiled.issuers), hashes.ISSUERS, 'ISSUERS as Cloudflare holds it');
    assert.equal(sha256Tagged(compiled.bundle), hashes.POLICY_BUNDLE, 'POLICY_BUNDLE as Cloudflare holds it');

    await waitFor('the gateway ready', async () => (await http(`http://127.0.0.1:${gwAdmin}/readyz`)).ok, { procs: procs() });
    await waitFor('the gateway to trust the Worker key', () => trustedNow.includes(initial.keyId), { procs: procs() });
    await waitFor('the EdgeVolume Ready', async () => ready((await json(`${kubeUrl}${crPath('edgevolumes', NS, VOLUME)}`)).body), { procs: procs() });
  });

  after(async () => {
    // Every process goes, also when a step above failed half way.
    await Promise.all([...workers].map((w) => w.stop()));
    await Promise.all([gateway, controller, cfsim, linstor, kube].map(stopProc));
    await idp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rotates the key while requests flow: none fails, both keys serve, the old key is then refused', async () => {
    const token = await idp.token('alice');

    // The deployment serving new requests; each has its key id and in-flight count.
    let current = { worker: await startEdge(initial.value), keyId: initial.keyId, hash: initial.hash, inFlight: 0 };
    const first = await read(current.worker, token);
    assert.equal(first.status, 200, `a read through the Worker before the rotation: ${first.text}`);
    assert.equal(first.body.name, VOLUME);

    const sent = []; // {at, kid, status, code, requestId, ms}
    let stopTraffic = false;
    let maxInFlight = 0;
    let skippedTicks = 0;
    const pending = new Set();
    const traffic = (async () => {
      const start = Date.now();
      while (!stopTraffic && sent.length + pending.size < MAX_REQUESTS && Date.now() - start < MAX_TRAFFIC_MS) {
        if (pending.size >= MAX_IN_FLIGHT) {
          skippedTicks++; // a stalled gateway shows up as failures below, not as unbounded load
        } else {
          const dep = current;
          const at = Date.now();
          dep.inFlight++;
          maxInFlight = Math.max(maxInFlight, pending.size + 1);
          const p = read(dep.worker, token)
            .then((r) => ({ status: r.status, code: r.body?.error?.code ?? '', requestId: r.headers.get('edge-request-id') }))
            .catch((e) => ({ status: 0, code: `transport: ${e.message}`, requestId: null }))
            .then((r) => {
              dep.inFlight--;
              sent.push({ at, kid: dep.keyId, ms: Date.now() - at, ...r });
              pending.delete(p);
            });
          pending.add(p);
        }
        await sleep(PACE_MS);
      }
      await Promise.all([...pending]);
    })();

    // Cloudflare's rollout: a new SIGNING_KEY hash in status means Cloudflare holds a new key.
    const switches = []; // {seenAt, servingAt, startMs, drainedAt, keyId}
    let watching = true;
    let rolloutError = null;
    const rollout = (async () => {
      while (watching) {
        const now = await cloudflareSigningKey();
        if (now && now.hash !== current.hash) {
          const seenAt = Date.now();
          const next = { worker: await startEdge(now.value), keyId: now.keyId, hash: now.hash, inFlight: 0 };
          const old = current;
          current = next;
          const sw = { seenAt, servingAt: Date.now(), startMs: Date.now() - seenAt, keyId: now.keyId };
          switches.push(sw);
          // In-flight requests finish on the old deployment, then it goes (bounded wait).
          await waitFor('the old Worker to finish its requests', () => old.inFlight === 0, { timeoutMs: 15000, intervalMs: 10 });
          await old.worker.stop();
          workers.delete(old.worker);
          sw.drainedAt = Date.now();
        }
        await sleep(50);
      }
    })().catch((e) => {
      rolloutError = e;
    });

    try {
      await sleep(1000); // traffic on the old key first
      const rotateAt = Date.now();
      const patch = await json(`${kubeUrl}${crPath('edgebindings', NS, BINDING)}`, {
        method: 'PATCH', contentType: 'application/merge-patch+json', body: { metadata: { annotations: { 'edgebind.dev/rotate-key': 'r1' } } },
      });
      assert.equal(patch.status, 200, `request a rotation: ${patch.text}`);

      const newKid = await waitFor('a pending key', async () => (await bindingStatus()).pendingKeyId, { timeoutMs: 15000, procs: procs() });
      const pendingAt = Date.now();
      assert.notEqual(newKid, initial.keyId);
      await waitFor('the Worker switched to the new key', () => {
        if (rolloutError) throw rolloutError;
        return switches.length > 0;
      }, { timeoutMs: 20000, procs: procs() });
      assert.equal(switches[0].keyId, newKid, 'the key the Worker switched to is the one announced as pending');
      const retiringAtSwitch = (await bindingStatus()).retiringKeyId;
      await waitFor('the old public key retired from the gateway Secret', async () => {
        const ids = await gatewayKeyIds();
        return !ids.includes(initial.keyId) && ids.includes(newKid);
      }, { timeoutMs: OVERLAP_S * 1000 + 15000, procs: procs() });
      const retiredAt = Date.now();
      await waitFor('the gateway to stop trusting the old key', () => !trustedNow.includes(initial.keyId), { timeoutMs: RELOAD_S * 1000 + 5000, procs: procs() });
      const droppedAt = Date.now();
      await sleep(1000); // traffic on the new key alone
      stopTraffic = true;
      await traffic;
      watching = false;
      await rollout;
      assert.equal(rolloutError, null, `the rollout: ${rolloutError?.message}`);
      assert.ok(switches[0].drainedAt, 'the old Worker was stopped after its last request');

      // A Worker still holding the old key (an isolate that never reloaded) is refused by the
      // gateway, and the Worker relays the gateway's answer.
      const stale = await startEdge(initial.value);
      const refused = await read(stale, token);
      assert.equal(refused.status, 401, refused.text);
      assert.equal(refused.body?.error?.code, 'key_unknown', refused.text);
      const staleAudit = await waitFor('the stale Worker audit event', () =>
        stale.auditEvents().find((e) => e.requestId === refused.headers.get('edge-request-id')), { timeoutMs: 5000 });
      assert.equal(staleAudit.keyId, initial.keyId);
      assert.equal(staleAudit.result, 401);

      // Outcomes.
      const failures = sent.filter((s) => s.status !== 200).map((s) => `+${s.at - rotateAt} ms key ${s.kid}: ${s.status} ${s.code}`);
      const onOld = sent.filter((s) => s.kid === initial.keyId);
      const onNew = sent.filter((s) => s.kid === newKid);
      const oldAfterRequest = onOld.filter((s) => s.at >= rotateAt).length;
      const during = sent.filter((s) => s.at >= rotateAt && s.at <= retiredAt).length;
      const lat = sent.map((s) => s.ms).sort((a, b) => a - b);
      const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))];

      // The gateway's view: every request it answered was verified with the key of the Worker
      // that sent it (a failed request is reported by the assertions below, not waited for here).
      const answered = sent.filter((s) => s.status === 200);
      const audit = await waitFor('gateway audit events for every answered request', () => {
        const byId = new Map(gatewayAudit().map((e) => [e.requestId, e]));
        return answered.every((s) => byId.has(s.requestId)) && byId;
      }, { timeoutMs: 5000, procs: procs() });
      const keyMismatch = answered.filter((s) => audit.get(s.requestId)?.keyId !== s.kid).length;
      const newUses = answered.filter((s) => s.kid === newKid).map((s) => Date.parse(audit.get(s.requestId).time));
      const firstUseGw = Math.min(...newUses);
      const trustedAtGw = trustedSince.get(newKid);
      const leadMs = firstUseGw - trustedAtGw;

      console.log(
        `rotation through workerd: ${sent.length} requests (${onOld.length} old key, ${onNew.length} new key, ` +
          `${oldAfterRequest} old after the request, ${during} between request and retirement), ` +
          `${failures.length} failed; latency p50 ${pct(0.5)} ms p99 ${pct(0.99)} ms, max in flight ${maxInFlight}; ` +
          `from the request (ms): pending ${pendingAt - rotateAt}, Cloudflare write seen ${switches[0].seenAt - rotateAt}, ` +
          `new Worker serving ${switches[0].servingAt - rotateAt} (workerd start ${switches[0].startMs}), ` +
          `old Worker drained ${switches[0].drainedAt - rotateAt}, old key retired ${retiredAt - rotateAt}, ` +
          `gateway dropped it ${droppedAt - rotateAt}; new key trusted ${leadMs} ms before its first use; ` +
          `stale Worker refused ${refused.status} ${refused.body?.error?.code}`,
      );

      assert.deepEqual(failures, [], `${failures.length} of ${sent.length} requests failed`);
      assert.equal(retiringAtSwitch, initial.keyId, 'when the Worker switched, the old key was retiring, not gone');
      assert.equal(skippedTicks, 0, 'the traffic never hit its in-flight bound');
      assert.equal(switches.length, 1, 'one new deployment');
      assert.ok(onOld.length > 0 && onNew.length > 0, `both keys carried traffic: old ${onOld.length}, new ${onNew.length}`);
      assert.equal(onOld.length + onNew.length, sent.length, 'no third key signed');
      assert.ok(oldAfterRequest > 0, 'the old key served during the propagation wait');
      assert.ok(during >= 50, `only ${during} requests during the rotation`);
      assert.equal(keyMismatch, 0, 'the gateway verified each request with the key of the Worker that sent it');
      assert.ok(trustedAtGw !== undefined, 'the gateway loaded the new key');
      assert.ok(leadMs > 0, `the gateway trusted the new key before its first use (lead ${leadMs} ms)`);
    } finally {
      stopTraffic = true;
      watching = false;
      await traffic;
      await rollout;
    }
  });
});
