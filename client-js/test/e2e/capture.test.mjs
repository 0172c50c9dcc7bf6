// What the client makes of pages that do ordinary things in less ordinary
// ways, in a real browser against the real binary: loading the client with
// `crossorigin`, an XMLHttpRequest object used for more than one call,
// promises rejected with something that is not an Error, a page left before
// it was ever idle, calls to relative URLs under a <base>, no-cors fetches.
// But for the `crossorigin` page (which is about how the binary serves
// GET /rum), the client is built from src/ and served by the test site (the
// beacons still go to the binary), so these run against the sources as they
// are; browser.test.mjs checks that the binary serves the committed build.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { buildBundle } from '../../scripts/build.mjs';
import { CHROMIUM, CHROMIUM_FLAGS as FLAGS, field, png, startPipeline, startSite } from './harness.mjs';

const DEADLINE_MS = 30000;

let pipeline, site, context, profile;

const page = (pipe, app, body) => `<!doctype html>
<html><head><meta charset="utf-8"><title>${app}</title>
${app == 'base' ? '<base href="/app/">' : ''}
<style>body{font:16px sans-serif;margin:0}</style>
${
  app == 'crossorigin'
    ? `<script src="${pipe}/rum" crossorigin data-app="${app}"></script>`
    : `<script src="/client.js" data-app="${app}" data-url="${pipe}/rum"></script>`
}
</head><body>
<script>var PIPE = ${JSON.stringify(pipe)};${body}</script>
</body></html>`;

// Each scenario is a page named by its app; it sets window.__settled when done.
const SCENARIOS = {
  // The tag a page needs for integrity= (and for error details of its scripts).
  crossorigin: `addEventListener('load', function () { window.__settled = true; });`,
  // One XHR object, three calls: the second opened in the first's loadend
  // handler (as retry and polling code does), the third after the second was
  // re-opened while in flight (which ends it without a loadend).
  'xhr-reuse': `
var x = new XMLHttpRequest(), n = 0;
x.onloadend = function () {
  n++;
  if (n === 1) { x.open('GET', '/api/second'); x.send(); }
  else if (n === 2) {
    x.open('GET', '/api/slow'); x.send();
    x.open('POST', '/api/third'); x.send('3');
  } else window.__settled = true;
};
x.open('GET', '/api/first');
x.send();`,
  // Busy from its load event on, so the client's after-load idle callback
  // never gets to run before the page is left (a heavy page, or a user who
  // leaves a slow one at once). The layout shifts once, after the first
  // contentful paint has been handed to observers (the page's own observer
  // is called after the client's, registered earlier, in the same task) and
  // a frame has been painted (a shift before any frame is none).
  'left-busy': `
document.write('<img src="/hero.png" width="300" height="200" alt=""><p>Some text.</p>');
addEventListener('load', function () {
  var channel = new MessageChannel();
  channel.port1.onmessage = busy;
  function busy() {
    var until = performance.now() + 8;
    while (performance.now() < until) {}
    channel.port2.postMessage(0);
  }
  busy();
  new PerformanceObserver(function (list, observer) {
    if (!list.getEntries().some(function (e) { return e.name === 'first-contentful-paint'; })) return;
    observer.disconnect();
    requestAnimationFrame(function () {
      requestAnimationFrame(function () {
        var promo = document.createElement('div');
        promo.style.height = '100px';
        promo.textContent = 'Promo!';
        document.body.prepend(promo);
        requestAnimationFrame(function () {
          requestAnimationFrame(function () { window.__settled = true; });
        });
      });
    });
  }).observe({ type: 'paint', buffered: true });
});`,
  // fetch and XHR resolve a relative URL against the document's base URL.
  base: `
fetch('api/items').then(function () {
  var x = new XMLHttpRequest();
  x.open('GET', 'api/more');
  x.onloadend = function () { window.__settled = true; };
  x.send();
});`,
  // A no-cors fetch that went through answers an opaque response (status 0
  // to the page); one to a closed port fails.
  'no-cors': `
fetch(PIPE + '/health', { mode: 'no-cors' }).then(function () {
  return fetch('http://127.0.0.1:9/closed', { mode: 'no-cors' });
}).catch(function () {}).then(function () { window.__settled = true; });`,
  rejections: `
Promise.reject();
Promise.reject({ code: 'E_QUOTA', retry: false });
Promise.reject(42);
Promise.reject('plain text reason');
Promise.reject('');
setTimeout(function () { window.__settled = true; }, 50);`,
};

const ofApp = (app) => pipeline.docs.filter((d) => field(d, 'service.name') === app);
const typed = (app, type) => ofApp(app).filter((d) => field(d, 'rum.type') === type);

