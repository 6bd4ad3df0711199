// The module log (reference §1.4, §7.5): what `stayup log -m AM` shows.
//
// Levels: U (user), E (event), C (critical), S (script) make the normal log; I (information) and D (debug)
// are verbose and shown only with `-A`. Records are JSONL in `moduleVarDir(module)/log/`:
//   module.jsonl   the normal log (U, E, C, S), so verbose chatter never rotates events out of it
//   verbose.jsonl  every record, all levels (what `-A` shows)
// Both are size-rotated and share one sequence number per module. Each record is also written to stderr as
// a journald-style one-liner `stayup[<module>]: <LEVEL> <message>` (switchable).
//
// Writing is on a takeover's path (the engine logs the loss of the peer and the new state, the script
// runner the absent scripts, before the virtual IP moves), and anything that touches the file system can
// wait for its journal (tens of ms when other work fsyncs). So append() touches no file: it gives the record
// the next sequence number and the time, and queues it. The records of one turn of the event loop are
// written together at the next turn (setImmediate), in order, under the lock file that keeps writers in
// other processes out, before any read of the log in this process, and at exit. The files stay open between
// records (LineAppender); every ModuleLog of one directory in this process shares them, the queue and the
// sequence number (LogDirWriter).
//
// What that changes for callers: a record is in the files (and on stderr) at the end of the turn, not when
// append() returns; a process that dies from SIGKILL loses the records of its last turn; a record's seq is
// final once written (if another process wrote meanwhile, the queued records are numbered after its
// records, and the objects append() returned are updated). append() throws IO when the log directory cannot
// be made; a write that fails at the end of the turn is reported on stderr, naming the records that may be
// missing.
import { mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { nodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { lastSeq, lockSync, readTail, type RotateOptions } from './jsonl.ts';
import { LineAppender } from './line-appender.ts';

export const LOG_LEVELS = ['U', 'E', 'C', 'S', 'I', 'D'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** Levels shown only in the verbose log. */
export const VERBOSE_LEVELS: ReadonlySet<LogLevel> = new Set<LogLevel>(['I', 'D']);

export function isVerboseLevel(level: LogLevel): boolean {
  return VERBOSE_LEVELS.has(level);
}

export interface LogRecord {
  /** Increases by one per record of the module, across rotations and processes. */
  seq: number;
  /** ISO 8601 UTC. */
  ts: string;
  level: LogLevel;
  /** Who logged it: 'heart', 'admin', 'errd', 'script', 'user', 'rfs', … */
  source: string;
  module: string;
  message: string;
  fields?: Record<string, unknown>;
}

export const DEFAULT_LOG_MAX_BYTES = 4 * 1024 * 1024;
export const DEFAULT_LOG_KEEP = 4;
/** Messages are cut to this many characters. */
export const MAX_MESSAGE_CHARS = 4096;
/** Serialised `fields` larger than this are replaced by a note. */
export const MAX_FIELDS_CHARS = 16 * 1024;

const MODULE_NAME = /^[A-Za-z0-9_-]{1,32}$/;

export interface ModuleLogOptions {
  /** Log directory. Default: nodePaths(env).moduleVarDir(module)/log. */
  dir?: string;
  /** Environment for nodePaths (STAYUP_VAR). Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Rotation size of each file. Default 4 MiB. */
  maxBytes?: number;
  /** Rotated files kept per log file. Default 4. */
  keep?: number;
  /** Mirror records to stderr as journald-style lines. Default: the process-wide setting (on). */
  stderr?: boolean;
  /** fsync the files after writing a turn's records if one is not verbose (survives power loss, costs a disk flush). Default false. */
  fsync?: boolean;
}

let stderrDefault = true;
/** Switches the stderr mirror for logs opened without an explicit `stderr` option. */
export function setModuleLogStderr(enabled: boolean): void {
  stderrDefault = enabled;
}

export function moduleLogDir(module: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!MODULE_NAME.test(module)) {
    throw new StayupError('MODULE_NAME_INVALID', `invalid module name ${JSON.stringify(module)}`);
  }
  return join(nodePaths(env).moduleVarDir(module), 'log');
}

function isLogRecord(v: unknown): v is LogRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.seq === 'number' &&
    typeof r.ts === 'string' &&
    typeof r.level === 'string' &&
    (LOG_LEVELS as readonly string[]).includes(r.level) &&
    typeof r.source === 'string' &&
    typeof r.message === 'string'
  );
}

function clampFields(fields: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (fields === undefined) return undefined;
  let json: string;
  try {
    json = JSON.stringify(fields);
  } catch (e) {
    return { fieldsDropped: `not serialisable: ${(e as Error).message}` };
  }
  if (json === undefined || json === '{}') return undefined;
  if (json.length > MAX_FIELDS_CHARS) return { fieldsDropped: `${json.length} characters` };
  return JSON.parse(json) as Record<string, unknown>;
}

