// @ts-check
// Claim mapping (docs/edge-protocol.md §2.2) and the Edge-Identity header (§5.4). Pure.

import { base64url } from './signature.js';

export const MAX_IDENTITY_BYTES = 8192;

export class ClaimError extends Error {}

/** @typedef {import('jose').JWTPayload} JWTPayload */
/**
 * The authenticated principal (§2.2): policy.js Principal plus the issuer URL.
 * @typedef {object} MappedPrincipal
 * @property {string} issuer the issuer name
 * @property {string} issuerUrl
 * @property {string} subject prefixed
 * @property {string[]} groups prefixed
 * @property {Record<string, string[] | null>} claims
 */

/**
 * @param {unknown} v
 * @returns {string | null}
 */
function scalarText(v) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return null;
}

/**
 * Normalizes a claim value to a list of strings; null when unevaluable.
 * @param {unknown} value
 * @returns {string[] | null}
 */
export function normalizeClaim(value) {
  if (value === undefined) return [];
  if (Array.isArray(value)) {
    /** @type {string[]} */
    const out = [];
    for (const v of value) {
      const t = scalarText(v);
      if (t === null) return null;
      out.push(t);
    }
    return out;
  }
  const t = scalarText(value);
  return t === null ? null : [t];
}

const own = (/** @type {object} */ o, /** @type {string} */ k) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Maps a verified JWT payload to the principal.
 * issuer: a validated ISSUERS entry; referencedClaims: iterable of claim names the bundle uses.
 * Throws ClaimError (reason claim_invalid).
 * @param {import('./config.js').IssuerEntry} issuer
 * @param {JWTPayload} payload
 * @param {Iterable<string>} [referencedClaims]
 * @returns {MappedPrincipal}
 */
export function mapPrincipal(issuer, payload, referencedClaims = []) {
  const m = issuer.claimMapping;
  const sub = own(payload, m.subjectClaim) ? payload[m.subjectClaim] : undefined;
  if (typeof sub !== 'string' || sub.length === 0) throw new ClaimError(`claim ${m.subjectClaim} must be a non-empty string`);
  /** @type {string[]} */
  let groups = [];
  if (m.groupsClaim !== undefined && own(payload, m.groupsClaim)) {
    const g = payload[m.groupsClaim];
    if (typeof g === 'string') groups = [g];
    else if (Array.isArray(g) && g.every((x) => typeof x === 'string')) groups = g;
    else throw new ClaimError(`claim ${m.groupsClaim} must be a string or a list of strings`);
  }
  /** @type {Record<string, string[] | null>} */
  const claims = {};
  for (const name of referencedClaims) {
    claims[name] = normalizeClaim(own(payload, name) ? payload[name] : undefined);
  }
  return {
    issuer: issuer.name,
    issuerUrl: issuer.issuer,
    subject: m.prefix + sub,
    groups: [...new Set(groups.map((x) => m.prefix + x))],
    claims,
  };
}

/**
 * Builds the Edge-Identity JSON object in the documented member order.
 * @param {MappedPrincipal} principal
 * @param {JWTPayload} payload
 * @param {{ clientIp?: string | null, edgeLocation?: string | null, rayId?: string | null,
 *           policyRevision: string, decision: 'allow' | 'undecided', policy?: string | null,
 *           tokenHash?: string | null }} ctx
 */
export function edgeIdentity(principal, payload, ctx) {
  return {
    v: 1,
    issuer: principal.issuer,
    issuerUrl: principal.issuerUrl,
    subject: principal.subject,
    groups: principal.groups,
    claims: principal.claims,
    tokenJti: typeof payload.jti === 'string' ? payload.jti : null,
    tokenExp: payload.exp,
    tokenHash: ctx.tokenHash ?? null,
    clientIp: ctx.clientIp ?? null,
    edgeLocation: ctx.edgeLocation ?? null,
    rayId: ctx.rayId ?? null,
    policyRevision: ctx.policyRevision,
    decision: ctx.decision,
    policy: ctx.policy ?? null,
  };
}

/**
 * Base64url (no padding) of the UTF-8 JSON; null when over MAX_IDENTITY_BYTES.
 * @param {object} identity
 */
export function encodeEdgeIdentity(identity) {
  const enc = base64url(new TextEncoder().encode(JSON.stringify(identity)));
  return enc.length > MAX_IDENTITY_BYTES ? null : enc;
}
