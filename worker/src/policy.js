// @ts-check
// Policy bundle validation and evaluation (docs/edge-protocol.md §3). Pure: no I/O, no globals.
// The gateway implements the same rules; the Worker evaluates with labels possibly unknown and
// refuses only what the gateway would certainly refuse for the same bundle.

import { parseCidr, parseIp, ipInCidr } from './cidr.js';
import { parseClaimPath, patternMatch } from './claims.js';

/** @typedef {'read' | 'create' | 'resize' | 'snapshot' | 'restore' | 'delete'} Action */
/** @typedef {{ claim: string, values: string[] }} ClaimMatcher */
/** @typedef {{ issuer: string, subjects?: string[], groups?: string[], claims?: ClaimMatcher[] }} SubjectMatcher */
/**
 * One `matchExpressions` entry as it arrives; it may be broken (checked at evaluation).
 * @typedef {{ key: string, operator: string, values?: string[] }} LabelExpression
 */
/** @typedef {{ matchLabels?: Record<string, string>, matchExpressions?: LabelExpression[] }} LabelSelector */
/** @typedef {{ requestsPerMinute: number, burst?: number }} RateLimit */
/**
 * @typedef {object} BundlePolicy
 * @property {string} namespace
 * @property {string} name
 * @property {'Allow' | 'Deny'} effect
 * @property {SubjectMatcher[]} subjects
 * @property {Action[]} actions
 * @property {{ names?: string[], labelSelector?: LabelSelector }} [volumes]
 * @property {{ maxSizeBytes?: number, sourceIpCidrs?: string[] }} [conditions]
 * @property {RateLimit} [rateLimit]
 */
/**
 * A bundle that passed validateBundle, with the claim names referenced per issuer.
 * @typedef {object} ValidBundle
 * @property {1} version
 * @property {string} revision
 * @property {BundlePolicy[]} policies
 * @property {Map<string, Set<string>>} claimsByIssuer
 */
/**
 * The principal as the policy sees it (§3.2). A claim value of null, or a claim name absent
 * from `claims`, is unevaluable.
 * `groupsUnknown`: the token says its groups are held elsewhere (§2.3).
 * @typedef {{ issuer: string, subject: string, groups: string[], groupsUnknown?: boolean, claims?: Record<string, string[] | null> }} Principal
 */
/**
 * The request as the policy sees it (§3.2). `name` null: the collection route; `labels` null:
 * unknown.
 * @typedef {object} PolicyRequest
 * @property {Action} action
 * @property {string | null} namespace
 * @property {string | null} [name]
 * @property {Record<string, string> | null} [labels]
 * @property {number | null} [sizeBytes]
 * @property {string | null} [clientIp]
 */
/** @typedef {{ policy: string, rateLimit: RateLimit }} LimitRef */
/**
 * @typedef {object} Decision
 * @property {'allow' | 'deny' | 'undecided'} decision
 * @property {string} reasonCode
 * @property {string | null} policy
 * @property {LimitRef[]} rateLimited
 */

/** @type {readonly Action[]} */
export const ACTIONS = Object.freeze(['read', 'create', 'resize', 'snapshot', 'restore', 'delete']);
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const SELECTOR_OPS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

export class BundleError extends Error {}

/**
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
/**
 * @param {unknown} v
 * @returns {v is string[]}
 */
const isStrList = (v) => Array.isArray(v) && v.every((s) => typeof s === 'string');
/** @type {(v: unknown, lo: number, hi: number) => boolean} */
const isInt = (v, lo, hi) => Number.isSafeInteger(v) && /** @type {number} */ (v) >= lo && /** @type {number} */ (v) <= hi;

/**
 * @param {string} path
 * @param {string} msg
 * @returns {never}
 */
function fail(path, msg) {
  throw new BundleError(`${path}: ${msg}`);
}

