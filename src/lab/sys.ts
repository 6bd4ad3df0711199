// System helpers for the lab: running commands, finding tools, reading /proc, locks. Linux only.

import { spawn, type StdioOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { procStat } from '../util/proc-stat.ts';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StayupError } from '../errors/stayup-error.ts';

export interface RunOptions {
  input?: string | Uint8Array;
  /** Kill the command (its whole process group) after this many ms. 0 or undefined = no limit. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** 'inherit' connects the command to our stdin/stdout/stderr (nothing is captured). */
  stdio?: 'pipe' | 'inherit';
}

export interface RunResult {
  /** Exit code; 128 + signal number when killed by a signal; 124 on timeout. */
  code: number;
  stdout: string;
  stderr: string;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** Environment with the sbin directories on PATH (ip, nft and friends live there on Debian). */
export function toolEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  // Set by node:test for its own children; a node program started in the lab must not inherit it.
  if (!extra || !('NODE_TEST_CONTEXT' in extra)) delete env.NODE_TEST_CONTEXT;
  const parts = (env.PATH ?? '').split(':').filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!parts.includes(d)) parts.push(d);
  }
  env.PATH = parts.join(':');
  return env;
}

/** Runs a command to completion. Never throws for a non-zero exit; throws LAB_COMMAND_FAILED if it cannot start. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const inherit = opts.stdio === 'inherit';
    const stdio: StdioOptions = inherit ? 'inherit' : ['pipe', 'pipe', 'pipe'];
    // With captured output the command gets its own process group, so a timeout kills all of it. An
    // inherited terminal must stay in our foreground group (else an interactive shell gets SIGTTIN).
    const child = spawn(cmd, args, { stdio, env: opts.env ?? toolEnv(), detached: !inherit });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new StayupError('LAB_COMMAND_FAILED', `cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid) process.kill(inherit ? child.pid : -child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, opts.timeoutMs);
    }
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: timedOut ? 124 : code ?? 128 + (signal ? SIGNALS[signal] ?? 0 : 0),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        signal,
        timedOut,
      });
    });
    if (child.stdin) {
      child.stdin.on('error', () => {
        /* the command may exit without reading its input */
      });
      child.stdin.end(opts.input ?? '');
    }
  });
}

/** Runs a command and throws LAB_COMMAND_FAILED (with its stderr) if it does not exit 0. */
export async function mustRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, { timeoutMs: 30_000, ...opts });
  if (r.code !== 0) {
    const what = [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
    const msg = (r.stderr || r.stdout).trim().split('\n').slice(-5).join('; ');
    throw new StayupError('LAB_COMMAND_FAILED', `${what} failed (exit ${r.code}${r.timedOut ? ', timed out' : ''})${msg ? `: ${msg}` : ''}`, {
      details: { argv: [cmd, ...args], code: r.code, stderr: r.stderr },
    });
  }
  return r;
}

// ---------------------------------------------------------------------------------------------- tools

/** Programs the lab runs, with the Debian package that has each. */
export const TOOLS = {
  ip: 'iproute2',
  nft: 'nftables',
  nsenter: 'util-linux',
  unshare: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  sh: 'dash',
} as const;
export type Tool = keyof typeof TOOLS;

const toolCache = new Map<Tool, string>();

