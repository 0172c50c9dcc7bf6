#!/usr/bin/env bash
# The RUM client's whole check, as the project's test command runs it:
#   1. npm ci (esbuild, web-vitals, playwright-core — no browser download)
#   2. the committed dist/rum.min.js is byte-identical to a fresh build, within budget
#   3. unit tests (node's test runner)
#   4. the browser test: Debian's headless Chromium against the real rum-pipeline
#      binary (RUM_PIPELINE_BIN, else `cargo build` into CARGO_TARGET_DIR or target/)
set -euo pipefail
cd "$(dirname "$0")"
REPO="$(cd .. && pwd)"

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

echo "== client-js: npm ci"
npm ci --no-progress --loglevel=error

echo "== client-js: bundle check"
npm run --silent check-bundle

echo "== client-js: unit tests"
node --test --test-force-exit test/unit/

echo "== client-js: browser test"
bash "$REPO/scripts/setup-browser.sh"
if [ -z "${RUM_PIPELINE_BIN:-}" ]; then
  (cd "$REPO" && cargo build --quiet --bin rum-pipeline)
fi
node --test --test-force-exit --test-concurrency=1 test/e2e/
