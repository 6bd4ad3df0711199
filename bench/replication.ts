// npm run bench:replication -- [--targets local,stayup,glusterfs] [--workloads LIST] [--reps N] [--quick]
//                                [--keep-lab] [--async second|none] [--nbremconn N]
//
// File-system cost of replication, in one run on two lab servers: the same four workloads on a plain
// directory of node1 (local), a stayup mirror module's replicated directory (stayup, node1 primary, node2
// secondary) and a GlusterFS replica 2 volume across the two servers (glusterfs), plus stayup's resync
// rate. See bench/README.md. Readable lines as it goes; the last line of stdout is one JSON object.
// Needs root (namespaces, mounts). Exit 0 when every requested target gave its figures, 1 when one failed
// (its entry is {"error": ...}), 2 on bad usage.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../src/lab/lab.ts';
import { errText, readOptions, removeStaleLabs, say, usageFailure } from './lib/cli.ts';
import { buildHelper, FIGURE_TEXT, FIGURES, fmtFigure, FULL_SIZES, medians, QUICK_SIZES, takeTurns, TargetWorkloads, type Exec, type Figure, type FigureResult, type WorkloadResults, type WorkloadSizes } from './lib/fsbench.ts';
import { GLUSTER_CONFIGS, GLUSTER_MOUNT, GlusterVolume, type GlusterConfig, type GlusterPlacement } from './lib/gluster.ts';
import { FULL_RESYNC, MODULE, QUICK_RESYNC, REPL_DIR, ReplicatedModule, type ResyncResult, type ResyncSizes, type RfsAsync } from './lib/repl-stayup.ts';
import { StayupCluster } from './lib/stayup.ts';

const TARGETS = ['local', 'stayup', 'glusterfs'] as const;
type Target = (typeof TARGETS)[number];
const LAB_PREFIX = 'replbench-';
/** The local target: a plain directory on node1's private /var/lib/app (the same disk as the others). */
const LOCAL_DIR = '/var/lib/app/local-bench';
const REPO = fileURLToPath(new URL('..', import.meta.url));

/**
 * The goal of the replication work, stayup against GlusterFS replica 2 on the same machine: write latency
 * at most half, fsync IOPS and files/s at least double, sequential at least equal.
 */
const GOAL: Record<Figure, { factor: number; better: 'lower' | 'higher' }> = {
  write_p50_us: { factor: 0.5, better: 'lower' },
  fsync_iops: { factor: 2, better: 'higher' },
  seq_mib_s: { factor: 1, better: 'higher' },
  files_per_s: { factor: 2, better: 'higher' },
};

/**
 * Which GlusterFS configuration each compared figure comes from, as in the issue's baseline
 * (shared/reference/fuse-perf.md): write() latency with write-behind off, since with it on a write()
 * returns before any brick has the data while stayup's returns after the secondary acknowledged it; the
 * other three with the defaults (GlusterFS's fastest), where an fsync makes both equally durable.
 */
const GLUSTER_FIGURE_CONFIG: Record<Figure, GlusterConfig> = {
  write_p50_us: 'write_behind_off',
  fsync_iops: 'defaults',
  seq_mib_s: 'defaults',
  files_per_s: 'defaults',
};
/**
 * With --gluster-tls, the same figures are also compared with GlusterFS's I/O path encrypted (client.ssl and
 * server.ssl on), as stayup's stream always is: a second baseline, reported beside the first.
 */
const GLUSTER_TLS_FIGURE_CONFIG: Record<Figure, GlusterConfig> = {
  write_p50_us: 'tls_write_behind_off',
  fsync_iops: 'tls_defaults',
  seq_mib_s: 'tls_defaults',
  files_per_s: 'tls_defaults',
};
const CONFIG_TEXT: Record<GlusterConfig, string> = {
  defaults: 'defaults (performance.write-behind on, performance.flush-behind on)',
  write_behind_off: 'performance.write-behind off, performance.flush-behind off',
  tls_defaults: 'defaults with client.ssl and server.ssl on',
  tls_write_behind_off: 'performance.write-behind off, performance.flush-behind off, client.ssl and server.ssl on',
};

