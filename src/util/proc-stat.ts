import { readFileSync } from 'node:fs';

/** One process as /proc/<pid>/stat tells it (the comm field may hold spaces and parentheses). */
export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, T (stopped), t, Z (zombie), X... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** Start time after boot, in clock ticks: with the PID, identifies a process across PID reuse. */
  startTime: number;
}

export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const comm = text.slice(text.indexOf('(') + 1, close);
  const f = text.slice(close + 2).split(' ');
  // f[0] = field 3 (state); field n is f[n - 3].
  return {
    pid,
    comm,
    state: f[0] ?? '?',
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    startTime: Number(f[19]),
  };
}
