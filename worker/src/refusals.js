// @ts-check
// Refusal reports (docs/edge-protocol.md §7.2): requests this Worker refuses itself are sent to
// the gateway in signed batches, so that they reach the cluster's audit trail. Sending never
// delays the refused request (the caller hands the promise to ctx.waitUntil), memory is bounded
// (a full queue drops and counts), and a record never holds the token: it is built field by field
// from the audit event, which holds none.

export const REPORT_PATH = '/api/v1/edge-refusals';
/** Records held per isolate; beyond this they are dropped and counted. */
export const MAX_QUEUED = 200;
/** The gateway's limits: 100 records and 32 KiB per report (we keep a margin on the bytes). */
export const MAX_BATCH = 100;
export const MAX_BATCH_BYTES = 30_000;
/** At most one report a second per isolate (the gateway allows a key 2/s after a burst of 10). */
export const MIN_INTERVAL_MS = 1000;
/**
 * Reports one drain sends before it ends: waitUntil keeps a drain alive only ~30 s after the
 * response, so a drain stays short and the next refusal starts another.
 */
export const MAX_REPORTS_PER_DRAIN = 5;
/** A report's own deadline; with the interval, a drain lasts at most ~30 s. */
export const REPORT_TIMEOUT_MS = 5000;
/** A drain older than this was cut off by the runtime (its promise never settles): start anew. */
export const STALE_DRAIN_MS = 60_000;
/** The value of the signed `Edge-Identity` component on a report: no caller identity travels. */
export const REPORT_IDENTITY = 'refusal-report';

const MAX_TEXT = 256;
const enc = new TextEncoder();

/** @typedef {import('./audit.js').AuditEvent} AuditEvent */
/** @typedef {{ records: Record<string, unknown>[], dropped: number }} Report */

/**
 * Text the gateway accepts (no control characters, at most `max` characters), or null.
 * @param {string | null | undefined} v
 * @param {number} [max]
 */
function text(v, max = MAX_TEXT) {
  if (typeof v !== 'string' || v.length === 0) return null;
  // eslint-disable-next-line no-control-regex
  const clean = v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  return clean.length === 0 ? null : clean.slice(0, max);
}

/**
 * The report record of a refusal: only the documented fields, each in the gateway's bounds.
 * @param {AuditEvent} e
 * @returns {Record<string, unknown>}
 */
export function recordOf(e) {
  const ray = e.rayId && /^[A-Za-z0-9-]{1,32}$/.test(e.rayId) ? e.rayId : null;
  const object = e.object && e.object.namespace
    ? { namespace: text(e.object.namespace, 253), name: text(e.object.name, 253), kind: 'EdgeVolume', ...(e.object.snapshot ? { snapshot: text(e.object.snapshot, 253) } : {}) }
    : null;
  return {
    requestId: e.requestId,
    time: e.time ?? new Date().toISOString(),
    reasonCode: e.reasonCode ?? 'internal_error',
    result: e.result ?? 500,
    traceId: e.traceId,
    issuer: text(e.issuer),
    subject: text(e.subject),
    action: e.action,
    object,
    policy: text(e.policy),
    policyRevision: text(e.policyRevision),
    edgeLocation: text(e.edgeLocation, 16),
    rayId: ray,
    latencyMs: { ...e.latencyMs },
  };
}

/**
 * One isolate's queue of refusals and its sender.
 */
export class RefusalReporter {
  /**
   * @param {{ maxQueued?: number, maxBatch?: number, maxBatchBytes?: number, minIntervalMs?: number,
   *   maxReportsPerDrain?: number, now?: () => number, sleep?: (ms: number) => Promise<void> }} [opts]
   */
  constructor(opts = {}) {
    this.maxQueued = opts.maxQueued ?? MAX_QUEUED;
    this.maxBatch = opts.maxBatch ?? MAX_BATCH;
    this.maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES;
    this.minIntervalMs = opts.minIntervalMs ?? MIN_INTERVAL_MS;
    this.maxReportsPerDrain = opts.maxReportsPerDrain ?? MAX_REPORTS_PER_DRAIN;
    this.now = opts.now ?? (() => Date.now());
    this.sleep = opts.sleep ?? ((/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms)));
    /** @type {{ record: Record<string, unknown>, bytes: number }[]} */
    this.queue = [];
    /** Records dropped (queue full, or a report that failed) and not yet reported. */
    this.dropped = 0;
    this.lastSentAt = -Infinity;
    /** @type {Promise<void> | null} */
    this.pending = null;
    this.pendingSince = 0;
  }

  /**
   * Queues a refusal; false when the queue is full (the record is counted, not kept).
   * @param {AuditEvent} event
   */
  add(event) {
    if (this.queue.length >= this.maxQueued) {
      this.dropped += 1;
      return false;
    }
    const record = recordOf(event);
    this.queue.push({ record, bytes: enc.encode(JSON.stringify(record)).length + 1 });
    return true;
  }

  /**
   * Starts sending what is queued, unless a send is already under way (it takes what was added
   * meanwhile). Returns the promise to hand to ctx.waitUntil, or null when there is nothing new.
   * @param {(report: Report) => Promise<boolean>} send true when the gateway accepted the report
   * @returns {Promise<void> | null}
   */
  schedule(send) {
    if (this.queue.length === 0) return null;
    if (this.pending && this.now() - this.pendingSince < STALE_DRAIN_MS) return null;
    const p = this.#drain(send).finally(() => {
      if (this.pending === p) this.pending = null;
    });
    this.pending = p;
    this.pendingSince = this.now();
    return p;
  }

  /** @param {(report: Report) => Promise<boolean>} send */
  async #drain(send) {
    for (let sent = 0; sent < this.maxReportsPerDrain && this.queue.length > 0; sent++) {
      const wait = this.lastSentAt + this.minIntervalMs - this.now();
      if (wait > 0) await this.sleep(wait);
      let n = 0;
      let bytes = 32;
      while (n < this.queue.length && n < this.maxBatch && bytes + this.queue[n].bytes <= this.maxBatchBytes) {
        bytes += this.queue[n].bytes;
        n += 1;
      }
      const batch = this.queue.splice(0, Math.max(n, 1)).map((q) => q.record);
      const dropped = this.dropped;
      this.dropped = 0;
      this.lastSentAt = this.now();
      let ok = false;
      try {
        ok = await send({ records: batch, dropped });
      } catch {
        ok = false;
      }
      if (!ok) {
        // Not retried: a gateway that refuses or is away must not grow the queue or keep the
        // isolate busy. The records are in Workers Logs; the count reaches the next report.
        this.dropped += dropped + batch.length;
        return;
      }
    }
  }
}