/** What --workloads can name: the four figures' workloads and stayup's resync. */
const WORKLOADS = [...FIGURES, 'resync'] as const;
type Workload = (typeof WORKLOADS)[number];

interface Args {
  targets: Target[];
  workloads: Set<Workload>;
  reps?: number;
  quick: boolean;
  keepLab: boolean;
  async: RfsAsync;
  nbremconn: number;
  glusterPlacement: GlusterPlacement;
  glusterTls: boolean;
}

const USAGE = `usage: npm run bench:replication -- [options]
  --targets LIST     comma-separated, of local, stayup, glusterfs (default: all three)
  --workloads LIST   comma-separated, of ${WORKLOADS.join(', ')} (default: all); the others are not run
  --reps N           repetitions of each workload; the figure is the median (default 3, --quick 1)
  --quick            smaller sizes for a smoke run (2 s / 3 s fio runs, 64 MiB sequential, 300 files, 128 MiB resync set)
  --keep-lab         leave the lab (and GlusterFS, stayup) running for debugging; \`stayup lab down --name NAME\` removes it
  --async MODE       stayup <rfs async="second|none"> (default second)
  --nbremconn N      stayup <rfs nbremconn="N">: TCP connections carrying the replication stream, 1..64 (default 1)
  --gluster-placement P   per-server (default: one glusterd per lab server, both bricks on node1 only if that
                     fails) or one-server (both bricks on node1, as in shared/reference/fuse-perf.md)
  --gluster-tls      also measure GlusterFS with its I/O path encrypted (client.ssl, server.ssl) and compare
                     stayup with that too (a second baseline: stayup's stream is always TLS)
`;

const usage: (msg: string) => never = usageFailure('bench:replication', USAGE);

function parseArgs(argv: string[]): Args {
  const a: Args = { targets: [...TARGETS], workloads: new Set(WORKLOADS), quick: false, keepLab: false, async: 'second', nbremconn: 1, glusterPlacement: 'per-server', glusterTls: false };
  readOptions(argv, { usage: USAGE, fail: usage }, (o) => {
    switch (o.name) {
      case '--targets': {
        const list = o.list(TARGETS);
        // Always in the same order, whatever the order given.
        a.targets = TARGETS.filter((t) => list.includes(t));
        break;
      }
      case '--workloads':
        a.workloads = new Set(o.list(WORKLOADS));
        break;
      case '--reps':
        a.reps = o.int(1);
        break;
      case '--quick':
        a.quick = true;
        break;
      case '--keep-lab':
        a.keepLab = true;
        break;
      case '--async': {
        const v = o.value();
        if (v !== 'second' && v !== 'none') usage('--async is second or none');
        a.async = v;
        break;
      }
      case '--nbremconn':
        a.nbremconn = o.int(1, 64);
        break;
      case '--gluster-tls':
        a.glusterTls = true;
        break;
      case '--gluster-placement': {
        const v = o.value();
        if (v !== 'per-server' && v !== 'one-server') usage('--gluster-placement is per-server or one-server');
        a.glusterPlacement = v;
        break;
      }
      default:
        usage(`unknown option ${o.given}`);
    }
  });
  return a;
}

