// Divergent writes are kept, not destroyed.
//
// A node that ran as primary while its peer did not follow (a split brain's loser, or the node whose
// writes a `syncdelta` or `primforce` start on the other side overrode) holds files the new primary does
// not have. Its reintegration as secondary overwrites them with the primary's version. Before that, the
// files it changed on its own are copied next to the replicated directory:
//
//   <replicated dir>.stayup-kept/<date>/<path relative to the replicated dir>
//
// "Changed on its own" is what its journal lists (exact while the journal is intact) and, because a crash
// may have lost the journal's last unfsynced lines, every file modified since the node stopped being in
// sync (minus a margin for the clocks of the two nodes). The copies use reflinks where the filesystem has
// them (FICLONE), keep mode, owner and times, and stop before the filesystem would fall under
// MIN_FREE_FRACTION free: what does not fit is named in the report (and the log), never silently dropped.
//
// The walk and the copies are asynchronous (libuv's thread pool): the daemon keeps its heartbeats going.

import { constants } from 'node:fs';
import { copyFile, lchown, lstat, lutimes, mkdir, readlink, statfs, symlink, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { addFilesChangedSince } from './change-time.ts';
import { splitReplPath } from './paths.ts';

export interface KeepAsideDir {
  /** The configured path (`<replicated dir>`): the copies go next to it. */
  dir: string;
  /** Where this node reads the real data (the mount's underlying directory). */
  underPath: string;
}

export interface KeepAsideRequest {
  dirs: KeepAsideDir[];
  /** Replication paths the journal lists as changed on this node (files; directories are walked for change times). */
  journalPaths: Iterable<string>;
  /**
   * Files changed (data or metadata, see change-time.ts) at or after this time, minus the margin (ms since
   * the epoch), are kept too; null: journal paths only.
   */
  changedSinceMs: number | null;
  /** The margin before changedSinceMs (default CHANGED_MARGIN_MS; tests shorten it). */
  changedMarginMs?: number;
  /**
   * Folder name under `<dir>.stayup-kept/` (a date, made safe for file names). One per episode of
   * divergence: a keep-aside interrupted and run again finds its earlier copies and leaves them.
   */
  stamp: string;
}

export interface KeepAsideReport {
  /** The folders written (one per replicated directory that had something to keep). */
  folders: string[];
  files: number;
  bytes: number;
  /** Replication paths kept: the reintegration must bring the primary's version of each. */
  paths: string[];
  /** Files that could not be kept (no room, or an error), with the reason. */
  notKept: Array<{ path: string; reason: string }>;
}

/** Keep at least this fraction of the filesystem free (the reintegration itself needs room). */
export const MIN_FREE_FRACTION = 0.05;
/**
 * Files changed this long before the node left sync count as changed too. The date and the change times
 * come from this node's own clock, so no skew between nodes is involved: the margin covers the time
 * stamps' granularity and the moment between a write and the recording of the date. It is short because a
 * change time also moves when the replication stream writes a file: files received just before a split
 * brain are kept aside needlessly (never wrongly). The journal lists this node's own earlier writes.
 */
export const CHANGED_MARGIN_MS = 5_000;

export function keptFolder(dir: string, stamp: string): string {
  return join(`${dir.replace(/\/+$/, '')}.stayup-kept`, stamp);
}

export function stampOf(ms: number): string {
  return new Date(ms).toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
}

export async function keepAside(req: KeepAsideRequest): Promise<KeepAsideReport> {
  const report: KeepAsideReport = { folders: [], files: 0, bytes: 0, paths: [], notKept: [] };
  const wanted = new Set<string>();
  for (const p of req.journalPaths) wanted.add(p);
  if (req.changedSinceMs !== null) {
    const cutoff = req.changedSinceMs - (req.changedMarginMs ?? CHANGED_MARGIN_MS);
    for (let i = 0; i < req.dirs.length; i++) await addFilesChangedSince(req.dirs[i]!.underPath, i, cutoff, wanted);
  }
  for (const p of [...wanted].sort()) {
    const { dirIndex, rel } = splitReplPath(p);
    const d = req.dirs[dirIndex];
    if (!d || rel === '') continue;
    const from = join(d.underPath, rel);
    let st;
    try {
      st = await lstat(from);
    } catch {
      continue; // removed since: nothing of this node's to keep
    }
    if (!st.isFile() && !st.isSymbolicLink()) continue;
    const folder = keptFolder(d.dir, req.stamp);
    const to = join(folder, rel);
    try {
      if (st.isFile()) {
        const fs = await statfs(dirname(d.dir.replace(/\/+$/, '')));
        const freeBytes = fs.bavail * fs.bsize;
        if (freeBytes - st.size < fs.blocks * fs.bsize * MIN_FREE_FRACTION) {
          report.notKept.push({ path: p, reason: `no room: ${st.size} bytes, ${freeBytes} free` });
          continue;
        }
      }
      await mkdir(dirname(to), { recursive: true, mode: 0o700 });
      if (st.isSymbolicLink()) await symlink(await readlink(from), to);
      else await copyFile(from, to, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
      await lchown(to, st.uid, st.gid);
      // After chown, which clears set-id bits.
      if (st.isFile()) await chmod(to, st.mode & 0o7777);
      await lutimes(to, st.atime, st.mtime);
    } catch (e) {
      // The same episode's copy, made before this node was interrupted: kept already, never overwritten.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') report.paths.push(p);
      else report.notKept.push({ path: p, reason: (e as Error).message });
      continue;
    }
    if (!report.folders.includes(folder)) report.folders.push(folder);
    report.files += 1;
    report.bytes += st.isFile() ? st.size : 0;
    report.paths.push(p);
  }
  return report;
}

