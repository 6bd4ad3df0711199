// Crash-safe, size-rotated JSONL files shared by the module log and the command audit log.
//
// Writing: every record is one `write(2)` of one line to a file opened with O_APPEND, under a lock file, so
// writers in several processes (daemon, CLI) never interleave and agree on sequence numbers. appendLine()
// opens the file for each record (the audit log); the module log keeps its files open (line-appender.ts).
// A crash can leave at most the last line torn; the next writer first ends that line, so a torn line never
// swallows a later record. Reading: lines that do not parse (a torn tail, a repaired torn line) are skipped.
//
// Rotation: when a record would push `file` past maxBytes, `file.(k-1)` → `file.k` … `file` → `file.1`,
// keeping `keep` rotated files.
import {
  closeSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

export interface RotateOptions {
  /** Rotate before a record would make the file larger than this. */
  maxBytes: number;
  /** Rotated files kept (file.1 … file.keep). */
  keep: number;
}

/** The current file first, then file.1, file.2 … */
export function rotatedFiles(file: string, keep: number): string[] {
  return [file, ...Array.from({ length: Math.max(0, keep) }, (_, i) => `${file}.${i + 1}`)];
}

/** `file.(k-1)` → `file.k` … `file` → `file.1`, dropping `file.keep`. The caller holds the lock. */
export function rotate(file: string, keep: number): void {
  if (keep <= 0) {
    rmSync(file, { force: true });
    return;
  }
  rmSync(`${file}.${keep}`, { force: true });
  for (let i = keep - 1; i >= 1; i--) {
    try {
      renameSync(`${file}.${i}`, `${file}.${i + 1}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  try {
    renameSync(file, `${file}.1`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** The byte at size - 1 of an open file (to see whether its last line is whole), or null when empty. */
export function lastByte(fd: number, size: number): number | null {
  if (size === 0) return null;
  const b = Buffer.alloc(1);
  return readSync(fd, b, 0, 1, size - 1) === 1 ? b[0]! : null;
}

/** Identity and size of a file after a write, to notice writes by someone else. */
export interface FileMark {
  ino: number;
  size: number;
}

export function fileMark(file: string): FileMark | null {
  try {
    const st = statSync(file);
    return { ino: st.ino, size: st.size };
  } catch {
    return null;
  }
}

/**
 * Appends one line (a serialised record without its newline) to `file`, rotating first when needed. The
 * caller holds the lock. Returns the file's mark after the write.
 */
export function appendLine(file: string, line: string, rot: RotateOptions, fsync: boolean): FileMark {
  mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
  const body = Buffer.from(`${line}\n`);
  let fd = openSync(file, 'a+', 0o640);
  try {
    let st = fstatSync(fd);
    if (st.size > 0 && st.size + body.length > rot.maxBytes) {
      closeSync(fd);
      fd = -1;
      rotate(file, rot.keep);
      fd = openSync(file, 'a+', 0o640);
      st = fstatSync(fd);
    }
    // End a line torn by a crash so this record starts on a line of its own.
    const buf = st.size > 0 && lastByte(fd, st.size) !== 0x0a ? Buffer.concat([Buffer.from('\n'), body]) : body;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (fsync) fsyncSync(fd);
    return { ino: st.ino, size: st.size + buf.length };
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** Parses the lines of a JSONL text, skipping every line that is not a valid record. */
export function parseLines<T>(text: string, valid: (v: unknown) => v is T): T[] {
  const out: T[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (valid(v)) out.push(v);
  }
  return out;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The last valid record of a file (reads the tail first, the whole file only if needed), or null. */
export function lastRecord<T>(file: string, valid: (v: unknown) => v is T): T | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    const want = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, size - want + got);
      if (n === 0) break;
      got += n;
    }
    let recs = parseLines(buf.subarray(0, got).toString('utf8'), valid);
    if (recs.length === 0 && size > want) recs = parseLines(readText(file) ?? '', valid);
    return recs.at(-1) ?? null;
  } finally {
    closeSync(fd);
  }
}

/** The highest `seq` among the last records of the current file and its first rotation (0 if none). */
export function lastSeq(file: string, valid: (v: unknown) => v is { seq: number }): number {
  let best = 0;
  for (const f of [file, `${file}.1`]) {
    const r = lastRecord(f, valid);
    if (r && r.seq > best) best = r.seq;
  }
  return best;
}

/**
 * The last `count` records that pass `keepRecord`, oldest first, reading the current file and then older
 * rotations only as far back as needed.
 */
export function readTail<T>(
  file: string,
  keep: number,
  count: number,
  valid: (v: unknown) => v is T,
  keepRecord: (r: T) => boolean = () => true,
): T[] {
  if (count <= 0) return [];
  const chunks: T[][] = [];
  let have = 0;
  for (const f of rotatedFiles(file, keep)) {
    const text = readText(f);
    if (text === null) continue;
    const recs = parseLines(text, valid).filter(keepRecord);
    chunks.unshift(recs);
    have += recs.length;
    if (have >= count) break;
  }
  const all = chunks.flat();
  return all.slice(Math.max(0, all.length - count));
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function lockIsStale(lockPath: string, staleMs: number): boolean {
  try {
    const pid = Number(readFileSync(lockPath, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
      try {
        process.kill(pid, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ESRCH') return true;
      }
    }
    return Date.now() - statSync(lockPath).mtimeMs > staleMs;
  } catch {
    return false; // vanished or unreadable: just retry
  }
}

/**
 * Takes an exclusive lock file (created with O_EXCL, holding the PID) and returns its release. A lock whose
 * holder is dead, or older than staleMs, is broken. After timeoutMs of waiting the lock is broken too:
 * losing a log record would be worse than a rare duplicate sequence number.
 */
export function lockSync(lockPath: string, opts: { timeoutMs?: number; staleMs?: number } = {}): () => void {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const staleMs = opts.staleMs ?? 10_000;
  mkdirSync(dirname(lockPath), { recursive: true, mode: 0o750 });
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(lockPath, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (lockIsStale(lockPath, staleMs) || Date.now() > deadline) {
        try {
          unlinkSync(lockPath);
        } catch {
          // someone else broke it first
        }
        continue;
      }
      sleepSync(delay);
      delay = Math.min(delay * 2, 20);
      continue;
    }
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
    return () => {
      try {
        unlinkSync(lockPath);
      } catch {
        // broken by another process after a timeout
      }
    };
  }
}

/** Runs `fn` holding the lock file (lockSync). */
export function withLockSync<T>(lockPath: string, fn: () => T, opts: { timeoutMs?: number; staleMs?: number } = {}): T {
  const release = lockSync(lockPath, opts);
  try {
    return fn();
  } finally {
    release();
  }
}
