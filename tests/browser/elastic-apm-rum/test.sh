#!/usr/bin/env bash
# Real-browser tests of the elastic_apm_rum source: the npm @elastic/apm-rum agent in
# headless Debian chromium (via playwright-core). Installs what it needs,
# builds the binary if missing.
#   APM_RUM_FIXTURES=write  captures what the agent sends (no binary) into testdata/sdk/elastic-apm-rum/
#   RUM_PIPELINE_BIN  binary to test (default: <target>/debug/rum-pipeline)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
bash "$repo/scripts/setup-browser.sh"
cd "$here"
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/@elastic/apm-rum/package.json ]; then
  # playwright-core never downloads a browser; the variable makes sure.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null
fi
export RUM_PIPELINE_BIN="${RUM_PIPELINE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/rum-pipeline}"
if [ ! -x "$RUM_PIPELINE_BIN" ]; then
  (cd "$repo" && cargo build --quiet --bin rum-pipeline)
fi
exec node --test --test-reporter=spec test.mjs
