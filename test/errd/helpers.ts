// Shared builders for the errd tests: a <proc> with the schema defaults, fake process entries, real
// `sleep` processes with distinctive arguments (killed by PID), and a bounded condition wait.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Errd, Proc } from '../../src/config/userconfig/types.ts';
import type { ProcessInfo } from '../../src/errd/process-table.ts';

/** A <proc> as the config parser fills it in (atleast 1, atmax -1, start_after 1). */
export function proc(over: Partial<Proc> = {}): Proc {
  return { name: 'myapp', service: false, atleast: 1, atmax: -1, action: 'restart', class: 'prim', startAfter: 1, ...over };
}

export function errd(procs: Proc[], polltimerMs = 50): Errd {
  return { polltimerMs, procs };
}

let nextPid = 1000;
/** A fake process entry; args default to the name. */
export function ps(name: string, args: string = name, over: Partial<ProcessInfo> = {}): ProcessInfo {
  const argv = args === '' ? [] : args.split(' ');
  return { pid: nextPid++, name, argv, args, startTime: 1, state: 'S', ppid: 1, ...over };
}

/** Polls until `cond` is true; fails after a generous bound (never a timed assertion). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A unique marker for this test run, usable as a sleep argument ("0.<digits>") and in a regex. */
export function marker(): string {
  return `${process.pid}${Math.floor(Math.random() * 1e9)}`;
}

export interface Sleepers {
  /** The argregex that matches exactly these sleepers. */
  argregex: string;
  children: ChildProcess[];
  spawn(): ChildProcess;
  kill(child: ChildProcess): void;
  killAll(): void;
}

/** Long `sleep` processes with an argument only they have; killAll() (by PID) in t.after. */
export function sleepers(): Sleepers {
  const m = marker();
  const children: ChildProcess[] = [];
  const kill = (c: ChildProcess): void => {
    if (c.pid === undefined) return;
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  return {
    argregex: `^sleep 100000 0\\.${m}$`,
    children,
    spawn() {
      const c = spawn('sleep', ['100000', `0.${m}`], { stdio: 'ignore' });
      c.on('error', () => {});
      children.push(c);
      return c;
    },
    kill,
    killAll() {
      for (const c of children) kill(c);
    },
  };
}