/** The tools the requested targets need; missing Debian packages are installed with `scripts/setup.sh --bench`. */
function ensureTools(targets: Target[]): void {
  const have = (bins: string[]): boolean => bins.some((b) => existsSync(b));
  const need: Array<{ bins: string[]; what: string }> = [{ bins: ['/usr/bin/fio'], what: 'fio' }];
  if (targets.includes('glusterfs')) {
    need.push({ bins: ['/usr/sbin/glusterd'], what: 'glusterd' }, { bins: ['/usr/sbin/gluster'], what: 'gluster' }, { bins: ['/sbin/mount.glusterfs', '/usr/sbin/mount.glusterfs'], what: 'mount.glusterfs' });
  }
  const missing = need.filter((n) => !have(n.bins));
  if (missing.length) {
    say(`installing the bench packages (missing: ${missing.map((m) => m.what).join(', ')}): scripts/setup.sh --bench`);
    // Its output goes to stderr: stdout's last line is the JSON result.
    const r = spawnSync('bash', [join(REPO, 'scripts', 'setup.sh'), '--bench'], { stdio: ['ignore', 2, 2] });
    if (r.status !== 0) usage(`scripts/setup.sh --bench failed (exit ${r.status})`);
    const still = need.filter((n) => !have(n.bins));
    if (still.length) usage(`still missing after scripts/setup.sh --bench: ${still.map((m) => m.what).join(', ')}`);
  }
  if (spawnSync('gcc', ['--version'], { stdio: 'ignore' }).status !== 0) usage('gcc is missing (Debian package gcc): the small-file helper is compiled at bench time');
}

function toolVersion(cmd: string, args: string[], re: RegExp): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? null;
}

function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return '?';
  }
}

/** a / b rounded to 0.01, or null. */
function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || b === 0) return null;
  return Math.round((a / b) * 100) / 100;
}

type Json = Record<string, unknown>;

