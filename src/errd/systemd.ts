// Service procs (`<proc service="yes">`, reference §2.12: "monitors a systemd unit"): the state of a unit
// comes from `systemctl is-active -- <unit>`, and only when systemd is PID 1. Without systemd there is no
// unit to ask about: the answer is an operating error, which the monitor reports once and never turns
// into an action.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ServiceCheck } from './evaluate.ts';

/** The command name of PID 1 ('systemd' on a systemd host), or undefined when /proc cannot tell. */
export function initName(procRoot = '/proc'): string | undefined {
  try {
    return readFileSync(`${procRoot}/1/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function systemdIsPid1(procRoot = '/proc'): boolean {
  return initName(procRoot) === 'systemd';
}

/** States `systemctl is-active` prints for a unit that is not active (exit code non-zero). */
const NOT_ACTIVE = new Set(['inactive', 'failed', 'activating', 'deactivating', 'maintenance', 'refreshing', 'unknown']);

export interface SystemctlResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Set when systemctl could not run or was killed (ENOENT, timeout). */
  error?: string;
}

/** Runs `systemctl is-active -- <unit>` without a shell; resolves for every outcome. */
export function runSystemctlIsActive(unit: string, timeoutMs = 10_000): Promise<SystemctlResult> {
  return new Promise((resolve) => {
    execFile(
      'systemctl',
      ['is-active', '--', unit],
      { timeout: timeoutMs, killSignal: 'SIGKILL', env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        // code is the exit status (a number), or an errno string such as 'ENOENT' when it could not start.
        const code: unknown = (err as { code?: unknown }).code;
        if (typeof code === 'number' && !err.killed) {
          resolve({ code, stdout, stderr });
          return;
        }
        resolve({ code: null, stdout, stderr, error: err.killed ? `systemctl timed out after ${timeoutMs} ms` : err.message });
      },
    );
  });
}

/** Turns a systemctl answer into a ServiceCheck (pure). */
export function interpretIsActive(r: SystemctlResult): ServiceCheck {
  if (r.error !== undefined) return { kind: 'error', message: r.error };
  const word = r.stdout.trim().split('\n')[0]?.trim() ?? '';
  if (r.code === 0) return { kind: 'active' };
  if (NOT_ACTIVE.has(word)) return { kind: 'inactive', state: word };
  const why = r.stderr.trim().split('\n')[0] || word || `exit ${r.code}`;
  return { kind: 'error', message: `systemctl is-active failed: ${why}` };
}

export interface ServiceCheckerOptions {
  /** Default: /proc/1/comm is "systemd". */
  isSystemd?: () => boolean;
  /** Default: runSystemctlIsActive. */
  run?: (unit: string) => Promise<SystemctlResult>;
  procRoot?: string;
  timeoutMs?: number;
}

/** The default service checker of the monitor. */
export function systemdServiceChecker(opts: ServiceCheckerOptions = {}): (unit: string) => Promise<ServiceCheck> {
  const procRoot = opts.procRoot ?? '/proc';
  const isSystemd = opts.isSystemd ?? (() => systemdIsPid1(procRoot));
  const run = opts.run ?? ((u: string) => runSystemctlIsActive(u, opts.timeoutMs));
  return async (unit) => {
    if (!isSystemd()) {
      const init = initName(procRoot);
      return {
        kind: 'error',
        message: `systemd is not PID 1 on this node${init ? ` (PID 1 is ${init})` : ''}, so service="yes" cannot be monitored`,
      };
    }
    return interpretIsActive(await run(unit));
  };
}
