// INP of an interaction the user makes just before leaving, in a real browser
// against the real binary. web-vitals processes event entries in an idle
// callback and reports INP when the page is hidden; when the page is left
// before that idle callback has run, its hidden-time report comes first and
// sees no interaction, and the value it learns a moment later is never
// reported. The page below keeps its main thread busy so that no idle callback
// can run: the race a slow device loses, made certain.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS as FLAGS, field, startPipeline, startSite } from './harness.mjs';

const DEADLINE_MS = 30000;
const HANDLER_MS = 150;

let pipeline, site, context, profile;

const page = (pipe, app) => `<!doctype html>
<html><head><meta charset="utf-8"><title>Busy</title>
<script src="${pipe}/rum" data-app="${app}" async></script>
</head><body>
<button id="go">Go</button>
<script>
addEventListener('load', function () { setTimeout(function () { window.__settled = true; }, 50); });
document.getElementById('go').addEventListener('click', function () {
  var until = performance.now() + ${HANDLER_MS};
  while (performance.now() < until) {}
});
// Back-to-back 8 ms tasks from now on (posted messages: timers would be
// clamped to 4 ms and leave idle time between them): never idle.
var channel = new MessageChannel();
channel.port1.onmessage = busy;
function busy() {
  var until = performance.now() + 8;
  while (performance.now() < until) {}
  channel.port2.postMessage(0);
}
// Set once the click's event entry has been handed to observers (web-vitals' among them).
function watch() {
  new PerformanceObserver(function (list) {
    if (list.getEntries().some(function (e) { return e.name === 'click' && e.interactionId; })) window.__seen = true;
  }).observe({ type: 'event', durationThreshold: 16 });
  busy();
}
</script>
</body></html>`;

const ofApp = (app) => pipeline.docs.filter((d) => field(d, 'service.name') === app);

/** Loads the page as `app`, clicks once with the main thread busy, and leaves. */
async function clickAndLeave(tab, app) {
  await tab.goto(`${site.origin}/busy?app=${app}`, { waitUntil: 'load', timeout: DEADLINE_MS });
  await tab.waitForFunction(() => window.RUM && window.__settled, null, { timeout: DEADLINE_MS });
  // The client starts web-vitals once the loaded page is idle: let it.
  await tab.evaluate(() => new Promise((ok) => requestIdleCallback(() => setTimeout(ok, 0), { timeout: 5000 })));
  await tab.evaluate(() => watch());
  await tab.click('#go');
  await tab.waitForFunction(() => window.__seen, null, { timeout: DEADLINE_MS, polling: 50 });
  await tab.goto(`${site.origin}/blank`, { waitUntil: 'load', timeout: DEADLINE_MS });
}

before(async () => {
  pipeline = await startPipeline();
  site = await startSite({
    '/busy': (req) => ({
      headers: { 'content-type': 'text/html; charset=utf-8' },
      body: page(pipeline.origin, new URL(req.url, 'http://x').searchParams.get('app')),
    }),
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

test('INP of a click made just before leaving a busy page is sent, once, with the handler in it', async () => {
  const tab = context.pages()[0] ?? (await context.newPage());
  await clickAndLeave(tab, 'busy');
  const inps = () => ofApp('busy').filter((d) => field(d, 'rum.type') === 'web_vital' && field(d, 'rum.vital.name') === 'INP');
  // The page_view goes in the same hidden-time flush: once it is here, so is anything else that was sent.
  await pipeline.until(() => inps().length > 0, DEADLINE_MS, 'the INP of the busy page').catch((e) => {
    const got = ofApp('busy').map((d) => `${field(d, 'rum.type')}${field(d, 'rum.vital.name') ? ':' + field(d, 'rum.vital.name') : ''}`);
    throw new Error(`${e.message}\ngot: ${got.join(', ')}`);
  });
  // Anything sent twice would have arrived with the first: give it a moment.
  await new Promise((ok) => setTimeout(ok, 500));
  assert.equal(inps().length, 1, `one INP per hidden page: ${JSON.stringify(inps().map((d) => [field(d, 'rum.vital.value'), field(d, 'rum.vital.delta'), field(d, 'rum.vital.attribution.interactionType'), field(d, 'event.sequence') ?? field(d, 'rum.seq')]))}`);
  const inp = inps()[0];
  assert.ok(field(inp, 'rum.vital.value') >= HANDLER_MS, `INP ${field(inp, 'rum.vital.value')} covers the ${HANDLER_MS} ms handler`);
  assert.equal(field(inp, 'rum.vital.attribution.interactionType'), 'pointer');
  assert.match(String(field(inp, 'rum.vital.attribution.interactionTarget')), /go/);
});
