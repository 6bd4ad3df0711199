// What the scale bench watches while a step runs: the resident memory of stayupd on each lab server
// (sampled, since VmHWM only ever grows over the daemon's life and a step wants its own peak), and the
// module log lines that tell of a daemon whose event loop stalled long enough to matter for heartbeats.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../../src/lab/lab.ts';
import { moduleLog } from '../../src/lab/stayup-cluster.ts';

/** How often the resident size is sampled: a reintegration's peak lasts seconds, not milliseconds. */
const RSS_SAMPLE_MS = 250;

/** `/proc/<pid>/status` field in KiB, or null when the process is gone. */
function statusKib(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The PID of stayupd on a lab server (its pid file; the lab shares the host's PID space), or null. */
export function daemonPid(lab: Lab, node: string): number | null {
  try {
    const pid = Number(readFileSync(lab.hostPath(node, '/var/lib/stayup/private/stayupd.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export interface RssFigures {
  /** Highest VmRSS sampled during the step, MiB. */
  peak_mib: number | null;
  /** VmHWM at the end of the step (the daemon's peak since it started), MiB. */
  hwm_mib: number | null;
}

/**
 * Samples VmRSS of stayupd on every server until stop(). The PID is read again at each sample, so a daemon
 * restarted during the step (after a crash) is followed.
 */
export class RssSampler {
  private readonly peakKib = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly lab: Lab) {
    this.sample();
    this.timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
  }

  private sample(): void {
    for (const n of this.lab.servers) {
      const pid = daemonPid(this.lab, n);
      const kib = pid === null ? null : statusKib(pid, 'VmRSS');
      if (kib !== null) this.peakKib.set(n, Math.max(kib, this.peakKib.get(n) ?? 0));
    }
  }

  stop(): Record<string, RssFigures> {
    clearInterval(this.timer);
    this.sample();
    const mib = (k: number | null | undefined): number | null => (k === null || k === undefined ? null : Math.round(k / 102.4) / 10);
    return Object.fromEntries(
      this.lab.servers.map((n) => {
        const pid = daemonPid(this.lab, n);
        return [n, { peak_mib: mib(this.peakKib.get(n)), hwm_mib: mib(pid === null ? null : statusKib(pid, 'VmHWM')) }];
      }),
    );
  }
}

/**
 * Module log lines that show a daemon in trouble at scale: its event loop stalled ("did not run for"),
 * heartbeats missed, a peer declared lost or a replication stall, a reintegration that failed.
 */
const TROUBLE = /did not run for|no heartbeat for|Action alone called by heart|stalled|reintegration failed|timed out|did not answer|EMFILE|ENFILE/i;
/** Enough of the log to cover one step on a busy module. */
const LOG_LINES = 20_000;

/** The trouble lines of each server's module log that were not there at the previous call. */
export class TroubleWatch {
  private readonly seen = new Map<string, Set<string>>();

  constructor(
    private readonly lab: Lab,
    private readonly module: string,
  ) {}

  async newLines(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const n of this.lab.servers) {
      const seen = this.seen.get(n) ?? new Set<string>();
      this.seen.set(n, seen);
      const lines = (await moduleLog(this.lab, n, this.module, LOG_LINES).catch(() => '')).split('\n').filter((l) => TROUBLE.test(l));
      out[n] = lines.filter((l) => !seen.has(l));
      for (const l of lines) seen.add(l);
    }
    return out;
  }
}

/** Compiles a C helper of bench/lib with gcc -O2 into `dir` and returns its path. */
export function compileHelper(source: string, dir: string, name: string): string {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, name);
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-Wno-format-truncation', '-o', out, source], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`cannot compile ${source} with gcc: ${err.stderr?.toString().trim() || err.message}`);
  }
  if (!existsSync(out)) throw new Error(`gcc left no ${out}`);
  return out;
}