before(async () => {
  pipeline = await startPipeline();
  const client = await buildBundle();
  site = await startSite({
    '/client.js': { headers: { 'content-type': 'text/javascript' }, body: client },
    '/page': (req) => {
      const app = new URL(req.url, 'http://x').searchParams.get('app');
      return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: page(pipeline.origin, app, SCENARIOS[app]) };
    },
    '/api/first': { body: '1' },
    '/api/second': { body: '22' },
    '/api/slow': { body: 'slow', delayMs: 2000 },
    '/api/third': { body: '333' },
    '/hero.png': { headers: { 'content-type': 'image/png' }, body: png(300, 200) },
    '/app/api/items': { body: 'items' },
    '/app/api/more': { body: 'more' },
    '/blank': { headers: { 'content-type': 'text/html' }, body: '<!doctype html><title>elsewhere</title>' },
  });
  profile = mkdtempSync(join(tmpdir(), 'rum-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await site?.close();
  await pipeline?.stop();
});

/** Loads the scenario's page, waits until it has done its part, and leaves (which flushes). */
async function visit(app) {
  const tab = await context.newPage();
  tab.on('pageerror', () => {});
  await tab.goto(`${site.origin}/page?app=${app}`, { waitUntil: 'load', timeout: DEADLINE_MS });
  await tab.waitForFunction(() => window.__settled, null, { timeout: DEADLINE_MS });
  await tab.goto(`${site.origin}/blank`, { waitUntil: 'load', timeout: DEADLINE_MS });
  // The hidden-time flush carries the page_view: once it is here, so is the rest.
  await pipeline.until(() => typed(app, 'page_view').length > 0, DEADLINE_MS, `the page_view of ${app}`);
  await tab.close();
}

test('the client loaded with crossorigin runs and reports', async () => {
  const tab = await context.newPage();
  await tab.goto(`${site.origin}/page?app=crossorigin`, { waitUntil: 'load', timeout: DEADLINE_MS });
  await tab.waitForFunction(() => window.__settled, null, { timeout: DEADLINE_MS });
  assert.equal(await tab.evaluate(() => typeof window.RUM), 'object', 'the browser refused to run the script');
  await tab.goto(`${site.origin}/blank`, { waitUntil: 'load', timeout: DEADLINE_MS });
  await pipeline.until(() => typed('crossorigin', 'page_view').length > 0, DEADLINE_MS, 'the page_view of the crossorigin page');
  await tab.close();
});

test('an XHR object used for several calls reports each call once, with its own URL and size', async () => {
  await visit('xhr-reuse');
  const calls = typed('xhr-reuse', 'http').map((d) => [
    field(d, 'rum.http.method'),
    new URL(field(d, 'rum.http.url')).pathname,
    field(d, 'rum.http.status'),
    field(d, 'rum.http.size'),
  ]);
  calls.sort((a, b) => a[1].localeCompare(b[1]));
  // The call cut short by open() ended without an answer: it is not reported.
  assert.deepEqual(calls, [
    ['GET', '/api/first', 200, 1],
    ['GET', '/api/second', 200, 2],
    ['POST', '/api/third', 200, 3],
  ]);
});

test('a promise rejected with no Error says what it was rejected with', async () => {
  await visit('rejections');
  const messages = typed('rejections', 'error').map((d) => field(d, 'error.message'));
  assert.deepEqual(messages.sort(), ['""', '42', 'plain text reason', 'undefined', '{"code":"E_QUOTA","retry":false}']);
});

test('a page left before it was idle still reports its web vitals and resources', async () => {
  await visit('left-busy');
  const vitals = () => new Set(typed('left-busy', 'web_vital').map((d) => field(d, 'rum.vital.name')));
  // The page_view came with the first hidden-time flush; web-vitals reports
  // LCP and CLS on visibilitychange, which follows pagehide.
  await pipeline.until(() => vitals().size >= 4, DEADLINE_MS, 'the web vitals of the busy page').catch(() => {});
  assert.deepEqual([...vitals()].sort(), ['CLS', 'FCP', 'LCP', 'TTFB']);
  const cls = typed('left-busy', 'web_vital').find((d) => field(d, 'rum.vital.name') === 'CLS');
  assert.ok(field(cls, 'rum.vital.value') > 0, 'the shift is in CLS');
  const resources = typed('left-busy', 'resource').map((d) => new URL(field(d, 'rum.resource.name')).pathname);
  assert.ok(resources.includes('/hero.png'), `resources: ${resources}`);
});

test('calls to relative URLs under a <base> are reported with the URL they went to', async () => {
  await visit('base');
  const urls = typed('base', 'http').map((d) => new URL(field(d, 'rum.http.url')).pathname);
  assert.deepEqual(urls.sort(), ['/app/api/items', '/app/api/more']);
  for (const d of typed('base', 'http')) assert.equal(field(d, 'rum.http.status'), 200);
});

test('a no-cors fetch that went through is no network failure (status left out, not 0)', async () => {
  await visit('no-cors');
  const calls = typed('no-cors', 'http').map((d) => [new URL(field(d, 'rum.http.url')).pathname, field(d, 'rum.http.status') ?? null]);
  assert.deepEqual(calls.sort(), [
    ['/closed', 0],
    ['/health', null],
  ]);
});
