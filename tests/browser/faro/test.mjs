// Real-browser test of the `faro` source: headless Debian Chromium loads a
// page that initializes Grafana's Faro Web SDK (npm `@grafana/faro-web-sdk`,
// its IIFE bundle served unmodified from node_modules) with `url` pointing at
// the real rum-pipeline binary's `/collect` and an `apiKey`; the documents
// must come out of the stdout sink.
//
// The page (served from another origin, so every POST is preflighted) has a
// large heading (LCP, FCP, TTFB), a banner that pushes the text down (CLS), a
// button with a Faro user-action name whose handler blocks the main thread
// (INP), fetches `/api/cart` (a resource timing) and then throws (an
// exception with a stack); it also pushes a log of each level kind, a
// measurement and an event of its own. The page is loaded twice in the same
// tab: the session id must stay the same. FARO_FIXTURES=write saves the raw
// bodies the SDK sent under testdata/sdk/faro/ (the decoder's unit tests and
// tests/faro.rs read them: update them after a rewrite). Waits are deadlines
// on the sink, never fixed sleeps.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { repo, CHROMIUM, FLAGS, debugLog, hidePage, startPipeline as startHarnessPipeline } from '../lib/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(repo, 'testdata', 'sdk', 'faro');
const SDK_DIR = join(here, 'node_modules/@grafana/faro-web-sdk');
const SDK_VERSION = JSON.parse(readFileSync(join(SDK_DIR, 'package.json'), 'utf8')).version;
const API_KEY = 'browser-test-key';
/** FARO_TEST_DEBUG=1 shows the steps on stderr. */
const log = debugLog('FARO_TEST_DEBUG');

/** Starts rum-pipeline with one faro source and a stdout sink. */
function startPipeline(dir) {
  return startHarnessPipeline(dir, `stats_interval_secs = 0
[sources.faro]
type = "faro"
address = "127.0.0.1:0"
api_key = "${API_KEY}"
[sinks.out]
type = "stdout"
inputs = ["faro"]
`, log);
}

