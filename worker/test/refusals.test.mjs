// Refusal reports from the Worker (docs/edge-protocol.md §7.2): batching, the queue cap, the
// rate of reports, and that a refused request is answered before its report is sent
// (ctx.waitUntil), signed, and without the caller's token.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RefusalReporter, recordOf, REPORT_PATH } from '../src/refusals.js';
import { newAuditEvent } from '../src/audit.js';
import { handle, reporter } from '../src/index.js';
import { generateSigningKey, basicBundle } from './harness.mjs';
import { edgebindSignatureBase } from '../src/signature.js';
import crypto from 'node:crypto';

/** A refusal as the Worker's audit has it. */
function refusal(i = 0) {
  const e = newAuditEvent(`0000000000000000-${i.toString(16).padStart(16, '0')}`, 'a'.repeat(32));
  e.time = '2026-12-07T22:00:00.000Z';
  e.reasonCode = 'token_invalid';
  e.result = 401;
  return e;
}

/** A clock and sleep the test drives. */
function fakeTime() {
  const t = { now: 0, slept: /** @type {number[]} */ ([]) };
  return { t, now: () => t.now, sleep: async (/** @type {number} */ ms) => { t.slept.push(ms); t.now += ms; } };
}

test('records queued while a report is under way go in the next one, one interval later', async () => {
  const { t, now, sleep } = fakeTime();
  const r = new RefusalReporter({ maxBatch: 3, minIntervalMs: 1000, now, sleep });
  /** @type {import('../src/refusals.js').Report[]} */
  const sent = [];
  const send = async (/** @type {any} */ report) => { sent.push(report); return true; };
  for (let i = 0; i < 5; i++) r.add(refusal(i));
  const p = r.schedule(send);
  assert.ok(p, 'a send starts');
  assert.equal(r.schedule(send), null, 'one send at a time per isolate');
  await p;
  assert.deepEqual(sent.map((s) => s.records.length), [3, 2], 'batches of at most maxBatch');
  assert.deepEqual(t.slept, [1000], 'the second report waits for the interval');
  assert.deepEqual(sent.flatMap((s) => s.records.map((x) => x.requestId)), [0, 1, 2, 3, 4].map((i) => refusal(i).requestId));
  assert.equal(r.schedule(send), null, 'nothing left to send');
});

test('a drain is short; the next refusal starts another, and a drain the runtime cut off is replaced', async () => {
  const { t, now, sleep } = fakeTime();
  const r = new RefusalReporter({ maxBatch: 1, maxReportsPerDrain: 2, now, sleep });
  let sends = 0;
  const send = async () => { sends++; return true; };
  for (let i = 0; i < 5; i++) r.add(refusal(i));
  await r.schedule(send);
  assert.equal(sends, 2, 'at most maxReportsPerDrain reports per drain');
  assert.equal(r.queue.length, 3, 'the rest waits for the next refusal');
  await r.schedule(send);
  assert.equal(sends, 4);
  // A drain that never settles (cut off by the runtime) blocks only until it is stale.
  assert.ok(r.schedule(() => new Promise(() => {})));
  r.add(refusal(7));
  assert.equal(r.schedule(send), null, 'one drain at a time');
  t.now += 60_000;
  const fresh = r.schedule(send);
  assert.ok(fresh, 'a stale drain is replaced');
  await fresh;
  assert.equal(sends, 5);
  assert.equal(r.queue.length, 0);
});

test('batches stay under the byte limit', async () => {
  const r = new RefusalReporter({ maxBatch: 100, maxBatchBytes: 2000, minIntervalMs: 0 });
  for (let i = 0; i < 20; i++) r.add(refusal(i));
  /** @type {number[]} */
  const sizes = [];
  await r.schedule(async (report) => { sizes.push(JSON.stringify(report).length); return true; });
  assert.ok(sizes.length > 1, `${sizes}`);
  assert.ok(sizes.every((s) => s <= 2000), `${sizes}`);
});

test('a full queue drops and counts; the count travels in the next report', async () => {
  const { now, sleep } = fakeTime();
  const r = new RefusalReporter({ maxQueued: 10, now, sleep });
  let accepted = 0;
  for (let i = 0; i < 25; i++) if (r.add(refusal(i))) accepted++;
  assert.equal(accepted, 10);
  assert.equal(r.queue.length, 10, 'memory is bounded by the cap');
  /** @type {any[]} */
  const sent = [];
  await r.schedule(async (report) => { sent.push(report); return true; });
  assert.equal(sent[0].dropped, 15);
  assert.equal(r.dropped, 0);
});

test('a report the gateway refuses is not retried; its records are counted as dropped', async () => {
  const { now, sleep } = fakeTime();
  const r = new RefusalReporter({ now, sleep });
  for (let i = 0; i < 3; i++) r.add(refusal(i));
  let calls = 0;
  await r.schedule(async () => { calls++; throw new Error('unreachable'); });
  assert.equal(calls, 1);
  assert.equal(r.queue.length, 0);
  assert.equal(r.dropped, 3);
  r.add(refusal(9));
  /** @type {any[]} */
  const sent = [];
  await r.schedule(async (report) => { sent.push(report); return true; });
  assert.equal(sent[0].dropped, 3);
});