function oneLine(s: string): string {
  return s.replace(/\r?\n/g, ' \\n ').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?');
}

interface QueuedRecord {
  /** The record append() returned (its seq is updated if it is numbered again). */
  rec: LogRecord;
  /** What is written: the record as it was appended (fields is already a copy: clampFields). */
  snapshot: LogRecord;
  /** Also goes to module.jsonl (not a verbose level). */
  normal: boolean;
  rot: RotateOptions;
  fsync: boolean;
  /** Mirror the record to stderr. */
  stderr: boolean;
}

/**
 * What every ModuleLog of one log directory shares in this process: the two open files, the queue of the
 * records of this turn and the sequence number. Numbers are given from this process's last one; the lock
 * file is taken only to write (flush). If another process wrote since this one last did (the verbose file,
 * where every record goes, is not as this process left it), the queued records are numbered again after
 * that process's last one before they are written, so the files always hold one increasing sequence.
 */
class LogDirWriter {
  readonly normal: LineAppender;
  readonly verbose: LineAppender;
  readonly #lockFile: string;
  #seq: number | null = null;
  #queue: QueuedRecord[] = [];

  constructor(
    readonly dir: string,
    readonly dev: number,
    readonly ino: number,
  ) {
    this.normal = new LineAppender(join(dir, 'module.jsonl'));
    this.verbose = new LineAppender(join(dir, 'verbose.jsonl'));
    this.#lockFile = join(dir, '.module.lock');
  }

