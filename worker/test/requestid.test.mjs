import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestIdFrom } from '../src/audit.js';

test('the request id is the cf-ray hex part plus 16 hex characters of our own', () => {
  const a = requestIdFrom('8F1E2D3C4B5A6978-FRA');
  const b = requestIdFrom('8f1e2d3c4b5a6978-FRA');
  assert.match(a, /^8f1e2d3c4b5a6978-[0-9a-f]{16}$/);
  assert.notEqual(a, b, 'a repeated ray still gives distinct ids');
  assert.match(requestIdFrom('8f1e2d3c4b5a6978'), /^8f1e2d3c4b5a6978-[0-9a-f]{16}$/);
});

test('without a usable cf-ray the ray part is zeros; caller text never enters the id', () => {
  for (const ray of [null, undefined, '', 'not-a-ray', '8f1e2d3c4b5a6978-FRA\r\nx: y', '8f1e2d3c4b5a69780-FRA', 'zzzzzzzzzzzzzzzz-FRA']) {
    assert.match(requestIdFrom(ray), /^0{16}-[0-9a-f]{16}$/, String(ray));
  }
});
