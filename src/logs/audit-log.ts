// The command audit log (reference §1.4 `cmdlog`, §7.5): who ran which state-changing command, from where,
// and how it ended. JSONL in nodePaths().auditLog, size-rotated, fsynced per record, crash-safe like the
// module log (a torn last line is skipped on read and never corrupts earlier records).
import { nodePaths, type NodePaths } from '../util/paths.ts';
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
  /** HTTP status of the API call, when the command came through the API. */
  status?: number;
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

type PathsLike = Pick<NodePaths, 'auditLog'>;

function isPaths(v: unknown): v is PathsLike {
  return typeof v === 'object' && v !== null && typeof (v as { auditLog?: unknown }).auditLog === 'string';
}

/**
 * Appends one audit record and returns it. The log is `opts.path`, else `paths.auditLog` when the node's
 * paths are given first, else nodePaths(opts.env).auditLog. Throws IO when the audit log cannot be written.
 */
export function appendAudit(entry: AuditEntry, opts?: AuditLogOptions): AuditRecord;
export function appendAudit(paths: PathsLike, entry: AuditEntry, opts?: Omit<AuditLogOptions, 'path' | 'env'>): AuditRecord;
export function appendAudit(a: AuditEntry | PathsLike, b?: AuditEntry | AuditLogOptions, c?: AuditLogOptions): AuditRecord {
  let entry: AuditEntry;
  let opts: AuditLogOptions;
  if (isPaths(a)) {
    entry = b as AuditEntry;
    opts = { ...c, path: a.auditLog };
  } else {
    entry = a;
    opts = (b as AuditLogOptions | undefined) ?? {};
  }
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
        ...(entry.status !== undefined ? { status: entry.status } : {}),
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

export type ReadAuditOptions = { count?: number } & Omit<AuditLogOptions, 'fsync' | 'maxBytes'>;

/** The last `count` audit records (default 100), oldest first. */
export function readAudit(opts?: ReadAuditOptions): AuditRecord[];
export function readAudit(paths: PathsLike, opts?: Omit<ReadAuditOptions, 'path' | 'env'>): AuditRecord[];
export function readAudit(a?: ReadAuditOptions | PathsLike, b?: ReadAuditOptions): AuditRecord[] {
  const opts: ReadAuditOptions = isPaths(a) ? { ...b, path: a.auditLog } : (a ?? {});
  const path = opts.path ?? nodePaths(opts.env).auditLog;
  try {
    return readTail(path, opts.keep ?? DEFAULT_AUDIT_KEEP, opts.count ?? 100, isAuditRecord);
  } catch (e) {
    throw new StayupError('IO', `cannot read the audit log ${path}: ${(e as Error).message}`, { cause: e });
  }
}
