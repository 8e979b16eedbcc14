// An independent edgebind-v1 verifier (docs/edge-protocol.md §5.5) written with node:crypto only.
// It shares no code with worker/src, so a test that passes through it checks the Worker's
// signatures against the document, not against itself.

import crypto from 'node:crypto';

const COMPONENTS = '"@method" "@authority" "@path" "@query" "content-type" "content-digest" "edge-identity" "edge-request-id"';
// created, expires, nonce, alg, keyid, tag: in this order, nothing else.
const MEMBER_RE = new RegExp(
  `^sig1=(\\(${COMPONENTS.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\);created=([0-9]+);expires=([0-9]+);nonce="([A-Za-z0-9_-]{22})";alg="ed25519";keyid="([A-Za-z0-9._:-]{1,128})";tag="edgebind-v1")$`,
);

const fail = (code, message) => ({ ok: false, code, message });

function single(rawHeaders, name) {
  const vals = [];
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name) vals.push(rawHeaders[i + 1]);
  return vals;
}

/**
 * req: {method, url (path+query as received), headers (lower-case), rawHeaders, body: Buffer}
 * opts: {trustedKeys: {keyId: KeyObject}, seenNonces: Set, now: seconds}
 * Returns {ok: true, identity, keyId, created, expires, nonce, base} or {ok: false, code, message}.
 */
export function verifyEdgebindRequest(req, { trustedKeys, seenNonces = new Set(), now = Math.floor(Date.now() / 1000) }) {
  const inputs = single(req.rawHeaders, 'signature-input');
  const sigs = single(req.rawHeaders, 'signature');
  if (inputs.length === 0 || sigs.length === 0) return fail('sig_missing', 'no signature');
  if (inputs.length > 1 || sigs.length > 1) return fail('sig_multiple', 'repeated signature header');
  if (/,\s*[a-z*]/.test(inputs[0]) || /,\s*[a-z*]/.test(sigs[0])) return fail('sig_multiple', 'more than one member');
  if (!inputs[0].startsWith('sig1=') || !sigs[0].startsWith('sig1=')) return fail('sig_missing', 'no sig1 member');
  const m = MEMBER_RE.exec(inputs[0]);
  if (!m) return fail('sig_tag', 'not the edgebind-v1 profile');
  const [, params, createdS, expiresS, nonce, keyId] = m;
  const key = trustedKeys[keyId];
  if (!key) return fail('key_unknown', 'unknown keyid');
  const created = Number(createdS);
  const expires = Number(expiresS);
  if (now > expires + 30) return fail('sig_expired', 'expired');
  if (created > now + 30) return fail('sig_future', 'created in the future');
  if (expires - created < 1 || expires - created > 60) return fail('sig_window', 'bad window');
  const sm = /^sig1=:([A-Za-z0-9+/]+={0,2}):$/.exec(sigs[0]);
  if (!sm) return fail('sig_invalid', 'signature not a byte sequence');
  const h = (n) => (req.headers[n] === undefined ? undefined : String(req.headers[n]).trim());
  const qi = req.url.indexOf('?');
  const values = [
    ['@method', req.method.toUpperCase()],
    ['@authority', h('host')?.toLowerCase()],
    ['@path', req.url.slice(0, qi < 0 ? undefined : qi) || '/'],
    ['@query', qi < 0 ? '?' : req.url.slice(qi)],
    ['content-type', h('content-type')],
    ['content-digest', h('content-digest')],
    ['edge-identity', h('edge-identity')],
    ['edge-request-id', h('edge-request-id')],
  ];
  if (values.some(([, v]) => v === undefined)) return fail('sig_invalid', 'covered component missing');
  const base = [...values.map(([n, v]) => `"${n}": ${v}`), `"@signature-params": ${params}`].join('\n');
  const okSig = crypto.verify(null, Buffer.from(base, 'utf8'), key, Buffer.from(sm[1], 'base64'));
  if (!okSig) return fail('sig_invalid', 'signature does not verify');
  const digest = `sha-256=:${crypto.createHash('sha256').update(req.body).digest('base64')}:`;
  if (h('content-digest') !== digest) return fail('digest_mismatch', 'digest mismatch');
  const nk = `${keyId}\u0000${nonce}`;
  if (seenNonces.has(nk)) return fail('nonce_replayed', 'nonce replayed');
  seenNonces.add(nk);
  let identity;
  try {
    identity = JSON.parse(Buffer.from(h('edge-identity'), 'base64url').toString('utf8'));
  } catch {
    return fail('identity_invalid', 'edge-identity not base64url JSON');
  }
  if (identity?.v !== 1 || typeof identity.subject !== 'string' || !Array.isArray(identity.groups)) return fail('identity_invalid', 'bad identity');
  return { ok: true, identity, keyId, created, expires, nonce, base };
}
