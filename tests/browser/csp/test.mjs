// Real-browser tests of the `csp` source: headless Debian Chromium loads a
// page whose Content-Security-Policy blocks an inline script, and the report
// it sends must come out of the real rum-pipeline binary's stdout sink.
//
// (1) legacy: page and pipeline over plain HTTP, a `report-uri`-only policy
//     (when a policy has `report-to` too, browsers use only that);
// (2) Reporting API: Chromium delivers `report-to` reports only to secure
//     endpoints, so the pipeline's shared listener serves TLS with a
//     certificate from a CA made here and trusted through an NSS database in
//     the browser's HOME — no certificate errors are ignored.
//
// Waits are deadlines on the sink, never fixed sleeps; the first report passes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { chromium } from 'playwright-core';
import { CHROMIUM, FLAGS, debugLog, startPipeline as startHarnessPipeline } from '../lib/harness.mjs';

/** CSP_TEST_DEBUG=1 shows the steps on stderr. */
const log = debugLog('CSP_TEST_DEBUG');

/** Starts rum-pipeline with one csp source and a stdout sink. */
function startPipeline(dir, extraSource = '') {
  return startHarnessPipeline(dir, `stats_interval_secs = 0
[sources.csp]
type = "csp"
address = "127.0.0.1:0"
${extraSource}
[sinks.out]
type = "stdout"
inputs = ["csp"]
`, log);
}

/** Serves one page with the given response headers. */
async function startPage(headers, tls) {
  const html = `<!doctype html><title>csp test</title>
<p>The inline script below is blocked by the page's policy.</p>
<script>document.title = 'inline script ran';</script>`;
  const handler = (req, res) => {
    if (req.url !== '/') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...headers });
    res.end(html);
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const scheme = tls ? 'https' : 'http';
  return { url: `${scheme}://127.0.0.1:${server.address().port}/`, close: () => new Promise((ok) => server.close(ok)) };
}

async function launch(home) {
  return chromium.launchPersistentContext(join(home, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    env: { ...process.env, HOME: home },
  });
}

/** A CA, a server certificate for 127.0.0.1 signed by it, and an NSS
 *  database in `home` that trusts the CA (where Chromium on Linux looks). */
function makeTrustedCert(home) {
  const d = join(home, 'certs');
  mkdirSync(d, { recursive: true });
  const ssl = (...args) => execFileSync('openssl', args, { cwd: d, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=rum-pipeline browser test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(d, 'server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
  ].join('\n'));
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  const nss = join(home, '.pki', 'nssdb');
  mkdirSync(nss, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${nss}`, '-N', '--empty-password'], { stdio: 'pipe' });
  execFileSync('certutil', ['-d', `sql:${nss}`, '-A', '-t', 'C,,', '-n', 'rum-pipeline test CA', '-i', join(d, 'ca.pem')], { stdio: 'pipe' });
  return { crt: join(d, 'server.crt'), key: join(d, 'server.key') };
}

test('legacy report-uri over HTTP reaches the sink', { timeout: 120_000 }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'rum-csp-legacy-'));
  const pipeline = await startPipeline(home);
  const endpoint = `${pipeline.base}/rum/report-uri`;
  const page = await startPage({ 'content-security-policy': `script-src 'none'; report-uri ${endpoint}` });
  log('pipeline at', pipeline.base, 'page at', page.url);
  const browser = await launch(home);
  log('browser launched');
  try {
    const tab = await browser.newPage();
    await tab.goto(page.url);
    log('page loaded');
    assert.equal(await tab.title(), 'csp test', 'the policy blocked the inline script');
    const [event] = await pipeline.waitFor((e) => e.csp?.format === 'report-uri', 30_000, 'report-uri event');
    assert.equal(event.rum.type, 'csp_violation');
    assert.equal(event.csp.blocked_uri, 'inline');
    assert.equal(event.csp.document_uri, page.url);
    assert.equal(event.url.full, page.url);
    assert.match(event.csp.effective_directive, /^script-src/);
    assert.equal(event.csp.disposition, 'enforce');
    assert.match(event.user_agent.original, /Chrome\//);
  } finally {
    await browser.close();
    await page.close();
    await pipeline.stop();
    rmSync(home, { recursive: true, force: true });
  }
});

test('Reporting API over HTTPS (shared listener with TLS) reaches the sink', { timeout: 150_000 }, async () => {
  const home = mkdtempSync(join(tmpdir(), 'rum-csp-reporting-'));
  const cert = makeTrustedCert(home);
  const pipeline = await startPipeline(home, `tls = { crt_file = "${cert.crt}", key_file = "${cert.key}" }`);
  assert.match(pipeline.base, /^https:\/\//);
  const endpoint = `${pipeline.base}/rum/reporting-api`;
  const page = await startPage({
    'reporting-endpoints': `csp="${endpoint}"`,
    'content-security-policy': `script-src 'none'; report-to csp`,
  }, { cert: readFileSync(cert.crt), key: readFileSync(cert.key) });
  const browser = await launch(home);
  try {
    const tab = await browser.newPage();
    log('pipeline at', pipeline.base, 'page at', page.url);
    // Loads only if Chromium trusts the test CA: nothing is ignored.
    await tab.goto(page.url);
    assert.equal(await tab.title(), 'csp test', 'the policy blocked the inline script');
    // Chromium sends the first report at once and batches the rest later.
    const [event] = await pipeline.waitFor((e) => e.csp?.format === 'reporting-api', 90_000, 'reporting-api event');
    assert.equal(event.rum.type, 'csp_violation');
    assert.equal(event.csp.blocked_uri, 'inline');
    assert.equal(event.csp.document_uri, page.url);
    assert.match(event.csp.effective_directive, /^script-src/);
    assert.equal(event.csp.violated_directive, event.csp.effective_directive);
    assert.match(event.user_agent.original, /Chrome\//);
    const lag = Date.parse(event.event.ingested) - Date.parse(event['@timestamp']);
    assert.ok(lag >= 0, `@timestamp is receive time − age, never after it (lag ${lag} ms)`);
  } finally {
    await browser.close();
    await page.close();
    await pipeline.stop();
    rmSync(home, { recursive: true, force: true });
  }
});