/**
 * Validates a parsed bundle and returns it with helper indexes. Throws BundleError.
 * Broken selectors and CIDRs are not rejected here: they are condition errors at evaluation
 * time (fail closed per policy), which is what the gateway does too.
 * @param {any} bundle parsed JSON, untrusted: every member is checked here
 * @returns {ValidBundle}
 */
export function validateBundle(bundle) {
  if (!isObj(bundle)) fail('bundle', 'must be an object');
  if (bundle.version !== 1) fail('version', 'must be 1');
  if (typeof bundle.revision !== 'string' || bundle.revision.length === 0) fail('revision', 'must be a non-empty string');
  if (!Array.isArray(bundle.policies)) fail('policies', 'must be an array');
  const seen = new Set();
  // Claim names referenced per issuer, so the Worker forwards exactly these in Edge-Identity.
  /** @type {Map<string, Set<string>>} */
  const claimsByIssuer = new Map();
  bundle.policies.forEach((/** @type {any} */ p, /** @type {number} */ i) => {
    const at = `policies[${i}]`;
    if (!isObj(p)) fail(at, 'must be an object');
    for (const k of ['namespace', 'name']) {
      if (typeof p[k] !== 'string' || p[k].length === 0) fail(`${at}.${k}`, 'must be a non-empty string');
    }
    const key = `${p.namespace}/${p.name}`;
    if (seen.has(key)) fail(at, `duplicate policy ${key}`);
    seen.add(key);
    if (p.effect !== 'Allow' && p.effect !== 'Deny') fail(`${at}.effect`, 'must be Allow or Deny');
    if (!Array.isArray(p.subjects) || p.subjects.length === 0) fail(`${at}.subjects`, 'must be a non-empty array');
    p.subjects.forEach((/** @type {any} */ s, /** @type {number} */ j) => {
      const sat = `${at}.subjects[${j}]`;
      if (!isObj(s) || typeof s.issuer !== 'string' || s.issuer.length === 0) fail(sat, 'needs an issuer');
      for (const k of ['subjects', 'groups']) {
        if (s[k] !== undefined && !isStrList(s[k])) fail(`${sat}.${k}`, 'must be a list of strings');
      }
      if (s.claims !== undefined) {
        if (!Array.isArray(s.claims)) fail(`${sat}.claims`, 'must be a list');
        s.claims.forEach((/** @type {any} */ c, /** @type {number} */ k) => {
          if (!isObj(c) || typeof c.claim !== 'string' || c.claim.length === 0 || !isStrList(c.values)) {
            fail(`${sat}.claims[${k}]`, 'needs claim (string) and values (list of strings)');
          }
          if (parseClaimPath(c.claim) === null) fail(`${sat}.claims[${k}].claim`, 'is not a valid claim path (§2.3)');
          if (!claimsByIssuer.has(s.issuer)) claimsByIssuer.set(s.issuer, new Set());
          /** @type {Set<string>} */ (claimsByIssuer.get(s.issuer)).add(c.claim);
        });
      }
    });
    if (!Array.isArray(p.actions) || p.actions.length === 0 || !p.actions.every((/** @type {unknown} */ a) => ACTIONS.includes(/** @type {Action} */ (a)))) {
      fail(`${at}.actions`, `must be a non-empty list from ${ACTIONS.join(', ')}`);
    }
    if (p.volumes !== undefined) {
      if (!isObj(p.volumes)) fail(`${at}.volumes`, 'must be an object');
      if (p.volumes.names !== undefined && !isStrList(p.volumes.names)) fail(`${at}.volumes.names`, 'must be a list of strings');
      if (p.volumes.labelSelector !== undefined && !isObj(p.volumes.labelSelector)) {
        fail(`${at}.volumes.labelSelector`, 'must be an object');
      }
    }
    if (p.conditions !== undefined) {
      const c = p.conditions;
      if (!isObj(c)) fail(`${at}.conditions`, 'must be an object');
      if (c.maxSizeBytes !== undefined && !isInt(c.maxSizeBytes, 1, MAX_SAFE)) fail(`${at}.conditions.maxSizeBytes`, 'must be an integer >= 1');
      if (c.sourceIpCidrs !== undefined && !isStrList(c.sourceIpCidrs)) fail(`${at}.conditions.sourceIpCidrs`, 'must be a list of strings');
    }
    if (p.rateLimit !== undefined) {
      const r = p.rateLimit;
      if (!isObj(r) || !isInt(r.requestsPerMinute, 1, 100000)) fail(`${at}.rateLimit.requestsPerMinute`, 'must be an integer 1-100000');
      if (r.burst !== undefined && !isInt(r.burst, 1, 100000)) fail(`${at}.rateLimit.burst`, 'must be an integer 1-100000');
    }
  });
  return /** @type {ValidBundle} */ ({ ...bundle, claimsByIssuer });
}

