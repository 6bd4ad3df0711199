// When an object last changed, for the "changed since the last sync point" scans (an unclean
// reintegration, a crashed node's own changes, the split-brain keep-aside).
//
// Not the modification time alone: an application may set it back (tar and cp -p restore it, rsync -t,
// touch -d, utimes), and a change of mode, owner or extended attributes leaves it alone. The status change
// time (ctime) moves with every change of data or metadata and cannot be set by the application, so the
// later of the two is used (the modification time only matters when it lies in the future).
import type { BigIntStats, Stats } from 'node:fs';

export function changedAtNs(st: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>): bigint {
  return st.ctimeNs > st.mtimeNs ? st.ctimeNs : st.mtimeNs;
}

export function changedAtMs(st: Pick<Stats, 'mtimeMs' | 'ctimeMs'>): number {
  return Math.max(st.ctimeMs, st.mtimeMs);
}
