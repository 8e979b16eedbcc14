// Runs the shared policy decision vectors (tests/vectors/policy.json, format in
// tests/vectors/README.md) through the Worker's evaluator. The gateway runs the same file
// (crates/edgebind/src/gateway/policy_vectors_tests.rs), so the two evaluators cannot drift.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { validateBundle, decide } from '../src/policy.js';

const doc = JSON.parse(readFileSync(new URL('../../tests/vectors/policy.json', import.meta.url), 'utf8'));
const FIELDS = ['decision', 'reason', 'policy', 'rateLimited'];

/** The request as the Worker sees it: labels are known only for create, from the body (§3.5). */
const workerView = (request) => (request.action === 'create' ? request : { ...request, labels: null });

/** The evaluator's answer in the vectors' terms. */
const outcome = (d) => ({ decision: d.decision, reason: d.reasonCode, policy: d.policy, rateLimited: d.rateLimited.map((l) => l.policy) });

/** Known disagreements of this implementation for one view. */
const known = (c, view) => (c.knownDisagreements ?? []).filter((d) => d.impl === 'js' && (d.view === view || d.view === 'both'));

test('the vector file is well formed', () => {
  assert.equal(doc.format, 1);
  assert.ok(doc.cases.length >= 30, `only ${doc.cases.length} cases`);
  const names = new Set();
  for (const c of doc.cases) {
    assert.match(c.name, /^[a-z0-9][a-z0-9-]*$/);
    assert.ok(!names.has(c.name), `duplicate case ${c.name}`);
    names.add(c.name);
    for (const e of [c.expect, c.expectWorker].filter(Boolean)) {
      assert.ok(['allow', 'deny', 'undecided'].includes(e.decision), c.name);
      assert.equal(typeof e.reason, 'string', c.name);
    }
    for (const d of c.knownDisagreements ?? []) {
      assert.ok(['js', 'rust'].includes(d.impl) && ['gateway', 'worker', 'both'].includes(d.view) && FIELDS.includes(d.field), c.name);
      assert.ok(typeof d.note === 'string' && d.note.length > 0, c.name);
    }
  }
});

for (const c of doc.cases) {
  test(c.name, async (t) => {
    const bundle = validateBundle(c.bundle);
    const views = [
      ['gateway', c.request, c.expect],
      ['worker', workerView(c.request), c.expectWorker ?? c.expect],
    ];
    for (const [view, request, expect] of views) {
      await t.test(`${view} view`, async (tv) => {
        const got = outcome(decide(bundle, c.principal, request));
        const listed = known(c, view);
        for (const field of FIELDS) {
          if (!(field in expect)) continue;
          const k = listed.find((d) => d.field === field);
          if (!k) {
            assert.deepEqual(got[field], expect[field], `${c.name} (${view} view) ${field}: ${c.note}`);
          } else if (JSON.stringify(got[field]) === JSON.stringify(expect[field])) {
            assert.fail(`${c.name}: the Worker now agrees on ${field}; remove the knownDisagreements entry`);
          } else {
            await tv.test(`${field}: known disagreement`, { todo: k.note }, () => assert.deepEqual(got[field], expect[field]));
          }
        }
      });
    }
    // §3.5 on the data itself: the Worker refuses only what the gateway refuses the same way, and
    // never allows what the gateway would not.
    const w = c.expectWorker ?? c.expect;
    if (w.decision === 'deny') assert.deepEqual([c.expect.decision, c.expect.reason, c.expect.policy], [w.decision, w.reason, w.policy], 'Worker refusal the gateway would not give');
    if (w.decision === 'allow') assert.equal(c.expect.decision, 'allow', 'Worker allow the gateway would refuse');
  });
}
