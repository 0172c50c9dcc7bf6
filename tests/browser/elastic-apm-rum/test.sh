#!/usr/bin/env bash
# Real-browser tests of the elastic_apm_rum source: the npm @elastic/apm-rum agent in
# headless Debian chromium (via playwright-core). Installs what it needs,
# builds the binary if missing.
#   APM_RUM_FIXTURES=write  captures what the agent sends (no binary) into testdata/sdk/elastic-apm-rum/
#   RUM_PIPELINE_BIN  binary to test (default: <target>/debug/rum-pipeline)
set -euo pipefail
cd "$(dirname "$0")"
. ../lib/prepare.sh playwright-core @elastic/apm-rum
exec node --test --test-force-exit --test-reporter=spec test.mjs
