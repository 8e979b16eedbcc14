// @ts-check
// edgebind edge Worker: authenticate the caller, pre-check policy, sign, forward to the gateway,
// and emit one audit event per request. Contract: docs/edge-protocol.md.

import { loadConfig, ConfigError } from './config.js';
import { bearerToken, verifyToken, TokenError } from './token.js';
import { mapPrincipal, edgeIdentity, encodeEdgeIdentity, ClaimError } from './principal.js';
import { decide } from './policy.js';
import { resolveRequest, RouteError, MAX_BODY_BYTES } from './routes.js';
import { RateLimiter } from './ratelimit.js';
import { base64url, contentDigest, signEdgebind, pathComponent, queryComponent } from './signature.js';
import { newAuditEvent, emitAudit, requestIdFrom } from './audit.js';
import { RefusalReporter, REPORT_PATH, REPORT_IDENTITY, REPORT_TIMEOUT_MS } from './refusals.js';

const limiter = new RateLimiter();
/** This isolate's queue of refusals for the gateway (§7.2). */
export const reporter = new RefusalReporter();
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer'];
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** @typedef {import('./config.js').Env} Env */
/**
 * A request as the Workers runtime hands it over, with Cloudflare's `cf` properties.
 * @typedef {Request<unknown, IncomingRequestCfProperties>} WorkerRequest
 */
/** @typedef {import('./audit.js').AuditEvent} AuditEvent */
/** @typedef {{ traceparent: string, traceId: string, tracestate: string | null }} Trace */
/**
 * What an error thrown by fetch (or anything else) may carry.
 * @typedef {{ name?: unknown } | null | undefined} Thrown
 */

