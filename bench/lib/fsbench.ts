// The four file-system workloads of the replication bench, identical for every target (a plain directory,
// a GlusterFS mount, a stayup replicated directory): fio from Debian for the three I/O figures, the small
// C helper (fsbench-helper.c) for the small-file loop. Method and caveats: shared/reference/fuse-perf.md.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecResult } from '../../src/lab/lab.ts';
import { quantile, round1 } from './stats.ts';

export const HELPER_SOURCE = fileURLToPath(new URL('./fsbench-helper.c', import.meta.url));

/** Runs argv inside the server that uses the target (lab.exec on node1). */
export type Exec = (argv: string[], timeoutMs: number) => Promise<ExecResult>;
export type Log = (line: string) => void;

export interface WorkloadSizes {
  /** Repetitions of each workload; the figure is the median. */
  reps: number;
  /** 4 KiB randwrite QD1 without fsync, per run. */
  writeRuntimeS: number;
  /** 4 KiB randwrite + fsync QD1, per run. */
  fsyncRuntimeS: number;
  /** The file the two random-write workloads write into (laid out first, so no run allocates blocks). */
  randFileMib: number;
  /** The pre-laid-out file the sequential 1 MiB overwrite rewrites. */
  seqFileMib: number;
  /** Files per small-file run. */
  files: number;
}

export const FULL_SIZES: WorkloadSizes = { reps: 3, writeRuntimeS: 5, fsyncRuntimeS: 8, randFileMib: 64, seqFileMib: 256, files: 2000 };
export const QUICK_SIZES: WorkloadSizes = { reps: 1, writeRuntimeS: 2, fsyncRuntimeS: 3, randFileMib: 16, seqFileMib: 64, files: 300 };

export const FIGURES = ['write_p50_us', 'fsync_iops', 'seq_mib_s', 'files_per_s'] as const;
export type Figure = (typeof FIGURES)[number];

/** What each figure is, for the readable output. */
export const FIGURE_TEXT: Record<Figure, string> = {
  write_p50_us: '4 KiB write() p50, QD1, no fsync (us, lower is better)',
  fsync_iops: '4 KiB write+fsync IOPS, QD1',
  seq_mib_s: '1 MiB sequential overwrite + end fsync (MiB/s)',
  files_per_s: '4 KiB files created+written+fsynced+closed per s',
};

export interface FigureResult {
  /** Median of the runs (the reported figure). */
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** The figures of the workloads that ran (`--workloads` may leave some out). */
export type WorkloadResults = Partial<Record<Figure, FigureResult>>;

/** Compiles the small-file helper into dir (once per bench run); returns the binary's path. */
export function buildHelper(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'fsbench-helper');
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', out, HELPER_SOURCE], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`cannot compile ${HELPER_SOURCE} with gcc: ${err.stderr?.toString().trim() || err.message}`);
  }
  if (!existsSync(out)) throw new Error(`gcc left no ${out}`);
  return out;
}

interface FioWrite {
  io_bytes: number;
  /** ms, including end_fsync (checked: an end_fsync run reports a longer runtime for the same bytes). */
  runtime: number;
  iops: number;
  clat_ns: { percentile?: Record<string, number> };
}

