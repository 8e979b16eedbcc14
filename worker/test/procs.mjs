// Process and HTTP helpers of the tests that run the edgebind binary (e2e, rotation):
//   BIN, skipReason       the binary from EDGEBIND_BIN, or why the suite is skipped
//   startEdgebind()       `edgebind <args>` with its output kept; stopProc() ends it
//   waitFor()             bounded polling with the processes' logs in the failure message
//   http(), json()        fetch with a timeout (every call to a local server is bounded)

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export const BIN = process.env.EDGEBIND_BIN;
/** false when the binary is there, else the message the suite is skipped with. */
export const skipReason = !BIN
  ? 'EDGEBIND_BIN is not set: build edgebind (cargo build) and set EDGEBIND_BIN=target/debug/edgebind to run this test'
  : !existsSync(BIN)
    ? `EDGEBIND_BIN=${BIN} does not exist: run cargo build first`
    : false;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const children = new Set();
// Last resort if the test process dies without running after(): no edgebind process outlives it.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Calls `onLine` with each complete line of a stream (a line may span several chunks). */
function lines(stream, onLine) {
  let partial = '';
  stream.on('data', (d) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop();
    for (const l of parts) if (l.trim()) onLine(l);
  });
}

/**
 * Starts `edgebind <args>`; keeps every stdout line (audit events) and the tail of stderr (logs).
 * onStderr(line), if given, sees every stderr line as it arrives.
 */
export function startEdgebind(name, args, env = {}, { onStderr } = {}) {
  const child = spawn(BIN, args, { env: { ...process.env, EDGEBIND_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const proc = { name, child, stdout: [], stderr: [] };
  lines(child.stdout, (l) => proc.stdout.push(l));
  lines(child.stderr, (l) => {
    onStderr?.(l);
    proc.stderr.push(l);
    if (proc.stderr.length > 400) proc.stderr.splice(0, proc.stderr.length - 400);
  });
  proc.exited = new Promise((resolve) => child.once('exit', resolve));
  proc.tail = () => `--- ${name} (exit ${child.exitCode ?? child.signalCode ?? 'running'}) ---\n${[...proc.stdout.slice(-10), ...proc.stderr.slice(-20)].join('\n')}`;
  return proc;
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export async function stopProc(proc) {
  if (!proc) return;
  const c = proc.child;
  if (c.exitCode === null && c.signalCode === null) {
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await proc.exited;
    clearTimeout(timer);
  }
  children.delete(c);
}

/** Polls `probe` until it returns a truthy value; fails with `what` and the process logs. */
export async function waitFor(what, probe, { timeoutMs = 60000, procs = [], intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ''}\n${procs.map((p) => p.tail()).join('\n')}`);
    }
    await sleep(intervalMs);
  }
}

/** fetch with a timeout: every call to a local server is bounded. */
export async function http(url, { method = 'GET', body, headers = {}, timeoutMs = 10000, contentType = 'application/json' } = {}) {
  return fetch(url, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': contentType } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** http() and the body parsed as JSON (null when it is not JSON; `text` keeps it). */
export async function json(url, opts) {
  const res = await http(url, opts);
  const text = await res.text();
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: keep the text for the message.
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}
