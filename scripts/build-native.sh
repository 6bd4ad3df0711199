#!/usr/bin/env bash
# Builds the FUSE interception addon (native/stayup_fuse.c) into build/Release/stayup_fuse.node with
# node-gyp against the installed Node headers (--nodedir=/usr: no header download). Skips the build when
# the .node is newer than its sources. Needs libfuse3-dev and pkg-config (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/Release/stayup_fuse.node
srcs=(native/stayup_fuse.c native/binding.gyp scripts/build-native.sh)
if [ -f "$out" ]; then
  stale=0
  for s in "${srcs[@]}"; do [ "$s" -nt "$out" ] && stale=1; done
  [ "$stale" = 0 ] && exit 0
fi
gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="$(dirname "$(command -v node)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || { echo "build-native: node-gyp not found (it ships with npm)" >&2; exit 1; }
nodedir=/usr
[ -f "$nodedir/include/node/node_api.h" ] || nodedir="$(dirname "$(dirname "$(command -v node)")")"
log=$(mktemp)
# node-gyp writes its build tree next to binding.gyp (native/build); the product is copied to build/Release
if ! (cd native && node "$gyp" rebuild --nodedir="$nodedir" --loglevel=error) >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
grep -E "warning:" "$log" >&2 || true
rm -f "$log"
mkdir -p build/Release
cp native/build/Release/stayup_fuse.node "$out.tmp"
mv "$out.tmp" "$out"
