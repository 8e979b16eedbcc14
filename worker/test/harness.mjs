// Test harness, also meant for the integrator's end-to-end test with the real Rust gateway:
//   startIdp()          a real OpenID provider (oidc-provider) on 127.0.0.1
//   startWorker()       the bundled Worker in the real workerd runtime on 127.0.0.1
//   startGatewayStub()  a Node stand-in for the gateway that verifies edgebind-v1 independently
//   generateSigningKey(), basicBundle(), issuerFor()
// Every server binds 127.0.0.1 only; every start* returns an object with stop().

import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';
import { verifyEdgebindRequest } from './verify.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKER_DIR = path.resolve(here, '..');
export const BUNDLE = path.join(WORKER_DIR, 'dist', 'worker.js');
const WORKERD_BIN = path.join(WORKER_DIR, 'node_modules', '.bin', 'workerd');

function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

const close = (server) => new Promise((resolve) => server.close(() => resolve()));

export async function freePort() {
  const s = net.createServer();
  const port = await listen(s);
  await close(s);
  return port;
}

// ---------------------------------------------------------------------------------------------
// OpenID provider

const RESOURCE = 'https://edgebind.test/api';
/** Resource indicator URL -> audience, so tests can ask for a token of another audience. */
export const OTHER_RESOURCE = 'https://other.test/api';

async function makeSigningJwk(alg, kid) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' };
}

/**
 * Starts oidc-provider with client_credentials + resource indicators (JWT access tokens).
 * clients: [{id, secret, groups, claims}] (claims are extra token claims).
 * Returns {issuer, audience, token(clientId, {resource}), signingJwk, rotate(), stop()}.
 */
export async function startIdp({ clients, audience = 'edgebind-gateway', alg = 'ES256' } = {}) {
  const { default: Provider } = await import('oidc-provider');
  const server = http.createServer();
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const byId = new Map(clients.map((c) => [c.id, c]));
  let jwks = [await makeSigningJwk(alg, 'key-1')];
  let jwksFetches = 0;

  const build = () => {
    const provider = new Provider(issuer, {
      jwks: { keys: jwks },
      clients: clients.map((c) => ({
        client_id: c.id,
        client_secret: c.secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: alg,
      })),
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => ({
            scope: 'volumes',
            audience: resource === OTHER_RESOURCE ? 'other-api' : audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg } },
          }),
        },
      },
      extraTokenClaims: (_ctx, token) => {
        const c = byId.get(token.clientId);
        return c ? { groups: c.groups ?? [], ...(c.claims ?? {}) } : {};
      },
      ttl: { ClientCredentials: 300 },
    });
    const cb = provider.callback();
    return (req, res) => {
      if (req.url.startsWith('/jwks')) jwksFetches++;
      cb(req, res);
    };
  };
  let handler = build();
  server.on('request', (req, res) => handler(req, res));

  return {
    issuer,
    audience,
    get signingJwk() {
      return jwks[0];
    },
    get jwksFetches() {
      return jwksFetches;
    },
    async token(clientId, { resource = RESOURCE } = {}) {
      const c = byId.get(clientId);
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'volumes', resource }).toString(),
      });
      const body = await res.json();
      if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    /** Replaces the signing key by a new one (new kid); the old key is dropped from the JWKS. */
    async rotate() {
      jwks = [await makeSigningJwk(alg, `key-${crypto.randomUUID().slice(0, 8)}`)];
      handler = build();
    },
    stop: () => close(server),
  };
}

// ---------------------------------------------------------------------------------------------
// Signing key and configuration helpers

/** Ed25519 key pair: SIGNING_KEY binding value (JWK form) and the public key for verifiers. */
export function generateSigningKey(keyId = `edge-${crypto.randomUUID().slice(0, 8)}`) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { keyId, binding: JSON.stringify({ keyId, jwk }), publicKey, publicJwk: publicKey.export({ format: 'jwk' }) };
}

