import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from '../src/ratelimit.js';

test('token bucket: burst, refusal with Retry-After, refill, per subject', () => {
  let t = 0;
  const rl = new RateLimiter({ now: () => t });
  const limits = [{ policy: 'ns/p', rateLimit: { requestsPerMinute: 6, burst: 2 } }];
  assert.ok(rl.take(limits, 'i', 'alice').ok);
  assert.ok(rl.take(limits, 'i', 'alice').ok);
  const r = rl.take(limits, 'i', 'alice');
  assert.equal(r.ok, false);
  assert.equal(r.retryAfter, 10, 'one token per 10 s');
  assert.equal(r.policy, 'ns/p');
  assert.ok(rl.take(limits, 'i', 'bob').ok, 'another subject has its own bucket');
  t += 9999;
  assert.equal(rl.take(limits, 'i', 'alice').ok, false);
  t += 1;
  assert.ok(rl.take(limits, 'i', 'alice').ok);
});

test('several buckets: all must have a token, none is taken on refusal', () => {
  let t = 0;
  const rl = new RateLimiter({ now: () => t });
  const a = { policy: 'ns/a', rateLimit: { requestsPerMinute: 60, burst: 1 } };
  const b = { policy: 'ns/b', rateLimit: { requestsPerMinute: 60, burst: 3 } };
  assert.ok(rl.take([a, b], 'i', 's').ok);
  assert.equal(rl.take([a, b], 'i', 's').ok, false);
  // b still has 2 tokens: the refused request took none.
  assert.ok(rl.take([b], 'i', 's').ok);
  assert.ok(rl.take([b], 'i', 's').ok);
  assert.equal(rl.take([b], 'i', 's').ok, false);
  assert.ok(rl.take([], 'i', 's').ok, 'no limits: always passes');
});

test('bucket count is bounded', () => {
  const rl = new RateLimiter({ maxBuckets: 3 });
  const l = [{ policy: 'ns/p', rateLimit: { requestsPerMinute: 1 } }];
  for (let i = 0; i < 10; i++) rl.take(l, 'i', `s${i}`);
  assert.equal(rl.buckets.size, 3);
});
