import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateBundle, decide, globMatch, selectorMatches, BundleError, YES, NO, MAYBE } from '../src/policy.js';

const alice = { issuer: 'okta', subject: 'okta:alice', groups: ['okta:admins', 'okta:dev'], claims: { tenant: ['acme'], level: null } };
const bob = { issuer: 'okta', subject: 'okta:bob', groups: [], claims: { tenant: ['other'], level: ['3'] } };

const allow = (over = {}) => ({ namespace: 'team-a', name: 'allow', effect: 'Allow', subjects: [{ issuer: 'okta' }], actions: ['read'], ...over });
const deny = (over = {}) => ({ ...allow(), name: 'deny', effect: 'Deny', ...over });
const bundle = (...policies) => validateBundle({ version: 1, revision: 'r1', policies });
const read = (over = {}) => ({ action: 'read', namespace: 'team-a', name: 'pvc-1', labels: { tier: 'gold' }, sizeBytes: null, clientIp: '203.0.113.7', ...over });

test('default deny: no policies means policy_no_match', () => {
  const d = decide(bundle(), alice, read());
  assert.deepEqual([d.decision, d.reasonCode, d.policy], ['deny', 'policy_no_match', null]);
});

test('a matching Allow allows and names the policy', () => {
  const d = decide(bundle(allow()), alice, read());
  assert.deepEqual([d.decision, d.reasonCode, d.policy], ['allow', 'policy_allowed', 'team-a/allow']);
});

test('a matching Deny wins over a matching Allow', () => {
  const d = decide(bundle(allow(), deny()), alice, read());
  assert.deepEqual([d.decision, d.reasonCode, d.policy], ['deny', 'policy_denied', 'team-a/deny']);
});

test('a Deny that does not match leaves the Allow in force', () => {
  const d = decide(bundle(allow(), deny({ subjects: [{ issuer: 'okta', subjects: ['okta:bob'] }] })), alice, read());
  assert.equal(d.decision, 'allow');
  assert.equal(decide(bundle(allow(), deny({ subjects: [{ issuer: 'okta', subjects: ['okta:bob'] }] })), bob, read()).decision, 'deny');
});

test('namespace is a hard boundary', () => {
  assert.equal(decide(bundle(allow()), alice, read({ namespace: 'team-b' })).reasonCode, 'policy_no_match');
});

test('action must be listed', () => {
  assert.equal(decide(bundle(allow()), alice, read({ action: 'delete' })).decision, 'deny');
  assert.equal(decide(bundle(allow({ actions: ['read', 'delete'] })), alice, read({ action: 'delete' })).decision, 'allow');
});

test('subjects: issuer, subject, groups and claims are ANDed within an entry, ORed across', () => {
  const other = { ...alice, issuer: 'google' };
  assert.equal(decide(bundle(allow()), other, read()).decision, 'deny', 'issuer must match');
  const bySubject = allow({ subjects: [{ issuer: 'okta', subjects: ['okta:alice'] }] });
  assert.equal(decide(bundle(bySubject), alice, read()).decision, 'allow');
  assert.equal(decide(bundle(bySubject), bob, read()).decision, 'deny');
  const byGroup = allow({ subjects: [{ issuer: 'okta', groups: ['okta:admins'] }] });
  assert.equal(decide(bundle(byGroup), alice, read()).decision, 'allow');
  assert.equal(decide(bundle(byGroup), bob, read()).decision, 'deny');
  const both = allow({ subjects: [{ issuer: 'okta', subjects: ['okta:alice'], groups: ['okta:nobody'] }] });
  assert.equal(decide(bundle(both), alice, read()).decision, 'deny', 'AND within an entry');
  const either = allow({ subjects: [{ issuer: 'okta', groups: ['okta:nobody'] }, { issuer: 'okta', subjects: ['okta:bob'] }] });
  assert.equal(decide(bundle(either), bob, read()).decision, 'allow', 'OR across entries');
  const byClaim = allow({ subjects: [{ issuer: 'okta', claims: [{ claim: 'tenant', values: ['acme'] }] }] });
  assert.equal(decide(bundle(byClaim), alice, read()).decision, 'allow');
  assert.equal(decide(bundle(byClaim), bob, read()).decision, 'deny');
});

