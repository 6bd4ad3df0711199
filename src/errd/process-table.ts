// A snapshot of the processes of this node, read from /proc, for the process monitor (reference §2.12).
//
// The name a <proc name="..."> is compared with is the kernel's command name (/proc/PID/stat field 2, the
// same as /proc/PID/comm): the basename of the file that was exec'd, truncated to 15 characters. That is
// why the reference says `name="cmd (≤15 chars Linux)"` and why the config check rejects longer names
// without nameregex. It is not argv[0]: a process that rewrites its argv[0] keeps its command name.
//
// Processes come and go while /proc is walked: any entry whose files cannot be read (ESRCH, ENOENT, a
// half-written stat) is left out of the snapshot, never an error. Only thread-group leaders are listed
// (the numeric entries of /proc), so a multi-threaded program counts once.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessInfo {
  pid: number;
  /** The command name (comm): what `name` and `nameregex` are matched against. At most 15 characters. */
  name: string;
  /** argv as /proc/PID/cmdline gives it (empty for kernel threads and zombies). */
  argv: string[];
  /** argv joined with single spaces, argv[0] included: what `argregex` is matched against. */
  args: string;
  /** Start time after boot in clock ticks: with the PID, identifies a process across PID reuse. */
  startTime: number;
  /** R, S, D, T, t, Z (zombie), X (dead), I (idle kernel thread)… */
  state: string;
  ppid: number;
}

export interface ProcessTableOptions {
  /** Where procfs is mounted. Default '/proc'; tests point it at a fake tree. */
  procRoot?: string;
}

/** Parses the text of /proc/PID/stat; undefined when it is not a complete stat line. */
export function parseStatLine(text: string): { comm: string; state: string; ppid: number; startTime: number } | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const f = text.slice(close + 2).trim().split(' ');
  // f[0] is field 3 (state); field n is f[n - 3]; starttime is field 22.
  const ppid = Number(f[1]);
  const startTime = Number(f[19]);
  if (!f[0] || !Number.isInteger(ppid) || !Number.isFinite(startTime) || f[19] === undefined) return undefined;
  return { comm: text.slice(open + 1, close), state: f[0], ppid, startTime };
}

/** Splits /proc/PID/cmdline (NUL-terminated arguments) into argv. */
export function parseCmdline(buf: Buffer): string[] {
  if (buf.length === 0) return [];
  const text = buf.toString('utf8');
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** Reads one process; undefined when it vanished or its files are unreadable. */
export function readProcess(pid: number, opts: ProcessTableOptions = {}): ProcessInfo | undefined {
  const dir = `${opts.procRoot ?? '/proc'}/${pid}`;
  let stat: ReturnType<typeof parseStatLine>;
  let argv: string[];
  try {
    stat = parseStatLine(readFileSync(`${dir}/stat`, 'latin1'));
    if (!stat) return undefined;
    argv = parseCmdline(readFileSync(`${dir}/cmdline`));
  } catch {
    return undefined;
  }
  return { pid, name: stat.comm, argv, args: argv.join(' '), startTime: stat.startTime, state: stat.state, ppid: stat.ppid };
}

/** Every process readable now, by increasing PID. An unreadable procfs gives an empty list. */
export function readProcessTable(opts: ProcessTableOptions = {}): ProcessInfo[] {
  let names: string[];
  try {
    names = readdirSync(opts.procRoot ?? '/proc');
  } catch {
    return [];
  }
  const out: ProcessInfo[] = [];
  for (const n of names) {
    if (!/^[1-9][0-9]*$/.test(n)) continue;
    const p = readProcess(Number(n), opts);
    if (p) out.push(p);
  }
  return out.sort((a, b) => a.pid - b.pid);
}

/** True for a process that no longer runs but was not reaped yet. Such entries are never counted. */
export function isDeadProcess(p: Pick<ProcessInfo, 'state'>): boolean {
  return p.state === 'Z' || p.state === 'X' || p.state === 'x';
}

/**
 * The process list as `errdpoll_running` prints it (reference §1.9: "dumps the running processes so that
 * name/argregex can be written"): one line per live process, `name=<comm> pid=<pid> args=<args>`.
 */
export function formatProcessTable(list: readonly ProcessInfo[]): string {
  return list
    .filter((p) => !isDeadProcess(p))
    .map((p) => `name=${p.name} pid=${p.pid} args=${p.args}`)
    .join('\n');
}
