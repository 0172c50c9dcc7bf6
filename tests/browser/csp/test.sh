#!/usr/bin/env bash
# Real-browser tests of the csp source (headless Debian chromium via
# playwright-core). Installs what it needs, builds the binary if missing.
#   RUM_PIPELINE_BIN  binary to test (default: <target>/debug/rum-pipeline)
set -euo pipefail
cd "$(dirname "$0")"
. ../lib/prepare.sh playwright-core
exec node --test --test-force-exit --test-reporter=spec test.mjs
