// Where stayup's native addons live and whether they need building. Both are built together by
// scripts/build-native.sh (native/binding.gyp): stayup_fuse (the replication's interception) and
// stayup_net (the virtual IP's netlink add and gratuitous ARP).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { installDir } from './paths.ts';

export type AddonName = 'stayup_fuse' | 'stayup_net';
const addonNames: AddonName[] = ['stayup_fuse', 'stayup_net'];
const addonSources = ['native/stayup_fuse.c', 'native/stayup_net.c', 'native/napi_util.h', 'native/binding.gyp', 'scripts/build-native.sh'].map((p) =>
  join(installDir, p),
);

export function addonFile(name: AddonName): string {
  return join(installDir, 'build', 'Release', `${name}.node`);
}

/** True when an addon is missing or older than one of the sources. */
export function nativeBuildStale(): boolean {
  return addonNames.some((name) => {
    const file = addonFile(name);
    if (!existsSync(file)) return true;
    const built = statSync(file).mtimeMs;
    return addonSources.some((s) => existsSync(s) && statSync(s).mtimeMs > built);
  });
}

/** For tests: builds the addons when missing or stale (scripts/build-native.sh). */
export function ensureNativeBuilt(): void {
  if (!nativeBuildStale()) return;
  const r = spawnSync('bash', [join(installDir, 'scripts', 'build-native.sh')], { cwd: installDir, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`npm run build:native failed (exit ${r.status}):\n${r.stderr || r.stdout}`);
  }
}
