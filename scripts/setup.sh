#!/usr/bin/env bash
# Installs everything stayup needs on a fresh Debian machine (run as root): Debian packages and the
# npm dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(nftables iproute2 iputils-arping iputils-ping fuse3 libfuse3-dev procps python3 util-linux openssl keepalived stress-ng)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
