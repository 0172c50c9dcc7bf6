# Sourced by each browser suite's test.sh, in the suite's directory: installs
# Chromium (scripts/setup-browser.sh), the suite's npm packages when one of
# the given ones is missing (playwright-core never downloads a browser; the
# variable makes sure), and builds the binary unless RUM_PIPELINE_BIN names one.
#   usage: . ../lib/prepare.sh playwright-core [other packages...]
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
bash "$repo/scripts/setup-browser.sh"
for package in "$@"; do
  if [ ! -f "node_modules/$package/package.json" ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund >/dev/null
    break
  fi
done
export RUM_PIPELINE_BIN="${RUM_PIPELINE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/rum-pipeline}"
if [ ! -x "$RUM_PIPELINE_BIN" ]; then
  (cd "$repo" && cargo build --quiet --bin rum-pipeline)
fi
