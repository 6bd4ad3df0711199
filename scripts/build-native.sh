#!/usr/bin/env bash
# Builds the native addons with node-gyp against the installed Node headers (--nodedir=/usr: no header
# download): the FUSE interception (native/stayup_fuse.c -> build/Release/stayup_fuse.node) and the
# virtual IP's kernel calls (native/stayup_net.c -> build/Release/stayup_net.node). Skips the build when
# both .node files are newer than their sources. Needs libfuse3-dev and pkg-config (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
addons=(stayup_fuse stayup_net)
srcs=(native/stayup_fuse.c native/stayup_net.c native/napi_util.h native/binding.gyp scripts/build-native.sh)
up_to_date() {
  for a in "${addons[@]}"; do
    [ -f "build/Release/$a.node" ] || return 1
    for s in "${srcs[@]}"; do [ "$s" -nt "build/Release/$a.node" ] && return 1; done
  done
  return 0
}
up_to_date && exit 0
# test files run in parallel and may all find the addon stale: one builds, the others wait and re-check
mkdir -p build
exec 9>build/.build-native.lock
flock 9
up_to_date && exit 0
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
for a in "${addons[@]}"; do
  cp "native/build/Release/$a.node" "build/Release/$a.node.tmp"
  mv "build/Release/$a.node.tmp" "build/Release/$a.node"
done
