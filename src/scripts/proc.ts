// Process and process-group helpers built on /proc (Linux only). A zombie counts as dead: a container's
// PID 1 may never reap orphans, and kill(pid, 0) succeeds on a zombie.
import { readdirSync } from 'node:fs';
import { procStat } from '../util/proc-stat.ts';

/** Parses /proc/<pid>/stat; null if the process is gone. */
export function readProcStat(pid: number): { pid: number; state: string; ppid: number; pgrp: number; session: number } | null {
  const st = procStat(pid);
  return st ? { pid, state: st.state, ppid: st.ppid, pgrp: st.pgid, session: st.sid } : null;
}

/** True if the process exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  const st = readProcStat(pid);
  return st !== null && st.state !== 'Z' && st.state !== 'X';
}

/** PIDs of the live (non-zombie) members of a process group. */
export function processGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const st = readProcStat(Number(name));
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') out.push(st.pid);
  }
  return out;
}

/** Sends a signal to a whole process group; false if the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) throw new RangeError(`refusing to signal process group ${pgid}`);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}
