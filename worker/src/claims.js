// @ts-check
// Claim paths and subject patterns (docs/edge-protocol.md §2.3): the grammar the gateway
// implements in crates/edgebind/src/gateway/claims.rs. tests/vectors/claims.json runs through
// both. Pure.
//
// - A claim path is a top-level claim name (no leading `/`) or an RFC 6901 JSON Pointer
//   (leading `/`; `~1` is `/`, `~0` is `~`, any other `~` is invalid; a token reaching an array is
//   a decimal index without leading zeros).
// - A subject pattern is compared segment by segment (split on `/`): `*` matches any run inside
//   one segment, everything else itself. No regex is ever built from it.

export const MAX_PATH_LEN = 256;

/**
 * Parses a claim path into its reference tokens; null when invalid.
 * @param {string} s
 * @returns {string[] | null}
 */
export function parseClaimPath(s) {
  if (typeof s !== 'string' || s.length === 0 || new TextEncoder().encode(s).length > MAX_PATH_LEN) return null;
  if (!s.startsWith('/')) return [s];
  /** @type {string[]} */
  const out = [];
  for (const t of s.slice(1).split('/')) {
    if (/~(?![01])/.test(t)) return null;
    out.push(t.replaceAll('~1', '/').replaceAll('~0', '~'));
  }
  return out;
}

const own = (/** @type {object} */ o, /** @type {string} */ k) => Object.prototype.hasOwnProperty.call(o, k);
const isObj = (/** @type {unknown} */ v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The value at a parsed path; undefined when any step is absent.
 * @param {Record<string, unknown>} payload
 * @param {string[]} tokens
 * @returns {unknown}
 */
export function resolveClaim(payload, tokens) {
  /** @type {unknown} */
  let v = payload;
  for (const t of tokens) {
    if (Array.isArray(v)) {
      if (!/^(0|[1-9][0-9]*)$/.test(t)) return undefined;
      const i = Number(t);
      if (!Number.isSafeInteger(i) || i >= v.length) return undefined;
      v = v[i];
    } else if (isObj(v)) {
      const o = /** @type {Record<string, unknown>} */ (v);
      if (!own(o, t)) return undefined;
      v = o[t];
    } else {
      return undefined;
    }
  }
  return v;
}

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

/** Entries sorted by key in UTF-16 code-unit order (the gateway sorts the same way). */
const sortedEntries = (/** @type {Record<string, unknown>} */ o) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * A claim value for a policy matcher: absent []; scalar [text]; list of scalars; map of scalars as
 * key=value entries in key order; anything else null (unevaluable).
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
  if (isObj(value)) {
    /** @type {string[]} */
    const out = [];
    for (const [k, v] of sortedEntries(/** @type {Record<string, unknown>} */ (value))) {
      const t = scalarText(v);
      if (t === null) return null;
      out.push(`${k}=${t}`);
    }
    return out;
  }
  const t = scalarText(value);
  return t === null ? null : [t];
}

/**
 * The groups a claim value names (string, list of strings, map of strings as key=value); null
 * for anything else (claim_invalid).
 * @param {unknown} v
 * @returns {string[] | null}
 */
export function groupsOf(v) {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.every((x) => typeof x === 'string') ? v : null;
  if (isObj(v)) {
    const e = sortedEntries(/** @type {Record<string, unknown>} */ (v));
    return e.every(([, x]) => typeof x === 'string') ? e.map(([k, x]) => `${k}=${x}`) : null;
  }
  return null;
}

/**
 * OpenID Connect Core §5.6.2 distributed claims (Entra ID's groups overage): a top-level groups
 * claim that is absent but named in `_claim_names` means the groups are unknown.
 * @param {string[]} tokens the parsed groups path
 * @param {Record<string, unknown>} payload
 */
export function groupsElsewhere(tokens, payload) {
  if (tokens.length !== 1 || resolveClaim(payload, tokens) !== undefined) return false;
  const names = own(payload, '_claim_names') ? payload._claim_names : undefined;
  return isObj(names) && own(/** @type {object} */ (names), tokens[0]);
}

/**
 * `*` any run inside the segment (also empty), everything else itself; one backtrack point.
 * Compares code points, as the gateway compares chars.
 * @param {string[]} p
 * @param {string[]} n
 */
function segmentMatch(p, n) {
  let pi = 0;
  let ni = 0;
  let star = -1;
  let mark = 0;
  while (ni < n.length) {
    if (pi < p.length && p[pi] !== '*' && p[pi] === n[ni]) {
      pi++;
      ni++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = ni;
    } else if (star !== -1) {
      pi = star + 1;
      ni = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

/**
 * A subject pattern against a value: `/` separates segments, `*` stays inside one.
 * @param {string} pattern
 * @param {string} value
 */
export function patternMatch(pattern, value) {
  if (!pattern.includes('*')) return pattern === value;
  const ps = pattern.split('/');
  const vs = value.split('/');
  if (ps.length !== vs.length) return false;
  return ps.every((p, i) => segmentMatch([...p], [...vs[i]]));
}
