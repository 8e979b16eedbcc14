import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRequest, RouteError } from '../src/routes.js';

const code = (fn) => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof RouteError);
    return [e.status, e.code];
  }
  return null;
};

test('each route maps to its action and policy object', () => {
  const ns = '/api/v1/namespaces/team-a';
  const cases = [
    ['GET', `${ns}/volumes`, undefined, { action: 'read', name: null }],
    ['POST', `${ns}/volumes`, { name: 'pvc-1', sizeBytes: 10, labels: { tier: 'gold' } }, { action: 'create', name: 'pvc-1', sizeBytes: 10, labels: { tier: 'gold' } }],
    ['GET', `${ns}/volumes/pvc-1`, undefined, { action: 'read', name: 'pvc-1', labels: null }],
    ['DELETE', `${ns}/volumes/pvc-1`, undefined, { action: 'delete', name: 'pvc-1' }],
    ['POST', `${ns}/volumes/pvc-1/resize`, { sizeBytes: 20 }, { action: 'resize', name: 'pvc-1', sizeBytes: 20 }],
    ['GET', `${ns}/volumes/pvc-1/snapshots`, undefined, { action: 'read', name: 'pvc-1' }],
    ['POST', `${ns}/volumes/pvc-1/snapshots`, { name: 's1' }, { action: 'snapshot', name: 'pvc-1' }],
    ['GET', `${ns}/volumes/pvc-1/snapshots/s1`, undefined, { action: 'read', name: 'pvc-1', snapshot: 's1' }],
    ['DELETE', `${ns}/volumes/pvc-1/snapshots/s1`, undefined, { action: 'delete', name: 'pvc-1', snapshot: 's1' }],
    ['POST', `${ns}/volumes/pvc-1/snapshots/s1/restore`, { name: 'pvc-2' }, { action: 'restore', name: 'pvc-1', snapshot: 's1', labels: null }],
    ['POST', '/api/v1/can-i', { namespace: 'team-a', action: 'read' }, { action: 'can-i' }],
  ];
  for (const [m, p, body, want] of cases) {
    const r = resolveRequest(m, p, body);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(r[k], v, `${m} ${p} ${k}`);
    if (r.action !== 'can-i') assert.equal(r.namespace, 'team-a');
  }
  assert.deepEqual(resolveRequest('POST', '/api/v1/namespaces/a/volumes', { name: 'v', sizeBytes: 1 }).labels, {}, 'labels default to {}');
});

test('unknown paths, bad names and wrong methods', () => {
  assert.deepEqual(code(() => resolveRequest('GET', '/api/v2/namespaces/a/volumes')), [404, 'route_unknown']);
  assert.deepEqual(code(() => resolveRequest('GET', '/api/v1/namespaces/A/volumes')), [404, 'route_unknown']);
  assert.deepEqual(code(() => resolveRequest('GET', '/api/v1/namespaces/a/volumes/')), [404, 'route_unknown']);
  assert.deepEqual(code(() => resolveRequest('GET', '/api/v1/namespaces/a/volumes/x%2e%2e')), [404, 'route_unknown']);
  assert.deepEqual(code(() => resolveRequest('GET', `/api/v1/namespaces/a/volumes/${'x'.repeat(64)}`)), [404, 'route_unknown']);
  assert.deepEqual(code(() => resolveRequest('GET', '/api/v1/namespaces/a/volumes/v/snapshots/s/restore')), [405, 'method_not_allowed']);
  assert.deepEqual(code(() => resolveRequest('PUT', '/api/v1/namespaces/a/volumes/v')), [405, 'method_not_allowed']);
});

test('bodies: required members and types', () => {
  const v = '/api/v1/namespaces/a/volumes';
  for (const body of [undefined, [], null, { name: 'Bad_Name', sizeBytes: 1 }, { name: 'v' }, { name: 'v', sizeBytes: 0 }, { name: 'v', sizeBytes: 1.5 }, { name: 'v', sizeBytes: '10Gi' }, { name: 'v', sizeBytes: 1, labels: { a: 1 } }]) {
    assert.deepEqual(code(() => resolveRequest('POST', v, body)), [400, 'request_invalid'], JSON.stringify(body));
  }
  assert.deepEqual(code(() => resolveRequest('POST', `${v}/x/resize`, { sizeBytes: -1 })), [400, 'request_invalid']);
  assert.deepEqual(code(() => resolveRequest('POST', `${v}/x/snapshots`, {})), [400, 'request_invalid']);
  assert.deepEqual(code(() => resolveRequest('POST', `${v}/x/snapshots/s/restore`, { name: 'x', labels: [] })), [400, 'request_invalid']);
});
