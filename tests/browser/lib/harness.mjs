// What every browser suite shares: where the binary and Chromium are, the
// flags Chromium runs with, and the real rum-pipeline binary started on an
// ephemeral port with a stdout sink whose documents the suite waits for
// (deadlines, never fixed sleeps). Only node's own modules: each suite keeps
// its packages (playwright-core, the SDK) in its own node_modules.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.RUM_PIPELINE_BIN
  || join(process.env.CARGO_TARGET_DIR || join(repo, 'target'), 'debug', 'rum-pipeline');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
/** Headless, no sandbox (CI runs as root), nothing that phones home or updates. */
export const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];

/** A logger that writes (with a timestamp) only when `variable` is set, e.g. FARO_TEST_DEBUG=1. */
export function debugLog(variable) {
  return (...a) => process.env[variable] && console.error(new Date().toISOString(), ...a);
}

/**
 * Waits on a growing list: `waitFor(pred, ms, what, n = 1)` resolves with the
 * items matching `pred` once there are `n`, or fails at the deadline with
 * `describe()` in the message; call `notify()` after each push.
 */
export function waiter(items, describe) {
  const waiters = new Set();
  const notify = () => { for (const w of waiters) w.check(); };
  const waitFor = (pred, ms, what, n = 1) => new Promise((ok, fail) => {
    const w = {
      check() {
        const found = items.filter(pred);
        if (found.length >= n) { clearTimeout(w.timer); waiters.delete(w); ok(found); }
      },
    };
    w.timer = setTimeout(() => {
      waiters.delete(w);
      fail(new Error(`no ${what} within ${ms} ms; ${describe()}`));
    }, ms);
    waiters.add(w);
    w.check();
  });
  return { notify, waitFor };
}

/**
 * Every pipeline still running, killed when this process exits: a test that
 * fails before its `stop()` (Chromium did not launch, an assertion in a
 * `finally`) must not leave a binary behind, nor keep node's event loop, and
 * with it `node --test`, waiting until CI's time limit (test.sh runs it with
 * --test-force-exit, so the process does exit once the tests are done).
 */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts the binary on `config` (a pipeline TOML written to `dir`) and waits
 * for its "listening on" line. Returns `{ base, waitFor, stop, events, stderr }`:
 * `events` are the stdout sink's documents, `stop()` sends SIGTERM (the
 * pipeline drains and exits; SIGKILL only if that ever hangs).
 */
export async function startPipeline(dir, config, log = () => {}) {
  const path = join(dir, 'pipeline.toml');
  writeFileSync(path, config);
  const child = spawn(BIN, ['--config', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const events = [];
  const stderr = [];
  const { notify, waitFor } = waiter(events, () => `events: ${JSON.stringify(events)}\nstderr:\n${stderr.join('\n')}`);
  createInterface({ input: child.stdout }).on('line', (line) => { events.push(JSON.parse(line)); notify(); });
  const base = await new Promise((resolveBase, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "listening on" line; stderr:\n${stderr.join('\n')}`));
    }, 30_000);
    child.on('exit', (code) => reject(new Error(`rum-pipeline exited (${code}); stderr:\n${stderr.join('\n')}`)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      log('pipeline:', line);
      const m = line.match(/listening on (https?:\/\/\S+)/);
      if (m) { clearTimeout(timer); resolveBase(m[1]); }
    });
  });
  const stop = () => new Promise((done) => {
    if (child.exitCode !== null) return done();
    const hard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('exit', (code) => { clearTimeout(hard); log('pipeline exited', code); done(); });
    child.kill('SIGTERM');
  });
  return { base, waitFor, stop, events, stderr };
}

/**
 * Makes the page report what SDKs hold back until it is hidden (CLS, INP,
 * LCP): `visibilityState` becomes `hidden` and `visibilitychange` fires at
 * the document (bubbling, as browsers do); `pagehide` too when asked.
 */
export async function hidePage(tab, { pagehide = false } = {}) {
  await tab.evaluate((pagehide) => {
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
    if (pagehide) window.dispatchEvent(new Event('pagehide'));
  }, pagehide);
}
