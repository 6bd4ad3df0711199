// The module log (reference §1.4, §7.5): what `stayup log -m AM` shows.
//
// Levels: U (user), E (event), C (critical), S (script) make the normal log; I (information) and D (debug)
// are verbose and shown only with `-A`. Records are JSONL in `moduleVarDir(module)/log/`:
//   module.jsonl   the normal log (U, E, C, S), so verbose chatter never rotates events out of it
//   verbose.jsonl  every record, all levels (what `-A` shows)
// Both are size-rotated and share one sequence number per module. Each record is also written to stderr as
// a journald-style one-liner `stayup[<module>]: <LEVEL> <message>` (switchable).
//
// Writing is on a takeover's path (the engine logs the loss of the peer and the new state before the
// virtual IP moves), so a record costs a stat and a write per file: the files stay open (LineAppender),
// every ModuleLog of one directory in this process shares them and the sequence number (LogDirWriter),
// and the lock file that keeps writers in other processes out is taken once per turn of the event loop,
// not once per record.
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
  /** fsync after each non-verbose record (survives power loss, costs a disk flush). Default false. */
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

/**
 * What every ModuleLog of one log directory shares in this process: the two open files, the sequence
 * number and the lock. The lock file is taken at the first record of a turn of the event loop and given
 * back at the next (setImmediate), or at exit: the records of one step (a takeover writes six) pay for one
 * lock file, not one each, and other processes wait at most that long. While it is held nobody else
 * writes, so the sequence number needs no re-reading; when it is taken again, the files are checked for
 * other writers (LineAppender.refresh) and the sequence number read again if there were any.
 */
class LogDirWriter {
  readonly normal: LineAppender;
  readonly verbose: LineAppender;
  readonly #lockFile: string;
  #seq: number | null = null;
  #release: (() => void) | null = null;

  constructor(
    readonly dir: string,
    readonly dev: number,
    readonly ino: number,
  ) {
    this.normal = new LineAppender(join(dir, 'module.jsonl'));
    this.verbose = new LineAppender(join(dir, 'verbose.jsonl'));
    this.#lockFile = join(dir, '.module.lock');
  }

  /** Writes the record `make` builds with the next sequence number; returns it. */
  write(verbose: boolean, make: (seq: number) => LogRecord, rot: RotateOptions, fsync: boolean): LogRecord {
    this.#hold();
    try {
      // Every record goes to the verbose file: a write by someone else shows there.
      const otherWriter = this.verbose.refresh();
      if (!verbose) this.normal.refresh();
      if (otherWriter || this.#seq === null) {
        this.#seq = Math.max(lastSeq(this.verbose.file, isLogRecord), lastSeq(this.normal.file, isLogRecord));
      }
      const rec = make(this.#seq + 1);
      const line = JSON.stringify(rec);
      if (!verbose) this.normal.append(line, rot, fsync);
      this.verbose.append(line, rot, fsync && !verbose);
      this.#seq = rec.seq;
      return rec;
    } catch (e) {
      this.#seq = null;
      throw e;
    }
  }

  #hold(): void {
    if (this.#release) return;
    this.#release = lockSync(this.#lockFile);
    setImmediate(() => this.letGo());
  }

  letGo(): void {
    const release = this.#release;
    this.#release = null;
    release?.();
  }
}

/** The writers of this process, by log directory path. */
const writers = new Map<string, LogDirWriter>();
let releaseAtExit = false;

function writerFor(dir: string): LogDirWriter {
  const path = resolve(dir);
  const known = writers.get(path);
  if (known) return known;
  mkdirSync(path, { recursive: true, mode: 0o750 });
  const st = statSync(path);
  // Another spelling of the same directory (a symbolic link, a bind mount) must share its writer: two
  // writers of one process would wait for each other's lock.
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
  if (!releaseAtExit) {
    releaseAtExit = true;
    process.once('exit', () => {
      for (const x of writers.values()) x.letGo();
    });
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

  /** Appends one record and returns it. Throws IO when the log cannot be written. */
  append(level: LogLevel, source: string, message: string, fields?: Record<string, unknown>): LogRecord {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new RangeError(`unknown log level ${level}`);
    const msg = message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
    const f = clampFields(fields);
    let rec: LogRecord;
    try {
      this.writer ??= writerFor(this.dir);
      rec = this.writer.write(
        isVerboseLevel(level),
        (seq) => ({ seq, ts: new Date().toISOString(), level, source, module: this.module, message: msg, ...(f ? { fields: f } : {}) }),
        { maxBytes: this.maxBytes, keep: this.keep },
        this.fsync,
      );
    } catch (e) {
      throw new StayupError('IO', `cannot write the log of module ${this.module}: ${(e as Error).message}`, { cause: e });
    }
    if (this.stderr ?? stderrDefault) {
      process.stderr.write(`stayup[${this.module}]: ${level} ${oneLine(msg)}\n`);
    }
    return rec;
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
