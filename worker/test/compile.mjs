// Compiling the custom resources into ISSUERS and POLICY_BUNDLE, the way src/gateway/compile.rs
// does (docs/edge-protocol.md §1.1, §3.1), for the tests that configure the Worker from the
// resources they create. The CLI has no command that prints the compiled documents, so this
// mirrors the Rust compiler field by field, in the same member order, so the bytes (and hence the
// sha256 revision) are the same. e2e checks that the gateway's audit events report the same
// revision as the Worker's; rotation checks the documents' hashes against the ones the controller
// recorded for what it wrote to Cloudflare. A drift between the two compilers fails both.

import crypto from 'node:crypto';

const nonEmpty = (a) => Array.isArray(a) && a.length > 0;

function compilePolicy(p) {
  const s = p.spec;
  const out = { namespace: p.metadata.namespace ?? '', name: p.metadata.name ?? '', effect: s.effect };
  out.subjects = s.subjects.map((e) => {
    const m = { issuer: e.issuer };
    if (nonEmpty(e.subjects)) m.subjects = e.subjects;
    if (nonEmpty(e.groups)) m.groups = e.groups;
    if (nonEmpty(e.claims)) m.claims = e.claims.map((c) => ({ claim: c.claim, values: c.values }));
    return m;
  });
  out.actions = s.actions;
  if (s.volumes) {
    const v = {};
    if (nonEmpty(s.volumes.names)) v.names = s.volumes.names;
    const l = s.volumes.labelSelector;
    if (l) {
      const sel = {};
      const keys = Object.keys(l.matchLabels ?? {}).sort(); // a BTreeMap in Rust
      if (keys.length) sel.matchLabels = Object.fromEntries(keys.map((k) => [k, l.matchLabels[k]]));
      if (nonEmpty(l.matchExpressions)) {
        sel.matchExpressions = l.matchExpressions.map((e) => ({ key: e.key, operator: e.operator, ...(e.values ? { values: e.values } : {}) }));
      }
      v.labelSelector = sel;
    }
    out.volumes = v;
  }
  if (s.conditions) {
    const c = {};
    if (s.conditions.maxSizeBytes !== undefined) c.maxSizeBytes = s.conditions.maxSizeBytes;
    if (s.conditions.sourceIpCidrs !== undefined) c.sourceIpCidrs = s.conditions.sourceIpCidrs;
    out.conditions = c;
  }
  if (s.rateLimit) {
    out.rateLimit = { requestsPerMinute: s.rateLimit.requestsPerMinute, ...(s.rateLimit.burst !== undefined ? { burst: s.rateLimit.burst } : {}) };
  }
  return out;
}

// Rust compares Strings byte-wise; for the ASCII names of Kubernetes objects that is < on strings.
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

export function compileBundle(issuers, policies) {
  const ps = policies.filter((p) => !p.metadata.deletionTimestamp).map(compilePolicy);
  ps.sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
  const uniq = ps.filter((p, i) => i === 0 || p.namespace !== ps[i - 1].namespace || p.name !== ps[i - 1].name);
  const is = issuers
    .filter((i) => !i.metadata.deletionTimestamp)
    .map((i) => {
      const name = i.metadata.name ?? '';
      const s = i.spec;
      const cm = s.claimMapping ?? {};
      const e = { name, issuer: s.issuer };
      if (s.jwksUri !== undefined) e.jwksUri = s.jwksUri;
      e.audiences = s.audiences;
      e.algorithms = s.algorithms;
      e.clockSkewSeconds = s.clockSkewSeconds ?? 60;
      if (s.maxTokenAgeSeconds !== undefined) e.maxTokenAgeSeconds = s.maxTokenAgeSeconds;
      e.claimMapping = { subjectClaim: cm.subjectClaim ?? 'sub', ...(cm.groupsClaim !== undefined ? { groupsClaim: cm.groupsClaim } : {}), prefix: cm.prefix ?? `${name}:` };
      return e;
    })
    .sort((a, b) => cmp(a.name, b.name));
  const revision = `sha256:${crypto.createHash('sha256').update(JSON.stringify(uniq)).digest('hex')}`;
  return { issuers: JSON.stringify(is), bundle: JSON.stringify({ version: 1, revision, policies: uniq }), revision };
}
