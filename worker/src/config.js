// @ts-check
// Parsing and validation of the Worker's bindings (docs/edge-protocol.md §1).
// Errors name the binding and the rule, never a value (SIGNING_KEY is a secret).

import { validateBundle, BundleError } from './policy.js';
import { importSigningKey } from './signature.js';
import { parseClaimPath } from './claims.js';

export class ConfigError extends Error {}

/**
 * The Worker's bindings (§1): plain-text variables and secrets, all strings when set.
 * @typedef {object} Env
 * @property {string} [GATEWAY_URL]
 * @property {GatewayFetcher} [GATEWAY] Workers VPC service binding to the gateway (optional)
 * @property {string} [ISSUERS]
 * @property {string} [POLICY_BUNDLE]
 * @property {string} [SIGNING_KEY]
 * @property {string} [EDGE_LOCATION]
 * @property {string} [GATEWAY_TIMEOUT_MS]
 * @property {string} [JWKS_COOLDOWN_SECONDS]
 */
/**
 * One validated ISSUERS entry.
 * @typedef {object} IssuerEntry
 * @property {string} name
 * @property {string} issuer
 * @property {string | undefined} jwksUri
 * @property {string[]} audiences
 * @property {string[]} algorithms
 * @property {number} clockSkewSeconds
 * @property {number | undefined} maxTokenAgeSeconds
 * @property {{ subjectClaim: string, groupsClaim: string | undefined, prefix: string }} claimMapping
 */
/** @typedef {{ list: IssuerEntry[], byIss: Map<string, IssuerEntry> }} Issuers */
/**
 * A `vpc_service` binding: `fetch(url, init)` always goes to the configured service.
 * @typedef {{ fetch: (input: string, init?: RequestInit) => Promise<Response> }} GatewayFetcher
 */
/**
 * @typedef {object} Config
 * @property {{ origin: string, authority: string }} gateway
 * @property {GatewayFetcher | null} gatewayBinding the VPC binding requests go through, if any
 * @property {Issuers} issuers
 * @property {import('./policy.js').ValidBundle} bundle
 * @property {{ keyId: string, key: CryptoKey }} signing
 * @property {string | null} edgeLocation
 * @property {number} gatewayTimeoutMs
 * @property {number} jwksCooldownSeconds
 */

export const ALLOWED_ALGS = Object.freeze(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const ISSUER_NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const LOCATION_RE = /^[A-Za-z0-9._-]{1,32}$/;

/**
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * https, or http to a loopback host (tests). Returns a URL or throws.
 * @param {string} raw
 * @param {string} what
 */
export function checkUrl(raw, what) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`${what} is not a URL`);
  }
  if (u.username || u.password) throw new ConfigError(`${what} must not carry credentials`);
  if (u.protocol === 'https:') return u;
  if (u.protocol === 'http:' && LOOPBACK.has(u.hostname)) return u;
  throw new ConfigError(`${what} must be https (http only for loopback)`);
}

/**
 * Through a Workers VPC binding (`viaBinding`) http is allowed to any host: the request is
 * carried encrypted up to the tunnel whatever the scheme, and always reaches the configured
 * service (docs/reference/cloudflare.md §11). Without one: https, or http to loopback.
 * @param {unknown} raw
 * @param {boolean} [viaBinding]
 * @returns {{ origin: string, authority: string }}
 */
export function parseGatewayUrl(raw, viaBinding = false) {
  if (typeof raw !== 'string' || raw.length === 0) throw new ConfigError('GATEWAY_URL is missing');
  const u = viaBinding ? checkBindingUrl(raw) : checkUrl(raw, 'GATEWAY_URL');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new ConfigError('GATEWAY_URL must be an origin without path, query or fragment');
  }
  return { origin: u.origin, authority: u.host };
}

/**
 * GATEWAY_URL behind the GATEWAY binding: http(s), no credentials.
 * @param {string} raw
 */
function checkBindingUrl(raw) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError('GATEWAY_URL is not a URL');
  }
  if (u.username || u.password) throw new ConfigError('GATEWAY_URL must not carry credentials');
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ConfigError('GATEWAY_URL must be http(s)');
  return u;
}