test('an unevaluable claim fails closed: counts as a matching Deny even in an Allow', () => {
  const p = allow({ subjects: [{ issuer: 'okta', claims: [{ claim: 'level', values: ['3'] }] }] });
  const d = decide(bundle(p), alice, read());
  assert.deepEqual([d.decision, d.reasonCode], ['deny', 'policy_condition_error']);
  // A claim the Worker did not forward (absent from claims) is unevaluable too.
  const q = allow({ subjects: [{ issuer: 'okta', claims: [{ claim: 'region', values: ['eu'] }] }] });
  assert.equal(decide(bundle(q), alice, read()).reasonCode, 'policy_condition_error');
  // But an evaluable mismatch in the same entry makes it simply not apply.
  const r = allow({ subjects: [{ issuer: 'okta', claims: [{ claim: 'level', values: ['3'] }, { claim: 'tenant', values: ['zzz'] }] }] });
  assert.equal(decide(bundle(r), alice, read()).reasonCode, 'policy_no_match');
});

test('volume name globs', () => {
  const p = allow({ volumes: { names: ['pvc-*', 'db-??'] } });
  assert.equal(decide(bundle(p), alice, read({ name: 'pvc-1' })).decision, 'allow');
  assert.equal(decide(bundle(p), alice, read({ name: 'db-01' })).decision, 'allow');
  assert.equal(decide(bundle(p), alice, read({ name: 'db-001' })).decision, 'deny');
  assert.equal(decide(bundle(p), alice, read({ name: 'xpvc-1' })).decision, 'deny');
});

test('globMatch semantics', () => {
  assert.ok(globMatch('*', ''));
  assert.ok(globMatch('a*b*c', 'aXXbYYc'));
  assert.ok(globMatch('a*b', 'ab'));
  assert.ok(!globMatch('a*b', 'abc'));
  assert.ok(globMatch('a?c', 'abc'));
  assert.ok(!globMatch('a?c', 'ac'));
  assert.ok(globMatch('pvc-*-data', 'pvc-1-2-data'));
  assert.ok(!globMatch('pvc', 'pvc-1'));
});

test('label selector semantics with known labels', () => {
  const labels = { tier: 'gold', env: 'dev' };
  assert.equal(selectorMatches({}, labels), YES);
  assert.equal(selectorMatches({ matchLabels: { tier: 'gold' } }, labels), YES);
  assert.equal(selectorMatches({ matchLabels: { tier: 'silver' } }, labels), NO);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'env', operator: 'In', values: ['dev', 'qa'] }] }, labels), YES);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] }, labels), NO);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, labels), YES);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'zone', operator: 'Exists' }] }, labels), NO);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, labels), YES);
  assert.equal(selectorMatches({ matchLabels: { tier: 'gold' } }, null), MAYBE);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'Gt', values: ['1'] }] }, labels), 'error');
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'In', values: [] }] }, labels), 'error');
});

test('Worker view: unknown labels make an Allow possible (forward) and never a definite allow', () => {
  const p = allow({ volumes: { labelSelector: { matchLabels: { tier: 'gold' } } } });
  const d = decide(bundle(p), alice, read({ labels: null }));
  assert.deepEqual([d.decision, d.reasonCode], ['undecided', 'policy_undecided']);
  // Same bundle at the gateway with labels known.
  assert.equal(decide(bundle(p), alice, read({ labels: { tier: 'gold' } })).decision, 'allow');
  assert.equal(decide(bundle(p), alice, read({ labels: { tier: 'iron' } })).decision, 'deny');
});

test('Worker view: a label-scoped Deny cannot refuse at the Worker; a definite Deny still can', () => {
  const scoped = deny({ volumes: { labelSelector: { matchLabels: { env: 'prod' } } } });
  assert.equal(decide(bundle(allow(), scoped), alice, read({ labels: null })).decision, 'undecided');
  assert.equal(decide(bundle(allow(), scoped), alice, read({ labels: { env: 'prod' } })).decision, 'deny');
  assert.equal(decide(bundle(allow(), scoped), alice, read({ labels: { env: 'dev' } })).decision, 'allow');
  const byName = deny({ volumes: { names: ['pvc-*'], labelSelector: { matchLabels: { env: 'prod' } } } });
  // The name rules it out regardless of labels: the Allow decides.
  assert.equal(decide(bundle(allow(), byName), alice, read({ name: 'db-1', labels: null })).decision, 'allow');
});

test('Worker view: collection requests leave name patterns undecided', () => {
  const p = allow({ volumes: { names: ['pvc-*'] } });
  assert.equal(decide(bundle(p), alice, read({ name: null, labels: null })).decision, 'undecided');
  assert.equal(decide(bundle(allow()), alice, read({ name: null, labels: null })).decision, 'allow');
});

