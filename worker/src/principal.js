// @ts-check
// Claim mapping (docs/edge-protocol.md §2.2) and the Edge-Identity header (§5.4). Pure.

import { base64url } from './signature.js';
import { parseClaimPath, resolveClaim, normalizeClaim, groupsOf, groupsElsewhere } from './claims.js';

export { normalizeClaim };

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
 * @property {boolean} groupsUnknown the token says its groups are held elsewhere (§2.3)
 * @property {Record<string, string[] | null>} claims
 */

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
  const p = /** @type {Record<string, unknown>} */ (payload);
  const subPath = parseClaimPath(m.subjectClaim);
  const sub = subPath ? resolveClaim(p, subPath) : undefined;
  if (typeof sub !== 'string' || sub.length === 0) throw new ClaimError(`claim ${m.subjectClaim} must be a non-empty string`);
  /** @type {string[]} */
  let groups = [];
  let groupsUnknown = false;
  if (m.groupsClaim !== undefined) {
    const gPath = parseClaimPath(m.groupsClaim);
    if (!gPath) throw new ClaimError(`claim path ${m.groupsClaim} is invalid`);
    const g = resolveClaim(p, gPath);
    if (g === undefined) groupsUnknown = groupsElsewhere(gPath, p);
    else {
      const list = groupsOf(g);
      if (list === null) throw new ClaimError(`claim ${m.groupsClaim} must be a string, a list of strings or a map of strings`);
      groups = list;
    }
  }
  /** @type {Record<string, string[] | null>} */
  const claims = {};
  for (const name of referencedClaims) {
    const path = parseClaimPath(name);
    claims[name] = path ? normalizeClaim(resolveClaim(p, path)) : null;
  }
  return {
    issuer: issuer.name,
    issuerUrl: issuer.issuer,
    subject: m.prefix + sub,
    groups: [...new Set(groups.map((x) => m.prefix + x))],
    groupsUnknown,
    claims,
  };
}

/**
 * Builds the Edge-Identity JSON object in the documented member order.
 * @param {MappedPrincipal} principal
 * @param {JWTPayload} payload
 * @param {{ clientIp?: string | null, edgeLocation?: string | null, rayId?: string | null,
 *           policyRevision: string, decision: 'allow' | 'undecided', policy?: string | null,
 *           tokenHash?: string | null, receivedAt?: number | null, verifyMs?: number | null }} ctx
 */
export function edgeIdentity(principal, payload, ctx) {
  return {
    v: 1,
    issuer: principal.issuer,
    issuerUrl: principal.issuerUrl,
    subject: principal.subject,
    groups: principal.groups,
    groupsUnknown: principal.groupsUnknown,
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
    // Stage timings for the completion event (docs/edge-protocol.md §5.4).
    receivedAt: ctx.receivedAt ?? null,
    verifyMs: typeof ctx.verifyMs === 'number' ? Math.round(ctx.verifyMs * 1000) / 1000 : null,
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
