#!/usr/bin/env bash
# Installs everything stayup needs on a fresh Debian machine (run as root): Debian packages and the
# npm dependencies. Idempotent: a second run only checks.
#   --bench   also the packages only the replication bench needs (GlusterFS server and client, fio); kept
#             out of the default list so CI does not pay for them (bench/replication.ts runs this itself).
set -euo pipefail
cd "$(dirname "$0")/.."
# postgresql: test/lab/postgres.test.ts runs the package's binaries (/usr/lib/postgresql/<ver>/bin) inside the lab
# servers on a replicated data directory of its own. The package's `main` cluster (port 5432 on the host, started
# by the install where services may start) is left alone: it does not get in the way, since each lab server has
# its own network namespace, /run (socket directory) and data directory.
PKGS=(nftables iproute2 iputils-arping iputils-ping fuse3 libfuse3-dev pkg-config procps python3 util-linux openssl keepalived stress-ng postgresql)
BENCH_PKGS=(glusterfs-server glusterfs-client fio)
for arg in "$@"; do
  case "$arg" in
    --bench) PKGS+=("${BENCH_PKGS[@]}") ;;
    *) echo "setup: unknown option $arg (only --bench)" >&2; exit 2 ;;
  esac
done
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
# the FUSE interception addon (native/): skipped when already built and up to date
bash scripts/build-native.sh
