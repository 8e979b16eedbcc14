// @ts-check
// Bearer token verification with jose (docs/edge-protocol.md §2.1). Maps every failure to one
// reason code; never logs or returns the token.

import { jwtVerify, createRemoteJWKSet, decodeProtectedHeader, decodeJwt } from 'jose';

export const JWKS_TIMEOUT_MS = 5000;
const JWKS_MAX_AGE_MS = 10 * 60 * 1000;
const DISCOVERY_TTL_MS = 60 * 60 * 1000;

/** @typedef {import('./config.js').IssuerEntry} IssuerEntry */
/**
 * The members of a jose error (or of anything else thrown) that mapJoseError reads.
 * @typedef {{ code?: string, claim?: string, reason?: string } | null | undefined} JoseLikeError
 */

export class TokenError extends Error {
  /**
   * @param {string} code the reason code (§6)
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * Extracts the bearer token, or throws token_missing.
 * @param {string | null | undefined} header
 */
export function bearerToken(header) {
  if (typeof header !== 'string') throw new TokenError('token_missing', 'no Authorization header');
  const m = /^Bearer +([^ ]+) *$/i.exec(header);
  if (!m) throw new TokenError('token_missing', 'Authorization is not a Bearer token');
  return m[1];
}

// Per-isolate caches: one remote JWK Set per (issuer, uri, cooldown) and discovered jwks_uri.
/** @type {Map<string, ReturnType<typeof createRemoteJWKSet>>} */
const jwksSets = new Map();
/** @type {Map<string, { uri: string, until: number }>} */
const discovered = new Map();

/**
 * @param {IssuerEntry} issuer
 * @returns {Promise<string>}
 */
async function discoverJwksUri(issuer) {
  const hit = discovered.get(issuer.issuer);
  if (hit && hit.until > Date.now()) return hit.uri;
  const url = `${issuer.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let doc;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(JWKS_TIMEOUT_MS), headers: { accept: 'application/json' }, redirect: 'manual' });
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    doc = await res.json();
  } catch (e) {
    throw new TokenError('jwks_unavailable', `discovery for ${issuer.name} failed: ${/** @type {Error} */ (e).message}`);
  }
  if (!doc || doc.issuer !== issuer.issuer || typeof doc.jwks_uri !== 'string') {
    throw new TokenError('jwks_unavailable', `discovery document of ${issuer.name} does not match the issuer`);
  }
  let uri;
  try {
    uri = new URL(doc.jwks_uri);
  } catch {
    throw new TokenError('jwks_unavailable', `discovery document of ${issuer.name} has an invalid jwks_uri`);
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(uri.hostname);
  if (!(uri.protocol === 'https:' || (uri.protocol === 'http:' && loopback))) {
    throw new TokenError('jwks_unavailable', `jwks_uri of ${issuer.name} must be https`);
  }
  discovered.set(issuer.issuer, { uri: uri.href, until: Date.now() + DISCOVERY_TTL_MS });
  return uri.href;
}

/**
 * @param {IssuerEntry} issuer
 * @param {number} cooldownSeconds
 */
async function keySetFor(issuer, cooldownSeconds) {
  const uri = issuer.jwksUri ?? (await discoverJwksUri(issuer));
  const cacheKey = `${issuer.name}\u0000${uri}\u0000${cooldownSeconds}`;
  let set = jwksSets.get(cacheKey);
  if (!set) {
    set = createRemoteJWKSet(new URL(uri), {
      timeoutDuration: JWKS_TIMEOUT_MS,
      cooldownDuration: cooldownSeconds * 1000,
      cacheMaxAge: JWKS_MAX_AGE_MS,
    });
    jwksSets.set(cacheKey, set);
  }
  return set;
}

/**
 * @param {JoseLikeError} e
 * @returns {string} the reason code
 */
function mapJoseError(e) {
  switch (e?.code) {
    case 'ERR_JWT_EXPIRED':
      return e.claim === 'iat' ? 'token_too_old' : 'token_expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      // A missing or empty `aud` is an audience failure too (docs/edge-protocol.md §3 step 10).
      if (e.claim === 'aud') return 'audience_mismatch';
      if (e.reason === 'missing' || e.reason === 'invalid') return 'claim_invalid';
      if (e.claim === 'nbf' || e.claim === 'iat') return 'token_not_yet_valid';
      if (e.claim === 'iss') return 'issuer_unknown';
      return 'claim_invalid';
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'alg_not_allowed';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'key_unknown';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return 'signature_invalid';
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return 'jwks_unavailable';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return 'token_malformed';
    default:
      // Network errors and non-200 JWKS answers (ERR_JOSE_GENERIC, TypeError from fetch).
      return 'jwks_unavailable';
  }
}

/**
 * Verifies a compact JWT against the configured issuers.
 * Returns {issuer (config entry), payload}. Throws TokenError.
 * @param {string} token
 * @param {import('./config.js').Issuers} issuers
 * @param {{ cooldownSeconds?: number, now?: Date }} [options]
 * @returns {Promise<{ issuer: IssuerEntry, payload: import('jose').JWTPayload }>}
 */
export async function verifyToken(token, issuers, { cooldownSeconds = 30, now } = {}) {
  let header;
  let unverified;
  try {
    header = decodeProtectedHeader(token);
    unverified = decodeJwt(token);
  } catch {
    throw new TokenError('token_malformed', 'token is not a compact JWS with JSON header and payload');
  }
  if (token.split('.').length !== 3) throw new TokenError('token_malformed', 'token is not a compact JWS');
  if (typeof unverified.iss !== 'string') throw new TokenError('token_malformed', 'token has no iss');
  const issuer = issuers.byIss.get(unverified.iss);
  if (!issuer) throw new TokenError('issuer_unknown', 'issuer is not configured');
  // Our own allow-list check first, so `none` and HS* never reach key selection.
  if (typeof header.alg !== 'string' || !issuer.algorithms.includes(header.alg)) {
    throw new TokenError('alg_not_allowed', `algorithm not allowed for issuer ${issuer.name}`);
  }
  const keys = await keySetFor(issuer, cooldownSeconds);
  let payload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: issuer.issuer,
      audience: issuer.audiences,
      algorithms: issuer.algorithms,
      clockTolerance: issuer.clockSkewSeconds,
      maxTokenAge: issuer.maxTokenAgeSeconds,
      requiredClaims: ['exp'],
      currentDate: now,
    }));
  } catch (e) {
    if (e instanceof TokenError) throw e;
    throw new TokenError(
      mapJoseError(/** @type {JoseLikeError} */ (e)),
      `token rejected for issuer ${issuer.name}: ${/** @type {JoseLikeError} */ (e)?.code ?? 'error'}`,
    );
  }
  // jose checks a future iat only with maxTokenAge; the protocol checks it always.
  const nowSec = Math.floor((now ?? new Date()).getTime() / 1000);
  if (typeof payload.iat === 'number' && payload.iat > nowSec + issuer.clockSkewSeconds) {
    throw new TokenError('token_not_yet_valid', 'iat is in the future');
  }
  return { issuer, payload };
}
