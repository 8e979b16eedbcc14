// Audit event shared by the Worker and the gateway (docs/edge-protocol.md §7). Holds no token, key,
// signature or body; written as one JSON line to Workers Logs.

export const AUDIT_SCHEMA = 'edgebind.dev/audit/v1';

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

const round = (x) => Math.round(x * 1000) / 1000;

export function emitAudit(event) {
  event.time = new Date().toISOString();
  for (const k of Object.keys(event.latencyMs)) event.latencyMs[k] = round(event.latencyMs[k]);
  console.log(JSON.stringify(event));
}