/**
 * Anchored glob: `*` any run (also empty), `?` one character, everything else literal.
 * @param {string} pattern
 * @param {string} name
 */
export function globMatch(pattern, name) {
  // Iterative matcher with single backtrack point: linear-ish, no regex built from input.
  let p = 0;
  let n = 0;
  let star = -1;
  let mark = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = n;
    } else if (star !== -1) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

// Three-valued results.
export const YES = 'yes';
export const NO = 'no';
export const MAYBE = 'maybe';
const ERROR = 'error';
/** @typedef {typeof YES | typeof NO | typeof MAYBE | typeof ERROR} Tri */

/**
 * Kubernetes label selector over known labels. Returns YES/NO, MAYBE when the labels are unknown,
 * or ERROR for a broken selector.
 * @param {LabelSelector} selector as it arrived in the bundle (possibly broken)
 * @param {Record<string, string> | null | undefined} labels null or undefined: unknown
 * @returns {Tri}
 */
export function selectorMatches(selector, labels) {
  const structural = selectorError(selector);
  if (structural) return ERROR;
  if (labels === null || labels === undefined) return MAYBE;
  const has = (/** @type {string} */ k) => Object.prototype.hasOwnProperty.call(labels, k);
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!has(k) || labels[k] !== v) return NO;
  }
  for (const e of selector.matchExpressions ?? []) {
    const present = has(e.key);
    // selectorError() checked that In and NotIn carry values.
    const values = /** @type {string[]} */ (e.values);
    const ok =
      e.operator === 'In'
        ? present && values.includes(labels[e.key])
        : e.operator === 'NotIn'
          ? !present || !values.includes(labels[e.key])
          : e.operator === 'Exists'
            ? present
            : !present;
    if (!ok) return NO;
  }
  return YES;
}

/**
 * @param {unknown} sel
 * @returns {string | null} what is broken, or null
 */
function selectorError(sel) {
  if (!isObj(sel)) return 'selector is not an object';
  if (sel.matchLabels !== undefined) {
    if (!isObj(sel.matchLabels) || !Object.values(sel.matchLabels).every((v) => typeof v === 'string')) return 'matchLabels';
  }
  if (sel.matchExpressions !== undefined) {
    if (!Array.isArray(sel.matchExpressions)) return 'matchExpressions';
    for (const e of sel.matchExpressions) {
      if (!isObj(e) || typeof e.key !== 'string' || !SELECTOR_OPS.has(e.operator)) return 'expression';
      const vals = e.values ?? [];
      if (!isStrList(vals)) return 'values';
      if ((e.operator === 'In' || e.operator === 'NotIn') && vals.length === 0) return 'values required';
      if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && vals.length !== 0) return 'values forbidden';
    }
  }
  return null;
}

/**
 * Subjects entry against the principal: YES, NO, or ERROR (an unevaluable claim decides).
 * @param {SubjectMatcher} entry
 * @param {Principal} principal
 * @param {'Allow' | 'Deny'} effect
 * @returns {Tri}
 */
