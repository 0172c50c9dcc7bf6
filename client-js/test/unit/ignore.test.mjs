import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIgnored, stripUrl } from '../../src/ignore.js';

const BEACON = 'https://rum.example.com/rum';

test("the client's own beacons are ignored, with or without a query", () => {
  assert.equal(isIgnored('https://rum.example.com/rum', BEACON), true);
  assert.equal(isIgnored('https://rum.example.com/rum?x=1#y', BEACON), true);
});

test('neighbours of the beacon URL are not', () => {
  assert.equal(isIgnored('https://rum.example.com/rum-products', BEACON), false);
  assert.equal(isIgnored('https://rum.example.com/', BEACON), false);
  assert.equal(isIgnored('http://rum.example.com/rum', BEACON), false);
});

test('ignoreUrls: substrings, regular expressions and predicates', () => {
  const patterns = ['/health', /analytics\.example\.(com|net)/, (url) => url.endsWith('.map')];
  assert.equal(isIgnored('https://shop.example/health?deep=1', BEACON, patterns), true);
  assert.equal(isIgnored('https://analytics.example.net/collect', BEACON, patterns), true);
  assert.equal(isIgnored('https://cdn.example/app.js.map', BEACON, patterns), true);
  assert.equal(isIgnored('https://shop.example/api/cart', BEACON, patterns), false);
});

test('a global RegExp gives the same answer every time', () => {
  const patterns = [/tracker/g];
  for (let i = 0; i < 3; i++) assert.equal(isIgnored('https://tracker.example/p', BEACON, patterns), true);
});

test('junk in ignoreUrls is skipped, not thrown', () => {
  assert.equal(isIgnored('https://shop.example/', BEACON, [null, 42, {}]), false);
  assert.equal(isIgnored('https://shop.example/', BEACON, undefined), false);
});

test('stripUrl drops query and fragment', () => {
  assert.equal(stripUrl('https://a.example/p?q=1#f'), 'https://a.example/p');
  assert.equal(stripUrl('https://a.example/p#f?q'), 'https://a.example/p');
});
