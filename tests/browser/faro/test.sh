#!/usr/bin/env bash
# Real-browser tests of the faro source: Grafana's Faro Web SDK (npm,
# unmodified) in headless Debian chromium (via playwright-core). Installs what
# it needs, builds the binary if missing (tests/browser/lib/prepare.sh).
#   FARO_FIXTURES=write  also saves the bodies the SDK sent (testdata/sdk/faro/)
#   RUM_PIPELINE_BIN  binary to test (default: <target>/debug/rum-pipeline)
set -euo pipefail
cd "$(dirname "$0")"
. ../lib/prepare.sh playwright-core @grafana/faro-web-sdk
exec node --test --test-force-exit --test-reporter=spec test.mjs
