// @ts-check
// IP address and CIDR parsing for the `sourceIpCidrs` condition. Returns null on any malformed
// input so that the caller can fail closed. Addresses are arrays of bytes (4 or 16).

/** @typedef {{ bytes: number[], len: number }} Cidr */

/**
 * @param {string} s
 * @returns {number[] | null}
 */
function parseV4(s) {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  /** @type {number[]} */
  const out = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/**
 * @param {string} s
 * @returns {number[] | null}
 */
function parseV6(s) {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (/** @type {string} */ h) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const toBytes = (/** @type {string[]} */ gs) => {
    /** @type {number[]} */
    const bytes = [];
    for (let i = 0; i < gs.length; i++) {
      const g = gs[i];
      if (g.includes('.')) {
        // Embedded IPv4 only as the last group.
        if (i !== gs.length - 1) return null;
        const v4 = parseV4(g);
        if (!v4) return null;
        bytes.push(...v4);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
        const n = parseInt(g, 16);
        bytes.push(n >> 8, n & 0xff);
      }
    }
    return bytes;
  };
  const hb = toBytes(head);
  const tb = toBytes(tail);
  if (!hb || !tb) return null;
  if (halves.length === 1) return hb.length === 16 ? hb : null;
  const fill = 16 - hb.length - tb.length;
  if (fill < 2) return null;
  return [...hb, ...new Array(fill).fill(0), ...tb];
}

/**
 * Parses an IP address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4.
 * @param {unknown} s
 * @returns {number[] | null}
 */
export function parseIp(s) {
  if (typeof s !== 'string' || s.length === 0 || s.length > 45) return null;
  if (s.includes(':')) {
    const b = parseV6(s);
    if (!b) return null;
    const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
    return mapped ? b.slice(12) : b;
  }
  return parseV4(s);
}

/**
 * Parses `addr/len`; returns {bytes, len} or null. The address is not required to be the network.
 * @param {unknown} s
 * @returns {Cidr | null}
 */
export function parseCidr(s) {
  if (typeof s !== 'string') return null;
  const i = s.indexOf('/');
  if (i < 0) return null;
  const lenStr = s.slice(i + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenStr)) return null;
  const addr = s.slice(0, i);
  // A CIDR keeps its family: no IPv4-mapped folding here.
  const bytes = addr.includes(':') ? parseV6(addr) : parseV4(addr);
  if (!bytes) return null;
  const len = Number(lenStr);
  if (len > bytes.length * 8) return null;
  return { bytes, len };
}

/**
 * @param {number[]} ip
 * @param {Cidr} cidr
 */
export function ipInCidr(ip, cidr) {
  if (ip.length !== cidr.bytes.length) return false;
  let bits = cidr.len;
  for (let i = 0; i < ip.length && bits > 0; i++) {
    const take = Math.min(8, bits);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip[i] & mask) !== (cidr.bytes[i] & mask)) return false;
    bits -= take;
  }
  return true;
}