test('a record keeps only the documented fields, in the gateway bounds', () => {
  const e = refusal();
  e.subject = `okta:${'x'.repeat(400)}\n{"forged":1}`;
  e.rayId = 'not a ray';
  e.object = { namespace: 'team-a', name: 'db', kind: 'EdgeVolume' };
  /** @type {any} */ (e).token = 'eyJ.secret.sig';
  const rec = recordOf(e);
  assert.deepEqual(Object.keys(rec).sort(), ['action', 'edgeLocation', 'issuer', 'latencyMs', 'object', 'policy', 'policyRevision', 'rayId', 'reasonCode', 'requestId', 'result', 'subject', 'time', 'traceId'].sort());
  assert.equal(/** @type {string} */ (rec.subject).length, 256);
  assert.doesNotMatch(/** @type {string} */ (rec.subject), /\n/);
  assert.equal(rec.rayId, null);
  assert.doesNotMatch(JSON.stringify(rec), /secret/);
});

test('a refused request is answered first; its signed report follows in waitUntil, without the token', async () => {
  const key = generateSigningKey('edge-test');
  /** @type {{ url: string, init: RequestInit }[]} */
  const calls = [];
  /** @type {() => void} */
  let release = () => {};
  const gate = new Promise((r) => { release = () => r(undefined); });
  const env = {
    GATEWAY_URL: 'http://gateway.internal',
    GATEWAY: {
      fetch: async (/** @type {string} */ url, /** @type {RequestInit} */ init) => {
        calls.push({ url, init });
        await gate;
        return new Response('{"accepted":1}', { status: 202 });
      },
    },
    ISSUERS: JSON.stringify([{ name: 'idp', issuer: 'https://idp.example', jwksUri: 'https://idp.example/jwks', audiences: ['edgebind'], algorithms: ['RS256'] }]),
    POLICY_BUNDLE: basicBundle([]),
    SIGNING_KEY: key.binding,
  };
  /** @type {Promise<unknown>[]} */
  const waiting = [];
  const ctx = { waitUntil: (/** @type {Promise<unknown>} */ p) => { waiting.push(p); } };
  const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
  const req = new Request('https://edge.example/api/v1/namespaces/team-a/volumes', { headers: { authorization: `Bearer ${token}`, 'cf-ray': '8f0c1d2e3a4b5c6d-FRA' } });
  const res = await handle(/** @type {any} */ (req), env, ctx);
  assert.equal(res.status, 401, 'answered while the report is still held at the gateway');
  assert.equal(waiting.length, 1, 'the report runs in waitUntil');
  release();
  await Promise.all(waiting);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, `http://gateway.internal${REPORT_PATH}`);
  const headers = /** @type {Headers} */ (calls[0].init.headers);
  const body = new TextDecoder().decode(/** @type {Uint8Array} */ (calls[0].init.body));
  const report = JSON.parse(body);
  assert.equal(report.records.length, 1);
  assert.equal(report.records[0].requestId, res.headers.get('edge-request-id'));
  assert.equal(report.records[0].reasonCode, 'token_malformed');
  assert.equal(report.records[0].rayId, '8f0c1d2e3a4b5c6d-FRA');
  assert.ok(!body.includes(token) && !body.includes('c2lnbmF0dXJl'), 'the token never travels in a report');
  assert.equal(headers.get('edge-token'), null);
  // Signed as any edge request, for the gateway's authority.
  const params = /** @type {string} */ (headers.get('signature-input')).replace(/^sig1=/, '');
  const base = edgebindSignatureBase(
    {
      method: 'POST', authority: 'gateway.internal', path: REPORT_PATH, query: '', contentType: 'application/json',
      contentDigest: /** @type {string} */ (headers.get('content-digest')),
      edgeIdentity: /** @type {string} */ (headers.get('edge-identity')),
      requestId: /** @type {string} */ (headers.get('edge-request-id')),
    },
    params,
  );
  const sig = Buffer.from(/** @type {string} */ (headers.get('signature')).replace(/^sig1=:|:$/g, ''), 'base64');
  assert.match(params, /keyid="edge-test"/);
  assert.ok(crypto.verify(null, Buffer.from(base), key.publicKey, sig), 'signed with the binding key');
  const digest = `sha-256=:${crypto.createHash('sha256').update(body).digest('base64')}:`;
  assert.equal(headers.get('content-digest'), digest);
  assert.equal(reporter.queue.length, 0);
});

test('a caller cannot reach the report endpoint through the Worker', async () => {
  const { resolveRequest, RouteError } = await import('../src/routes.js');
  assert.throws(() => resolveRequest('POST', REPORT_PATH, { records: [] }), (e) => e instanceof RouteError && e.code === 'route_unknown');
});
