// The command audit log (reference §1.4 `cmdlog`, §7.5): who ran which state-changing command, from where,
// and how it ended. JSONL in nodePaths().auditLog, size-rotated, fsynced per record, crash-safe like the
// module log (a torn last line is skipped on read and never corrupts earlier records).
import { nodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { appendLine, fileMark, lastSeq, readTail, withLockSync, type FileMark } from './jsonl.ts';

export interface AuditEntry {
  /** Authenticated user name ('root' for the local CLI). */
  user: string;
  /** Role the command ran with: 'admin', 'control', 'monitor', … */
  role: string;
  /** Peer address for API or distributed calls; absent for the local CLI. */
  remote?: string;
  /** The command as typed or routed, e.g. 'start -m mirror'. */
  command: string;
  module?: string;
  ok: boolean;
  /** Registry error code when the command failed. */
  code?: string;
}

export interface AuditRecord extends AuditEntry {
  seq: number;
  /** ISO 8601 UTC. */
  ts: string;
}

export const DEFAULT_AUDIT_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_AUDIT_KEEP = 4;
const MAX_TEXT = 1024;

export interface AuditLogOptions {
  /** Default nodePaths(env).auditLog. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  maxBytes?: number;
  keep?: number;
  /** fsync every record. Default true: commands are rare and the trail matters most after a crash. */
  fsync?: boolean;
}

function isAuditRecord(v: unknown): v is AuditRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.seq === 'number' &&
    typeof r.ts === 'string' &&
    typeof r.user === 'string' &&
    typeof r.role === 'string' &&
    typeof r.command === 'string' &&
    typeof r.ok === 'boolean'
  );
}

const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

// Per audit file: the seq and mark after this process's last write, to skip re-reading the tail.
const cache = new Map<string, { seq: number; mark: FileMark }>();

/** Appends one audit record and returns it. Throws IO when the audit log cannot be written. */
export function appendAudit(entry: AuditEntry, opts: AuditLogOptions = {}): AuditRecord {
  const path = opts.path ?? nodePaths(opts.env).auditLog;
  let rec!: AuditRecord;
  try {
    withLockSync(`${path}.lock`, () => {
      const mark = fileMark(path);
      const c = cache.get(path);
      const seq = c && mark && mark.ino === c.mark.ino && mark.size === c.mark.size ? c.seq : lastSeq(path, isAuditRecord);
      rec = {
        seq: seq + 1,
        ts: new Date().toISOString(),
        user: clip(entry.user),
        role: clip(entry.role),
        ...(entry.remote !== undefined ? { remote: clip(entry.remote) } : {}),
        command: clip(entry.command),
        ...(entry.module !== undefined ? { module: clip(entry.module) } : {}),
        ok: entry.ok,
        ...(entry.code !== undefined ? { code: clip(entry.code) } : {}),
      };
      const newMark = appendLine(
        path,
        JSON.stringify(rec),
        { maxBytes: opts.maxBytes ?? DEFAULT_AUDIT_MAX_BYTES, keep: opts.keep ?? DEFAULT_AUDIT_KEEP },
        opts.fsync ?? true,
      );
      cache.set(path, { seq: rec.seq, mark: newMark });
    });
  } catch (e) {
    cache.delete(path);
    throw new StayupError('IO', `cannot write the audit log ${path}: ${(e as Error).message}`, { cause: e });
  }
  return rec;
}

/** The last `count` audit records (default 100), oldest first. */
export function readAudit(opts: { count?: number } & Omit<AuditLogOptions, 'fsync' | 'maxBytes'> = {}): AuditRecord[] {
  const path = opts.path ?? nodePaths(opts.env).auditLog;
  try {
    return readTail(path, opts.keep ?? DEFAULT_AUDIT_KEEP, opts.count ?? 100, isAuditRecord);
  } catch (e) {
    throw new StayupError('IO', `cannot read the audit log ${path}: ${(e as Error).message}`, { cause: e });
  }
}
