// The web-vitals code the client bundles (with the fixes of
// scripts/web-vitals-patch.mjs), run against a scripted browser: observers whose entries the test
// hands over, idle callbacks and animation frames the test runs, a page the
// test hides and shows. What it checks is what web-vitals keeps and reports,
// through a long-lived page's life.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as esbuild from 'esbuild';
import { webVitalsPatch } from '../../scripts/web-vitals-patch.mjs';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const bundled = esbuild
  .build({
    stdin: { contents: "export * from 'web-vitals/attribution';", resolveDir: fileURLToPath(new URL('../..', import.meta.url)) },
    bundle: true,
    format: 'esm',
    write: false,
    logLevel: 'silent',
    plugins: [webVitalsPatch().plugin],
  })
  .then((result) => result.outputFiles[0].text);

/** A page of its own (window, document, observers, idle callbacks, frames) and a fresh web-vitals in it. */
async function page() {
  const win = new EventTarget();
  const observers = [];
  const idle = new Map();
  let frames = [];
  let handles = 0;
  class Observer {
    static supportedEntryTypes = ['event', 'first-input', 'layout-shift', 'long-animation-frame', 'paint', 'largest-contentful-paint'];
    constructor(callback) {
      this.callback = callback;
      this.types = [];
      observers.push(this);
    }
    observe(options) {
      this.types.push(options.type);
    }
    takeRecords() {
      return [];
    }
    disconnect() {
      this.types = [];
    }
  }
  class PerformanceEventTiming {}
  PerformanceEventTiming.prototype.interactionId = 0;
  const document = { visibilityState: 'visible', readyState: 'complete', prerendering: false };
  Object.assign(globalThis, {
    document,
    addEventListener: win.addEventListener.bind(win),
    removeEventListener: win.removeEventListener.bind(win),
    PerformanceObserver: Observer,
    PerformanceEventTiming,
    requestIdleCallback: (callback) => (idle.set(++handles, callback), handles),
    cancelIdleCallback: (handle) => idle.delete(handle),
    requestAnimationFrame: (callback) => frames.push(callback),
  });
  const settle = () => new Promise((ok) => setTimeout(ok, 0));
  const vitals = await import(`data:text/javascript;base64,${Buffer.from(`${await bundled}\n// ${Math.random()}`).toString('base64')}`);
  return {
    vitals,
    /** Hands each entry to the observers of its type, one delivery per entry, as the browser would. */
    async deliver(entry) {
      for (const o of observers) if (o.types.includes(entry.entryType)) o.callback({ getEntries: () => [entry] });
      await settle();
    },
    /** Runs the idle callbacks, and those they queue, until none is left. */
    async idle() {
      while (idle.size) {
        const [handle, callback] = idle.entries().next().value;
        idle.delete(handle);
        callback({ didTimeout: false, timeRemaining: () => 50 });
        await settle();
      }
    },
    /** Runs animation frames (each given its timestamp) until none is queued. */
    async frames() {
      while (frames.length) {
        const now = frames;
        frames = [];
        for (const callback of now) callback(performance.now());
        await settle();
      }
    },
    async visibility(state) {
      document.visibilityState = state;
      win.dispatchEvent(new Event('visibilitychange'));
      await settle();
    },
    async restoreFromBFCache() {
      await this.visibility('visible');
      win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
      await this.frames();
    },
  };
}

/** Delivers `count` long animation frames from `start` on, 100 ms apart, idle between; weak references to them. */
async function longFrames(p, count, start = 1000) {
  const refs = [];
  for (let i = 0; i < count; i++) {
    const frame = { entryType: 'long-animation-frame', name: 'long-animation-frame', startTime: start + i * 100, duration: 60, renderStart: start + i * 100 + 50, styleAndLayoutStart: start + i * 100 + 55, blockingDuration: 10, scripts: [] };
    refs.push(new WeakRef(frame));
    await p.deliver(frame);
    await p.idle();
  }
  return refs;
}

/** How many of `refs` something still holds. */
async function alive(refs) {
  await new Promise((ok) => setImmediate(ok));
  gc();
  return refs.filter((r) => r.deref()).length;
}

test('web-vitals lets go of long animation frames no interaction can use (a page left open with no input)', async () => {
  const p = await page();
  p.vitals.onINP(() => {});
  const frames = await longFrames(p, 60);
  // INP attribution keeps the frames of the last few; web-vitals 6.2.2 keeps 10 (MAX_PENDING_FRAMES).
  assert.ok((await alive(frames)) <= 10, `${await alive(frames)} of 60 long animation frames still held`);
});

test('web-vitals keeps cleaning up after it once cleaned up while the page was hidden', async () => {
  const p = await page();
  p.vitals.onINP(() => {});
  await p.visibility('hidden');
  // Cleaned up at once, the page being hidden: 5.3.0 then took a clean-up to be pending for ever.
  await longFrames(p, 1, 500);
  await p.visibility('visible');
  const frames = await longFrames(p, 30);
  // An interaction after all of them: none of the frames is part of it, none is needed any more.
  await p.deliver({ entryType: 'event', name: 'pointerdown', interactionId: 7, startTime: 9000, processingStart: 9001, processingEnd: 9002, duration: 48, target: null, cancelable: true });
  await p.idle();
  assert.equal(await alive(frames), 0, 'long animation frames held after an interaction that needs none of them');
});

test('after a bfcache restore CLS is reported when the page is hidden, not at once as 0 too', async () => {
  const p = await page();
  const reports = [];
  p.vitals.onCLS((m) => reports.push([m.navigationType, m.value, m.delta]));
  await p.deliver({ entryType: 'paint', name: 'first-contentful-paint', startTime: 100, duration: 0 });
  await p.visibility('hidden');
  assert.deepEqual(reports, [['navigate', 0, 0]]);
  await p.restoreFromBFCache();
  await p.deliver({ entryType: 'layout-shift', name: '', startTime: performance.now(), duration: 0, value: 0.2, hadRecentInput: false, sources: [] });
  await p.visibility('hidden');
  assert.deepEqual(reports.slice(1), [['back-forward-cache', 0.2, 0.2]], 'the restored page: one CLS, with its shift');
});
