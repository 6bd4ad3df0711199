// npm run bench:scale -- [--files N] [--quick] [--per-dir N] [--large N] [--large-mib M] [--keep-lab]
//
// The replication at scale (issue 4: "at least 1,000,000 files and several TB per module; the resync rate
// limited by disk or network, not by us"), on two lab servers with real daemons and a mirror module whose
// <rfs> replicates one directory (bench/lib/repl-stayup.ts):
//   1. the file set is made on node1's underlying directory before the module first starts (C helper);
//   2. first start: node1 prim, node2 second: the full reintegration of every file, timed to SECOND (Ready);
//   3. node2 stopped cleanly, files changed/created/removed/renamed on node1 through the mount, node2 back;
//   4. node2's server killed (SIGKILL, unclean), a few changes, node2 back: the unclean reintegration;
//   5. `stayup rfsverify` on node2 over the whole set: 0 differences expected.
// Each step reports its time, the bytes the primary sent, the peak RSS of stayupd on both servers and the
// module log lines that tell of event-loop stalls or heartbeats missed. See bench/README.md ("Scale").
// Readable lines as it goes; the last line of stdout is one JSON object. Exit 0 when every step gave its
// figures, 1 when one failed, 2 on bad usage. The lab (with the data) goes at the end, on error and on
// Ctrl-C; a later run removes the lab of a run killed with SIGKILL.
import { mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../src/lab/lab.ts';
import { lastReintegrationLine, nextReintegration, rejoinAsSecondary, waitModuleState, type ReintegrationFigures } from '../src/lab/stayup-cluster.ts';
import { cleanUpOnExit, errText, readOptions, removeStaleLabs, say, usageFailure } from './lib/cli.ts';
import { MODULE, ReplicatedModule } from './lib/repl-stayup.ts';
import { compileHelper, RssSampler, TroubleWatch, type RssFigures } from './lib/scale-probe.ts';
import { StayupCluster } from './lib/stayup.ts';

const LAB_PREFIX = 'scalebench-';
/** The replicated directory (each server's private /var/lib/app). */
const SCALE_DIR = '/var/lib/app/scale';
/** Where the baseline copy lands on node2 (removed right after it is timed). */
const BASELINE_DIR = '/var/lib/app/scale-baseline';
const BASELINE_PORT = 7411;
/**
 * The baseline's two ends (python3 in each server): node2 accepts one connection and writes what it gets to
 * stdout (into tar -x); node1 connects, retrying while node2 starts listening, and sends its stdin (tar -c).
 */
const BASELINE_RECV = 'import socket,sys,shutil\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((sys.argv[1],int(sys.argv[2])));s.listen(1);c,_=s.accept();shutil.copyfileobj(c.makefile("rb"),sys.stdout.buffer,1<<20)';
const BASELINE_SEND = 'import socket,sys,shutil,time\nfor i in range(200):\n  try:\n    c=socket.create_connection((sys.argv[1],int(sys.argv[2])));break\n  except OSError:\n    time.sleep(0.05)\nf=c.makefile("wb");shutil.copyfileobj(sys.stdin.buffer,f,1<<20);f.close();c.shutdown(socket.SHUT_WR);c.close()';
const HELPER_SOURCE = fileURLToPath(new URL('./lib/scale-helper.c', import.meta.url));
/** The data set's age: older than the unclean reintegration's 1 h grace, as a module's data usually is. */
const DATA_AGE_S = 7 * 24 * 3600;

/** What the primary logs when its secondary's server is killed (step 4): wanted, not trouble. */
const KILLED_PEER = /no heartbeat for|Action alone called by heart|Replication to \S+ (stalled|interrupted)/;

interface Args {
  files: number;
  perDir: number;
  large: number;
  largeMib: number;
  quick: boolean;
  keepLab: boolean;
}

/** What step 3 (clean stop) and step 4 (crash) change on the primary, through the mount. */
const CLEAN_CHANGES = { change: 1000, create: 100, remove: 100, rename: 50 };
const CRASH_CHANGES = { change: 100, create: 10, remove: 10, rename: 10 };

const USAGE = `usage: npm run bench:scale -- [options]
  --files N        small files (0..4 KiB) in the set (default 1000000; --quick 20000)
  --per-dir N      files per directory (default 1000)
  --large N        large files besides (default 4; --quick 2)
  --large-mib M    size of each large file, MiB (default 256; --quick 16)
  --quick          smoke run: 20000 files, 2 x 16 MiB
  --keep-lab       leave the lab (and its data) for debugging; \`stayup lab down --name NAME\` removes it
`;

const usage = usageFailure('bench:scale', USAGE);

function parseArgs(argv: string[]): Args {
  const given: Partial<Args> = {};
  let quick = false;
  let keepLab = false;
  readOptions(argv, { usage: USAGE, fail: usage }, (o) => {
    switch (o.name) {
      case '--files': given.files = o.int(1000); break;
      case '--per-dir': given.perDir = o.int(1); break;
      case '--large': given.large = o.int(0); break;
      case '--large-mib': given.largeMib = o.int(1); break;
      case '--quick': quick = true; break;
      case '--keep-lab': keepLab = true; break;
      default:
        usage(`unknown option ${o.given}`);
    }
  });
  const defaults = quick ? { files: 20_000, perDir: 1000, large: 2, largeMib: 16 } : { files: 1_000_000, perDir: 1000, large: 4, largeMib: 256 };
  return { ...defaults, ...given, quick, keepLab };
}

function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return '?';
  }
}