export function issuerFor(idp, overrides = {}) {
  return {
    name: 'test-idp',
    issuer: idp.issuer,
    audiences: [idp.audience],
    algorithms: ['ES256', 'RS256'],
    clockSkewSeconds: 30,
    claimMapping: { subjectClaim: 'sub', groupsClaim: 'groups', prefix: 'test-idp:' },
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// The Worker in workerd

function capnpString(s) {
  return JSON.stringify(s); // capnp text literals accept JSON-style escapes for our ASCII paths
}

/**
 * Starts dist/worker.js in workerd with the given bindings (name -> string). `port` fixes the
 * listening port; `outbound` ("127.0.0.1:PORT") sends every fetch of the Worker, as plain HTTP
 * with its Host header, to that address (a stand-in for Cloudflare's network).
 * Returns {url, logs, auditEvents(), stop(), restart(bindings)}.
 */
/**
 * services: {NAME: 'http://127.0.0.1:PORT'} adds a service binding NAME to an external server:
 * whatever URL the Worker fetches through it, the request goes to that address (what a Workers
 * VPC service binding does with its configured service).
 */
export async function startWorker({ bindings, services = {}, script = BUNDLE, compatibilityDate = '2025-09-01', port: fixedPort = 0, outbound } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'edgebind-workerd-'));
  const logs = [];
  let child = null;
  let port = 0;

  const launch = async (b) => {
    port = fixedPort || (await freePort());
    const names = Object.keys(b);
    for (const [i, n] of names.entries()) await writeFile(path.join(dir, `binding-${i}.txt`), b[n]);
    const svc = Object.entries(services);
    const bindingsCapnp = [
      ...names.map((n, i) => `(name = ${capnpString(n)}, text = embed ${capnpString(`binding-${i}.txt`)})`),
      ...svc.map(([n], i) => `(name = ${capnpString(n)}, service = "ext-${i}")`),
    ].join(',\n      ');
    const externals = svc.map(([, url], i) => `(name = "ext-${i}", external = (address = ${capnpString(new URL(url).host)}, http = ())),`).join('\n    ');
    await writeFile(path.join(dir, 'worker.js'), await (await import('node:fs/promises')).readFile(script));
    const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .edge),
    ${outbound
      ? `(name = "internet", external = (address = ${capnpString(outbound)}, http = ())),`
      : '(name = "internet", network = (allow = ["public", "private", "local"])),'}
    ${externals}
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const edge :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "${compatibilityDate}",
  bindings = [
      ${bindingsCapnp}
  ],
  globalOutbound = "internet",
);
`;
    await writeFile(path.join(dir, 'config.capnp'), config);
    child = spawn(WORKERD_BIN, ['serve', path.join(dir, 'config.capnp'), '--verbose'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (d) => {
      for (const line of d.toString().split('\n')) if (line.trim()) logs.push(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 15000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`workerd exited: ${logs.join('\n')}`);
      try {
        await new Promise((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.end();
            resolve();
          });
          s.once('error', reject);
        });
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`workerd did not start: ${logs.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    child.exited = exited;
  };

  const stopChild = async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await child.exited;
    }
  };

  await launch(bindings);
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    /** Process id of the workerd binary (for CPU measurements). */
    get pid() {
      return child.pid;
    },
    logs,
    /** Parsed audit events the Worker wrote (one JSON line each). */
    auditEvents() {
      const out = [];
      for (const l of logs) {
        const i = l.indexOf('{"schema":"edgebind.dev/audit/v1"');
        if (i >= 0) {
          try {
            out.push(JSON.parse(l.slice(i)));
          } catch {
            // Not a complete line: ignore.
          }
        }
      }
      return out;
    },
    async restart(newBindings) {
      await stopChild();
      await launch(newBindings);
    },
    async stop() {
      await stopChild();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Gateway stand-in

/**
 * A Node HTTP server that records every request and verifies it with verify.mjs (node:crypto,
 * independent of the Worker's code). Answers 200 {"ok":true} or 401 with the reason code, unless
 * respond(req) is given. trustedKeys: {keyId: KeyObject}.
 */
export async function startGatewayStub({ trustedKeys, respond } = {}) {
  const requests = [];
  const reports = [];
  const seenNonces = new Set();
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const verdict = verifyEdgebindRequest(
      { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body },
      { trustedKeys, seenNonces },
    );
    const rec = { method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8'), verdict };
    // Refusal reports (docs/edge-protocol.md §7.2) are kept apart: they follow refusals
    // asynchronously (waitUntil) and are not forwarded requests. Accepted like the gateway does.
    if (req.method === 'POST' && req.url === '/api/v1/edge-refusals') {
      reports.push(rec);
      res.writeHead(202, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ accepted: 1, dropped: 0 }));
    }
    requests.push(rec);
    if (respond) return respond(rec, res);
    res.writeHead(verdict.ok ? 200 : 401, { 'content-type': 'application/json', 'x-gateway': 'stub' });
    res.end(JSON.stringify(verdict.ok ? { ok: true } : { error: { code: verdict.code, message: verdict.message, requestId: req.headers['edge-request-id'] ?? null } }));
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, requests, reports, stop: () => close(server) };
}

/** A bundle allowing test-idp group `readers` to read, with optional extra policies. */
export function basicBundle(policies) {
  return JSON.stringify({ version: 1, revision: `sha256:${crypto.createHash('sha256').update(JSON.stringify(policies)).digest('hex')}`, policies });
}
