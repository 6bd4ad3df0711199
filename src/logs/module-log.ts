// The module log (reference §1.4, §7.5): what `stayup log -m AM` shows.
//
// Levels: U (user), E (event), C (critical), S (script) make the normal log; I (information) and D (debug)
// are verbose and shown only with `-A`. Records are JSONL in `moduleVarDir(module)/log/`:
//   module.jsonl   the normal log (U, E, C, S), so verbose chatter never rotates events out of it
//   verbose.jsonl  every record, all levels (what `-A` shows)
// Both are size-rotated and share one sequence number per module. Each record is also written to stderr as
// a journald-style one-liner `stayup[<module>]: <LEVEL> <message>` (switchable).
import { join } from 'node:path';
import { nodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { appendLine, fileMark, lastSeq, readTail, withLockSync, type FileMark } from './jsonl.ts';

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

/** The writer of one module's log. Cheap to create; several writers (even in several processes) are safe. */
export class ModuleLog {
  readonly module: string;
  readonly dir: string;
  readonly normalFile: string;
  readonly verboseFile: string;
  private readonly lockFile: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly stderr: boolean | undefined;
  private readonly fsync: boolean;
  private cache: { seq: number; mark: FileMark } | null = null;

  constructor(module: string, opts: ModuleLogOptions = {}) {
    this.module = module;
    this.dir = opts.dir ?? moduleLogDir(module, opts.env);
    this.normalFile = join(this.dir, 'module.jsonl');
    this.verboseFile = join(this.dir, 'verbose.jsonl');
    this.lockFile = join(this.dir, '.module.lock');
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
    let rec!: LogRecord;
    try {
      withLockSync(this.lockFile, () => {
        // Our cached seq is valid only if nobody wrote since our last write.
        const mark = fileMark(this.verboseFile);
        const seq =
          this.cache && mark && mark.ino === this.cache.mark.ino && mark.size === this.cache.mark.size
            ? this.cache.seq
            : Math.max(lastSeq(this.verboseFile, isLogRecord), lastSeq(this.normalFile, isLogRecord));
        rec = {
          seq: seq + 1,
          ts: new Date().toISOString(),
          level,
          source,
          module: this.module,
          message: msg,
          ...(f ? { fields: f } : {}),
        };
        const line = JSON.stringify(rec);
        const rot = { maxBytes: this.maxBytes, keep: this.keep };
        const verbose = isVerboseLevel(level);
        if (!verbose) appendLine(this.normalFile, line, rot, this.fsync);
        const newMark = appendLine(this.verboseFile, line, rot, this.fsync && !verbose);
        this.cache = { seq: rec.seq, mark: newMark };
      });
    } catch (e) {
      this.cache = null;
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
