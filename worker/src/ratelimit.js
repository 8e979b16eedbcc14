// @ts-check
// In-isolate token buckets (docs/edge-protocol.md §3.6). Advisory: each isolate has its own
// buckets; the gateway's limit is authoritative.

const MAX_BUCKETS = 10000;

/** @typedef {{ tokens: number, capacity: number, ratePerMs: number, at: number }} Bucket */

export class RateLimiter {
  /** @param {{ now?: () => number, maxBuckets?: number }} [options] */
  constructor({ now = () => Date.now(), maxBuckets = MAX_BUCKETS } = {}) {
    this.now = now;
    this.maxBuckets = maxBuckets;
    /** @type {Map<string, Bucket>} */
    this.buckets = new Map();
  }

  /**
   * @param {string} key
   * @param {import('./policy.js').RateLimit} limit
   * @param {number} t
   * @returns {Bucket}
   */
  #bucket(key, { requestsPerMinute, burst }, t) {
    const capacity = burst ?? requestsPerMinute;
    const ratePerMs = requestsPerMinute / 60000;
    let b = this.buckets.get(key);
    if (!b || b.capacity !== capacity || b.ratePerMs !== ratePerMs) {
      b = { tokens: capacity, capacity, ratePerMs, at: t };
    } else {
      b.tokens = Math.min(capacity, b.tokens + (t - b.at) * ratePerMs);
      b.at = t;
    }
    // Re-insert to keep Map order as least-recently-used first.
    this.buckets.delete(key);
    this.buckets.set(key, b);
    while (this.buckets.size > this.maxBuckets) this.buckets.delete(/** @type {string} */ (this.buckets.keys().next().value));
    return b;
  }

  /**
   * limits: [{policy: 'ns/name', rateLimit}]; principal key parts: issuer, subject.
   * Takes one token from every bucket if all have one; else returns the wait in seconds.
   * Returns {ok: true} or {ok: false, retryAfter, policy}.
   * @param {import('./policy.js').LimitRef[]} limits
   * @param {string} issuer
   * @param {string} subject
   * @returns {{ ok: true } | { ok: false, retryAfter: number, policy: string }}
   */
  take(limits, issuer, subject) {
    if (limits.length === 0) return { ok: true };
    const t = this.now();
    const bs = limits.map((l) => ({ l, b: this.#bucket(`${l.policy}\u0000${issuer}\u0000${subject}`, l.rateLimit, t) }));
    /** @type {{ retryAfter: number, policy: string } | null} */
    let worst = null;
    for (const x of bs) {
      if (x.b.tokens < 1) {
        const wait = Math.max(1, Math.ceil((1 - x.b.tokens) / x.b.ratePerMs / 1000));
        if (!worst || wait > worst.retryAfter) worst = { retryAfter: wait, policy: x.l.policy };
      }
    }
    if (worst) return { ok: false, ...worst };
    for (const x of bs) x.b.tokens -= 1;
    return { ok: true };
  }
}
