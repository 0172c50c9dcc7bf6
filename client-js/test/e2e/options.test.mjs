// RUM.init options in a real browser, against the real binary: beforeSend
// edits and drops, ignoreUrls, maxResources, the per-view error cap, beacons
// split under 60 KB, client-side sampling, and the session kept across page
// loads but renewed after 30 idle minutes.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS as FLAGS, field, png, startPipeline, startSite } from './harness.mjs';

const DEADLINE_MS = 30000;
const ERRORS_THROWN = 60;

let pipeline, site, context, profile, tab;

// One page, its init options chosen by the query: ?app=NAME&rate=R
function page(pipe, app, rate) {
  const images = [1, 2, 3, 4, 5, 6].map((n) => `<img src="/img/${n}.png" width="40" height="40" alt="">`).join('');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Options</title>
<script src="${pipe}/rum"></script>
<script>
RUM.init({
  url: '${pipe}/rum',
  app: '${app}',
  sampleRate: ${rate},
  maxResources: 3,
  ignoreUrls: ['/ignored/', /secret-token/],
  beforeSend: function (e) {
    if (e.type === 'http' && e.url.indexOf('dropme') >= 0) return null;
    if (e.type === 'error') {
      e.message = e.message.replace(/4111/g, '####');
      e.stack = e.stack && e.stack.replace(/4111/g, '####');
    }
    return e;
  },
});
</script>
</head><body>${images}
<script>
addEventListener('load', function () {
  setTimeout(function () {
    fetch('/ignored/ping');
    fetch('/api/ok?secret-token=1');
    fetch('/api/dropme');
    fetch('/api/kept').then(function () { window.__settled = true; });
    for (var i = 0; i < ${ERRORS_THROWN}; i++) {
      (function (i) {
        setTimeout(function () { throw new Error('order ' + i + ' paid with card 4111 ' + 'x'.repeat(900)); }, 0);
      })(i);
    }
  }, 50);
});
</script>
</body></html>`;
}

const ofApp = (app) => pipeline.docs.filter((d) => field(d, 'service.name') === app);
const typed = (docs, type) => docs.filter((d) => field(d, 'rum.type') === type);

async function visit(app, rate) {
  await tab.goto(`${site.origin}/page?app=${app}&rate=${rate}`, { waitUntil: 'load', timeout: DEADLINE_MS });
  await tab.waitForFunction(() => window.__settled, null, { timeout: DEADLINE_MS });
  // Leaving the page flushes what is queued.
  await tab.goto(`${site.origin}/blank`, { waitUntil: 'load', timeout: DEADLINE_MS });
}

before(async () => {
  pipeline = await startPipeline();
  const tile = png(40, 40, 7);
  site = await startSite({
    '/page': (req) => {
      const q = new URL(req.url, 'http://x').searchParams;
      return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: page(pipeline.origin, q.get('app'), q.get('rate')) };
    },
    ...Object.fromEntries([1, 2, 3, 4, 5, 6].map((n) => [`/img/${n}.png`, { headers: { 'content-type': 'image/png' }, body: tile }])),
    '/ignored/ping': { body: 'pong' },
    '/api/ok': { body: 'ok' },
    '/api/dropme': { body: 'dropped' },
    '/api/kept': { body: 'kept' },
    '/blank': { headers: { 'content-type': 'text/html' }, body: '<!doctype html><title>elsewhere</title>' },
  });
  profile = mkdtempSync(join(tmpdir(), 'rum-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  tab = context.pages()[0] ?? (await context.newPage());

  await visit('sampled-out', 0);
  await visit('options', 1);
  await pipeline.until(
    () => typed(ofApp('options'), 'error').length >= 50 && typed(ofApp('options'), 'page_view').length >= 1,
    DEADLINE_MS,
    'the events of the first visit'
  ).catch((e) => {
    const got = pipeline.docs.map((d) => `${field(d, 'service.name')}:${field(d, 'rum.type')}`);
    const counts = got.reduce((c, k) => ({ ...c, [k]: (c[k] ?? 0) + 1 }), {});
    throw new Error(`${e.message}\ngot: ${JSON.stringify(counts)}`);
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await site?.close();
  await pipeline?.stop();
});

test('beforeSend edits events and drops the ones it returns null for', () => {
  const docs = ofApp('options');
  const errors = typed(docs, 'error');
  for (const e of errors) {
    assert.ok(!JSON.stringify(e).includes('4111'), 'the card number was scrubbed');
    assert.match(field(e, 'error.message'), /card ####/);
  }
  const urls = typed(docs, 'http').map((d) => field(d, 'rum.http.url'));
  assert.ok(!urls.some((u) => u.includes('dropme')), 'dropped by beforeSend');
});

test('ignoreUrls leaves out matching calls and resources; others are kept', () => {
  const docs = ofApp('options');
  const urls = typed(docs, 'http').map((d) => field(d, 'rum.http.url'));
  assert.deepEqual(urls, [`${site.origin}/api/kept`]);
  for (const r of typed(docs, 'resource')) assert.doesNotMatch(field(r, 'rum.resource.name'), /ignored|secret-token/);
});

test('maxResources caps resources per view', () => {
  assert.equal(typed(ofApp('options'), 'resource').length, 3);
});

test('distinct errors are capped per view; each is whole, with its message cut to 1000 characters', () => {
  const errors = typed(ofApp('options'), 'error');
  assert.equal(errors.length, 50);
  const orders = new Set(errors.map((e) => field(e, 'error.message').match(/order (\d+)/)[1]));
  assert.equal(orders.size, 50, 'fifty different errors');
  for (const e of errors) {
    assert.ok(field(e, 'error.message').length <= 1000);
    assert.equal(field(e, 'rum.error.count'), 1);
  }
});

test('a big flush is split into several beacons, each under 60 KB, none refused', async () => {
  // The access log shows the page without its query; at this point only the
  // `options` visit has sent beacons (the sampled-out one sends none).
  const posts = () => [...pipeline.stderr().matchAll(/POST \/rum \S+\/page ([\d.]+)kB/g)].map((m) => Number(m[1]));
  // Access-log lines go to stderr through a writer thread of their own, so
  // they can arrive after the events reached stdout (what `before` waited
  // for), and node reads the two pipes separately: wait for the lines.
  await pipeline.until(() => posts().length >= 2, DEADLINE_MS, 'two access-log lines of beacons').catch(() => {});
  assert.ok(posts().length >= 2, `beacons: ${posts().join(', ')} kB`);
  for (const kb of posts()) assert.ok(kb * 1000 <= 60 * 1024, `${kb} kB`);
});

test('sampleRate 0 sends nothing', () => {
  // The sampled-out visit came first; the later visit's events have arrived.
  assert.deepEqual(ofApp('sampled-out'), []);
});

test('the session survives page loads, and is renewed after 30 idle minutes', async () => {
  const first = new Set(ofApp('options').map((d) => field(d, 'session.id')));
  assert.equal(first.size, 1);
  const [session] = first;

  const before = ofApp('options').length;
  await visit('options', 1);
  await pipeline.until(() => typed(ofApp('options').slice(before), 'page_view').length >= 1, DEADLINE_MS, 'the second visit');
  assert.deepEqual([...new Set(ofApp('options').slice(before).map((d) => field(d, 'session.id')))], [session]);

  // Make the stored session 31 minutes old, as if the tab had been left alone.
  await tab.goto(`${site.origin}/blank`);
  const stored = await tab.evaluate(() => {
    const key = Object.keys(sessionStorage).find((k) => k.startsWith('_rum'));
    const value = JSON.parse(sessionStorage.getItem(key));
    value.t -= 31 * 60 * 1000;
    sessionStorage.setItem(key, JSON.stringify(value));
    return value.id;
  });
  assert.equal(stored, session);
  const third = ofApp('options').length;
  await visit('options', 1);
  await pipeline.until(() => typed(ofApp('options').slice(third), 'page_view').length >= 1, DEADLINE_MS, 'the third visit');
  const renewed = [...new Set(ofApp('options').slice(third).map((d) => field(d, 'session.id')))];
  assert.equal(renewed.length, 1);
  assert.notEqual(renewed[0], session);
});
