// What the browser test needs around the browser: the real rum-pipeline
// binary writing events to stdout, a small site to load the client into, and
// a way to wait for documents with a deadline instead of sleeping.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, crc32 } from 'node:zlib';

/** Debian's Chromium (`CHROMIUM_BIN` overrides it) and the flags every suite runs it with. */
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_DIR = resolve(CLIENT_DIR, '..');

/** RUM_PIPELINE_BIN, else the debug build under CARGO_TARGET_DIR or the repo's target/. */
export function pipelineBinary() {
  if (process.env.RUM_PIPELINE_BIN) return resolve(process.env.RUM_PIPELINE_BIN);
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO_DIR, process.env.CARGO_TARGET_DIR) : join(REPO_DIR, 'target');
  return join(target, 'debug', 'rum-pipeline');
}

/** Reads a dotted path from a document, whether the sink nested it or not. */
export function field(doc, path) {
  if (path in doc) return doc[path];
  let node = doc;
  for (const part of path.split('.')) {
    if (node == null || typeof node !== 'object') return undefined;
    node = node[part];
  }
  return node;
}

/**
 * Every pipeline still running, killed when this process exits: a test or
 * hook that fails before `stop()` must not leave a binary behind, nor keep
 * node's event loop, and with it `node --test`, waiting until CI's time limit
 * (test.sh runs it with --test-force-exit, so the process does exit once the
 * tests are done).
 */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `rum-pipeline` with a beacon source on 127.0.0.1:0 and a stdout sink. */
