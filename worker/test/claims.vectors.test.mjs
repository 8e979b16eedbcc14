// Runs the shared claim vectors (tests/vectors/claims.json, format in tests/vectors/README.md)
// through the Worker's claim paths, subject patterns and claim mapping. The gateway runs the same
// file (crates/edgebind/src/gateway/claims_tests.rs), so the two cannot drift apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseClaimPath, patternMatch } from '../src/claims.js';
import { mapPrincipal, ClaimError } from '../src/principal.js';

const doc = JSON.parse(readFileSync(new URL('../../tests/vectors/claims.json', import.meta.url), 'utf8'));

test('claim path vectors', () => {
  assert.equal(doc.format, 1);
  assert.ok(doc.paths.length >= 10);
  for (const c of doc.paths) assert.deepEqual(parseClaimPath(c.path), c.tokens, c.path);
});

test('subject pattern vectors', () => {
  assert.ok(doc.patterns.length >= 20);
  for (const c of doc.patterns) assert.equal(patternMatch(c.pattern, c.value), c.match, `${c.pattern} against ${c.value}`);
});

for (const c of doc.mappings) {
  test(`claim mapping: ${c.name}`, () => {
    const issuer = { name: 'vec', issuer: 'https://idp.example', claimMapping: { groupsClaim: undefined, ...c.claimMapping } };
    let got;
    try {
      const p = mapPrincipal(/** @type {any} */ (issuer), c.payload, c.referencedClaims);
      got = { subject: p.subject, groups: p.groups, groupsUnknown: p.groupsUnknown, claims: p.claims };
    } catch (e) {
      assert.ok(e instanceof ClaimError, String(e));
      got = { error: 'claim_invalid' };
    }
    assert.deepEqual(got, c.expect, `${c.name}: ${c.note}`);
  });
}