export function findTool(name: Tool): string | undefined {
  const cached = toolCache.get(name);
  if (cached) return cached;
  for (const dir of (toolEnv().PATH ?? '').split(':')) {
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) {
        toolCache.set(name, p);
        return p;
      }
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Absolute path of a tool; LAB_NEEDS_ROOT naming the Debian package when it is missing. */
export function tool(name: Tool): string {
  const p = findTool(name);
  if (!p) {
    throw new StayupError('LAB_NEEDS_ROOT', `the lab needs \`${name}\`, which is not installed: apt-get install ${TOOLS[name]}`, {
      details: { tool: name, package: TOOLS[name] },
    });
  }
  return p;
}

/** Checks root and every tool; throws LAB_NEEDS_ROOT with what is missing. */
export function checkPrerequisites(): void {
  if (process.platform !== 'linux') throw new StayupError('LAB_NEEDS_ROOT', 'the lab needs Linux (network and mount namespaces)');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new StayupError('LAB_NEEDS_ROOT', 'the lab needs root: run it as root (it creates namespaces, links and mounts)');
  }
  if (!existsSync('/proc/self/ns/net') || !existsSync('/proc/self/ns/mnt')) {
    throw new StayupError('LAB_NEEDS_ROOT', 'the lab needs network and mount namespaces, which this kernel does not offer');
  }
  const missing = (Object.keys(TOOLS) as Tool[]).filter((t) => !findTool(t));
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => TOOLS[t]))];
    throw new StayupError('LAB_NEEDS_ROOT', `the lab needs ${missing.map((t) => `\`${t}\``).join(', ')}, not installed: apt-get install ${pkgs.join(' ')}`, {
      details: { missing, packages: pkgs },
    });
  }
}

// ---------------------------------------------------------------------------------------------- /proc

export { procStat, type ProcStat } from '../util/proc-stat.ts';

/** The process with this PID is alive (not a zombie) and, if given, started at `startTime`. */
export function isAlive(pid: number, startTime?: number): boolean {
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return startTime === undefined || st.startTime === startTime;
}

export function allPids(): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) if (/^\d+$/.test(e)) pids.push(Number(e));
  return pids;
}

/** Inode of a namespace file (/run/netns/X, an nsfs bind mount, /proc/PID/ns/Y), or undefined. */
export function nsInode(path: string): number | undefined {
  try {
    const st = statSync(path);
    return st.ino;
  } catch {
    return undefined;
  }
}

/**
 * Processes (other than us) living in any of the given namespaces, found by the inode of
 * /proc/PID/ns/{net,mnt}. Processes we may not inspect are skipped.
 */
export function pidsInNamespaces(ns: { net?: readonly number[]; mnt?: readonly number[] }): number[] {
  const want = new Set<string>([...(ns.net ?? []).map((i) => `net:[${i}]`), ...(ns.mnt ?? []).map((i) => `mnt:[${i}]`)]);
  if (want.size === 0) return [];
  const out: number[] = [];
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    for (const kind of ['net', 'mnt']) {
      try {
        if (want.has(readlinkSync(`/proc/${pid}/ns/${kind}`))) {
          out.push(pid);
          break;
        }
      } catch {
        /* gone or not ours to see */
      }
    }
  }
  return out;
}

/** Sends a signal; false when the process (group) does not exist. */
export function signal(pid: number, sig: NodeJS.Signals | number): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Waits until none of the processes is alive (zombies count as dead). Returns the ones still alive. */
export async function waitGone(procs: ReadonlyArray<{ pid: number; startTime?: number }>, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = procs.filter((p) => isAlive(p.pid, p.startTime)).map((p) => p.pid);
    if (alive.length === 0 || Date.now() >= deadline) return alive;
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------- mounts

export interface MountEntry {
  id: number;
  mountPoint: string;
  root: string;
  fsType: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function mountTable(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    out.push({
      id: Number(f[0]),
      root: unescapeMount(f[3] ?? ''),
      mountPoint: unescapeMount(f[4] ?? ''),
      fsType: f[sep + 1] ?? '',
      source: unescapeMount(f[sep + 2] ?? ''),
    });
  }
  return out;
}

/** Mount points at or below `dir`, deepest (and most recent) first. */
export function mountsUnder(dir: string): string[] {
  const d = dir.replace(/\/+$/, '');
  const seen = mountTable()
    .filter((m) => m.mountPoint === d || m.mountPoint.startsWith(`${d}/`))
    .map((m) => m.mountPoint);
  return [...new Set(seen.reverse())].sort((a, b) => b.split('/').length - a.split('/').length);
}

export function isMountPoint(path: string): boolean {
  return mountTable().some((m) => m.mountPoint === path);
}

// ---------------------------------------------------------------------------------------------- locks

/**
 * Runs `fn` holding an exclusive lock: a directory created with mkdir (atomic), holding the owner's PID.
 * A lock whose owner died is broken. Waits up to `timeoutMs`.
 */
export async function withLock<T>(lockDir: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const ownerFile = join(lockDir, 'owner');
  const me = procStat(process.pid);
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(ownerFile, `${process.pid} ${me?.startTime ?? 0}\n`);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // The parent went away (a lab down removes an empty /run/stayup-lab): make it again.
        mkdirSync(dirname(lockDir), { recursive: true, mode: 0o700 });
        continue;
      }
      if (code !== 'EEXIST') throw e;
      if (lockIsStale(lockDir, ownerFile)) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() >= deadline) {
        throw new StayupError('CONFLICT', `timed out waiting for the lock ${lockDir} (held by another stayup lab command)`);
      }
      await sleep(20 + Math.random() * 30);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

function lockIsStale(lockDir: string, ownerFile: string): boolean {
  let text: string;
  try {
    text = readFileSync(ownerFile, 'utf8');
  } catch {
    // Created but not yet written, or written by a process that died in between: stale after 5 s.
    try {
      return Date.now() - statSync(lockDir).mtimeMs > 5000;
    } catch {
      return false;
    }
  }
  const [pid, start] = text.trim().split(' ').map(Number);
  if (!pid) return true;
  return !isAlive(pid, start || undefined);
}