/**
 * The GATEWAY binding, when the Worker has one (an object with fetch).
 * @param {unknown} b
 * @returns {GatewayFetcher | null}
 */
function gatewayBinding(b) {
  if (b === undefined || b === null) return null;
  if (typeof b !== 'object' || typeof (/** @type {any} */ (b).fetch) !== 'function') throw new ConfigError('GATEWAY is not a service binding');
  return /** @type {GatewayFetcher} */ (b);
}

/**
 * @template {number | undefined} D
 * @param {unknown} v
 * @param {number} lo
 * @param {number} hi
 * @param {D} dflt
 * @param {string} what
 * @returns {number | D}
 */
function intIn(v, lo, hi, dflt, what) {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || /** @type {number} */ (v) < lo || /** @type {number} */ (v) > hi) throw new ConfigError(`${what} must be an integer ${lo}-${hi}`);
  return /** @type {number} */ (v);
}

/**
 * @param {unknown} raw
 * @returns {Issuers}
 */
export function parseIssuers(raw) {
  if (typeof raw !== 'string' || raw.length === 0) throw new ConfigError('ISSUERS is missing');
  let list;
  try {
    list = JSON.parse(raw);
  } catch {
    throw new ConfigError('ISSUERS is not JSON');
  }
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError('ISSUERS must be a non-empty array');
  /** @type {Map<string, IssuerEntry>} */
  const byIss = new Map();
  const names = new Set();
  /** @type {IssuerEntry[]} */
  const out = list.map((/** @type {unknown} */ e, /** @type {number} */ i) => {
    const at = `ISSUERS[${i}]`;
    if (!isObj(e)) throw new ConfigError(`${at} must be an object`);
    if (typeof e.name !== 'string' || e.name.length > 253 || !ISSUER_NAME_RE.test(e.name)) throw new ConfigError(`${at}.name is invalid`);
    if (names.has(e.name)) throw new ConfigError(`${at}.name is duplicated`);
    names.add(e.name);
    if (typeof e.issuer !== 'string' || e.issuer.length === 0) throw new ConfigError(`${at}.issuer is missing`);
    if (byIss.has(e.issuer)) throw new ConfigError(`${at}.issuer is duplicated`);
    checkUrl(e.issuer, `${at}.issuer`);
    let jwksUri;
    if (e.jwksUri !== undefined) jwksUri = checkUrl(e.jwksUri, `${at}.jwksUri`).href;
    if (!Array.isArray(e.audiences) || e.audiences.length === 0 || !e.audiences.every((/** @type {unknown} */ a) => typeof a === 'string' && a.length > 0)) {
      throw new ConfigError(`${at}.audiences must be a non-empty list of strings`);
    }
    if (!Array.isArray(e.algorithms) || e.algorithms.length === 0 || !e.algorithms.every((/** @type {unknown} */ a) => ALLOWED_ALGS.includes(/** @type {string} */ (a)))) {
      // Refuses none and HS*: HMAC with a public JWK would be algorithm confusion.
      throw new ConfigError(`${at}.algorithms must be a non-empty list from ${ALLOWED_ALGS.join(' ')}`);
    }
    const m = e.claimMapping ?? {};
    if (!isObj(m)) throw new ConfigError(`${at}.claimMapping must be an object`);
    const subjectClaim = m.subjectClaim ?? 'sub';
    if (typeof subjectClaim !== 'string' || parseClaimPath(subjectClaim) === null) throw new ConfigError(`${at}.claimMapping.subjectClaim is invalid`);
    if (m.groupsClaim !== undefined && (typeof m.groupsClaim !== 'string' || parseClaimPath(m.groupsClaim) === null)) {
      throw new ConfigError(`${at}.claimMapping.groupsClaim is invalid`);
    }
    const prefix = m.prefix ?? `${e.name}:`;
    if (typeof prefix !== 'string') throw new ConfigError(`${at}.claimMapping.prefix must be a string`);
    if (prefix === '' && list.length > 1) throw new ConfigError(`${at}.claimMapping.prefix may be empty only with one issuer`);
    const entry = {
      name: e.name,
      issuer: e.issuer,
      jwksUri,
      audiences: [...e.audiences],
      algorithms: [...e.algorithms],
      clockSkewSeconds: intIn(e.clockSkewSeconds, 0, 300, 60, `${at}.clockSkewSeconds`),
      maxTokenAgeSeconds: intIn(e.maxTokenAgeSeconds, 1, 86400, undefined, `${at}.maxTokenAgeSeconds`),
      claimMapping: { subjectClaim, groupsClaim: m.groupsClaim, prefix },
    };
    byIss.set(e.issuer, entry);
    return entry;
  });
  return { list: out, byIss };
}

