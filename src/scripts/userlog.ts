// Script output files ("userlogs"): one per script execution, named like the reference
// `userlog_<YYYY-MM-DD>T<hhmmss>_<script>.ulog` (local time) with milliseconds, and a counter when two runs
// of one script start in the same millisecond. Only the newest few per script are kept.
import { mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const STAMP = /^(\d{4}-\d\d-\d\dT\d{6}\.\d{3})(?:\.(\d+))?$/;

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `YYYY-MM-DDThhmmss.mmm` in local time. */
export function userlogStamp(d: Date): string {
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

export function userlogName(script: string, d: Date, counter = 0): string {
  return `userlog_${userlogStamp(d)}${counter > 0 ? `.${counter}` : ''}_${script}.ulog`;
}

/** The order key of a userlog file name of `script`, or null when the name is not one. */
function orderKey(name: string, script: string): [string, number] | null {
  const prefix = 'userlog_';
  const suffix = `_${script}.ulog`;
  if (!name.startsWith(prefix) || !name.endsWith(suffix)) return null;
  const m = STAMP.exec(name.slice(prefix.length, name.length - suffix.length));
  if (!m) return null;
  return [m[1]!, Number(m[2] ?? 0)];
}

/** The userlog files of one script in `dir`, oldest first. */
export function listUserlogs(dir: string, script: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => ({ n, k: orderKey(n, script) }))
    .filter((e): e is { n: string; k: [string, number] } => e.k !== null)
    .sort((a, b) => (a.k[0] < b.k[0] ? -1 : a.k[0] > b.k[0] ? 1 : a.k[1] - b.k[1]))
    .map((e) => join(dir, e.n));
}

/**
 * Creates a new userlog file for one run and opens it for appending. The name is unique: an existing file
 * is never reused or truncated.
 */
export function createUserlog(dir: string, script: string, now = new Date()): { fd: number; path: string } {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  for (let counter = 0; ; counter++) {
    const path = join(dir, userlogName(script, now, counter));
    try {
      return { fd: openSync(path, 'ax', 0o640), path };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || counter > 10_000) throw e;
    }
  }
}

/** Deletes all but the newest `keep` userlogs of `script`; returns the deleted paths. Never throws. */
export function pruneUserlogs(dir: string, script: string, keep: number): string[] {
  const all = listUserlogs(dir, script);
  const doomed = all.slice(0, Math.max(0, all.length - Math.max(0, keep)));
  for (const p of doomed) {
    try {
      rmSync(p, { force: true });
    } catch {
      // A file we cannot delete is retried at the next run.
    }
  }
  return doomed;
}
