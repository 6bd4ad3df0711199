// Mutual exclusion over a node's modules directory, and recovery of what a crashed writer left behind.
//
// Every change to the set of installed modules (claiming a name and an id, swapping a module in or out)
// runs as one short *synchronous* critical section inside `withModulesLock`. Being synchronous, two
// operations of the same process can never interleave in it; the lock directory (`mkdir` is atomic)
// excludes other processes (a CLI running next to the daemon). A lock whose owner process is gone is
// broken. The slow work (reading, checking and extracting a package) happens before, outside the lock,
// in a private staging directory.
//
// Names of the private entries in the modules directory (all start with a dot, so no module can clash):
//   .lock/owner                           the lock: "<pid> <thread id> <boot id>" of its owner
//   .stayup-tmp.<pid>.<rand>.<module>     staging of an install, renamed into place when complete
//   .stayup-old.<pid>.<rand>.<module>     the previous copy during a reinstall, removed after the swap
//   .stayup-del.<pid>.<rand>.<module>     a module being uninstalled, removed right after the rename
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { StayupError } from '../errors/stayup-error.ts';
import { fsyncDir } from '../util/atomic-file.ts';

export type PrivateKind = 'tmp' | 'old' | 'del';

const PRIVATE_RE = /^\.stayup-(tmp|old|del)\.(\d+)\.([0-9a-f]+)\.(.+)$/;

/** A fresh private name for `module` in the modules directory. */
export function privateName(kind: PrivateKind, module: string): string {
  return `.stayup-${kind}.${process.pid}.${randomBytes(6).toString('hex')}.${module}`;
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

export interface LockOptions {
  /** How long to wait for another process's lock, in ms (default 10 000). */
  timeoutMs?: number;
  /** A lock directory without a readable owner is considered abandoned after this many ms (default 30 000). */
  ownerlessStaleMs?: number;
}

const held = new Set<string>();

/**
 * Runs `fn` while holding the lock of `modulesDir` (created if needed). `fn` must be synchronous.
 * Also cleans up what crashed writers left behind before running `fn`.
 */
export function withModulesLock<T>(modulesDir: string, fn: () => T, options: LockOptions = {}): T {
  if (held.has(modulesDir)) return fn(); // re-entrant within one synchronous call chain
  const timeoutMs = options.timeoutMs ?? 10_000;
  const ownerlessStaleMs = options.ownerlessStaleMs ?? 30_000;
  mkdirSync(modulesDir, { recursive: true, mode: 0o755 });
  const lockDir = join(modulesDir, '.lock');
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    try {
      mkdirSync(lockDir, { mode: 0o700 });
      writeFileSync(join(lockDir, 'owner'), `${process.pid} ${threadId} ${bootId()}\n`);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot lock ${modulesDir}`, e);
    }
    const ownerLine = readOwnerLine(lockDir);
    const owner = parseOwner(ownerLine);
    const abandoned = owner === undefined ? ageMs(lockDir) > ownerlessStaleMs : ownerGone(owner);
    // Judge again just before breaking: the lock may have changed hands since it was read (a new
    // owner that is alive must never lose it). Only one breaker's rename can succeed.
    if (abandoned && readOwnerLine(lockDir) === ownerLine) {
      const aside = join(modulesDir, privateName('del', 'lock'));
      try {
        renameSync(lockDir, aside);
        rmSync(aside, { recursive: true, force: true });
      } catch {
        /* someone else broke it first */
      }
      continue;
    }
    if (Date.now() >= deadline) {
      throw new StayupError('CONFLICT', `the modules directory ${modulesDir} is locked${owner ? ` by process ${owner.pid}` : ''}; try again`, {
        details: { lock: lockDir, ...(owner ? { pid: owner.pid } : {}) },
      });
    }
    sleepMs(delay);
    delay = Math.min(delay * 2, 50);
  }
  held.add(modulesDir);
  try {
    recoverModulesDir(modulesDir);
    return fn();
  } finally {
    held.delete(modulesDir);
    rmSync(lockDir, { recursive: true, force: true });
  }
}

interface Owner {
  pid: number;
  thread: number | undefined;
  boot: string | undefined;
}

let cachedBootId: string | undefined;
/** The kernel's boot id: a lock written before a reboot is stale whatever its pid has become. */
function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || '-';
    } catch {
      cachedBootId = '-';
    }
  }
  return cachedBootId;
}

function readOwnerLine(lockDir: string): string | undefined {
  try {
    return readFileSync(join(lockDir, 'owner'), 'utf8');
  } catch {
    return undefined;
  }
}

function parseOwner(line: string | undefined): Owner | undefined {
  const [p, t, b] = (line ?? '').trim().split(/\s+/);
  const pid = Number.parseInt(p ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const thread = Number.parseInt(t ?? '', 10);
  return { pid, thread: Number.isInteger(thread) ? thread : undefined, boot: b };
}

/**
 * Whether the owner of a lock can no longer be holding it: written before the last boot, or by a process
 * that is gone, or by this very thread (which is not inside a critical section, or `held` would say so).
 */
function ownerGone(o: Owner): boolean {
  if (o.boot !== undefined && o.boot !== '-' && bootId() !== '-' && o.boot !== bootId()) return true;
  if (o.pid === process.pid) return o.thread === undefined || o.thread === threadId;
  return !pidAlive(o.pid);
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Puts the modules directory back in order after a crash (call with the lock held):
 * - a reinstall that died between moving the old copy aside and moving the new one in gets its old copy
 *   back; an old copy whose module is in place is removed;
 * - stagings and half-removed modules of dead processes are removed.
 * Stagings of live processes (this one included) are left alone: an install may be extracting right now.
 */
export function recoverModulesDir(modulesDir: string): void {
  let names: string[];
  try {
    names = readdirSync(modulesDir);
  } catch {
    return;
  }
  let changed = false;
  for (const n of names) {
    const m = PRIVATE_RE.exec(n);
    if (!m) continue;
    const kind = m[1] as PrivateKind;
    const pid = Number(m[2]);
    const module = m[4]!;
    const abs = join(modulesDir, n);
    // Old copies and removals only exist inside a critical section; holding the lock, we know their
    // writer is gone (or failed to clean up), whatever its pid. Stagings are made outside the lock.
    if (kind === 'tmp' && (pid === process.pid || pidAlive(pid))) continue;
    if (kind === 'old' && !existsSync(join(modulesDir, module))) {
      renameSync(abs, join(modulesDir, module));
    } else {
      rmSync(abs, { recursive: true, force: true });
    }
    changed = true;
  }
  if (changed) fsyncDir(modulesDir);
}

function ioError(message: string, cause: unknown): StayupError {
  return new StayupError('IO', `${message}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
}
