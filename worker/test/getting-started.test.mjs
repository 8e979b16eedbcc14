// docs/getting-started.md, executed: every ```sh block of the guide runs in order, in bash, as a
// user would type it, against a real kube-apiserver (kube-testenv), with real kubectl and Helm
// built from their Go modules and the edgebind binary. Only the guide's first block (the
// user's values) is replaced, by the addresses of what stands in for the outside world:
//   - LINSTOR and Cloudflare: `edgebind simulate linstor|cloudflare`;
//   - the identity provider: oidc-provider (harness.mjs), which issues the token;
//   - what Kubernetes would run: the API server has no kubelet, so this test plays it for the
//     Deployments the chart installed, starting each container's command with the container's
//     own args and env from the API server (only ports change, and the ServiceAccount token
//     comes from kube-testenv's kubeconfig for that account), and cloudflared with the token
//     from the Secret its Deployment names;
//   - Cloudflare's network: the Worker version deployed in the simulator runs in workerd behind
//     the route that matches; its fetches go to the simulator's edge, which follows the
//     hostname's CNAME and the tunnel's ingress to a Service, reached as cluster DNS would.
//
// Needs EDGEBIND_BIN, EDGEBIND_KUBE_TESTENV, EDGEBIND_KUBECTL and EDGEBIND_HELM (scripts/test.sh
// builds and sets them). Without EDGEBIND_BIN the suite is skipped like the other process suites;
// with it, a missing tool is a failure.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, mkdir, symlink } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startIdp, startWorker, freePort, WORKER_DIR } from './harness.mjs';
import { skipReason as skip, startEdgebind, stopProc, waitFor, json } from './procs.mjs';

const REPO = path.resolve(WORKER_DIR, '..');
const GUIDE = path.join(REPO, 'docs', 'getting-started.md');
const VALUES_MARK = '<!-- getting-started: values';
const RELEASE_NS = 'edgebind-system';
const exec = promisify(execFile);

// The simulator's account (CfSimConfig::realistic), as `edgebind simulate cloudflare` serves it.
const CF_ACCOUNT = '9a7806061c88ada191ed06f989cc3dac';
const CF_ZONE = '023e105f4ecef8ad9ca31a8372d0c353';
const CF_TOKEN = 'test-token-edgebind-sim-0123456789abcdef';
const EDGE_HOST = 'storage.example.com';
const GATEWAY_HOST = 'edgebind-gateway.example.com';

/** The guide's ```sh blocks, in order; `values` marks the one after the values comment. */
function guideBlocks(markdown) {
  const out = [];
  const re = /^```sh\n([\s\S]*?)^```$/gm;
  let m;
  while ((m = re.exec(markdown))) {
    const before = markdown.slice(0, m.index).trimEnd();
    out.push({ text: m[1], values: before.endsWith('-->') && before.slice(before.lastIndexOf('<!--')).startsWith(VALUES_MARK) });
  }
  return out;
}

