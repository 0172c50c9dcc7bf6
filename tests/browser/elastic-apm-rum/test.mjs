// Real-browser tests of the `elastic_apm_rum` source: headless Debian
// Chromium loads a page that uses Elastic's `@elastic/apm-rum` agent (npm,
// the UMD bundle, unmodified) with `serverUrl` pointing at the real
// rum-pipeline binary; the documents must come out of the stdout sink.
//
// The page has a layout shift (CLS), a fetch during the page load (an
// external.http span of the page-load transaction), a button whose handler
// blocks the main thread and fetches (INP, a user-interaction transaction)
// and a button that throws (an error with its stack). Hiding the page makes
// the agent flush and report INP (a page-exit transaction). A second page
// load in the same profile must carry the same session id.
//
// APM_RUM_FIXTURES=write runs the same page against a recorder in this
// script instead (no binary needed) and saves what the agent sent, API v2
// and v3, under testdata/sdk/elastic-apm-rum/ (the decoder's unit tests read
// them: update src/sources/elastic_apm_decoder/tests.rs after a rewrite).
// Waits are deadlines, never fixed sleeps.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { repo, CHROMIUM, FLAGS, debugLog, hidePage, waiter, startPipeline as startHarnessPipeline } from '../lib/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(repo, 'testdata', 'sdk', 'elastic-apm-rum');
const CAPTURE = process.env.APM_RUM_FIXTURES === 'write';
/** APM_RUM_TEST_DEBUG=1 shows the steps on stderr. */
const log = debugLog('APM_RUM_TEST_DEBUG');
const AGENT = JSON.parse(readFileSync(join(here, 'node_modules/@elastic/apm-rum/package.json'), 'utf8')).version;
const BUNDLE = join(here, 'node_modules/@elastic/apm-rum/dist/bundles/elastic-apm-rum.umd.js');

/** Starts rum-pipeline with one elastic_apm_rum source and a stdout sink. */
function startPipeline(dir) {
  return startHarnessPipeline(dir, `stats_interval_secs = 0
[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:0"
[sinks.out]
type = "stdout"
inputs = ["apm"]
`, log);
}

/** The page: a large heading (LCP), a banner that pushes the text down
 *  (CLS), a fetch while loading, a slow button that fetches (INP, a
 *  user-interaction transaction) and a button that throws. */