/** A refusal answered to the caller with an error body. */
class Refusal extends Error {
  /**
   * @param {number} status
   * @param {string} code the reason code (§6)
   * @param {string} message
   * @param {Record<string, string>} [headers] extra response headers
   */
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** @param {Uint8Array} bytes */
function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Keeps a valid client traceparent, else starts a new trace.
 * @param {Headers} headers
 * @returns {Trace}
 */
function traceContext(headers) {
  const tp = headers.get('traceparent');
  const m = tp ? TRACEPARENT_RE.exec(tp.trim()) : null;
  if (m && !/^0+$/.test(m[1]) && !/^0+$/.test(m[2])) {
    // m is set, so tp is too.
    return { traceparent: /** @type {string} */ (tp).trim(), traceId: m[1], tracestate: headers.get('tracestate') };
  }
  const traceId = hex(crypto.getRandomValues(new Uint8Array(16)));
  const spanId = hex(crypto.getRandomValues(new Uint8Array(8)));
  return { traceparent: `00-${traceId}-${spanId}-01`, traceId, tracestate: null };
}

/**
 * @param {number} status
 * @param {string} code
 * @param {string} message
 * @param {string} requestId
 * @param {Record<string, string>} [extra] extra headers
 */
function errorResponse(status, code, message, requestId, extra = {}) {
  const headers = { 'content-type': 'application/json', 'edge-request-id': requestId, ...extra };
  return new Response(JSON.stringify({ error: { code, message, requestId } }), { status, headers });
}

const WWW_AUTH = (/** @type {string} */ code) => (code === 'token_missing' ? 'Bearer realm="edgebind"' : `Bearer realm="edgebind", error="invalid_token"`);

/**
 * Reads the body up to MAX_BODY_BYTES.
 * @param {Request} request
 * @returns {Promise<Uint8Array>}
 */
async function readBody(request) {
  const len = request.headers.get('content-length');
  if (len !== null && Number(len) > MAX_BODY_BYTES) throw new Refusal(413, 'body_too_large', 'request body too large');
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  /** @type {Uint8Array[]} */
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      throw new Refusal(413, 'body_too_large', 'request body too large');
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/**
 * @param {Request} request
 * @param {Uint8Array} bytes
 * @returns {unknown}
 */
function parseJsonBody(request, bytes) {
  const ct = (request.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (ct !== 'application/json') throw new Refusal(415, 'content_type_unsupported', 'body must be application/json');
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    throw new Refusal(400, 'request_invalid', 'body is not valid JSON');
  }
}

/**
 * The part of the Workers ExecutionContext we use.
 * @typedef {{ waitUntil: (p: Promise<unknown>) => void }} Ctx
 */

/**
 * Sends one refusal report to the gateway, signed like any edge request (§7.2). True when the
 * gateway accepted it.
 * @param {Env} env
 * @param {import('./refusals.js').Report} report
 * @returns {Promise<boolean>}
 */
export async function sendReport(env, report) {
  const cfg = await loadConfig(env);
  const body = new TextEncoder().encode(JSON.stringify(report));
  const digest = await contentDigest(body);
  const msg = {
    method: 'POST',
    authority: cfg.gateway.authority,
    path: REPORT_PATH,
    query: queryComponent(''),
    contentType: 'application/json',
    contentDigest: digest,
    edgeIdentity: REPORT_IDENTITY,
    requestId: requestIdFrom(null),
  };
  const sig = await signEdgebind(cfg.signing.key, cfg.signing.keyId, msg);
  const headers = new Headers({
    'content-type': msg.contentType,
    'content-digest': digest,
    'edge-identity': msg.edgeIdentity,
    'edge-request-id': msg.requestId,
    'signature-input': sig['signature-input'],
    signature: sig.signature,
  });
  const via = cfg.gatewayBinding;
  const send = via ? (/** @type {string} */ u, /** @type {RequestInit} */ i) => via.fetch(u, i) : fetch;
  const resp = await send(`${cfg.gateway.origin}${REPORT_PATH}`, {
    method: 'POST',
    headers,
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(Math.min(cfg.gatewayTimeoutMs, REPORT_TIMEOUT_MS)),
  });
  await resp.body?.cancel();
  if (resp.status !== 202) console.error(JSON.stringify({ msg: 'refusal report not accepted', status: resp.status }));
  return resp.status === 202;
}

/**
 * @param {WorkerRequest} request
 * @param {Env} env
 * @param {Ctx} [ctx] the runtime's execution context: refusal reports are sent in its waitUntil
 * @returns {Promise<Response>}
 */
export async function handle(request, env, ctx) {
  const t0 = performance.now();
  const receivedAt = Date.now();
  const requestId = requestIdFrom(request.headers.get('cf-ray'));
  const trace = traceContext(request.headers);
  const audit = newAuditEvent(requestId, trace.traceId);
  audit.rayId = request.headers.get('cf-ray');
  let response;
  try {
    response = await process(request, env, audit, requestId, trace, receivedAt);
  } catch (e) {
    if (e instanceof Refusal) {
      audit.decision = 'deny';
      audit.reasonCode = e.code;
      response = errorResponse(e.status, e.code, e.message, requestId, e.headers);
    } else {
      // Unexpected: fail closed without detail to the caller.
      console.error(JSON.stringify({ msg: 'worker internal error', requestId, error: String(/** @type {Thrown} */ (e)?.name ?? 'Error') }));
      audit.decision = 'deny';
      audit.reasonCode = 'internal_error';
      response = errorResponse(500, 'internal_error', 'internal error', requestId);
    }
  }
  audit.result = response.status;
  audit.latencyMs.total = performance.now() - t0;
  emitAudit(audit);
  // A refusal goes to the cluster's audit trail too, after the answer (never delaying it).
  if (audit.decision === 'deny' && ctx) {
    reporter.add(audit);
    const sending = reporter.schedule((report) => sendReport(env, report));
    if (sending) ctx.waitUntil(sending);
  }
  return response;
}

/**
 * @param {WorkerRequest} request
 * @param {Env} env
 * @param {AuditEvent} audit
 * @param {string} requestId
 * @param {Trace} trace
 * @param {number} receivedAt Unix milliseconds when the Worker received the request
 * @returns {Promise<Response>}
 */
async function process(request, env, audit, requestId, trace, receivedAt) {
  let cfg;
  try {
    cfg = await loadConfig(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(JSON.stringify({ msg: 'invalid worker configuration', requestId, problem: e.message }));
    throw new Refusal(500, 'config_invalid', 'edge configuration is invalid');
  }
  audit.policyRevision = cfg.bundle.revision;
  audit.edgeLocation = request.cf?.colo ?? cfg.edgeLocation;

  // 1. Authenticate.
  const tv = performance.now();
  let issuer;
  let payload;
  let principal;
  let token;
  try {
    token = bearerToken(request.headers.get('authorization'));
    ({ issuer, payload } = await verifyToken(token, cfg.issuers, { cooldownSeconds: cfg.jwksCooldownSeconds }));
    principal = mapPrincipal(issuer, payload, cfg.bundle.claimsByIssuer.get(issuer.name) ?? []);
  } catch (e) {
    audit.latencyMs.verify = performance.now() - tv;
    if (e instanceof TokenError) {
      const status = e.code === 'jwks_unavailable' ? 503 : 401;
      if (status === 503) console.error(JSON.stringify({ msg: 'jwks unavailable', requestId, problem: e.message }));
      throw new Refusal(status, e.code, status === 401 ? 'authentication failed' : 'identity provider keys unavailable', status === 401 ? { 'www-authenticate': WWW_AUTH(e.code) } : {});
    }
    if (e instanceof ClaimError) throw new Refusal(401, 'claim_invalid', 'authentication failed', { 'www-authenticate': WWW_AUTH('claim_invalid') });
    throw e;
  }
  audit.latencyMs.verify = performance.now() - tv;
  audit.issuer = principal.issuer;
  audit.subject = principal.subject;

  // 2. Route and body.
  const url = new URL(request.url);
  const method = request.method.toUpperCase();
  const bodyBytes = await readBody(request);
  let body;
  if (method === 'POST') body = parseJsonBody(request, bodyBytes);
  else if (bodyBytes.length > 0) throw new Refusal(400, 'request_invalid', `${method} takes no body`);
  let req;
  try {
    req = resolveRequest(method, url.pathname, body);
  } catch (e) {
    if (e instanceof RouteError) throw new Refusal(e.status, e.code, e.message, e.allow ? { allow: e.allow } : {});
    throw e;
  }
  audit.action = req.action;
  if (req.action !== 'can-i') {
    audit.object = { namespace: req.namespace, name: req.name, kind: 'EdgeVolume' };
    if (req.snapshot) audit.object.snapshot = req.snapshot;
  }
  req.clientIp = request.headers.get('cf-connecting-ip');

  // 3. Policy pre-check and rate limit (not for can-i: it only reports).
  const tp = performance.now();
  /** @type {import('./policy.js').Decision} */
  let decision = { decision: 'allow', reasonCode: 'can_i', policy: null, rateLimited: [] };
  if (req.action !== 'can-i') {
    decision = decide(cfg.bundle, principal, req);
    audit.policy = decision.policy;
    if (decision.decision === 'deny') {
      audit.latencyMs.policy = performance.now() - tp;
      throw new Refusal(403, decision.reasonCode, 'not permitted by policy');
    }
    const rl = limiter.take(decision.rateLimited, principal.issuer, principal.subject);
    if (!rl.ok) {
      audit.policy = rl.policy;
      audit.latencyMs.policy = performance.now() - tp;
      throw new Refusal(429, 'rate_limited', 'rate limit exceeded', { 'retry-after': String(rl.retryAfter) });
    }
  }
  audit.latencyMs.policy = performance.now() - tp;

  // 4. Identity header and signature. The caller's token goes along (Edge-Token), bound to this
  // signed request by its hash: the gateway verifies it itself (docs/edge-protocol.md §5.4).
  const ts = performance.now();
  const tokenHash = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))));
  const identity = encodeEdgeIdentity(
    edgeIdentity(principal, payload, {
      clientIp: req.clientIp,
      edgeLocation: audit.edgeLocation,
      rayId: audit.rayId,
      policyRevision: cfg.bundle.revision,
      // can-i is never pre-decided by the Worker: the gateway answers it.
      decision: decision.decision === 'allow' && req.action !== 'can-i' ? 'allow' : 'undecided',
      policy: decision.policy,
      tokenHash,
      receivedAt,
      verifyMs: audit.latencyMs.verify,
    }),
  );
  if (identity === null) throw new Refusal(401, 'identity_too_large', 'identity too large to forward');
  const digest = await contentDigest(bodyBytes);
  const msg = {
    method,
    authority: cfg.gateway.authority,
    path: pathComponent(url.pathname),
    query: queryComponent(url.search),
    contentType: 'application/json',
    contentDigest: digest,
    edgeIdentity: identity,
    requestId,
  };
  const sig = await signEdgebind(cfg.signing.key, cfg.signing.keyId, msg);
  audit.keyId = cfg.signing.keyId;
  audit.latencyMs.sign = performance.now() - ts;

  const headers = new Headers({
    'content-type': msg.contentType,
    'content-digest': digest,
    'edge-identity': identity,
    'edge-token': token,
    'edge-request-id': requestId,
    'signature-input': sig['signature-input'],
    signature: sig.signature,
    traceparent: trace.traceparent,
  });
  if (trace.tracestate) headers.set('tracestate', trace.tracestate);
  const accept = request.headers.get('accept');
  if (accept) headers.set('accept', accept);

  // 5. Forward.
  const tu = performance.now();
  let upstream;
  try {
    // Through the Workers VPC binding when there is one (it reaches only the gateway Service).
    const via = cfg.gatewayBinding;
    const send = via ? (/** @type {string} */ u, /** @type {RequestInit} */ i) => via.fetch(u, i) : fetch;
    upstream = await send(`${cfg.gateway.origin}${msg.path}${url.search}`, {
      method,
      headers,
      body: method === 'POST' ? bodyBytes : undefined,
      redirect: 'manual',
      signal: AbortSignal.timeout(cfg.gatewayTimeoutMs),
    });
  } catch (e) {
    audit.latencyMs.upstream = performance.now() - tu;
    if (/** @type {Thrown} */ (e)?.name === 'TimeoutError' || /** @type {Thrown} */ (e)?.name === 'AbortError') throw new Refusal(504, 'gateway_timeout', 'gateway did not answer in time');
    throw new Refusal(502, 'gateway_unreachable', 'gateway unreachable');
  }
  audit.latencyMs.upstream = performance.now() - tu;
  audit.decision = 'allow';
  audit.reasonCode = decision.decision === 'allow' ? decision.reasonCode : 'policy_undecided';
  const out = new Headers(upstream.headers);
  for (const h of HOP_BY_HOP) out.delete(h);
  out.set('edge-request-id', requestId);
  return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: out });
}

export default {
  /**
   * @param {WorkerRequest} request
   * @param {Env} env
   * @param {Ctx} ctx
   */
  fetch(request, env, ctx) {
    return handle(request, env, ctx);
  },
};