/** Runs fio with JSON output inside the target's server and returns its one job's write side. */
async function fio(exec: Exec, args: string[], timeoutMs: number): Promise<FioWrite> {
  const r = await exec(['fio', '--output-format=json', ...args], timeoutMs);
  if (r.code !== 0) throw new Error(`fio ${args.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(-600)}`);
  // fio may print notes before the JSON document.
  const start = r.stdout.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON: ${r.stdout.slice(0, 300)}`);
  const j = JSON.parse(r.stdout.slice(start)) as { jobs?: Array<{ error?: number; write?: FioWrite }> };
  const job = j.jobs?.[0];
  if (!job?.write) throw new Error('fio JSON has no job');
  if (job.error) throw new Error(`fio job error ${job.error}: ${r.stderr.trim().slice(-300)}`);
  return job.write;
}

/** Median, min and max of the raw runs, each rounded once (rounding before the median would shift it). */
function result(runs: number[], digits: 0 | 1): FigureResult {
  const sorted = [...runs].sort((a, b) => a - b);
  const r = (x: number): number => (digits === 1 ? round1(x) : Math.round(x));
  return { median: r(quantile(sorted, 0.5)), min: r(sorted[0]!), max: r(sorted[sorted.length - 1]!), runs: runs.map(r) };
}

/** The order the workloads run in: small files first (ext4 is slow to create files for a few seconds after fsync
 * storms and large deletions, fuse-perf.md caveat 3), then write latency, fsync IOPS, sequential. */
export const WORKLOAD_ORDER: readonly Figure[] = ['files_per_s', 'write_p50_us', 'fsync_iops', 'seq_mib_s'];

/**
 * The workloads of one target (a directory on it, created), one repetition at a time, so that several
 * targets can take turns (see takeTurns): each figure's runs are kept, and results() gives median/min/max.
 */
export class TargetWorkloads {
  private readonly runs: Record<Figure, number[]> = { write_p50_us: [], fsync_iops: [], seq_mib_s: [], files_per_s: [] };
  private laidOut = false;
  /** Why this target stopped (its figures are then not reported), or null. */
  failed: string | null = null;

  constructor(
    private readonly exec: Exec,
    private readonly helper: string,
    readonly dir: string,
    private readonly sizes: WorkloadSizes,
    private readonly log: Log,
    readonly label: string,
  ) {}

  async prepare(): Promise<void> {
    await this.must(['mkdir', '-p', this.dir]);
  }

  /** One repetition of the workload of figure f. */
  async runOnce(f: Figure): Promise<void> {
    const { sizes, dir } = this;
    const n = this.runs[f].length + 1;
    if (f === 'files_per_s') {
      // A fresh directory per run.
      const out = await this.must([this.helper, 'smallfiles', join(dir, `small-${n}`), String(sizes.files), '4096'], 600_000);
      const j = JSON.parse(out) as { files: number; seconds: number };
      this.note(f, j.files / j.seconds, ` (${j.files} files in ${j.seconds.toFixed(3)} s)`);
    } else if (f === 'write_p50_us' || f === 'fsync_iops') {
      // 4 KiB random writes at QD1 into a laid-out file (psync = plain pwrite()).
      const rand = ['--name=rand', `--filename=${join(dir, 'rand.dat')}`, '--rw=randwrite', '--bs=4k', `--size=${sizes.randFileMib}M`, '--overwrite=1', '--ioengine=psync', '--iodepth=1', '--time_based'];
      if (f === 'write_p50_us') {
        const w = await fio(this.exec, [...rand, `--runtime=${sizes.writeRuntimeS}`], (sizes.writeRuntimeS + 120) * 1000);
        const p50 = w.clat_ns.percentile?.['50.000000'];
        if (p50 === undefined) throw new Error('fio reported no clat p50');
        const p99 = w.clat_ns.percentile?.['99.000000'];
        this.note(f, p50 / 1000, ` (p99 ${p99 === undefined ? '-' : round1(p99 / 1000)} us, ${Math.round(w.iops)} IOPS)`);
      } else {
        const w = await fio(this.exec, [...rand, '--fsync=1', `--runtime=${sizes.fsyncRuntimeS}`], (sizes.fsyncRuntimeS + 120) * 1000);
        this.note(f, w.iops, ` (${Math.round(1e6 / w.iops)} us per write+fsync)`);
      }
    } else {
      // Lay the file out once (not measured), then overwrite it in 1 MiB writes with a final fsync; fio's
      // runtime includes the end_fsync, so bytes / runtime is the rate to stable storage.
      const seq = ['--filename', join(dir, 'seq.dat'), '--rw=write', '--bs=1M', `--size=${sizes.seqFileMib}M`, '--ioengine=psync', '--end_fsync=1'];
      if (!this.laidOut) await fio(this.exec, ['--name=layout', ...seq], SEQ_TIMEOUT_MS);
      this.laidOut = true;
      const w = await fio(this.exec, ['--name=seq', ...seq, '--overwrite=1', '--iodepth=1'], SEQ_TIMEOUT_MS);
      if (!(w.runtime > 0)) throw new Error(`fio reported a runtime of ${w.runtime} ms for the sequential run`);
      this.note(f, w.io_bytes / (1024 * 1024) / (w.runtime / 1000), ` (${w.io_bytes / (1024 * 1024)} MiB in ${w.runtime} ms)`);
    }
  }

  /** Removes the directory's contents of the workloads. */
  async finish(): Promise<void> {
    await this.must(['rm', '-rf', this.dir], 600_000);
  }

  results(): WorkloadResults {
    const out: WorkloadResults = {};
    for (const f of FIGURES) if (this.runs[f].length) out[f] = result(this.runs[f], f === 'write_p50_us' ? 1 : 0);
    return out;
  }

  private note(f: Figure, v: number, extra: string): void {
    this.runs[f].push(v);
    // A target compared with several GlusterFS configurations (--gluster-tls) runs a figure more than --reps times.
    const n = this.runs[f].length;
    this.log(`    ${this.label} ${f} run ${n}${n <= this.sizes.reps ? `/${this.sizes.reps}` : ''}: ${f === 'write_p50_us' ? round1(v) : Math.round(v)}${extra}`);
  }

  private async must(argv: string[], timeoutMs = 120_000): Promise<string> {
    const r = await this.exec(argv, timeoutMs);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(-600)}`);
    return r.stdout;
  }
}

const SEQ_TIMEOUT_MS = 600_000;

/**
 * Runs `figures` on `targets` taking turns: per figure (in WORKLOAD_ORDER), per repetition, each target once,
 * after a `sync` (the previous run's dirty pages are not written back during the next). On a machine others
 * share, the load then changes alike for every target, and their figures compare. A target whose run fails
 * gets `failed` set and leaves the rotation.
 */
export async function takeTurns(exec: Exec, targets: readonly TargetWorkloads[], figures: ReadonlySet<Figure>, reps: number): Promise<void> {
  for (const f of WORKLOAD_ORDER) {
    if (!figures.has(f)) continue;
    for (let i = 0; i < reps; i++) {
      for (const t of targets) {
        if (t.failed) continue;
        try {
          const r = await exec(['sync'], 120_000);
          if (r.code !== 0) throw new Error(`sync exited ${r.code}`);
          await t.runOnce(f);
        } catch (e) {
          t.failed = e instanceof Error ? e.message : String(e);
        }
      }
    }
  }
}

/** "median (min-max)" for the readable table. */
export function fmtFigure(r: FigureResult | undefined): string {
  if (!r) return '-';
  return r.runs.length > 1 ? `${r.median} (${r.min}-${r.max})` : `${r.median}`;
}

/** The medians, as the JSON line carries them (null: the workload did not run). */
export function medians(r: WorkloadResults): Record<Figure, number | null> {
  return Object.fromEntries(FIGURES.map((f) => [f, r[f]?.median ?? null])) as Record<Figure, number | null>;
}
