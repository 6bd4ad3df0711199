// When an object last changed, for the "changed since the last sync point" scans (an unclean
// reintegration, a crashed node's own changes, the split-brain keep-aside).
//
// Not the modification time alone: an application may set it back (tar and cp -p restore it, rsync -t,
// touch -d, utimes), and a change of mode, owner or extended attributes leaves it alone. The status change
// time (ctime) moves with every change of data or metadata and cannot be set by the application, so the
// later of the two is used (the modification time only matters when it lies in the future).
import type { BigIntStats, Stats } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import { replPath } from './paths.ts';

export function changedAtNs(st: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>): bigint {
  return st.ctimeNs > st.mtimeNs ? st.ctimeNs : st.mtimeNs;
}

export function changedAtMs(st: Pick<Stats, 'mtimeMs' | 'ctimeMs'>): number {
  return Math.max(st.ctimeMs, st.mtimeMs);
}

/**
 * Adds to `out` the replication paths of the files under `abs` (replicated directory `dirIndex`) changed at
 * or after cutoffMs, until it holds `limit`. Asynchronous, a directory at a time: a million files must not
 * hold the daemon's thread (its heartbeats) for the length of the walk.
 */
export async function addFilesChangedSince(abs: string, dirIndex: number, cutoffMs: number, out: Set<string>, limit = Infinity, rel = ''): Promise<void> {
  let dir;
  try {
    dir = await opendir(abs);
  } catch {
    return;
  }
  for await (const e of dir) {
    if (out.size >= limit) {
      await dir.close().catch(() => {});
      return;
    }
    const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
    const childAbs = join(abs, e.name);
    if (e.isDirectory()) {
      await addFilesChangedSince(childAbs, dirIndex, cutoffMs, out, limit, childRel);
      continue;
    }
    try {
      if (changedAtMs(await lstat(childAbs)) >= cutoffMs) out.add(replPath(dirIndex, childRel));
    } catch {
      // gone meanwhile
    }
  }
}
