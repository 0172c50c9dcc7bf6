import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fnv1a32, keepSession } from '../../src/sampling.js';

// The vectors the server's `sample` transform is tested against too.
const { vectors } = JSON.parse(readFileSync(new URL('../../../testdata/sampling/vectors.json', import.meta.url), 'utf8'));

test('the shared vectors are there and cover non-ASCII ids', () => {
  assert.ok(vectors.length >= 10);
  assert.ok(vectors.some((v) => /[^\x00-\x7f]/.test(v.session_id)));
});

for (const v of vectors) {
  test(`session ${JSON.stringify(v.session_id)} hashes and samples as the server does`, () => {
    assert.equal(fnv1a32(v.session_id), v.fnv1a32);
    assert.equal(fnv1a32(v.session_id) / 2 ** 32, v.unit);
    assert.equal(keepSession(v.session_id, 0.1), v.keep_at_0_1);
    assert.equal(keepSession(v.session_id, 0.5), v.keep_at_0_5);
  });
}

test('rate 1 keeps every session and rate 0 none', () => {
  for (const v of vectors) {
    assert.equal(keepSession(v.session_id, 1), true);
    assert.equal(keepSession(v.session_id, 0), false);
  }
});

test('a rate given as a data-attribute string works like the number', () => {
  for (const v of vectors) assert.equal(keepSession(v.session_id, '0.5'), v.keep_at_0_5);
});
