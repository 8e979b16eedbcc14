// @ts-check
// Audit event shared by the Worker and the gateway (docs/edge-protocol.md §7). Holds no token, key,
// signature or body; written as one JSON line to Workers Logs.

export const AUDIT_SCHEMA = 'edgebind.dev/audit/v1';

const RAY_RE = /^([0-9a-f]{16})(-[A-Za-z]{3,4})?$/i;

/**
 * The request id (docs/edge-protocol.md §5.1): the hex part of Cloudflare's `cf-ray` (16 zeros
 * when absent or not a ray) joined with 16 hex characters of our own randomness, so that one id
 * finds the request in Cloudflare's logs and is still unique when a ray repeats. The Worker signs
 * it (`edge-request-id` is a covered component); the gateway writes it on what it changes.
 * @param {string | null | undefined} cfRay
 * @returns {string}
 */
export function requestIdFrom(cfRay) {
  const m = typeof cfRay === 'string' ? RAY_RE.exec(cfRay.trim()) : null;
  const ray = m ? m[1].toLowerCase() : '0'.repeat(16);
  const rand = [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${ray}-${rand}`;
}

/** @typedef {{ namespace: string | null, name: string | null, kind: 'EdgeVolume', snapshot?: string }} AuditObject */
/** @typedef {{ verify: number, policy: number, sign: number, upstream: number, total: number }} Latencies */
/**
 * @typedef {object} AuditEvent
 * @property {string} schema
 * @property {string | null} time
 * @property {'worker'} source
 * @property {string} requestId
 * @property {string} traceId
 * @property {string | null} issuer
 * @property {string | null} subject
 * @property {string | null} action
 * @property {AuditObject | null} object
 * @property {'allow' | 'deny'} decision
 * @property {string | null} reasonCode
 * @property {string | null} policy
 * @property {string | null} policyRevision
 * @property {string | null} keyId
 * @property {string | null} edgeLocation
 * @property {string | null} rayId
 * @property {number | null} result
 * @property {Latencies} latencyMs
 */

/**
 * @param {string} requestId
 * @param {string} traceId
 * @returns {AuditEvent}
 */
export function newAuditEvent(requestId, traceId) {
  return {
    schema: AUDIT_SCHEMA,
    time: null,
    source: 'worker',
    requestId,
    traceId,
    issuer: null,
    subject: null,
    action: null,
    object: null,
    decision: 'deny',
    reasonCode: null,
    policy: null,
    policyRevision: null,
    keyId: null,
    edgeLocation: null,
    rayId: null,
    result: null,
    latencyMs: { verify: 0, policy: 0, sign: 0, upstream: 0, total: 0 },
  };
}

const round = (/** @type {number} */ x) => Math.round(x * 1000) / 1000;

/** @param {AuditEvent} event */
export function emitAudit(event) {
  event.time = new Date().toISOString();
  for (const k of /** @type {(keyof Latencies)[]} */ (Object.keys(event.latencyMs))) event.latencyMs[k] = round(event.latencyMs[k]);
  console.log(JSON.stringify(event));
}