function subjectEntryMatches(entry, principal, effect) {
  const named = (/** @type {string[]} */ pats, /** @type {string} */ v) => pats.some((p) => patternMatch(p, v));
  if (entry.issuer !== principal.issuer) return NO;
  if (entry.subjects?.length && !named(entry.subjects, principal.subject)) return NO;
  // Groups held elsewhere (§2.3): an Allow naming groups does not apply (membership unproven);
  // a Deny naming groups cannot be decided, which fails closed.
  const groupsUnknown = Boolean(entry.groups?.length) && principal.groupsUnknown === true;
  if (groupsUnknown && effect === 'Allow') return NO;
  if (entry.groups?.length && !groupsUnknown && !principal.groups.some((g) => /** @type {string[]} */ (entry.groups).includes(g))) return NO;
  let unevaluable = groupsUnknown;
  for (const m of entry.claims ?? []) {
    const claims = principal.claims ?? {};
    const vals = Object.prototype.hasOwnProperty.call(claims, m.claim) ? claims[m.claim] : null;
    if (!Array.isArray(vals)) {
      unevaluable = true;
      continue;
    }
    if (!vals.some((v) => named(m.values, v))) return NO;
  }
  return unevaluable ? ERROR : YES;
}

/**
 * @param {BundlePolicy} policy
 * @param {Principal} principal
 * @returns {Tri}
 */
function subjectsMatch(policy, principal) {
  let sawError = false;
  for (const e of policy.subjects) {
    const r = subjectEntryMatches(e, principal, policy.effect);
    if (r === YES) return YES;
    if (r === ERROR) sawError = true;
  }
  return sawError ? ERROR : NO;
}

/**
 * Volumes: `match` is YES, NO or ERROR (a broken selector); `certain` is false when a matcher
 * only possibly matches (§3.5). A broken selector keeps the certainty of the names, so that on a
 * collection request its error is only possible, as at the gateway.
 * @param {BundlePolicy} policy
 * @param {PolicyRequest} req
 * @returns {{ match: Tri, certain: boolean }}
 */
function volumesMatch(policy, req) {
  const v = policy.volumes;
  if (!v) return { match: YES, certain: true };
  let certain = true;
  if (v.names?.length) {
    if (req.name === null || req.name === undefined) certain = false;
    else if (!v.names.some((pat) => globMatch(pat, /** @type {string} */ (req.name)))) return { match: NO, certain: true };
  }
  if (v.labelSelector !== undefined) {
    // Collection requests have no single object: labels unknown.
    const labels = req.name === null || req.name === undefined ? null : req.labels;
    const s = selectorMatches(v.labelSelector, labels);
    if (s === NO) return { match: NO, certain: true };
    if (s === ERROR) return { match: ERROR, certain };
    if (s === MAYBE) certain = false;
  }
  return { match: YES, certain };
}

/**
 * Conditions: YES (hold), NO (do not hold), ERROR (cannot be evaluated). An error in any condition
 * wins over another condition that does not hold (§3.4), so every condition is evaluated.
 * @param {BundlePolicy} policy
 * @param {PolicyRequest} req
 * @returns {Tri}
 */
function conditionsHold(policy, req) {
  const c = policy.conditions;
  if (!c) return YES;
  let holds = true;
  if (c.maxSizeBytes !== undefined && (req.action === 'create' || req.action === 'resize')) {
    if (!isInt(req.sizeBytes, 1, MAX_SAFE)) return ERROR;
    if (/** @type {number} */ (req.sizeBytes) > c.maxSizeBytes) holds = false;
  }
  if (c.sourceIpCidrs !== undefined) {
    const ip = typeof req.clientIp === 'string' ? parseIp(req.clientIp) : null;
    if (!ip) return ERROR;
    let any = false;
    for (const s of c.sourceIpCidrs) {
      const cidr = parseCidr(s);
      if (!cidr) return ERROR;
      if (ipInCidr(ip, cidr)) any = true;
    }
    if (!any) holds = false;
  }
  return holds ? YES : NO;
}

