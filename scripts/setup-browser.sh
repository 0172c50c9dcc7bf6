#!/usr/bin/env bash
# Installs what the browser tests need (the RUM client's and the csp
# source's): Debian's headless Chromium (playwright-core drives it; no tool
# downloads a browser of its own) and certutil (libnss3-tools), with which the
# csp test makes its test CA trusted by Chromium.
# Idempotent and quiet: does nothing when the package is already installed.
set -euo pipefail

installed() {
  [ -x /usr/bin/chromium ] && command -v certutil >/dev/null 2>&1 &&
    dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'
}

installed && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: chromium missing and apt-get not available" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup-browser: chromium missing: run as root, or install sudo" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
# `env` carries DEBIAN_FRONTEND through sudo, which resets the environment.
# Other jobs on the machine may hold the dpkg lock: wait for it instead of failing.
apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600)
"${apt[@]}" update >/dev/null
"${apt[@]}" install -y --no-install-recommends chromium fonts-dejavu-core libnss3-tools >/dev/null
installed || { echo "setup-browser: chromium or certutil did not install" >&2; exit 1; }