export async function startPipeline({ deadlineMs = 30000 } = {}) {
  const bin = pipelineBinary();
  if (!existsSync(bin)) throw new Error(`${bin} not found: run \`cargo build\` or set RUM_PIPELINE_BIN`);
  const dir = mkdtempSync(join(tmpdir(), 'rum-e2e-'));
  const config = join(dir, 'pipeline.toml');
  writeFileSync(
    config,
    `[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
path = "/rum"

[sinks.console]
type = "stdout"
inputs = ["beacons"]
encoding = "json"
`
  );
  const child = spawn(bin, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const docs = [];
  const waiters = new Set();
  let stderr = '';
  let exited = null;
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!line.trim()) continue;
      docs.push(JSON.parse(line));
    }
    for (const w of waiters) w();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    for (const w of waiters) w();
  });
  child.on('exit', (code, signal) => {
    running.delete(child);
    exited = { code, signal };
    rmSync(dir, { recursive: true, force: true });
    for (const w of waiters) w();
  });

  /** Resolves with `check()`'s truthy result once it has one; rejects at the deadline. */
  function until(check, ms, what) {
    return new Promise((resolvePromise, reject) => {
      const attempt = () => {
        let result;
        try {
          result = check();
        } catch (e) {
          return finish(() => reject(e));
        }
        if (result) return finish(() => resolvePromise(result));
        if (exited) finish(() => reject(new Error(`rum-pipeline exited (${JSON.stringify(exited)}) while waiting for ${what}\n${stderr}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`deadline (${ms} ms) passed waiting for ${what}; stderr:\n${stderr.slice(-2000)}`))),
        ms
      );
      const finish = (fn) => {
        clearTimeout(timer);
        waiters.delete(attempt);
        fn();
      };
      waiters.add(attempt);
      attempt();
    });
  }

  const port = await until(() => stderr.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/)?.[1], deadlineMs, 'the listening line').catch(
    (e) => {
      child.kill('SIGKILL');
      throw e;
    }
  );
  return {
    origin: `http://127.0.0.1:${port}`,
    docs,
    until,
    stderr: () => stderr,
    /** SIGTERM; SIGKILL if it has not exited after `graceMs`. Resolves with how it ended. */
    async stop(graceMs = 5000) {
      if (exited) return { ...exited, killed: false };
      child.kill('SIGTERM');
      try {
        return { ...(await until(() => exited, graceMs, 'rum-pipeline to exit after SIGTERM')), killed: false };
      } catch {
        child.kill('SIGKILL');
        return { ...(await until(() => exited, 5000, 'rum-pipeline to die after SIGKILL')), killed: true };
      }
    },
  };
}

/**
 * A noisy PNG, so the page has a real image for LCP: Chrome does not take
 * low-entropy images (a solid colour) as LCP candidates.
 */
export function png(width, height, seed = 1) {
  const raw = Buffer.alloc((1 + width * 3) * height);
  let state = seed;
  for (let i = 0; i < raw.length; i++) {
    if (i % (1 + width * 3) === 0) continue; // filter byte: none
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    raw[i] = state >>> 24;
  }
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Serves `routes` (path → {status, headers, body, delayMs}) on 127.0.0.1:0. */
export async function startSite(routes) {
  const requests = [];
  const server = createServer((req, res) => {
    const path = req.url.split('?')[0];
    requests.push(`${req.method} ${req.url}`);
    const route = routes[path];
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const answer = typeof route === 'function' ? route(req, Buffer.concat(chunks)) : route;
      if (!answer) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const body = Buffer.from(answer.body ?? '');
      setTimeout(() => {
        res.writeHead(answer.status ?? 200, { 'content-length': body.length, 'cache-control': 'no-store', ...answer.headers });
        res.end(body);
      }, answer.delayMs ?? 0);
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () => new Promise((ok) => server.close(ok)),
  };
}

/**
 * Main-thread time spent in the script at `scriptUrl`, from a Chrome trace:
 * script evaluation (compilation included) and every callback into it
 * (listeners, observers, timers) on the renderer's main thread, between
 * `fromUs` and `toUs` (trace clock, microseconds).
 */
export function scriptMainThreadMs(traceEvents, scriptUrl, fromUs = -Infinity, toUs = Infinity) {
  const mainThreads = new Set(
    traceEvents
      .filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain')
      .map((e) => `${e.pid}:${e.tid}`)
  );
  const urlOf = (e) => {
    const d = e.args?.data ?? e.args?.beginData ?? {};
    return d.url ?? d.scriptName ?? d.stackTrace?.[0]?.url ?? e.args?.fileName;
  };
  const intervals = traceEvents
    .filter(
      (e) =>
        e.ph === 'X' &&
        mainThreads.has(`${e.pid}:${e.tid}`) &&
        ['EvaluateScript', 'FunctionCall', 'v8.compile'].includes(e.name) &&
        typeof urlOf(e) === 'string' &&
        urlOf(e).split(/[?#]/)[0] === scriptUrl &&
        e.ts >= fromUs &&
        e.ts <= toUs
    )
    .map((e) => ({ start: e.ts, stop: e.ts + (e.dur ?? 0), cpu: e.tdur ?? e.dur ?? 0, name: e.name }))
    .sort((a, b) => a.start - b.start);
  // The page has loaded when its load event has been dispatched.
  const loadEnd = Math.max(
    ...traceEvents
      .filter((e) => e.ph === 'X' && e.name === 'EventDispatch' && e.args?.data?.type === 'load' && mainThreads.has(`${e.pid}:${e.tid}`))
      .map((e) => e.ts + (e.dur ?? 0)),
    ...traceEvents.filter((e) => e.name === 'MarkLoad' && e.args?.data?.isMainFrame).map((e) => e.ts)
  );
  let wall = 0;
  let cpu = 0;
  let cpuDuringLoad = 0;
  let end = -Infinity;
  const byKind = {};
  for (const slice of intervals) {
    // Nested slices (a compile inside an evaluation) count once: only top-level ones add up.
    if (slice.start >= end) {
      wall += slice.stop - slice.start;
      cpu += slice.cpu;
      if (slice.start <= loadEnd) cpuDuringLoad += slice.cpu;
      byKind[slice.name] = (byKind[slice.name] ?? 0) + slice.cpu;
      end = slice.stop;
    }
  }
  const ms = (us) => +(us / 1000).toFixed(3);
  // `cpu` is the thread's own time (the trace's tdur): on a busy machine wall
  // time also counts the waits for a core, which are not the client's doing.
  const pageUs = traceEvents
    .filter((e) => e.ph === 'X' && e.name.endsWith('RunTask') && mainThreads.has(`${e.pid}:${e.tid}`) && e.ts >= fromUs && e.ts <= toUs)
    .reduce((sum, e) => sum + (e.tdur ?? e.dur ?? 0), 0);
  return {
    /** Until the load event has been dispatched. */
    loadMs: Number.isFinite(loadEnd) ? cpuDuringLoad / 1000 : NaN,
    /** Until the trace stopped (after the client's idle work). */
    ms: cpu / 1000,
    pageMs: pageUs / 1000,
    wallMs: wall / 1000,
    slices: intervals.length,
    byKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, ms(v)])),
  };
}