  /** Queues the record `make` builds with the next sequence number; returns it. */
  add(verbose: boolean, make: (seq: number) => LogRecord, rot: RotateOptions, fsync: boolean, stderr: boolean): LogRecord {
    this.#seq ??= this.#lastWritten();
    const rec = make(this.#seq + 1);
    this.#seq = rec.seq;
    if (this.#queue.length === 0) setImmediate(() => this.flush());
    this.#queue.push({ rec, snapshot: { ...rec }, normal: !verbose, rot, fsync: fsync && !verbose, stderr });
    return rec;
  }

  /** Writes the queued records in order, holding the lock file. */
  flush(): void {
    if (this.#queue.length === 0) return;
    const queue = this.#queue;
    this.#queue = [];
    let release: (() => void) | null = null;
    try {
      release = lockSync(this.#lockFile);
      // The path may name another file than the descriptor (rotated or removed by someone else), or the file
      // may hold another process's records since ours.
      if (this.verbose.refresh()) {
        const last = this.#lastWritten();
        if (last !== queue[0]!.rec.seq - 1) {
          queue.forEach((q, i) => (q.rec.seq = q.snapshot.seq = last + 1 + i));
          this.#seq = last + queue.length;
        }
      }
      this.normal.refresh();
      for (const q of queue) {
        const line = JSON.stringify(q.snapshot);
        if (q.normal) this.normal.append(line, q.rot);
        this.verbose.append(line, q.rot);
      }
      if (queue.some((q) => q.fsync)) {
        this.normal.sync();
        this.verbose.sync();
      }
      for (const q of queue) if (q.stderr) process.stderr.write(`stayup[${q.snapshot.module}]: ${q.snapshot.level} ${oneLine(q.snapshot.message)}\n`);
    } catch (e) {
      this.#seq = null;
      process.stderr.write(`stayup: cannot write the module log in ${this.dir}: ${(e as Error).message} (records ${queue[0]!.snapshot.seq} to ${queue.at(-1)!.snapshot.seq} may be missing)\n`);
    } finally {
      release?.();
    }
  }

  /** The highest sequence number in the files (the current ones and their first rotation). */
  #lastWritten(): number {
    return Math.max(lastSeq(this.verbose.file, isLogRecord), lastSeq(this.normal.file, isLogRecord));
  }
}

/** The writers of this process, by log directory path. */
const writers = new Map<string, LogDirWriter>();
let flushAtExit = false;

/** Writes the records queued by this process now (before a read, at exit). */
export function flushModuleLogs(): void {
  for (const w of new Set(writers.values())) w.flush();
}

function writerFor(dir: string): LogDirWriter {
  const path = resolve(dir);
  const known = writers.get(path);
  if (known) return known;
  mkdirSync(path, { recursive: true, mode: 0o750 });
  const st = statSync(path);
  // Another spelling of the same directory (a symbolic link, a bind mount) shares its writer: one queue
  // keeps this process's records in the order they were appended.
  for (const w of writers.values()) {
    if (w.dev !== st.dev || w.ino !== st.ino) continue;
    try {
      const still = statSync(w.dir);
      if (still.dev !== st.dev || still.ino !== st.ino) continue; // its directory is gone, the inode reused
    } catch {
      continue;
    }
    writers.set(path, w);
    return w;
  }
  const w = new LogDirWriter(path, st.dev, st.ino);
  writers.set(path, w);
  if (!flushAtExit) {
    flushAtExit = true;
    process.once('exit', flushModuleLogs);
  }
  return w;
}

/** The writer of one module's log. Cheap to create; several writers (even in several processes) are safe. */
export class ModuleLog {
  readonly module: string;
  readonly dir: string;
  readonly normalFile: string;
  readonly verboseFile: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly stderr: boolean | undefined;
  private readonly fsync: boolean;
  private writer: LogDirWriter | null = null;

  constructor(module: string, opts: ModuleLogOptions = {}) {
    this.module = module;
    this.dir = opts.dir ?? moduleLogDir(module, opts.env);
    this.normalFile = join(this.dir, 'module.jsonl');
    this.verboseFile = join(this.dir, 'verbose.jsonl');
    this.maxBytes = opts.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.keep = opts.keep ?? DEFAULT_LOG_KEEP;
    this.stderr = opts.stderr;
    this.fsync = opts.fsync ?? false;
  }

  /**
   * Queues one record (written at the end of this turn of the event loop) and returns it. Throws IO when the
   * log directory cannot be made; a write that fails later is reported on stderr.
   */
  append(level: LogLevel, source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new RangeError(`unknown log level ${level}`);
    const msg = message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
    const f = clampFields(fields);
    try {
      this.writer ??= writerFor(this.dir);
      return this.writer.add(
        isVerboseLevel(level),
        (seq) => ({ seq, ts: new Date().toISOString(), level, source, module: this.module, message: msg, ...(f ? { fields: f } : {}) }),
        { maxBytes: this.maxBytes, keep: this.keep },
        this.fsync,
        this.stderr ?? stderrDefault,
      );
    } catch (e) {
      throw new StayupError('IO', `cannot write the log of module ${this.module}: ${(e as Error).message}`, { cause: e });
    }
  }

  user(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('U', source, message, fields);
  }
  event(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('E', source, message, fields);
  }
  critical(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('C', source, message, fields);
  }
  script(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('S', source, message, fields);
  }
  info(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('I', source, message, fields);
  }
  debug(source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    return this.append('D', source, message, fields);
  }

  tail(opts: { count?: number; verbose?: boolean } = {}): LogRecord[] {
    return tailFiles(this.normalFile, this.verboseFile, this.keep, opts);
  }
}

function tailFiles(
  normalFile: string,
  verboseFile: string,
  keep: number,
  opts: { count?: number; verbose?: boolean },
): LogRecord[] {
  flushModuleLogs(); // this process's own records of this turn first
  const count = opts.count ?? 300;
  try {
    return opts.verbose
      ? readTail(verboseFile, keep, count, isLogRecord)
      : readTail(normalFile, keep, count, isLogRecord, (r) => !isVerboseLevel(r.level));
  } catch (e) {
    throw new StayupError('IO', `cannot read the module log: ${(e as Error).message}`, { cause: e });
  }
}

export interface TailOptions {
  /** Most recent records returned (default 300, the reference's `log -s`). */
  count?: number;
  /** Include I and D records (the reference's `log -A`). */
  verbose?: boolean;
  dir?: string;
  env?: NodeJS.ProcessEnv;
  keep?: number;
}

/** The last `count` records of a module's log, oldest first. Without `verbose`, I and D records are left out. */
export function tail(module: string, opts: TailOptions = {}): LogRecord[] {
  const dir = opts.dir ?? moduleLogDir(module, opts.env);
  return tailFiles(join(dir, 'module.jsonl'), join(dir, 'verbose.jsonl'), opts.keep ?? DEFAULT_LOG_KEEP, opts);
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `YYYY-MM-DD hh:mm:ss.mmm  E  message` in local time. */
export function formatRecord(r: LogRecord): string {
  const d = new Date(r.ts);
  const when = Number.isNaN(d.getTime())
    ? r.ts
    : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return `${when}  ${r.level}  ${oneLine(r.message)}`;
}

export type PrintOptions = Omit<ModuleLogOptions, 'stderr'> & { source?: string; fields?: Record<string, unknown> };

/** `stayup printi`: an I record, seen only in the verbose log (reference §1.4). */
export function printi(module: string, message: string, opts: PrintOptions = {}): LogRecord {
  const { source, fields, ...logOpts } = opts;
  return new ModuleLog(module, { ...logOpts, stderr: false }).append('I', source ?? 'script', message, fields);
}

/** `stayup printe`: an E record, seen in the normal log (reference §1.4). */
export function printe(module: string, message: string, opts: PrintOptions = {}): LogRecord {
  const { source, fields, ...logOpts } = opts;
  return new ModuleLog(module, { ...logOpts, stderr: false }).append('E', source ?? 'script', message, fields);
}