function targetJson(r: WorkloadResults): Json {
  return {
    ...medians(r),
    min_max: Object.fromEntries(FIGURES.map((f) => [f, r[f] ? [r[f].min, r[f].max] : null])),
    runs: Object.fromEntries(FIGURES.map((f) => [f, r[f]?.runs ?? null])),
  };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('needs root (the lab uses network and mount namespaces, GlusterFS and stayup mount file systems)');
  ensureTools(args.targets);
  const sizes: WorkloadSizes = { ...(args.quick ? QUICK_SIZES : FULL_SIZES), ...(args.reps ? { reps: args.reps } : {}) };
  const resyncSizes: ResyncSizes = args.quick ? QUICK_RESYNC : FULL_RESYNC;
  const figures = new Set(FIGURES.filter((f) => args.workloads.has(f)));

  const errors: string[] = [];
  const name = `${LAB_PREFIX}${process.pid}`;
  let lab: Lab | undefined;
  let gluster: GlusterVolume | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      if (args.keepLab && lab) {
        say(`--keep-lab: lab ${name} left running${gluster ? `, GlusterFS volume mounted at ${GLUSTER_MOUNT} on node1` : ''}; remove it with \`stayup lab down --name ${name}\``);
        return;
      }
      if (gluster) {
        const w = await gluster.teardown().catch((e: unknown) => [errText(e)]);
        say(`glusterfs: torn down (client unmounted, volume stopped and deleted, glusterd stopped by PID)${w.length ? `; warnings: ${w.join('; ')}` : ''}`);
        gluster = undefined;
      }
      const r = await Lab.down(name);
      if (r.found) say(`lab ${name} removed${r.warnings.length ? ` (warnings: ${r.warnings.join('; ')})` : ''}`);
    })());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench:replication: ${sig}, removing the lab\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`bench:replication: ${errText(e)}\n`);
    void cleanup().finally(() => process.exit(1));
  });

  const t0 = Date.now();
  const env: Json = {
    kernel: toolVersion('uname', ['-r'], /(\S+)/),
    cpus: (await import('node:os')).cpus().length,
    fio: toolVersion('fio', ['--version'], /fio-(\S+)/),
    glusterfs: args.targets.includes('glusterfs') ? toolVersion('glusterfs', ['--version'], /glusterfs (\S+)/) : null,
    loadavg_start: loadavg(),
  };
  const out: Partial<Record<Target, Json>> = {};
  const res: Partial<Record<Target, WorkloadResults>> = {};
  const glusterRes: Partial<Record<GlusterConfig, WorkloadResults>> = {};
  /** The compared figures against GlusterFS with TLS (--gluster-tls). */
  let glusterTlsRes: WorkloadResults | undefined;
  let resync: ResyncResult | undefined;

  try {
    await removeStaleLabs(LAB_PREFIX);
    lab = await Lab.up({ name, servers: 2 });
    const L = lab;
    const node1 = L.servers[0]!;
    say(`lab ${name}: ${L.servers.map((n) => `${n} ${L.addr(n)}`).join(', ')}; load average ${env.loadavg_start}`);
    say(`workloads on ${node1}, ${sizes.reps} run(s) each, median reported: ${sizes.files} small files; ${sizes.writeRuntimeS} s 4 KiB randwrite (${sizes.randFileMib} MiB file); ${sizes.fsyncRuntimeS} s 4 KiB randwrite+fsync; ${sizes.seqFileMib} MiB 1 MiB overwrite + end fsync`);
    if (args.workloads.size < WORKLOADS.length) say(`--workloads: only ${[...args.workloads].join(', ')}`);
    const helper = buildHelper(join(L.stateDir, 'bin'));
    const exec: Exec = (argv, timeoutMs) => L.exec(node1, argv, { timeoutMs });

    // Every target is set up first, then the workloads take turns on them (takeTurns): the load of a machine
    // others share changes during a run, and measuring the targets one after the other compared their loads.
    const turns: Partial<Record<Target | GlusterConfig, TargetWorkloads>> = {};
    const workloadsOf = (key: Target | GlusterConfig, dir: string, label: string): TargetWorkloads => (turns[key] = new TargetWorkloads(exec, helper, dir, sizes, say, label));
    const failTarget = (t: Target, e: unknown): void => {
      errors.push(`${t}: ${errText(e)}`);
      out[t] = { error: errText(e) };
      say(`  ${t}: FAILED: ${errText(e)}`);
    };

    // ---- local
    if (args.targets.includes('local')) {
      say(`\n== local: plain directory ${LOCAL_DIR} on ${node1}`);
      try {
        await workloadsOf('local', join(LOCAL_DIR, 'work'), 'local').prepare();
      } catch (e) {
        failTarget('local', e);
        delete turns.local;
      }
    }

    // ---- stayup
    const cluster = new StayupCluster(L);
    const mod = new ReplicatedModule(L, cluster, say, { dir: REPL_DIR, async: args.async, nbremconn: args.nbremconn });
    if (args.targets.includes('stayup')) {
      say(`\n== stayup: mirror module ${MODULE}, <rfs async="${args.async}" nbremconn="${args.nbremconn}"><replicated dir="${REPL_DIR}"/></rfs>, PRIM ${node1}, SECOND ${L.servers[1]}`);
      try {
        await cluster.setup();
        say('  stayup: daemons running, cluster.xml pushed to both nodes');
        const installed = (await mod.install()).split('\n').find((x) => /installed/i.test(x))?.trim();
        say(`  stayup: installed on ${L.servers.join(', ')} with \`stayup -H "*" module install\`${installed ? ` (${installed})` : ''}`);
        await mod.start();
        say(`  stayup: ${node1} PRIM (Ready), ${L.servers[1]} SECOND (Ready); ${REPL_DIR} on ${node1} is a ${await mod.checkMounted()} mount`);
        await workloadsOf('stayup', join(REPL_DIR, 'work'), 'stayup').prepare();
      } catch (e) {
        failTarget('stayup', e);
        delete turns.stayup;
      }
    }

    // ---- glusterfs
    const configsUsed: Partial<Record<GlusterConfig, Record<string, string>>> = {};
    let setupFailure: string | undefined;
    if (args.targets.includes('glusterfs')) {
      say(`\n== glusterfs: replica 2 volume, FUSE client on ${node1} at ${GLUSTER_MOUNT}`);
      const placements: GlusterPlacement[] = args.glusterPlacement === 'per-server' ? ['per-server', 'one-server'] : ['one-server'];
      const setupFailures: string[] = [];
      for (const placement of placements) {
        const g = new GlusterVolume(L, placement, say, args.glusterTls);
        gluster = g;
        try {
          await g.setup();
          break;
        } catch (e) {
          setupFailures.push(`${placement}: ${errText(e).split('\n')[0]}`);
          const w = await g.teardown();
          gluster = undefined;
          say(`  glusterfs ${placement} setup FAILED: ${errText(e).split('\n')[0]}${w.length ? ` (teardown: ${w.join('; ')})` : ''}`);
        }
      }
      setupFailure = setupFailures[0];
      if (!gluster) failTarget('glusterfs', new Error(`no GlusterFS volume could be set up: ${setupFailures.join('; ')}`));
      else say(`  glusterfs ${await gluster.version()}: ${gluster.describe()}${gluster.placement === 'one-server' ? (setupFailure ? ` (the per-server setup failed: ${setupFailure})` : ' (--gluster-placement one-server)') : ''}`);
    }

    // ---- the workloads: with each GlusterFS configuration in turn, the figures compared against it taking
    // turns on every target, then its other figures on GlusterFS alone (the JSON reports both configurations).
    const compared = (config: GlusterConfig): Set<Figure> => new Set([...figures].filter((f) => GLUSTER_FIGURE_CONFIG[f] === config || (args.glusterTls && GLUSTER_TLS_FIGURE_CONFIG[f] === config)));
    const phases: GlusterConfig[] = gluster ? ['write_behind_off', 'defaults', ...(args.glusterTls ? (['tls_write_behind_off', 'tls_defaults'] as const) : [])] : [];
    const ours = (): TargetWorkloads[] => [turns.local, turns.stayup].filter((t): t is TargetWorkloads => t !== undefined);
    const done = new Set<Figure>();
    for (const config of phases) {
      const g: GlusterVolume = gluster!;
      try {
        configsUsed[config] = await g.configure(config);
        say(`\n  glusterfs ${config}: ${Object.entries(configsUsed[config]!).map(([k, v]) => `${k}=${v}`).join(', ')}`);
        const gt = workloadsOf(config, join(GLUSTER_MOUNT, `work-${config}`), `glusterfs ${config}`);
        await gt.prepare();
        const mine = compared(config);
        say(`== workloads, targets taking turns (glusterfs ${config}): ${[...mine].join(', ') || 'none'}`);
        await takeTurns(exec, [...ours(), gt], mine, sizes.reps);
        for (const f of mine) done.add(f);
        await takeTurns(exec, [gt], new Set([...figures].filter((f) => !mine.has(f))), sizes.reps);
        if (gt.failed) throw new Error(gt.failed);
        await gt.finish();
      } catch (e) {
        failTarget('glusterfs', e);
        break;
      }
    }
    // Without GlusterFS (not asked for, or failed): the rest on the other targets.
    const rest = new Set([...figures].filter((f) => !done.has(f)));
    if (rest.size && ours().length) {
      say(`\n== workloads, targets taking turns: ${[...rest].join(', ')}`);
      await takeTurns(exec, ours(), rest, sizes.reps);
    }
    for (const t of ['local', 'stayup'] as const) {
      const w = turns[t];
      if (!w) continue;
      if (w.failed) failTarget(t, new Error(w.failed));
      else {
        res[t] = w.results();
        await w.finish().catch((e: unknown) => say(`  ${t}: clean-up: ${errText(e)}`));
      }
    }
    if (res.local) out.local = { dir: LOCAL_DIR, ...targetJson(res.local) };
    if (res.stayup) out.stayup = { dir: REPL_DIR, rfs_async: args.async, rfs_nbremconn: args.nbremconn, ...targetJson(res.stayup), resync_mib_s: null, resync_bytes_sent: null };
    if (gluster && !out.glusterfs?.error) {
      for (const c of phases) if (turns[c]) glusterRes[c] = turns[c]!.results();
      const comparedRes = Object.fromEntries(FIGURES.map((f) => [f, glusterRes[GLUSTER_FIGURE_CONFIG[f]]?.[f]])) as WorkloadResults;
      res.glusterfs = comparedRes;
      out.glusterfs = {
        ...medians(comparedRes),
        options: Object.fromEntries(FIGURES.map((f) => [f, CONFIG_TEXT[GLUSTER_FIGURE_CONFIG[f]]])),
        placement:
          gluster.placement === 'per-server'
            ? 'one glusterd per lab server, one brick each'
            : `both bricks on node1 (one glusterd): ${args.glusterPlacement === 'one-server' ? 'asked for with --gluster-placement one-server' : `the per-server setup failed (${setupFailure ?? '?'})`}`,
        bricks: gluster.bricks,
        configs: Object.fromEntries((Object.keys(glusterRes) as GlusterConfig[]).map((c) => [c, { options_used: configsUsed[c], ...targetJson(glusterRes[c]!) }])),
      };
      if (args.glusterTls) {
        const tlsRes = Object.fromEntries(FIGURES.map((f) => [f, glusterRes[GLUSTER_TLS_FIGURE_CONFIG[f]]?.[f]])) as WorkloadResults;
        if (FIGURES.some((f) => tlsRes[f])) glusterTlsRes = tlsRes;
      }
    }

    // ---- stayup's resync, after the workloads
    if (turns.stayup && out.stayup && !out.stayup.error && args.workloads.has('resync')) {
      try {
        say(`\n  stayup resync: ${resyncSizes.files} x ${resyncSizes.fileMib} MiB, every ${resyncSizes.every}th 1 MiB block rewritten while ${L.servers[1]} is stopped`);
        resync = await mod.resync(helper, resyncSizes);
        out.stayup = { ...out.stayup, resync_mib_s: resync.resync_mib_s, resync_bytes_sent: resync.resync_bytes_sent, resync };
        say(`  stayup resync: ${(resync.resync_changed_bytes / 1048576).toFixed(0)} MiB changed, SECOND (Ready) after ${resync.resync_s} s (the same cycle with nothing changed: ${resync.empty_resync_s} s; module log reintegration ${resync.resync_log_s ?? '-'} s): ${resync.resync_mib_s} MiB/s; bytes sent ${resync.resync_bytes_sent ?? 'not reported by this stayup version'}`);
      } catch (e) {
        errors.push(`stayup resync: ${errText(e)}`);
        out.stayup = { ...out.stayup, resync_error: errText(e) };
        say(`  stayup resync: FAILED: ${errText(e)}`);
      }
    }
    if (mod.started) await mod.stop().catch((e: unknown) => say(`  stayup: stop: ${errText(e).split('\n')[0]}`));
  } catch (e) {
    errors.push(errText(e));
    process.stderr.write(`bench:replication: ${errText(e)}\n`);
  } finally {
    await cleanup();
  }
  env.loadavg_end = loadavg();

  // ---- summary
  const against = (base: WorkloadResults | undefined): { ratios: Partial<Record<Figure, number | null>>; goal: Json } => {
    const ratios: Partial<Record<Figure, number | null>> = {};
    const goal: Json = {};
    let allMet: boolean | null = true;
    for (const f of FIGURES) {
      const s = res.stayup?.[f]?.median;
      const g = base?.[f]?.median;
      ratios[f] = ratio(s, g);
      const spec = GOAL[f];
      const met = s === undefined || g === undefined ? null : spec.better === 'lower' ? s <= spec.factor * g : s >= spec.factor * g;
      goal[f] = { target: `stayup ${spec.better === 'lower' ? '<=' : '>='} ${spec.factor} x glusterfs`, ratio: ratios[f], met };
      if (met === null) allMet = null;
      else if (!met && allMet !== null) allMet = false;
    }
    goal.all_met = allMet;
    return { ratios, goal };
  };
  const { ratios, goal } = against(res.glusterfs);
  const tls = glusterTlsRes ? against(glusterTlsRes) : null;

  say('\n== results (median of the runs, (min-max) when more than one run)');
  const cols: Array<{ head: string; get: (f: Figure) => FigureResult | undefined; err?: string }> = [
    { head: 'local', get: (f) => res.local?.[f], err: out.local?.error as string | undefined },
    { head: 'stayup', get: (f) => res.stayup?.[f], err: out.stayup?.error as string | undefined },
    { head: 'glusterfs', get: (f) => res.glusterfs?.[f], err: out.glusterfs?.error as string | undefined },
    { head: 'gluster defaults', get: (f) => glusterRes.defaults?.[f] },
    { head: 'gluster wb off', get: (f) => glusterRes.write_behind_off?.[f] },
    ...(args.glusterTls ? [{ head: 'gluster tls (compared)', get: (f: Figure) => glusterTlsRes?.[f] }] : []),
  ];
  const shown = cols.filter((c, i) => (i < 3 ? args.targets.includes(TARGETS[i]!) : args.targets.includes('glusterfs')));
  const fmtRatio = (r: number | null | undefined): string => (r === null || r === undefined ? '-' : String(r));
  const rows = [['figure', ...shown.map((c) => c.head), 'stayup/glusterfs', ...(tls ? ['stayup/gluster tls'] : [])]];
  for (const f of FIGURES) rows.push([f, ...shown.map((c) => (c.err ? 'FAILED' : fmtFigure(c.get(f)))), fmtRatio(ratios[f]), ...(tls ? [fmtRatio(tls.ratios[f])] : [])]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) say(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`);
  for (const f of FIGURES) say(`  ${f}: ${FIGURE_TEXT[f]}`);
  if (res.glusterfs) say(`  glusterfs column: write_p50_us with ${CONFIG_TEXT.write_behind_off}; fsync_iops, seq_mib_s, files_per_s with ${CONFIG_TEXT.defaults}; placement: ${String(out.glusterfs?.placement)}`);
  for (const c of cols) if (c.err) say(`  ${c.head}: ERROR: ${c.err}`);
  if (resync) say(`  stayup resync: ${resync.resync_mib_s} MiB/s (${resync.resync_changed_bytes} changed bytes / ${resync.resync_s} s), bytes sent ${resync.resync_bytes_sent ?? 'not reported by this stayup version'}`);
  const goalLine = (g0: Json): string =>
    FIGURES.map((f) => {
      const g = g0[f] as { target: string; ratio: number | null; met: boolean | null };
      return `${f} ${g.ratio ?? '-'} (${g.target.replace('stayup ', '').replace(' x glusterfs', '')}) ${g.met === null ? 'n/a' : g.met ? 'MET' : 'NOT MET'}`;
    }).join('; ');
  say(`  goal (stayup vs glusterfs): ${goalLine(goal)}`);
  if (tls) {
    say(`  glusterfs tls column: write_p50_us with ${CONFIG_TEXT.tls_write_behind_off}; the others with ${CONFIG_TEXT.tls_defaults}`);
    say(`  the same goal against GlusterFS with TLS (stayup's stream is always encrypted): ${goalLine(tls.goal)}`);
  }

  const result = {
    bench: 'replication',
    local: args.targets.includes('local') ? (out.local ?? { error: 'not run (the lab did not come up)' }) : null,
    stayup: args.targets.includes('stayup') ? (out.stayup ?? { error: 'not run (the lab did not come up)' }) : null,
    glusterfs: args.targets.includes('glusterfs') ? (out.glusterfs ?? { error: 'not run (the lab did not come up)' }) : null,
    ratios_stayup_over_glusterfs: ratios,
    goal,
    ...(tls ? { glusterfs_tls: { ...medians(glusterTlsRes!), options: Object.fromEntries(FIGURES.map((f) => [f, CONFIG_TEXT[GLUSTER_TLS_FIGURE_CONFIG[f]]])) }, ratios_stayup_over_glusterfs_tls: tls.ratios, goal_tls: tls.goal } : {}),
    params: { ...sizes, quick: args.quick, workloads: [...args.workloads], resync: resyncSizes, rfs_async: args.async, rfs_nbremconn: args.nbremconn },
    env,
    duration_s: Math.round((Date.now() - t0) / 1000),
    errors,
  };
  say(`\ndone in ${result.duration_s} s${errors.length ? `, ${errors.length} error(s)` : ''}; load average ${env.loadavg_start} -> ${env.loadavg_end}`);
  say(JSON.stringify(result));
  return errors.length ? 1 : 0;
}

process.exitCode = await main();
