#!/usr/bin/env bash
# The project's one test command (README, .ci/run). On a fresh machine it
# installs what the tests need, then runs every suite:
#   - cargo fmt / clippy / test (unit + integration tests against the real binary,
#     promtool on the generated Prometheus rules, a real Prometheus server)
#   - a short run of the intake mutation fuzzer (bench/fuzz.py, fixed seed)
#   - the browser suites (headless Debian chromium via playwright-core), when present
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suites need (Debian packages, rustfmt and clippy, Chromium): each script
# installs only what is missing.
for setup in scripts/setup-*.sh; do
  [ -f "$setup" ] && bash "$setup"
done
# Where the system's node is older than 20.15, setup-packages.sh put Node.js 20 here.
node_from_npm="${XDG_CACHE_HOME:-$HOME/.cache}/rum-pipeline-node/bin"
if [ -x "$node_from_npm/node" ]; then
  export PATH="$node_from_npm:$PATH"
fi

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo build --quiet --bins
cargo test --all-targets
# The live Elasticsearch tests are #[ignore]d; they run when a cluster is named
# (docs/testing.md#elasticsearch).
if [ -n "${ELASTICSEARCH_URL:-}" ]; then
  echo "== cargo test --test elasticsearch_live (ELASTICSEARCH_URL is set)"
  cargo test --test elasticsearch_live -- --ignored
fi

export RUM_PIPELINE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/rum-pipeline"

# A short, fixed-seed run of the mutation fuzzer over the three intake endpoints: fails on an
# unexpected 5xx, a panic, the process dying, peak RSS over the bound, an event the counters do
# not account for or a document the index mapping would refuse (docs/testing.md#fuzzing).
echo "== bench/fuzz.py (short run)"
python3 bench/fuzz.py --seed 1 --requests 3000
# ... and over the SDK intakes too (web_vitals, faro, elastic_apm_rum), with the targeted
# mutations and GETs of the client script.
python3 bench/fuzz.py --sdk --extended --seed 2 --requests 2000

# Deployment files: parse, Kubernetes schema validation, nginx -t, generated files current.
echo "== deployments"
bash scripts/check-deployments.sh

# Browser and JavaScript suites (each installs its npm packages with npm ci).
for suite in client-js/test.sh tests/browser/*/test.sh; do
  if [ -f "$suite" ]; then
    echo "== $suite"
    bash "$suite"
  fi
done
echo "all suites passed"