/**
 * @typedef {{ kind: 'na' } | { kind: 'match' | 'error', effect: 'Allow' | 'Deny', certain: boolean }} PolicyResult
 */

/**
 * Evaluates one policy. Returns { kind: 'na' } or
 * { kind: 'match'|'error', effect, certain: boolean }.
 * @param {BundlePolicy} policy
 * @param {Principal} principal
 * @param {PolicyRequest} req
 * @returns {PolicyResult}
 */
export function evaluatePolicy(policy, principal, req) {
  if (policy.namespace !== req.namespace) return { kind: 'na' };
  if (!policy.actions.includes(req.action)) return { kind: 'na' };
  const subj = subjectsMatch(policy, principal);
  if (subj === NO) return { kind: 'na' };
  const vol = volumesMatch(policy, req);
  if (vol.match === NO) return { kind: 'na' };
  const certain = vol.certain;
  if (subj === ERROR || vol.match === ERROR) return { kind: 'error', effect: 'Deny', certain };
  const cond = conditionsHold(policy, req);
  if (cond === ERROR) return { kind: 'error', effect: 'Deny', certain };
  if (cond === NO) return { kind: 'na' };
  return { kind: 'match', effect: policy.effect, certain };
}

const ref = (/** @type {BundlePolicy} */ p) => `${p.namespace}/${p.name}`;

/**
 * Decides a request against a validated bundle.
 * principal: {issuer, subject, groups[], claims{name: string[]|null}}
 * req: {action, namespace, name|null, labels: object|null (null = unknown), sizeBytes, clientIp}
 * Returns {decision: 'allow'|'deny'|'undecided', reasonCode, policy: 'ns/name'|null,
 *          rateLimited: [{policy, rateLimit}]} where rateLimited lists definite Allows with limits.
 * @param {{ policies: BundlePolicy[] }} bundle a ValidBundle
 * @param {Principal} principal
 * @param {PolicyRequest} req
 * @returns {Decision}
 */
export function decide(bundle, principal, req) {
  /** @type {{ p: BundlePolicy, error: boolean } | null} */
  let firstDeny = null;
  let possibleDeny = false;
  /** @type {BundlePolicy | null} */
  let firstAllow = null;
  let possibleAllow = false;
  /** @type {BundlePolicy[]} */
  const definiteAllows = [];
  for (const p of bundle.policies) {
    const r = evaluatePolicy(p, principal, req);
    if (r.kind === 'na') continue;
    if (r.effect === 'Deny') {
      if (r.certain) {
        if (!firstDeny) firstDeny = { p, error: r.kind === 'error' };
      } else possibleDeny = true;
    } else if (r.certain) {
      if (!firstAllow) firstAllow = p;
      definiteAllows.push(p);
    } else possibleAllow = true;
  }
  const limits = definiteAllows.filter((p) => p.rateLimit).map((p) => ({ policy: ref(p), rateLimit: /** @type {RateLimit} */ (p.rateLimit) }));
  if (firstDeny) {
    return {
      decision: 'deny',
      reasonCode: firstDeny.error ? 'policy_condition_error' : 'policy_denied',
      policy: ref(firstDeny.p),
      rateLimited: [],
    };
  }
  if (possibleDeny) return { decision: 'undecided', reasonCode: 'policy_undecided', policy: firstAllow ? ref(firstAllow) : null, rateLimited: limits };
  if (firstAllow) return { decision: 'allow', reasonCode: 'policy_allowed', policy: ref(firstAllow), rateLimited: limits };
  if (possibleAllow) return { decision: 'undecided', reasonCode: 'policy_undecided', policy: null, rateLimited: limits };
  return { decision: 'deny', reasonCode: 'policy_no_match', policy: null, rateLimited: [] };
}
