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

/**
 * Runs the workloads of `figures` (default all four) `sizes.reps` times each in `dir` (created; must be on
 * the target) and returns median/min/max per figure. Order: small files first (ext4 is slow to create files for a few seconds after
 * fsync storms and large deletions, fuse-perf.md caveat 3), then write latency, fsync IOPS, sequential.
 * A `sync` between workloads so one workload's dirty pages are not written back during the next.
 */
export async function runWorkloads(exec: Exec, helper: string, dir: string, sizes: WorkloadSizes, log: Log, label: string, figures: ReadonlySet<Figure> = new Set(FIGURES)): Promise<WorkloadResults> {
  const must = async (argv: string[], timeoutMs = 120_000): Promise<string> => {
    const r = await exec(argv, timeoutMs);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(-600)}`);
    return r.stdout;
  };
  await must(['mkdir', '-p', dir]);
  const runs: Record<Figure, number[]> = { write_p50_us: [], fsync_iops: [], seq_mib_s: [], files_per_s: [] };
  const note = (f: Figure, v: number, extra = ''): void => {
    runs[f].push(v);
    log(`    ${label} ${f} run ${runs[f].length}/${sizes.reps}: ${f === 'write_p50_us' ? round1(v) : Math.round(v)}${extra}`);
  };

  // files_per_s: a fresh directory per run.
  for (let i = 0; figures.has('files_per_s') && i < sizes.reps; i++) {
    const out = await must([helper, 'smallfiles', join(dir, `small-${i}`), String(sizes.files), '4096'], 600_000);
    const j = JSON.parse(out) as { files: number; seconds: number };
    note('files_per_s', j.files / j.seconds, ` (${j.files} files in ${j.seconds.toFixed(3)} s)`);
  }
  await must(['sync']);

  // write_p50_us and fsync_iops: 4 KiB random writes at QD1 into a laid-out file (psync = plain pwrite()).
  const rand = ['--name=rand', `--filename=${join(dir, 'rand.dat')}`, '--rw=randwrite', '--bs=4k', `--size=${sizes.randFileMib}M`, '--overwrite=1', '--ioengine=psync', '--iodepth=1', '--time_based'];
  for (let i = 0; figures.has('write_p50_us') && i < sizes.reps; i++) {
    const w = await fio(exec, [...rand, `--runtime=${sizes.writeRuntimeS}`], (sizes.writeRuntimeS + 120) * 1000);
    const p50 = w.clat_ns.percentile?.['50.000000'];
    if (p50 === undefined) throw new Error('fio reported no clat p50');
    const p99 = w.clat_ns.percentile?.['99.000000'];
    note('write_p50_us', p50 / 1000, ` (p99 ${p99 === undefined ? '-' : round1(p99 / 1000)} us, ${Math.round(w.iops)} IOPS)`);
  }
  await must(['sync']);
  for (let i = 0; figures.has('fsync_iops') && i < sizes.reps; i++) {
    const w = await fio(exec, [...rand, '--fsync=1', `--runtime=${sizes.fsyncRuntimeS}`], (sizes.fsyncRuntimeS + 120) * 1000);
    note('fsync_iops', w.iops, ` (${Math.round(1e6 / w.iops)} us per write+fsync)`);
  }
  await must(['rm', '-f', join(dir, 'rand.dat')]);
  await must(['sync']);

  // seq_mib_s: lay the file out once (not measured), then overwrite it in 1 MiB writes with a final fsync;
  // fio's runtime includes the end_fsync, so bytes / runtime is the rate to stable storage.
  const seqFile = join(dir, 'seq.dat');
  const seqTimeoutMs = 600_000;
  if (figures.has('seq_mib_s')) await fio(exec, ['--name=layout', `--filename=${seqFile}`, '--rw=write', '--bs=1M', `--size=${sizes.seqFileMib}M`, '--ioengine=psync', '--end_fsync=1'], seqTimeoutMs);
  for (let i = 0; figures.has('seq_mib_s') && i < sizes.reps; i++) {
    const w = await fio(exec, ['--name=seq', `--filename=${seqFile}`, '--rw=write', '--bs=1M', `--size=${sizes.seqFileMib}M`, '--overwrite=1', '--ioengine=psync', '--iodepth=1', '--end_fsync=1'], seqTimeoutMs);
    if (!(w.runtime > 0)) throw new Error(`fio reported a runtime of ${w.runtime} ms for the sequential run`);
    note('seq_mib_s', w.io_bytes / (1024 * 1024) / (w.runtime / 1000), ` (${w.io_bytes / (1024 * 1024)} MiB in ${w.runtime} ms)`);
  }
  await must(['rm', '-rf', dir], 600_000);
  await must(['sync']);

  const out: WorkloadResults = {};
  for (const f of FIGURES) if (runs[f].length) out[f] = result(runs[f], f === 'write_p50_us' ? 1 : 0);
  return out;
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