/** Cloudflare route pattern match (`host/path*`, `*` matches anything), as the edge does it. */
function routeMatches(pattern, url) {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`);
  return re.test(url);
}

/** Forwards `req` (body already read) to http://target, Host header kept, and pipes the answer. */
function forward(req, body, res, target) {
  const up = http.request(
    { host: target.split(':')[0], port: Number(target.split(':')[1]), method: req.method, path: req.url, headers: req.headers },
    (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    },
  );
  up.on('error', (e) => {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`edge: ${target} unreachable: ${e.message}`);
  });
  up.end(body);
}

const readBody = (req) =>
  new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });

const listen = (server, port = 0) => new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server.address().port)));

describe('docs/getting-started.md, every command executed', { skip }, () => {
  const need = (name) => {
    const v = process.env[name];
    if (!v || !existsSync(v)) throw new Error(`${name} must name the built tool (scripts/test.sh builds it): ${v ?? 'unset'}`);
    return v;
  };
  let dir;
  let testenv;
  let env; // kube-testenv's JSON line: kubeconfigs per identity
  let linstor;
  let linstorUrl;
  let cf;
  let cfUrl;
  let idp;
  let kubectl;
  const pods = new Map(); // Deployment name -> started process(es)
  const connectors = [];
  let kubelet;
  let edgeNet;
  let edgeFront;
  let worker;
  let workerVersion;
  const tunnelled = []; // requests the edge sent through the tunnel
  const services = new Map(); // "<name>.<ns>.svc:<port>" -> 127.0.0.1:<port> of the process

  const procs = () => [...pods.values()].flat().filter((p) => p?.child);
  const k = async (...args) => (await exec(kubectl, ['--kubeconfig', env.admin, ...args], { maxBuffer: 1 << 24 })).stdout;
  const kjson = async (...args) => JSON.parse(await k(...args, '-o', 'json'));

  /** The container of Deployment `name` run as the kubelet would: its args and env. */
  async function runContainer(name, deploy, { identity, ports }) {
    const c = deploy.spec.template.spec.containers[0];
    const podName = `${name}-0`;
    const vars = {};
    for (const e of c.env ?? []) {
      if (e.value !== undefined) vars[e.name] = e.value;
      else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') vars[e.name] = podName;
      else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') vars[e.name] = RELEASE_NS;
      else throw new Error(`${name}: env ${e.name} has a source this test does not play: ${JSON.stringify(e.valueFrom)}`);
    }
    // What differs from a pod: loopback ports instead of the pod's own, and the ServiceAccount's
    // token from kube-testenv instead of the projected volume.
    Object.assign(vars, ports, { KUBECONFIG: identity, EDGEBIND_LOG_FORMAT: 'json' });
    return startEdgebind(name, c.args ?? [], vars);
  }

  /** One pass of the kubelet stand-in: start what the chart's Deployments describe, stop what they no longer do. */
  async function kubeletPass() {
    const list = JSON.parse(await k('-n', RELEASE_NS, 'get', 'deployments', '-o', 'json'));
    const names = new Set(list.items.map((d) => d.metadata.name));
    for (const [name, started] of pods) {
      if (names.has(name)) continue;
      for (const p of started) {
        if (p.child) await stopProc(p);
        // cloudflared stops: Cloudflare sees its connection go.
        if (p.connector) await json(`${cfUrl}/__sim/cloudflared/${p.connector}`, { method: 'DELETE' });
      }
      pods.delete(name);
    }
    for (const d of list.items) {
      const name = d.metadata.name;
      if (pods.has(name)) continue;
      const component = d.metadata.labels?.['app.kubernetes.io/component'];
      if (component === 'controller') {
        pods.set(name, [await runContainer(name, d, { identity: env.controller, ports: { EDGEBIND_ADMIN_ADDR: `127.0.0.1:${await freePort()}` } })]);
      } else if (component === 'gateway') {
        const port = await freePort();
        const svc = await kjson('-n', RELEASE_NS, 'get', 'service', name);
        for (const p of svc.spec.ports) services.set(`${name}.${RELEASE_NS}.svc:${p.port}`, `127.0.0.1:${port}`);
        pods.set(name, [
          await runContainer(name, d, { identity: env.gateway, ports: { EDGEBIND_GATEWAY_LISTEN: `127.0.0.1:${port}`, EDGEBIND_ADMIN_ADDR: `127.0.0.1:${await freePort()}` } }),
        ]);
      } else if (component === 'cloudflared') {
        // cloudflared `tunnel run` with TUNNEL_TOKEN from the Secret the Deployment names; it
        // waits (CreateContainerConfigError) until that Secret exists.
        const ref = d.spec.template.spec.containers[0].env.find((e) => e.name === 'TUNNEL_TOKEN').valueFrom.secretKeyRef;
        const secret = JSON.parse(await k('-n', RELEASE_NS, 'get', 'secret', ref.name, '-o', 'json').catch(() => 'null'));
        if (!secret?.data?.[ref.key]) continue;
        const token = Buffer.from(secret.data[ref.key], 'base64').toString();
        const started = [];
        for (let i = 0; i < d.spec.replicas; i++) {
          const r = await json(`${cfUrl}/__sim/cloudflared`, { method: 'POST', body: { token } });
          assert.equal(r.status, 200, `cloudflared connects with the stored token: ${r.text}`);
          connectors.push(r.body.connector_id);
          started.push({ name: `${name}-${i}`, connector: r.body.connector_id });
        }
        pods.set(name, started);
      }
    }
  }

  /** The Worker version deployed behind `EDGE_HOST`'s route, running in workerd (restarted when another version is deployed). */
  async function ensureWorker(port) {
    const routes = await json(`${cfUrl}/client/v4/zones/${CF_ZONE}/workers/routes`, { headers: { authorization: `Bearer ${CF_TOKEN}` } });
    const route = (routes.body?.result ?? []).find((r) => routeMatches(r.pattern, `${EDGE_HOST}/api/v1/namespaces`));
    if (!route?.script) return null;
    const w = await json(`${cfUrl}/__sim/workers/${route.script}`);
    if (w.status !== 200) return null;
    if (worker && workerVersion === w.body.id) return worker;
    const main = w.body.modules.find((m) => m.name === w.body.main_module);
    const file = path.join(dir, `${route.script}-${w.body.id}.js`);
    await writeFile(file, Buffer.from(main.content_base64, 'base64'));
    const bindings = {};
    for (const b of w.body.bindings) {
      if (b.type !== 'plain_text' && b.type !== 'secret_text') throw new Error(`binding type ${b.type} is not played by this test`);
      bindings[b.name] = b.text;
    }
    if (worker) await worker.stop();
    worker = await startWorker({ bindings, script: file, port, outbound: `127.0.0.1:${edgeNet.port}`, compatibilityDate: w.body.compatibility_date ?? undefined });
    workerVersion = w.body.id;
    return worker;
  }

  before(async () => {
    const testenvBin = need('EDGEBIND_KUBE_TESTENV');
    kubectl = need('EDGEBIND_KUBECTL');
    const helm = need('EDGEBIND_HELM');
    dir = await mkdtemp(path.join(tmpdir(), 'edgebind-guide-'));
    await mkdir(path.join(dir, 'bin'));
    await symlink(kubectl, path.join(dir, 'bin', 'kubectl'));
    await symlink(helm, path.join(dir, 'bin', 'helm'));

    testenv = spawn(testenvBin, ['--dir', path.join(dir, 'testenv')], { stdio: ['pipe', 'pipe', 'pipe'] });
    env = await new Promise((resolve, reject) => {
      let out = '';
      testenv.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
      });
      testenv.once('exit', (c) => reject(new Error(`kube-testenv exited with ${c}`)));
    });

    const lport = await freePort();
    linstor = startEdgebind('linstor-sim', ['simulate', 'linstor', '--listen', `127.0.0.1:${lport}`]);
    linstorUrl = `http://127.0.0.1:${lport}`;
    const cport = await freePort();
    cf = startEdgebind('cloudflare-sim', ['simulate', 'cloudflare', '--listen', `127.0.0.1:${cport}`]);
    cfUrl = `http://127.0.0.1:${cport}`;
    await waitFor('the simulators', async () => (await json(`${linstorUrl}/v1/controller/version`)).status === 200 && (await json(`${cfUrl}/__sim/workers/none`)).status === 404, { procs: [linstor, cf] });
    idp = await startIdp({ clients: [{ id: 'ci-pipeline', secret: 'ci-secret', groups: ['storage-automation'] }], audience: 'api://edgebind' });

    // Cloudflare's network as the Worker sees it: a tunnel hostname goes through the simulator's
    // CNAME and tunnel ingress to a Service; anything on loopback (the IdP) is fetched directly.
    edgeNet = http.createServer(async (req, res) => {
      const body = await readBody(req);
      const host = (req.headers.host ?? '').toLowerCase();
      if (/^(127\.0\.0\.1|localhost)(:|$)/.test(host)) return forward(req, body, res, host.includes(':') ? host : `${host}:80`);
      const o = await json(`${cfUrl}/__sim/edge/origin?${new URLSearchParams({ host: host.split(':')[0], path: req.url })}`);
      if (o.status !== 200) {
        res.writeHead(530, { 'content-type': 'text/plain' });
        return res.end(`edge: ${o.body?.error ?? o.text}`);
      }
      const origin = new URL(o.body.origin);
      const target = services.get(`${origin.hostname}:${origin.port || 80}`);
      if (!target) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        return res.end(`edge: no Service ${origin.host} in the cluster`);
      }
      tunnelled.push({ host, path: req.url, origin: o.body.origin });
      forward(req, body, res, target);
    });
    edgeNet.port = await listen(edgeNet);

    let busy = false;
    kubelet = setInterval(() => {
      if (busy) return;
      busy = true;
      kubeletPass()
        .catch(() => {})
        .finally(() => (busy = false));
    }, 500);
  });

  after(async () => {
    clearInterval(kubelet);
    for (const p of procs()) await stopProc(p);
    await worker?.stop();
    for (const p of [linstor, cf]) await stopProc(p);
    await idp?.stop();
    edgeNet?.close();
    edgeFront?.close();
    if (testenv && testenv.exitCode === null) {
      const gone = new Promise((r) => testenv.once('exit', r));
      testenv.kill('SIGTERM');
      await gone;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs from an empty cluster to a Ready volume created by curl through the Worker', { timeout: 600_000 }, async () => {
    const blocks = guideBlocks(await readFile(GUIDE, 'utf8'));
    assert.ok(blocks.length >= 6, `the guide has its command blocks (${blocks.length})`);
    assert.equal(blocks.filter((b) => b.values).length, 1, 'exactly one values block, the first');
    assert.ok(blocks[0].values);

    // The edge in front of the Worker: the route's Worker answers what curl sends to EDGE_URL.
    const frontPort = await freePort();
    const workerPort = await freePort();
    edgeFront = http.createServer(async (req, res) => {
      const body = await readBody(req);
      const w = await ensureWorker(workerPort).catch((e) => ({ error: e }));
      if (!w || w.error) {
        res.writeHead(522, { 'content-type': 'text/plain' });
        return res.end(`edge: no Worker on this route${w?.error ? `: ${w.error.message}` : ''}`);
      }
      req.headers.host = EDGE_HOST;
      forward(req, body, res, `127.0.0.1:${workerPort}`);
    });
    await listen(edgeFront, frontPort);

    const token = await idp.token('ci-pipeline', { resource: 'api://edgebind' });
    const values = [
      `export LINSTOR_URL=${linstorUrl}`,
      `export CLOUDFLARE_API_URL=${cfUrl}/client/v4`,
      `export CLOUDFLARE_ACCOUNT_ID=${CF_ACCOUNT}`,
      `export CLOUDFLARE_API_TOKEN=${CF_TOKEN}`,
      `export ZONE_ID=${CF_ZONE}`,
      `export EDGE_HOST=${EDGE_HOST}`,
      `export GATEWAY_HOST=${GATEWAY_HOST}`,
      `export EDGE_URL=http://127.0.0.1:${frontPort}`,
      `export OIDC_ISSUER=${idp.issuer}`,
      'export OIDC_AUDIENCE=api://edgebind',
      `export TOKEN=${token}`,
    ].join('\n');
    const shellEnv = { ...process.env, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`, KUBECONFIG: env.admin, HOME: dir };

    // What the first request claimed, read where it landed (before the clean-up block).
    const firstRequestLanded = async () => {
      const v = await kjson('-n', 'team-a', 'get', 'edgevolume', 'app-db');
      assert.equal(v.spec.backendRef, 'main', 'the binding’s volumeDefaults placed it');
      const rd = await json(`${linstorUrl}/v1/view/resources`);
      const replicas = (rd.body ?? []).filter((r) => r.name === v.status.linstorName);
      assert.equal(replicas.length, 2, `two replicas of ${v.status.linstorName} in LINSTOR: ${rd.text.slice(0, 300)}`);
      assert.ok(
        tunnelled.some((t) => t.host === GATEWAY_HOST && t.path === '/api/v1/namespaces/team-a/volumes' && t.origin === `http://edgebind-gateway.${RELEASE_NS}.svc:8443`),
        `the create reached the gateway through the tunnel: ${JSON.stringify(tunnelled)}`,
      );
    };
    let checked = false;
    for (const [i, b] of blocks.entries()) {
      if (b.values) continue;
      const script = `set -euo pipefail\n${values}\n${b.text}`;
      const r = await new Promise((resolve) => {
        const c = spawn('bash', ['-c', script], { cwd: REPO, env: shellEnv, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        c.stdout.on('data', (d) => (out += d));
        c.stderr.on('data', (d) => (out += d));
        c.once('exit', (code) => resolve({ code, out }));
      });
      if (r.code !== 0) {
        // Where each object stands, for the failure message (conditions only: no Secret is read).
        const conds = await k('get', 'linstorbackends,cloudflareaccounts,identityissuers,edgebindings,edgevolumes', '-A', '-o', 'jsonpath={range .items[*]}{.kind} {.metadata.namespace}/{.metadata.name}: {range .status.conditions[*]}{.type}={.status} {.reason}: {.message}; {end}{"\\n"}{end}').catch((e) => e.message);
        assert.fail(`guide block ${i + 1} fails:\n${b.text}\n--- output ---\n${r.out}\n--- objects ---\n${conds}\n${procs().concat([linstor, cf]).map((p) => p.tail?.() ?? '').join('\n')}`);
      }
      if (b.text.includes('curl ')) {
        await firstRequestLanded();
        checked = true;
      }
    }
    assert.ok(checked, 'the guide has its curl block');

    assert.ok(connectors.length >= 1, 'cloudflared connected with the token edgebind stored');
    // The clean-up block ran: nothing edgebind created is left in Cloudflare.
    const cfGet = async (p) => (await json(`${cfUrl}/client/v4${p}`, { headers: { authorization: `Bearer ${CF_TOKEN}` } })).body?.result ?? [];
    assert.deepEqual(await cfGet(`/accounts/${CF_ACCOUNT}/cfd_tunnel?is_deleted=false`), [], 'the tunnel is deleted');
    assert.deepEqual((await cfGet(`/accounts/${CF_ACCOUNT}/workers/scripts`)).map((w) => w.id), [], 'the Worker is deleted');
    assert.deepEqual(await cfGet(`/zones/${CF_ZONE}/workers/routes`), [], 'its route is deleted');
    assert.deepEqual(await cfGet(`/zones/${CF_ZONE}/dns_records`), [], 'its CNAME is deleted');
    const secrets = JSON.parse(await k('-n', RELEASE_NS, 'get', 'secrets', '-o', 'json')).items.map((x) => x.metadata.name);
    assert.ok(!secrets.includes('edgebind-tunnel-acme'), `the tunnel token Secret is deleted: ${secrets}`);
  });
});
