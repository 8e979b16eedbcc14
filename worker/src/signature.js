// @ts-check
// RFC 9421 signature base construction and the `edgebind-v1` profile (docs/edge-protocol.md §5).
// Uses only WebCrypto and btoa, so it runs unchanged in workerd and in Node 20.

export const PROFILE_TAG = 'edgebind-v1';
export const SIGNATURE_LABEL = 'sig1';
export const SIGNATURE_LIFETIME_SECONDS = 60;
export const COVERED_COMPONENTS = Object.freeze([
  '@method',
  '@authority',
  '@path',
  '@query',
  'content-type',
  'content-digest',
  'edge-identity',
  'edge-request-id',
]);

/**
 * The message parts the edgebind-v1 signature covers.
 * @typedef {object} SignedMessage
 * @property {string} method
 * @property {string} authority
 * @property {string} path
 * @property {string} query
 * @property {string} contentType
 * @property {string} contentDigest
 * @property {string} edgeIdentity
 * @property {string} requestId
 */

const SF_STRING_SAFE = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

/** @param {Uint8Array} bytes */
export function bytesToBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    // apply() takes any array-like as the argument list.
    s += String.fromCharCode.apply(null, /** @type {number[]} */ (/** @type {unknown} */ (bytes.subarray(i, i + 0x8000))));
  }
  return btoa(s);
}

/** @param {string} b64 */
export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** @param {Uint8Array} bytes */
export function base64url(bytes) {
  return bytesToBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * RFC 8941 serialization of one parameter value: integer or string (no escapes needed here).
 * @param {number | string} v
 */
function serializeParamValue(v) {
  if (Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'string') {
    // Our strings never need escaping; refuse rather than mis-serialize.
    if (!SF_STRING_SAFE.test(v) || v.includes('\\') || v.includes('"')) throw new Error('parameter needs escaping');
    return `"${v}"`;
  }
  throw new Error('unsupported parameter type');
}

/**
 * Serializes the signature parameters (the inner list plus parameters), i.e. the value of
 * `@signature-params` and of the Signature-Input member. params: array of [name, value], in order.
 * @param {readonly string[]} components
 * @param {[string, number | string][]} params
 */
export function serializeSignatureParams(components, params) {
  const list = components.map((c) => `"${c}"`).join(' ');
  const ps = params.map(([k, v]) => `;${k}=${serializeParamValue(v)}`).join('');
  return `(${list})${ps}`;
}

/**
 * RFC 9421 §2.5 signature base. componentValues: array of [name, value] in covered order.
 * @param {[string, string][]} componentValues
 * @param {string} signatureParams
 */
export function signatureBase(componentValues, signatureParams) {
  const lines = componentValues.map(([name, value]) => {
    if (/[\r\n]/.test(value)) throw new Error(`component ${name} contains a line break`);
    return `"${name}": ${value}`;
  });
  lines.push(`"@signature-params": ${signatureParams}`);
  return lines.join('\n');
}

/**
 * The `@query` component value: "?" plus the query as sent, or "?" alone (RFC 9421 §2.2.7).
 * @param {string | null | undefined} search
 */
export function queryComponent(search) {
  if (!search || search === '?') return '?';
  return search.startsWith('?') ? search : `?${search}`;
}

/**
 * The `@path` component value: the path as sent, "/" when empty.
 * @param {string | null | undefined} pathname
 */
export function pathComponent(pathname) {
  return pathname && pathname.length > 0 ? pathname : '/';
}

/** @param {Uint8Array} bodyBytes */
export async function contentDigest(bodyBytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bodyBytes));
  return `sha-256=:${bytesToBase64(d)}:`;
}

export function randomNonce() {
  return base64url(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * Builds the edgebind-v1 Signature-Input member value for given inputs.
 * Returns the serialized params string (used both in the header and as @signature-params).
 * @param {{ created: number, nonce: string, keyId: string }} inputs
 */
export function edgebindSignatureParams({ created, nonce, keyId }) {
  return serializeSignatureParams(COVERED_COMPONENTS, [
    ['created', created],
    ['expires', created + SIGNATURE_LIFETIME_SECONDS],
    ['nonce', nonce],
    ['alg', 'ed25519'],
    ['keyid', keyId],
    ['tag', PROFILE_TAG],
  ]);
}

/**
 * The edgebind-v1 signature base. msg: {method, authority, path, query, contentType,
 * contentDigest, edgeIdentity, requestId}; params: output of edgebindSignatureParams.
 * @param {SignedMessage} msg
 * @param {string} params
 */
export function edgebindSignatureBase(msg, params) {
  return signatureBase(
    [
      ['@method', msg.method.toUpperCase()],
      ['@authority', msg.authority.toLowerCase()],
      ['@path', pathComponent(msg.path)],
      ['@query', queryComponent(msg.query)],
      ['content-type', msg.contentType.trim()],
      ['content-digest', msg.contentDigest.trim()],
      ['edge-identity', msg.edgeIdentity.trim()],
      ['edge-request-id', msg.requestId.trim()],
    ],
    params,
  );
}

/**
 * @param {CryptoKey} privateKey
 * @param {string} base
 */
export async function signEd25519(privateKey, base) {
  const sig = await crypto.subtle.sign('Ed25519', privateKey, new TextEncoder().encode(base));
  return bytesToBase64(new Uint8Array(sig));
}

/**
 * Signs a message per edgebind-v1. Returns the headers to add:
 * {'signature-input', 'signature'}.
 * @param {CryptoKey} privateKey
 * @param {string} keyId
 * @param {SignedMessage} msg
 * @param {{ created?: number, nonce?: string }} [fixed] fixed values for tests
 */
export async function signEdgebind(privateKey, keyId, msg, { created, nonce } = {}) {
  const params = edgebindSignatureParams({
    created: created ?? Math.floor(Date.now() / 1000),
    nonce: nonce ?? randomNonce(),
    keyId,
  });
  const base = edgebindSignatureBase(msg, params);
  const sig = await signEd25519(privateKey, base);
  return {
    'signature-input': `${SIGNATURE_LABEL}=${params}`,
    signature: `${SIGNATURE_LABEL}=:${sig}:`,
  };
}

const KEY_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Parses and imports SIGNING_KEY (§1.2). Throws Error with a message that never holds key data.
 * @param {string} raw
 * @returns {Promise<{ keyId: string, key: CryptoKey }>}
 */
export async function importSigningKey(raw) {
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('SIGNING_KEY is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('SIGNING_KEY must be an object');
  const { keyId, jwk, pkcs8 } = parsed;
  if (typeof keyId !== 'string' || !KEY_ID_RE.test(keyId)) throw new Error('SIGNING_KEY.keyId is invalid');
  if ((jwk === undefined) === (pkcs8 === undefined)) throw new Error('SIGNING_KEY needs exactly one of jwk, pkcs8');
  let key;
  try {
    if (jwk !== undefined) {
      if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
        throw new Error('shape');
      }
      const clean = { kty: 'OKP', crv: 'Ed25519', d: jwk.d, x: jwk.x };
      key = await crypto.subtle.importKey('jwk', clean, { name: 'Ed25519' }, false, ['sign']);
    } else {
      if (typeof pkcs8 !== 'string') throw new Error('shape');
      key = await crypto.subtle.importKey('pkcs8', base64ToBytes(pkcs8), { name: 'Ed25519' }, false, ['sign']);
    }
  } catch {
    throw new Error('SIGNING_KEY is not a valid Ed25519 private key');
  }
  return { keyId, key };
}