function pageHtml(serverUrl, apiVersion) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>apm-rum test</title>
<style>body{font:20px sans-serif;margin:0} h1{font-size:64px;margin:20px} #banner{height:150px;background:#fc0}</style>
<script src="/elastic-apm-rum.umd.js"></script>
<script>
elasticApm.init({
  serviceName: 'shop-frontend', serviceVersion: '1.4.2', environment: 'test',
  serverUrl: ${JSON.stringify(serverUrl)}, apiVersion: ${apiVersion},
  session: true, centralConfig: true, breakdownMetrics: true, flushInterval: 200,
  pageLoadTransactionName: 'home',
});
</script>
</head><body>
<div id="slot"></div>
<h1 id="hero">A large heading the browser paints first</h1>
<p>Some text below it that moves when the banner appears.</p>
<button id="buy" style="font-size:24px;padding:20px">slow button</button>
<button id="boom" style="font-size:24px;padding:20px">broken button</button>
<script>
fetch('/api/config?during=load').then((r) => r.json()).then(() => { window.__loaded_config = true; });
document.getElementById('buy').addEventListener('click', () => {
  const until = performance.now() + 150;
  while (performance.now() < until) {}
  fetch('/api/cart', {method: 'POST', body: '{"sku":42}'}).then((r) => r.json())
    .then(() => { document.getElementById('buy').textContent = 'clicked'; });
});
function renderPrice(item) { return item.price.toFixed(2); }
document.getElementById('boom').addEventListener('click', function onBoom() {
  document.getElementById('boom').textContent = 'boom';
  renderPrice(undefined);
});
setTimeout(() => {
  const banner = document.createElement('div');
  banner.id = 'banner';
  document.getElementById('slot').appendChild(banner);
  requestAnimationFrame(() => requestAnimationFrame(() => { window.__shifted = true; }));
}, 300);
</script></body></html>`;
}

/** The page's server; in capture mode also the APM Server the agent talks to. */
async function startPage(apiVersion, pipelineBase) {
  const received = [];
  const { notify, waitFor } = waiter(received, () => `received: ${JSON.stringify(received.map((r) => r.text.slice(0, 300)))}`);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (url.pathname === '/') {
        const serverUrl = pipelineBase || `http://${req.headers.host}`;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(pageHtml(serverUrl, apiVersion));
      } else if (url.pathname === '/elastic-apm-rum.umd.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(readFileSync(BUNDLE));
      } else if (url.pathname.startsWith('/api/')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      } else if (url.pathname.startsWith('/intake/')) {
        // The recorder (capture mode): what APM Server answers.
        const gz = req.headers['content-encoding'] === 'gzip';
        received.push({
          path: url.pathname, headers: req.headers, raw: body,
          text: (gz ? gunzipSync(body) : body).toString('utf8'),
        });
        res.writeHead(202).end();
        notify();
      } else if (url.pathname.startsWith('/config/')) {
        res.writeHead(200, { 'content-type': 'application/json', etag: '"c0ffee"' });
        res.end('{}');
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${server.address().port}/`, received, waitFor,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }),
  };
}

const hide = (tab) => hidePage(tab, { pagehide: true });

/** Drives one browser through two page loads; `sent(pred, what)` waits for
 *  what the agent sent (documents, or recorded bodies). */
async function drive(browser, pageUrl, sent) {
  const tab = await browser.newPage();
  tab.on('console', (m) => log('page:', m.type(), m.text()));
  await tab.goto(pageUrl);
  await tab.waitForFunction(() => window.__shifted === true && window.__loaded_config === true);
  log('page loaded');
  await sent('page-load');
  await tab.click('#buy');
  await tab.waitForFunction(() => document.getElementById('buy').textContent === 'clicked');
  await sent('user-interaction');
  await tab.click('#boom');
  await sent('error');
  // Let the click's next paint land before the page goes away.
  await tab.evaluate(() => new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 100))));
  await hide(tab);
  await sent('page-exit');
  await tab.close();
  // The second page load of the same visitor.
  const again = await browser.newPage();
  await again.goto(`${pageUrl}&again=1`);
  await sent('second page-load');
  await again.close();
}

async function withBrowser(name, fn) {
  const home = mkdtempSync(join(tmpdir(), `rum-apm-${name}-`));
  const browser = await chromium.launchPersistentContext(join(home, 'profile'), {
    executablePath: CHROMIUM, headless: true, args: FLAGS, env: { ...process.env, HOME: home },
  });
  try {
    await fn(browser, home);
  } finally {
    await browser.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (CAPTURE) {
  for (const apiVersion of [2, 3]) {
    test(`capture what the agent sends, API v${apiVersion}`, { timeout: 120_000 }, async () => {
      const page = await startPage(apiVersion, null);
      const kinds = apiVersion === 3
        ? { tr: 'x', type: 't', error: 'e' } : { tr: 'transaction', type: 'type', error: 'error' };
      const lines = () => page.received.flatMap((r) => r.text.split('\n').filter(Boolean).map((l) => JSON.parse(l)));
      let pageLoads = 0;
      const sent = async (what) => {
        const want = {
          'page-load': (l) => l[kinds.tr]?.[kinds.type] === 'page-load',
          'user-interaction': (l) => l[kinds.tr]?.[kinds.type] === 'user-interaction',
          error: (l) => l[kinds.error],
          'page-exit': (l) => l[kinds.tr]?.[kinds.type] === 'page-exit',
          'second page-load': (l) => l[kinds.tr]?.[kinds.type] === 'page-load',
        }[what];
        const n = what === 'second page-load' ? 2 : 1;
        const deadline = Date.now() + 30_000;
        while (lines().filter(want).length < n) {
          if (Date.now() > deadline) throw new Error(`no ${what}: ${JSON.stringify(lines())}`);
          await new Promise((ok) => setTimeout(ok, 50));
        }
        if (what === 'page-load') pageLoads += 1;
      };
      try {
        await withBrowser(`capture-v${apiVersion}`, async (browser) => {
          await drive(browser, `${page.url}?v=${apiVersion}`, sent);
          const tab = browser.pages()[0] ?? await browser.newPage();
          const ua = await tab.evaluate(() => navigator.userAgent);
          mkdirSync(FIXTURES, { recursive: true });
          page.received.forEach((r, i) => {
            writeFileSync(join(FIXTURES, `v${apiVersion}-${i}.ndjson`), r.text.endsWith('\n') ? r.text : `${r.text}\n`);
            if (r.headers['content-encoding'] === 'gzip' && i === 0) {
              writeFileSync(join(FIXTURES, `v${apiVersion}-${i}.ndjson.gz`), r.raw);
            }
          });
          writeFileSync(join(FIXTURES, `v${apiVersion}.meta.json`), `${JSON.stringify({
            agent: `@elastic/apm-rum@${AGENT}`, browser: browser.browser()?.version() ?? null,
            user_agent: ua, page: `${page.url}?v=${apiVersion}`,
            requests: page.received.map((r, i) => ({
              file: `v${apiVersion}-${i}.ndjson`, path: r.path,
              content_type: r.headers['content-type'], content_encoding: r.headers['content-encoding'] ?? null,
              origin: r.headers.origin ?? null,
            })),
          }, null, 2)}\n`);
        });
      } finally {
        await page.close();
      }
      assert.ok(pageLoads >= 1);
    });
  }
} else {
  for (const apiVersion of [2, 3]) {
    test(`agent API v${apiVersion} through the binary`, { timeout: 150_000 }, async () => {
      const home = mkdtempSync(join(tmpdir(), `rum-apm-pipeline-v${apiVersion}-`));
      const pipeline = await startPipeline(home);
      const page = await startPage(apiVersion, pipeline.base);
      const is = {
        'page-load': (e) => e.rum?.type === 'page_view',
        'user-interaction': (e) => e.rum?.type === 'action' && e.rum?.action?.kind === 'user-interaction',
        error: (e) => e.rum?.type === 'error',
        'page-exit': (e) => e.rum?.type === 'web_vital' && e.rum?.vital?.name === 'INP',
        'second page-load': (e) => e.rum?.type === 'page_view',
      };
      const sent = (what) => pipeline.waitFor(is[what], 30_000, `${what} document`, what === 'second page-load' ? 2 : 1);
      try {
        await withBrowser(`v${apiVersion}`, (browser) => drive(browser, `${page.url}?v=${apiVersion}`, sent));
        const docs = pipeline.events;
        const views = docs.filter(is['page-load']);
        assert.equal(views.length, 2, 'two page loads');
        const [view, second] = views;
        for (const doc of docs) {
          assert.equal(doc.rum.sdk.name, 'rum-js');
          assert.equal(doc.rum.sdk.version, AGENT);
          assert.equal(doc.service.name, 'shop-frontend');
          assert.equal(doc.service.version, '1.4.2');
          assert.equal(doc.service.environment, 'test');
          assert.match(doc.user_agent.original, /Chrome\//);
          assert.equal(doc.client.ip, '127.0.0.0', 'truncated by default');
        }
        // The page view, its navigation timing and its session.
        assert.equal(view.url.path, '/');
        assert.equal(view.url.query, `v=${apiVersion}`);
        assert.match(view.session.id, /^[0-9a-f]{16,32}$/);
        assert.equal(second.session.id, view.session.id, 'the session is the same on the second page load');
        assert.notEqual(second.view.id, view.view.id);
        assert.ok(view.rum.nav.ttfb >= 0 && view.rum.nav.load > 0, JSON.stringify(view.rum.nav));
        assert.ok(view.rum.nav.dom_interactive > 0);
        // Vitals of the page load, > 0 where the page triggers them.
        const vitals = docs.filter((e) => e.rum.type === 'web_vital' && e.view?.id === view.view.id);
        const byName = Object.fromEntries(vitals.map((v) => [v.rum.vital.name, v.rum.vital.value]));
        for (const name of ['FCP', 'LCP', 'CLS']) assert.ok(byName[name] > 0, `${name} > 0: ${JSON.stringify(byName)}`);
        assert.ok(byName.TTFB >= 0, JSON.stringify(byName));
        const inp = docs.find(is['page-exit']);
        assert.ok(inp.rum.vital.value >= 150, `INP ${inp.rum.vital.value} covers the 150 ms handler`);
        // The fetch of the page load and of the click.
        const fetches = docs.filter((e) => e.rum.type === 'http');
        // The fetch made while loading is an http-request transaction of its
        // own; the agent may cut its span short (no http context): the URL
        // then comes from the span's name, resolved against the page.
        const load = fetches.find((e) => e.rum.http.url.startsWith(`${page.url}api/config`));
        assert.ok(load, JSON.stringify(fetches));
        assert.equal(load.rum.http.method, 'GET');
        const cart = fetches.find((e) => e.rum.http.url.includes('/api/cart'));
        assert.ok(cart, JSON.stringify(fetches));
        assert.equal(cart.rum.http.method, 'POST');
        assert.equal(cart.rum.http.status, 200);
        assert.ok(cart.rum.http.duration > 0);
        assert.ok(docs.some((e) => e.rum.type === 'resource'), 'resource spans');
        // The error with its stack.
        const error = docs.find(is.error);
        assert.equal(error.error.type, 'TypeError');
        assert.match(error.error.message, /price/);
        assert.match(error.error.stack_trace, /renderPrice/);
        assert.match(error.error.stack_trace, /onBoom/);
        assert.ok(!docs.some((e) => e.rum.type === 'custom' && e.rum.custom.original_type?.startsWith('line:')),
          'no unknown kinds from the real agent');
      } finally {
        await page.close();
        await pipeline.stop();
        rmSync(home, { recursive: true, force: true });
      }
    });
  }
}
