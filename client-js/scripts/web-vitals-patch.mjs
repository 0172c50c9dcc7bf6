// Fixes from web-vitals 6.2.x, applied to the 5.3.0 build the client bundles
// (web-vitals 6 adds soft-navigation support the client does not use and is
// 1.3 KB larger gzipped, over the budget: see docs/client.md). Each fix
// replaces one exact piece of the package's own minified
// dist/web-vitals.attribution.js, the file `web-vitals/attribution` resolves
// to; a piece found other than once (another web-vitals version) fails the
// build, and so does a build that did not load the file at all. The bundle's
// banner says the file was changed (Apache-2.0, section 4(b)).
// Tested by test/unit/web-vitals.test.mjs.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const WEB_VITALS_VERSION = '5.3.0';

export const FIXES = [
  {
    // 6.2.3: queueCleanup() marked the clean-up pending after asking for it;
    // asked for while the page was hidden it ran at once, and the mark stayed:
    // no clean-up ever again, so the event groups and long animation frames
    // INP attribution holds grew for the rest of the page's life.
    version: '6.2.3',
    from: 'p=()=>{g||(W(y),g=!0)}',
    to: 'p=()=>{g||(g=!0,W(y))}',
  },
  {
    // 6.2.2: the clean-up kept every long animation frame later than the last
    // interaction, so a page without input kept all of them; now only those of
    // the last 10 frames (MAX_PENDING_FRAMES), as for event groups.
    version: '6.2.2',
    from: 'r=r.filter(t=>t.startTime>c||n.has(t))',
    to: 'r=r.filter((t,i)=>n.has(t)||i>=r.length-10&&t.startTime>c)',
  },
  {
    // 6.2.0 (#786): doubleRAF() handed the frame's timestamp to its callback,
    // and CLS's report() takes it as "force": every bfcache restore reported
    // a CLS of 0 two frames in, then the real one (same id) when hidden.
    version: '6.2.0',
    from: 'l=t=>{requestAnimationFrame(()=>requestAnimationFrame(t))}',
    to: 'l=t=>{requestAnimationFrame(()=>requestAnimationFrame(()=>t()))}',
  },
];

/** `text` (web-vitals' dist/web-vitals.attribution.js) with every fix applied; throws when one does not apply once. */
export function patchWebVitals(text) {
  for (const fix of FIXES) {
    const found = text.split(fix.from).length - 1;
    if (found != 1)
      throw new Error(
        `web-vitals fix from ${fix.version} found ${found} times instead of once: these fixes are for web-vitals ${WEB_VITALS_VERSION} (scripts/web-vitals-patch.mjs)`
      );
    text = text.replace(fix.from, () => fix.to);
  }
  return text;
}

/**
 * The esbuild plugin applying them, and `applied()`: whether the build loaded
 * (and patched) the file.
 */
export function webVitalsPatch() {
  let applied = false;
  const plugin = {
    name: 'web-vitals-patch',
    setup(build) {
      build.onLoad({ filter: /[\\/]node_modules[\\/]web-vitals[\\/]dist[\\/]web-vitals\.attribution\.js$/ }, async (args) => {
        const version = JSON.parse(await readFile(join(dirname(args.path), '..', 'package.json'), 'utf8')).version;
        if (version != WEB_VITALS_VERSION)
          throw new Error(`web-vitals ${version} is installed; the fixes in scripts/web-vitals-patch.mjs are for ${WEB_VITALS_VERSION}`);
        const contents = patchWebVitals(await readFile(args.path, 'utf8'));
        applied = true;
        return { contents, loader: 'js' };
      });
    },
  };
  return { plugin, applied: () => applied };
}