/** Bytes used on the file system of / (the lab's data lives there). */
function usedBytes(): number {
  const s = statfsSync('/');
  return (s.blocks - s.bfree) * s.bsize;
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
/** a / b to two decimals, null when either is missing. */
const ratioOf = (a: unknown, b: unknown): number | null => (typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 100) / 100 : null);
const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;

function rssText(r: Record<string, RssFigures>): string {
  return Object.entries(r)
    .map(([n, f]) => `${n} ${f.peak_mib ?? '?'} MiB (VmHWM ${f.hwm_mib ?? '?'})`)
    .join(', ');
}

type Json = Record<string, unknown>;

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('needs root (the lab uses network and mount namespaces, stayup mounts FUSE)');
  const name = `${LAB_PREFIX}${process.pid}`;
  const errors: string[] = [];
  const steps: Json = {};
  const env: Json = { cpus: cpus().length, loadavg_start: loadavg() };
  const usedAtStart = usedBytes();
  let peakUsed = usedAtStart;
  const noteDisk = (): void => {
    peakUsed = Math.max(peakUsed, usedBytes());
  };
  let lab: Lab | undefined;
  let sampler: RssSampler | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      sampler?.stop();
      if (args.keepLab && lab) {
        say(`--keep-lab: lab ${name} left running with its data; remove it with \`stayup lab down --name ${name}\``);
        return;
      }
      const t0 = process.hrtime.bigint();
      const r = await Lab.down(name);
      if (r.found) say(`lab ${name} removed with its data in ${since(t0).toFixed(1)} s${r.warnings.length ? ` (warnings: ${r.warnings.join('; ')})` : ''}`);
    })());
  cleanUpOnExit('bench:scale', cleanup);

  const t0All = Date.now();
  try {
    await removeStaleLabs(LAB_PREFIX);
    lab = await Lab.up({ name, servers: 2 });
    const L = lab;
    const [node1, node2] = [L.servers[0]!, L.servers[1]!];
    say(`lab ${name}: ${L.servers.map((n) => `${n} ${L.addr(n)}`).join(', ')}; load average ${env.loadavg_start}`);
    const helper = compileHelper(HELPER_SOURCE, join(L.stateDir, 'bin'), 'scale-helper');
    const cluster = new StayupCluster(L);
    const mod = new ReplicatedModule(L, cluster, say, { dir: SCALE_DIR, async: 'second' });
    const watch = new TroubleWatch(L, MODULE);
    /**
     * Runs a step with the RSS sampler on and the module logs checked for trouble afterwards. `expected`:
     * trouble lines the step causes on purpose (a killed server's peer sees it go).
     */
    const step = async (key: string, run: () => Promise<Json>, expected?: RegExp): Promise<void> => {
      sampler = new RssSampler(L);
      let figures: Json = {};
      try {
        figures = await run();
      } finally {
        const rss = sampler.stop();
        sampler = undefined;
        noteDisk();
        const lines = await watch.newLines();
        const pick = (want: boolean): Record<string, string[]> => Object.fromEntries(Object.entries(lines).map(([n, ls]) => [n, ls.filter((l) => (expected?.test(l) ?? false) === want)]));
        const trouble = pick(false);
        steps[key] = { ...figures, rss_mib: rss, log_trouble: trouble, ...(expected ? { log_expected: pick(true) } : {}) };
        say(`  ${key}: stayupd RSS peak ${rssText(rss)}`);
        for (const [n, ls] of Object.entries(trouble)) for (const l of ls.slice(0, 10)) say(`  ${key}: ${n} log: ${l.trim()}`);
      }
    };
    const reintegration = (f: ReintegrationFigures): Json => ({ scope: f.scope, files: f.files, bytes_sent: f.bytesSent, duration_ms: f.durationMs });
    /** A resync step's line and figures: `s` from the secondary's start to SECOND (Ready). */
    const resynced = (what: string, s: number, ch: Json, fig: ReintegrationFigures): Json => {
      say(`  changes made in ${String(ch.seconds)} s (${JSON.stringify(ch)}); ${node2} SECOND (Ready) ${s.toFixed(2)} s after ${what}: ${fig.scope}: ${fig.files} files, ${fig.bytesSent} bytes sent (${String(ch.bytes_written)} written) in ${fig.durationMs} ms`);
      return { resync_s: r3(s), changes: ch, reintegration: reintegration(fig) };
    };
    const change = async (c: typeof CLEAN_CHANGES, gen: number): Promise<Json> => {
      const r = await L.exec(node1, [helper, 'change', SCALE_DIR, String(args.files), String(args.perDir), String(c.change), String(c.create), String(c.remove), String(c.rename), String(gen)], { timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`scale-helper change exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
      return JSON.parse(r.stdout) as Json;
    };
    // Minutes per 100k files for the long waits, so a slow machine fails late rather than a big set early.
    const longWaitS = Math.max(600, Math.ceil(args.files / 100));

    // ---- 1. the file set, before the module first starts
    say(`\n== 1. ${args.files} files (0..4 KiB, ${args.perDir} per directory, depth 3) + ${args.large} x ${args.largeMib} MiB, made on ${node1}'s underlying directory`);
    await step('create', async () => {
      for (const n of L.servers) mkdirSync(L.hostPath(n, SCALE_DIR), { recursive: true });
      const t = process.hrtime.bigint();
      // From the client (the host's file system): node1's directory as its server will see it underneath.
      const r = await L.exec('client', [helper, 'create', L.hostPath(node1, SCALE_DIR), String(args.files), String(args.perDir), String(args.large), String(args.largeMib), String(DATA_AGE_S)], { timeoutMs: 3_600_000 });
      if (r.code !== 0) throw new Error(`scale-helper create exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
      const c = JSON.parse(r.stdout) as { files: number; dirs: number; bytes: number; seconds: number };
      const s = since(t);
      say(`  created ${c.files} files in ${c.dirs} directories, ${mib(c.bytes)}, in ${s.toFixed(1)} s (${Math.round(c.files / c.seconds)} files/s, syncfs included)`);
      return { ...c, create_s: r3(s) };
    });

    // ---- 1b. the baseline: the same set copied node1 -> node2 over the lab link with tar through a plain TCP
    // socket (no encryption, no acknowledgement per file): what the disks and the network allow.
    say(`\n== 1b. baseline: tar over a plain TCP connection, ${node1} -> ${node2} (${BASELINE_DIR}, removed after)`);
    await step('baseline_copy', async () => {
      await L.exec(node2, ['mkdir', '-p', BASELINE_DIR], { check: true });
      const t = process.hrtime.bigint();
      const recv = L.exec(node2, ['sh', '-c', `python3 -c '${BASELINE_RECV}' ${L.addr(node2)} ${BASELINE_PORT} | tar -xf - -C ${BASELINE_DIR}`], { timeoutMs: 3_600_000 });
      const send = await L.exec(node1, ['sh', '-c', `tar -cf - -C ${SCALE_DIR} . | python3 -c '${BASELINE_SEND}' ${L.addr(node2)} ${BASELINE_PORT}`], { timeoutMs: 3_600_000 });
      const got = await recv;
      await L.exec(node2, ['sync', '-f', BASELINE_DIR], { check: true });
      const s = since(t);
      if (send.code !== 0 || got.code !== 0) throw new Error(`baseline copy failed: ${(send.stderr || got.stderr).trim()}`);
      const n = await L.exec(node2, ['sh', '-c', `find ${BASELINE_DIR} -type f | wc -l`], { check: true });
      await L.exec(node2, ['rm', '-rf', BASELINE_DIR], { check: true, timeoutMs: 3_600_000 });
      say(`  ${n.stdout.trim()} files copied in ${s.toFixed(1)} s (${Math.round(Number(n.stdout.trim()) / s)} files/s, syncfs included)`);
      return { baseline_copy_s: r3(s), files: Number(n.stdout.trim()) };
    });

    // ---- 2. first start: the full reintegration of the whole set
    say(`\n== 2. first start: ${node1} prim, ${node2} second (full reintegration)`);
    await cluster.setup();
    await mod.install();
    await step('first_sync', async () => {
      await cluster.cliOk(node1, ['prim', '-m', MODULE], 120_000);
      mod.started = true;
      await waitModuleState(L, node1, MODULE, 'ALONE,PRIM', 600);
      const t = process.hrtime.bigint();
      await cluster.cliOk(node2, ['second', '-m', MODULE], 120_000);
      await waitModuleState(L, node2, MODULE, 'SECOND', longWaitS);
      await waitModuleState(L, node1, MODULE, 'PRIM', 600);
      const s = since(t);
      const fig = await nextReintegration(L, node1, MODULE, null, 60_000);
      const st = [await cluster.stateOf(node1, MODULE), await cluster.stateOf(node2, MODULE)];
      const fstype = await mod.checkMounted();
      say(`  SECOND (Ready) after ${s.toFixed(1)} s: ${fig.files} files, ${mib(fig.bytesSent)} sent in ${fig.durationMs} ms (${Math.round(fig.files / (fig.durationMs / 1000))} files/s, ${r1(fig.bytesSent / 1048576 / (fig.durationMs / 1000))} MiB/s); ${st.map((x) => `${x.node} ${x.state} (${x.qualifier})`).join(', ')}; ${SCALE_DIR} is a ${fstype} mount`);
      return { first_sync_s: r3(s), files_per_s: Math.round(fig.files / s), mib_per_s: r1(fig.bytesSent / 1048576 / s), states: st.map((x) => `${x.node} ${x.state}(${x.qualifier})`), reintegration: reintegration(fig) };
    });

    // ---- 3. clean stop of the secondary, changes, back
    say(`\n== 3. ${node2} stopped cleanly; on ${node1} through the mount: ${CLEAN_CHANGES.change} files changed, ${CLEAN_CHANGES.create} created, ${CLEAN_CHANGES.remove} removed, ${CLEAN_CHANGES.rename} renamed; ${node2} back`);
    await step('clean_resync', async () => {
      await cluster.cliOk(node2, ['stop', '-m', MODULE], 300_000);
      await waitModuleState(L, node2, MODULE, 'STOP', 300);
      await waitModuleState(L, node1, MODULE, 'ALONE', 300);
      const ch = await change(CLEAN_CHANGES, 1);
      const prev = await lastReintegrationLine(L, node1, MODULE);
      const t = process.hrtime.bigint();
      await cluster.cliOk(node2, ['start', '-m', MODULE], 120_000);
      await waitModuleState(L, node2, MODULE, 'SECOND', longWaitS);
      await waitModuleState(L, node1, MODULE, 'PRIM', 600);
      const s = since(t);
      return resynced('its start', s, ch, await nextReintegration(L, node1, MODULE, prev, 60_000));
    });

    // ---- 4. the secondary's server killed (unclean), a few changes, back
    say(`\n== 4. ${node2}'s server killed (SIGKILL); on ${node1}: ${CRASH_CHANGES.change} changed, ${CRASH_CHANGES.create} created, ${CRASH_CHANGES.remove} removed, ${CRASH_CHANGES.rename} renamed; ${node2} boots, its daemon and module start`);
    await step('unclean_resync', async () => {
      await L.killServer(node2);
      await waitModuleState(L, node1, MODULE, 'ALONE', 300);
      const ch = await change(CRASH_CHANGES, 2);
      const t = process.hrtime.bigint();
      const fig = await rejoinAsSecondary(L, node2, MODULE, node1, longWaitS);
      return resynced('its boot began (daemon start included)', since(t), ch, fig);
    }, KILLED_PEER);

    // ---- 5. rfsverify over the whole set
    say(`\n== 5. stayup rfsverify -m ${MODULE} on ${node2}`);
    await step('rfsverify', async () => {
      const t = process.hrtime.bigint();
      // Exit 1 (some differ) or anything else fails the step; the summary line gives the figures.
      const out = await cluster.cliOk(node2, ['rfsverify', '-m', MODULE], 24 * 3_600_000);
      const s = since(t);
      const m = /: (\d+) files, (\d+) directories compared with \S+ in (.+?); (\d+) paths? differ;/.exec(out);
      if (!m) throw new Error(`rfsverify: no summary line in: ${out.slice(-1500)}`);
      // The CLI's duration: "276 ms", "2.1 s", "5 min 47 s" or "2 h 3 min".
      const unitMs: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000 };
      const compareMs = Math.round([...m[3]!.matchAll(/([\d.]+) (ms|s|min|h)\b/g)].reduce((sum, [, n, u]) => sum + Number(n) * unitMs[u!]!, 0));
      say(`  rfsverify after ${s.toFixed(1)} s: ${m[1]} files, ${m[2]} directories compared in ${(compareMs / 1000).toFixed(1)} s; ${m[4]} paths differ`);
      return { verify_s: r3(s), files: Number(m[1]), directories: Number(m[2]), differing: Number(m[4]), compare_ms: compareMs };
    });

    await mod.stop().catch((e: unknown) => say(`  stop: ${errText(e).split('\n')[0]}`));
  } catch (e) {
    errors.push(errText(e));
    process.stderr.write(`bench:scale: ${errText(e)}\n`);
  } finally {
    await cleanup();
  }
  env.loadavg_end = loadavg();
  const usedAfter = usedBytes();
  const num = (k: string, f: string): unknown => (steps[k] as Json | undefined)?.[f] ?? null;
  const rss = (k: string): unknown => (steps[k] as Json | undefined)?.rss_mib ?? null;
  const result = {
    bench: 'scale',
    files: args.files,
    create_s: num('create', 'create_s'),
    first_sync_s: num('first_sync', 'first_sync_s'),
    first_sync_files_per_s: num('first_sync', 'files_per_s'),
    first_sync_mib_per_s: num('first_sync', 'mib_per_s'),
    baseline_copy_s: num('baseline_copy', 'baseline_copy_s'),
    first_sync_over_baseline: ratioOf(num('first_sync', 'first_sync_s'), num('baseline_copy', 'baseline_copy_s')),
    clean_resync_s: num('clean_resync', 'resync_s'),
    unclean_resync_s: num('unclean_resync', 'resync_s'),
    rfsverify_s: num('rfsverify', 'verify_s'),
    rfsverify_differing: num('rfsverify', 'differing'),
    rss_mib: { first_sync: rss('first_sync'), clean_resync: rss('clean_resync'), unclean_resync: rss('unclean_resync'), rfsverify: rss('rfsverify') },
    steps,
    params: { ...args, clean_changes: CLEAN_CHANGES, crash_changes: CRASH_CHANGES, data_age_s: DATA_AGE_S },
    disk: { peak_gib_used_by_run: r1((peakUsed - usedAtStart) / 2 ** 30), left_after_gib: r1((usedAfter - usedAtStart) / 2 ** 30) },
    env,
    duration_s: Math.round((Date.now() - t0All) / 1000),
    errors,
  };
  say(`first sync ÷ baseline (tar over plain TCP, same lab, same run): ${String(result.first_sync_over_baseline)}`);
  say(`\ndone in ${result.duration_s} s${errors.length ? `, ${errors.length} error(s)` : ''}; load average ${env.loadavg_start} -> ${env.loadavg_end}; disk: ${result.disk.peak_gib_used_by_run} GiB used at the peak, ${result.disk.left_after_gib} GiB left after`);
  say(JSON.stringify(result));
  return errors.length ? 1 : 0;
}

process.exitCode = await main();
