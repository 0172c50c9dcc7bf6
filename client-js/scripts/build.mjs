// Builds dist/rum.min.js (the bundle the binary embeds and serves at GET /rum)
// and enforces the size budget. `--check` builds in memory and fails when the
// committed bundle differs from a fresh build, so `cargo build` never needs node.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';
import { FIXES, webVitalsPatch } from './web-vitals-patch.mjs';

export const BUDGET_GZIP_BYTES = 8448;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'rum.min.js');

export async function buildBundle() {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const vitals = JSON.parse(readFileSync(join(root, 'node_modules', 'web-vitals', 'package.json'), 'utf8'));
  const patch = webVitalsPatch();
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['src/index.js'],
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['es2022'],
    charset: 'utf8',
    legalComments: 'none',
    banner: {
      js: `/*! rum-pipeline client ${pkg.version} | includes web-vitals ${vitals.version} (Apache-2.0, Google LLC; changed: fixes from ${[...new Set(FIXES.map((f) => f.version))].join(', ')}) */`,
    },
    write: false,
    logLevel: 'warning',
    plugins: [patch.plugin],
  });
  if (!patch.applied()) throw new Error('web-vitals/attribution did not load dist/web-vitals.attribution.js: scripts/web-vitals-patch.mjs fixed nothing');
  return Buffer.from(result.outputFiles[0].contents);
}

// Level 9, as the server compresses it (flate2 Compression::best).
export function gzipSize(bytes) {
  return gzipSync(bytes, { level: 9 }).length;
}

async function main() {
  const bundle = await buildBundle();
  const gz = gzipSize(bundle);
  console.log(`rum.min.js: ${bundle.length} bytes, ${gz} bytes gzipped (budget ${BUDGET_GZIP_BYTES})`);
  if (gz > BUDGET_GZIP_BYTES) {
    console.error(`error: bundle is ${gz - BUDGET_GZIP_BYTES} bytes over the gzip budget`);
    process.exit(1);
  }
  if (process.argv.includes('--check')) {
    let committed;
    try {
      committed = readFileSync(out);
    } catch {
      committed = Buffer.alloc(0);
    }
    if (!committed.equals(bundle)) {
      console.error('error: client-js/dist/rum.min.js differs from a fresh build; run `npm run build` in client-js and commit it');
      process.exit(1);
    }
    console.log('dist/rum.min.js is identical to a fresh build');
    return;
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bundle);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}
