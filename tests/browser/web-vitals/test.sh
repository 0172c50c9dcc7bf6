#!/usr/bin/env bash
# Real-browser tests of the web_vitals source: the npm web-vitals library in
# headless Debian chromium (via playwright-core). Installs what it needs,
# builds the binary if missing.
#   WEB_VITALS_FIXTURES=write  also saves the bodies the page sent (testdata/sdk/web-vitals/)
#   RUM_PIPELINE_BIN  binary to test (default: <target>/debug/rum-pipeline)
set -euo pipefail
cd "$(dirname "$0")"
. ../lib/prepare.sh playwright-core web-vitals
exec node --test --test-force-exit --test-reporter=spec test.mjs
