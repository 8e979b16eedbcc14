// @ts-check
// The gateway's REST surface as the Worker sees it (docs/edge-protocol.md §4): path -> action and
// policy object; body members the policy needs. Pure.

export const MAX_BODY_BYTES = 65536;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** @typedef {import('./policy.js').Action} Action */
/**
 * A matched route. `methods` maps each allowed method to its action (null for can-i, whose
 * action is in the body).
 * @typedef {{ route: 'can-i', methods: Record<string, null> } | {
 *   route: 'volumes' | 'volume' | 'resize' | 'snapshots' | 'snapshot' | 'restore',
 *   namespace: string, name: string | null, snapshot: string | null, methods: Record<string, Action>,
 * }} Route
 */
/**
 * The policy request of a volume route (policy.js PolicyRequest plus the snapshot name).
 * `clientIp` is filled in by the caller.
 * @typedef {object} VolumeRequest
 * @property {Action} action
 * @property {string} namespace
 * @property {string | null} name
 * @property {Record<string, string> | null} labels
 * @property {number | null} sizeBytes
 * @property {string | null} snapshot
 * @property {string | null} [clientIp]
 */
/**
 * @typedef {object} CanIRequest
 * @property {'can-i'} action
 * @property {string | null} namespace
 * @property {null} name
 * @property {null} labels
 * @property {null} sizeBytes
 * @property {null} snapshot
 * @property {string | null} [clientIp]
 */

export class RouteError extends Error {
  /**
   * @param {string} code
   * @param {number} status
   * @param {string} message
   * @param {string} [allow] the Allow header for method_not_allowed
   */
  constructor(code, status, message, allow) {
    super(message);
    this.code = code;
    this.status = status;
    this.allow = allow;
  }
}

/**
 * @param {unknown} s
 * @returns {s is string}
 */
const label = (s) => typeof s === 'string' && s.length <= 63 && DNS_LABEL.test(s);

/**
 * Matches a path to a route. Returns {route, namespace, name, snapshot, methods} or null.
 * `name` is null for the collection route.
 * @param {string} path
 * @returns {Route | null}
 */
export function matchRoute(path) {
  if (path === '/api/v1/can-i') return { route: 'can-i', methods: { POST: null } };
  const seg = path.split('/');
  // ['', 'api', 'v1', 'namespaces', ns, 'volumes', ...]
  if (seg.length < 6 || seg[0] !== '' || seg[1] !== 'api' || seg[2] !== 'v1' || seg[3] !== 'namespaces' || seg[5] !== 'volumes') return null;
  const ns = seg[4];
  if (!label(ns)) return null;
  const rest = seg.slice(6);
  /** @type {{ namespace: string, name: string | null, snapshot: string | null }} */
  const base = { namespace: ns, name: null, snapshot: null };
  if (rest.length === 0) return { ...base, route: 'volumes', methods: { GET: 'read', POST: 'create' } };
  const name = rest[0];
  if (!label(name)) return null;
  const v = { ...base, name };
  if (rest.length === 1) return { ...v, route: 'volume', methods: { GET: 'read', DELETE: 'delete' } };
  if (rest.length === 2 && rest[1] === 'resize') return { ...v, route: 'resize', methods: { POST: 'resize' } };
  if (rest[1] !== 'snapshots') return null;
  if (rest.length === 2) return { ...v, route: 'snapshots', methods: { GET: 'read', POST: 'snapshot' } };
  const snap = rest[2];
  if (!label(snap)) return null;
  const s = { ...v, snapshot: snap };
  if (rest.length === 3) return { ...s, route: 'snapshot', methods: { GET: 'read', DELETE: 'delete' } };
  if (rest.length === 4 && rest[3] === 'restore') return { ...s, route: 'restore', methods: { POST: 'restore' } };
  return null;
}

/**
 * @param {unknown} v
 * @returns {Record<string, string> | null}
 */
function validLabels(v) {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string' || k.length === 0 || k.length > 317 || val.length > 63) return null;
  }
  return /** @type {Record<string, string>} */ (v);
}

/** @type {(v: unknown) => boolean} */
const sizeOk = (v) => Number.isSafeInteger(v) && /** @type {number} */ (v) >= 1 && /** @type {number} */ (v) <= MAX_SAFE;

/**
 * Resolves method + path + body to the policy request.
 * Returns {action ('can-i' for can-i), namespace, name, labels (null = unknown), sizeBytes, snapshot}.
 * Throws RouteError for route_unknown, method_not_allowed, request_invalid.
 * body: parsed JSON (undefined when the request has no body).
 * @param {string} method
 * @param {string} path
 * @param {any} body parsed JSON, untrusted: every member used is checked here
 * @returns {VolumeRequest | CanIRequest}
 */
export function resolveRequest(method, path, body) {
  const r = matchRoute(path);
  if (!r) throw new RouteError('route_unknown', 404, 'no such route');
  if (!Object.prototype.hasOwnProperty.call(r.methods, method)) {
    throw new RouteError('method_not_allowed', 405, `method ${method} not allowed here`, Object.keys(r.methods).join(', '));
  }
  const action = r.methods[method];
  const needsBody = method === 'POST';
  const isObj = body !== null && typeof body === 'object' && !Array.isArray(body);
  if (needsBody && !isObj) throw new RouteError('request_invalid', 400, 'a JSON object body is required');
  if (r.route === 'can-i') return { action: 'can-i', namespace: typeof body.namespace === 'string' ? body.namespace : null, name: null, labels: null, sizeBytes: null, snapshot: null };
  // Not can-i: every other route maps its methods to actions.
  /** @type {VolumeRequest} */
  const req = { action: /** @type {Action} */ (action), namespace: r.namespace, name: r.name, labels: null, sizeBytes: null, snapshot: r.snapshot };
  if (action === 'create') {
    if (!label(body.name)) throw new RouteError('request_invalid', 400, 'name must be a DNS label');
    if (!sizeOk(body.sizeBytes)) throw new RouteError('request_invalid', 400, 'sizeBytes must be an integer >= 1');
    const labels = validLabels(body.labels);
    if (!labels) throw new RouteError('request_invalid', 400, 'labels must map strings to strings');
    // The new volume's labels are known: they are in the body.
    return { ...req, name: body.name, labels, sizeBytes: body.sizeBytes };
  }
  if (action === 'resize') {
    if (!sizeOk(body.sizeBytes)) throw new RouteError('request_invalid', 400, 'sizeBytes must be an integer >= 1');
    return { ...req, sizeBytes: body.sizeBytes };
  }
  if (action === 'snapshot' && !label(body.name)) throw new RouteError('request_invalid', 400, 'name must be a DNS label');
  if (action === 'restore') {
    if (!label(body.name)) throw new RouteError('request_invalid', 400, 'name must be a DNS label');
    if (!validLabels(body.labels)) throw new RouteError('request_invalid', 400, 'labels must map strings to strings');
  }
  return req;
}