/** The test page; the SDK is the package's own IIFE bundle, initialized as its README shows. */
function pageHtml(endpoint) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>faro test</title>
<style>body{font:20px sans-serif;margin:0} h1{font-size:64px;margin:20px} #banner{height:150px;background:#fc0}</style>
<script src="/faro-web-sdk.iife.js"></script>
<script>
window.__faro = GrafanaFaroWebSdk.initializeFaro({
  url: ${JSON.stringify(endpoint)},
  apiKey: ${JSON.stringify(API_KEY)},
  app: { name: 'faro-test-shop', version: '1.2.3', environment: 'test' },
  sessionTracking: { enabled: true, samplingRate: 1 },
  batching: { sendTimeout: 250 },
});
</script>
</head><body>
<div id="slot"></div>
<h1 id="hero">A large heading the browser paints first</h1>
<p>Some text below it that moves when the banner appears.</p>
<button id="buy" data-faro-user-action-name="buy" style="font-size:24px;padding:20px">buy</button>
<script>
document.getElementById('buy').addEventListener('click', () => {
  const until = performance.now() + 150;
  while (performance.now() < until) {}
  document.getElementById('buy').textContent = 'clicked';
  fetch('/api/cart?item=42').then((r) => r.json()).then(() => {
    window.__fetched = true;
    setTimeout(() => { throw new TypeError('cart is broken'); }, 0);
  });
});
window.__faro.api.pushLog(['checkout page ready'], { level: 'info', context: { step: 'cart' } });
window.__faro.api.pushLog(['payment widget failed'], { level: 'error' });
window.__faro.api.pushMeasurement({ type: 'cart', values: { items: 3, total: 59.9 } });
window.__faro.api.pushEvent('checkout_started', { step: '1' });
setTimeout(() => {
  const banner = document.createElement('div');
  banner.id = 'banner';
  document.getElementById('slot').appendChild(banner);
  requestAnimationFrame(() => requestAnimationFrame(() => { window.__shifted = true; }));
}, 300);
</script></body></html>`;
}

async function startPage(endpoint) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(pageHtml(endpoint));
    } else if (url.pathname === '/faro-web-sdk.iife.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(join(SDK_DIR, 'dist/bundle/faro-web-sdk.iife.js')));
    } else if (url.pathname === '/api/cart') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"items":[42]}');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((ok) => server.close(ok)) };
}


test('Faro Web SDK, unmodified, two page loads of one session', { timeout: 180_000 }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'rum-faro-'));
  const pipeline = await startPipeline(home);
  const endpoint = `${pipeline.base}/collect`;
  const page = await startPage(endpoint);
  const browser = await chromium.launchPersistentContext(join(home, 'profile'), {
    executablePath: CHROMIUM, headless: true, args: FLAGS, env: { ...process.env, HOME: home },
  });
  const sent = [];
  const answers = [];
  try {
    const tab = await browser.newPage();
    tab.on('request', (r) => {
      if (r.url() === endpoint && r.method() === 'POST') {
        sent.push({ body: r.postData(), headers: r.headers() });
      }
    });
    tab.on('response', (r) => {
      if (r.url() === endpoint && r.request().method() === 'POST') answers.push(r.status());
    });
    const first = page.url;
    await tab.goto(first);
    log('page loaded');
    await tab.waitForFunction(() => window.__shifted === true);
    await tab.click('#buy');
    await tab.waitForFunction(() => window.__fetched === true);
    // Let the click's next paint land before the page goes away, then an idle
    // callback run: web-vitals measures the interaction in one, and its
    // hidden-time report comes before a pending one (the INP would be lost on
    // a busy machine; our own client works around that, an unmodified SDK not).
    await tab.evaluate(() => new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 100))));
    await tab.evaluate(() => new Promise((ok) => requestIdleCallback(() => setTimeout(ok, 0), { timeout: 5000 })));
    await hidePage(tab);

    const one = (pred, what) => pipeline.waitFor(pred, 30_000, what).then((found) => found[0]);
    const vital = (name) => one((e) => e.rum?.vital?.name === name && e.url?.full === first, `${name} document`);
    const docs = {};
    for (const name of ['TTFB', 'FCP', 'LCP', 'CLS', 'INP']) docs[name] = await vital(name);
    const pageView = await one((e) => e.rum.type === 'page_view' && e.url?.full === first, 'page view');
    const error = await one((e) => e.rum.type === 'error' && e.error?.type === 'TypeError', 'thrown error');
    const fetched = await one((e) => e.rum.type === 'resource' && e.rum.resource?.initiator_type === 'fetch', 'fetch resource');
    const action = await one((e) => e.rum.type === 'action', 'user action');
    const logError = await one((e) => e.rum.type === 'error' && e.rum.error?.kind === 'log', 'error log');
    const measurement = await one((e) => e.rum.custom?.name === 'cart', 'custom measurement');

    // The second page load in the same tab: the SDK resumes the session.
    const second = `${first}?second=1`;
    await tab.goto(second);
    const again = await one((e) => e.rum.type === 'page_view' && e.url?.full === second, 'second page view');

    // What every Faro document carries.
    const session = pageView.session.id;
    assert.match(session, /^\w{10}$/);
    for (const doc of pipeline.events) {
      assert.equal(doc.rum.sdk.name, 'faro-web');
      assert.equal(doc.rum.sdk.version, SDK_VERSION);
      assert.equal(doc.service.name, 'faro-test-shop');
      assert.equal(doc.service.version, '1.2.3');
      assert.equal(doc.service.environment, 'test');
      assert.equal(doc.session.id, session, 'one session across both page loads');
      assert.match(doc.user_agent.original, /Chrome\//);
      assert.equal(doc.client.ip, '127.0.0.0', 'truncated by default');
      assert.equal(doc.rum.extra?.meta?.browser?.userAgent, undefined, 'the User-Agent is kept once');
    }
    assert.equal(again.session.id, session);
    assert.equal(again.url.query, 'second=1');
    for (const s of sent) assert.equal(s.headers['x-faro-session-id'], session);

    for (const [name, doc] of Object.entries(docs)) {
      assert.equal(doc.rum.type, 'web_vital', name);
      assert.equal(doc.event.dataset, 'rum.web_vital', name);
      assert.ok(doc.rum.vital.value > 0, `${name} value ${doc.rum.vital.value} > 0`);
      assert.ok(['good', 'needs-improvement', 'poor'].includes(doc.rum.vital.rating), name);
      assert.match(doc.rum.vital.id, /^v\d+-\d{13}-\d+$/, name);
      assert.equal(doc.rum.vital.navigation_type, 'navigate', name);
    }
    assert.ok(docs.INP.rum.vital.value >= 150, `INP ${docs.INP.rum.vital.value} covers the 150 ms handler`);
    assert.equal(docs.INP.rum.vital.attribution.interaction_target, '#buy');
    assert.equal(docs.LCP.rum.vital.attribution.element, '#hero');

    assert.equal(pageView.rum.nav.navigation_type, 'navigate');
    assert.equal(typeof pageView.rum.nav.ttfb, 'number');
    assert.equal(error.error.message, 'cart is broken');
    assert.match(error.error.stack_trace, /^TypeError: cart is broken\n {4}at /);
    assert.equal(error.rum.error.kind, 'exception');
    assert.equal(fetched.rum.resource.name, `${first}api/cart?item=42`);
    assert.equal(fetched.rum.resource.status, 200);
    assert.equal(action.rum.action.name, 'buy');
    assert.equal(logError.error.message, 'payment widget failed');
    assert.equal(measurement.rum.custom.data.items, 3);
    // Every request was taken, with the answer Alloy gives.
    assert.ok(answers.length > 0 && answers.every((s) => s === 202), `answers: ${answers}`);

    if (process.env.FARO_FIXTURES === 'write') {
      mkdirSync(FIXTURES, { recursive: true });
      for (const f of readdirSync(FIXTURES)) rmSync(join(FIXTURES, f));
      sent.forEach((s, i) => writeFileSync(join(FIXTURES, `body-${i}.json`), `${s.body}\n`));
      writeFileSync(join(FIXTURES, 'meta.json'), `${JSON.stringify({
        sdk: `@grafana/faro-web-sdk@${SDK_VERSION}`, browser: browser.browser()?.version() ?? null,
        user_agent: await tab.evaluate(() => navigator.userAgent), page: first, bodies: sent.length,
        request_headers: Object.keys(sent[0].headers).sort(),
      }, null, 2)}\n`);
    }
  } finally {
    await browser.close();
    await page.close();
    await pipeline.stop();
    rmSync(home, { recursive: true, force: true });
  }
});