/**
 * @param {unknown} raw
 * @returns {import('./policy.js').ValidBundle}
 */
export function parseBundle(raw) {
  if (typeof raw !== 'string' || raw.length === 0) throw new ConfigError('POLICY_BUNDLE is missing');
  let b;
  try {
    b = JSON.parse(raw);
  } catch {
    throw new ConfigError('POLICY_BUNDLE is not JSON');
  }
  try {
    return validateBundle(b);
  } catch (e) {
    if (e instanceof BundleError) throw new ConfigError(`POLICY_BUNDLE ${e.message}`);
    throw e;
  }
}

/**
 * @param {string | undefined | null} raw
 * @param {number} lo
 * @param {number} hi
 * @param {number} dflt
 * @param {string} what
 */
function optInt(raw, lo, hi, dflt, what) {
  if (raw === undefined || raw === null || raw === '') return dflt;
  if (!/^[0-9]+$/.test(String(raw))) throw new ConfigError(`${what} must be an integer`);
  return intIn(Number(raw), lo, hi, dflt, what);
}

/**
 * Parses every binding. Each part is cached by its exact binding string, so an isolate re-parses
 * only what changed (e.g. a rotated SIGNING_KEY).
 */
/** @type {Map<string, { raw: unknown, value: unknown }>} */
const cache = new Map();
/**
 * @template R, T
 * @param {string} slot
 * @param {R} raw
 * @param {(raw: R) => T | Promise<T>} parse
 * @returns {Promise<T>}
 */
async function cached(slot, raw, parse) {
  const hit = cache.get(slot);
  if (hit && hit.raw === raw) return /** @type {T} */ (hit.value);
  const value = await parse(raw);
  cache.set(slot, { raw, value });
  return value;
}

/**
 * @param {Env} env
 * @returns {Promise<Config>}
 */
export async function loadConfig(env) {
  const binding = gatewayBinding(env.GATEWAY);
  const gateway = binding
    ? await cached('gw-vpc', env.GATEWAY_URL, (raw) => parseGatewayUrl(raw, true))
    : await cached('gw', env.GATEWAY_URL, (raw) => parseGatewayUrl(raw));
  const issuers = await cached('iss', env.ISSUERS, parseIssuers);
  const bundle = await cached('bundle', env.POLICY_BUNDLE, parseBundle);
  if (typeof env.SIGNING_KEY !== 'string' || env.SIGNING_KEY.length === 0) throw new ConfigError('SIGNING_KEY is missing');
  const signing = await cached('key', env.SIGNING_KEY, async (raw) => {
    try {
      return await importSigningKey(raw);
    } catch (e) {
      throw new ConfigError(/** @type {Error} */ (e).message);
    }
  });
  const edgeLocation = env.EDGE_LOCATION;
  if (edgeLocation !== undefined && edgeLocation !== '' && !LOCATION_RE.test(edgeLocation)) throw new ConfigError('EDGE_LOCATION is invalid');
  return {
    gateway,
    gatewayBinding: binding,
    issuers,
    bundle,
    signing,
    edgeLocation: edgeLocation || null,
    gatewayTimeoutMs: optInt(env.GATEWAY_TIMEOUT_MS, 1000, 60000, 25000, 'GATEWAY_TIMEOUT_MS'),
    jwksCooldownSeconds: optInt(env.JWKS_COOLDOWN_SECONDS, 0, 600, 30, 'JWKS_COOLDOWN_SECONDS'),
  };
}