test('soundness: whenever the Worker refuses, the gateway refuses for every possible label set', () => {
  const policies = [
    allow({ volumes: { labelSelector: { matchLabels: { tier: 'gold' } } } }),
    deny({ volumes: { names: ['pvc-9'], labelSelector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }] } } }),
    allow({ name: 'allow-2', subjects: [{ issuer: 'okta', groups: ['okta:dev'] }], volumes: { names: ['db-*'] } }),
  ];
  const b = bundle(...policies);
  const labelSets = [{}, { tier: 'gold' }, { env: 'prod' }, { tier: 'gold', env: 'prod' }];
  for (const who of [alice, bob]) {
    for (const name of ['pvc-1', 'pvc-9', 'db-1']) {
      const w = decide(b, who, read({ name, labels: null }));
      for (const labels of labelSets) {
        const g = decide(b, who, read({ name, labels }));
        assert.notEqual(g.decision, 'undecided', 'the gateway always decides for a single volume');
        if (w.decision === 'deny') assert.equal(g.decision, 'deny', `${who.subject} ${name} ${JSON.stringify(labels)}`);
      }
    }
  }
});

test('maxSizeBytes applies to create and resize; a missing size is a condition error', () => {
  const p = allow({ actions: ['create', 'resize', 'read'], conditions: { maxSizeBytes: 1000 } });
  const b = bundle(p);
  assert.equal(decide(b, alice, read({ action: 'create', sizeBytes: 1000 })).decision, 'allow');
  assert.equal(decide(b, alice, read({ action: 'resize', sizeBytes: 1001 })).reasonCode, 'policy_no_match');
  assert.equal(decide(b, alice, read({ action: 'read' })).decision, 'allow', 'not applicable to read');
  assert.equal(decide(b, alice, read({ action: 'create', sizeBytes: null })).reasonCode, 'policy_condition_error');
});

test('sourceIpCidrs: inside, outside, and fail closed on missing IP or bad CIDR', () => {
  const b = bundle(allow({ conditions: { sourceIpCidrs: ['203.0.113.0/24', '2001:db8::/32'] } }));
  assert.equal(decide(b, alice, read({ clientIp: '203.0.113.200' })).decision, 'allow');
  assert.equal(decide(b, alice, read({ clientIp: '::ffff:203.0.113.9' })).decision, 'allow');
  assert.equal(decide(b, alice, read({ clientIp: '2001:db8:1::5' })).decision, 'allow');
  assert.equal(decide(b, alice, read({ clientIp: '198.51.100.1' })).reasonCode, 'policy_no_match');
  assert.equal(decide(b, alice, read({ clientIp: null })).reasonCode, 'policy_condition_error');
  assert.equal(decide(b, alice, read({ clientIp: 'not-an-ip' })).reasonCode, 'policy_condition_error');
  const bad = bundle(allow({ conditions: { sourceIpCidrs: ['203.0.113.0/33'] } }));
  assert.equal(decide(bad, alice, read()).reasonCode, 'policy_condition_error');
});

test('condition error in a Deny also denies, and reports the first deciding policy in order', () => {
  const b = bundle(allow(), deny({ name: 'a-deny', conditions: { sourceIpCidrs: ['nope'] } }), deny({ name: 'b-deny' }));
  const d = decide(b, alice, read());
  assert.deepEqual([d.decision, d.reasonCode, d.policy], ['deny', 'policy_condition_error', 'team-a/a-deny']);
});

test('definite Allows with rate limits are reported for the limiter', () => {
  const b = bundle(allow({ rateLimit: { requestsPerMinute: 10, burst: 2 } }), allow({ name: 'allow-2' }));
  const d = decide(b, alice, read());
  assert.deepEqual(d.rateLimited, [{ policy: 'team-a/allow', rateLimit: { requestsPerMinute: 10, burst: 2 } }]);
});

test('bundle validation refuses malformed bundles', () => {
  const bad = [
    null,
    { version: 2, revision: 'r', policies: [] },
    { version: 1, policies: [] },
    { version: 1, revision: 'r', policies: [allow({ effect: 'Maybe' })] },
    { version: 1, revision: 'r', policies: [allow({ actions: ['read', 'admin'] })] },
    { version: 1, revision: 'r', policies: [allow({ actions: [] })] },
    { version: 1, revision: 'r', policies: [allow({ subjects: [] })] },
    { version: 1, revision: 'r', policies: [allow(), allow()] },
    { version: 1, revision: 'r', policies: [allow({ conditions: { maxSizeBytes: 0 } })] },
    { version: 1, revision: 'r', policies: [allow({ rateLimit: { requestsPerMinute: 0 } })] },
  ];
  for (const b of bad) assert.throws(() => validateBundle(b), BundleError, JSON.stringify(b));
  const ok = validateBundle({ version: 1, revision: 'r', policies: [allow({ subjects: [{ issuer: 'okta', claims: [{ claim: 'tenant', values: ['x'] }] }] })] });
  assert.deepEqual([...ok.claimsByIssuer.get('okta')], ['tenant']);
});
