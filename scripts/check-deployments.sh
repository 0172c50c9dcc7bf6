#!/usr/bin/env bash
# Checks deployments/ (see scripts/deployments.py): derived files up to date,
# every YAML/JSON/NDJSON parses, Kubernetes manifests valid against the API
# schemas (kubernetes-validate, strict), security and probe settings, the
# ConfigMap pipelines pass `rum-pipeline validate` with only the Secret's and
# the Deployment's variables, `nginx -t` on the NGINX config.
# The Dockerfile, the Elasticsearch templates and the Kibana field names are
# checked by `cargo test --test deployments`.
#
# Installs its PyPI packages into a venv under ~/.cache (quietly, once), and
# unpacks Debian's nginx there for `nginx -t` (not installed: no service starts).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/rum-pipeline-deployments"
venv="$cache/venv"
requirements="pyyaml==6.0.3 kubernetes-validate==1.37.0"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
  echo "$requirements" > "$venv/.requirements"
fi

if [ -z "${RUM_PIPELINE_BIN:-}" ]; then
  cargo build --quiet --bin rum-pipeline
  export RUM_PIPELINE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/rum-pipeline"
fi
export RUM_DEPLOY_CACHE="$cache"
exec "$venv/bin/python" scripts/deployments.py check
