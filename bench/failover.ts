// npm run bench:failover -- [--freezes N] [--settings fast|slow|both] [--idle-seconds N]
//                             [--service-freezes N] [--products both|stayup|keepalived] [--logs DIR]
//                             [--wire-trace]
//
// Client-seen outage of a failover (a frozen primary) of a stayup mirror module against keepalived
// (VRRP v3, unicast), in a 2-server lab with a client. See bench/README.md. Human-readable lines as it
// goes; the last line of stdout is one JSON object. Needs root (namespaces). Exit 0 when every phase ran,
// 1 when one failed (its figures are null and the reason is in "errors"), 2 on bad usage.
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Lab } from '../src/lab/lab.ts';
import { errText, readOptions, removeStaleLabs, say, usageFailure } from './lib/cli.ts';
import { DOWN_TIMER_ADVERTS, KeepalivedPair, KEEPALIVED, PRIORITY, advertIntSeconds, type KeepalivedConfigUsed } from './lib/keepalived.ts';
import { Prober } from './lib/probe-client.ts';
import { idleCheck, KeepalivedDriver, runFreezes, StayupDriver, type FreezeRunResult, type IdleResult, type PairDriver } from './lib/drivers.ts';
import { SERVICE_SCRIPT, StayupCluster, type BenchModule } from './lib/stayup.ts';
import { fmt, ratio, round1, summarize, type Summary } from './lib/stats.ts';
import { WireTrace, type WirePhases } from './lib/wire-trace.ts';

interface Setting {
  name: 'slow' | 'fast';
  pulseMs: number;
  timeoutMs: number;
}
const SETTINGS: Setting[] = [
  { name: 'slow', pulseMs: 1000, timeoutMs: 3000 },
  { name: 'fast', pulseMs: 10, timeoutMs: 40 },
];
const PORT = 7000; // the service on both servers
const SERVICE_PORT = 7001; // the service start_prim starts on the primary only
const PROBE_INTERVAL_MS = 10;
const PROBE_TIMEOUT_MS = 50;
const LAB_PREFIX = 'fobench-';

interface Args {
  freezes: number;
  settings: Setting[];
  idleSeconds: number;
  serviceFreezes: number;
  stayup: boolean;
  keepalived: boolean;
  logs?: string;
  wireTrace: boolean;
  /** keepalived's backup (node2) priority, which sets its skew: see --keepalived-backup-priority. */
  keepalivedBackupPriority: number;
}

const USAGE = `usage: npm run bench:failover -- [options]
  --freezes N            freezes per setting and product (default 10)
  --settings S           slow (pulse 1 s, timeout 3 s), fast (10 ms / 40 ms) or both (default)
  --idle-seconds N       idle check under CPU load per setting, both products at once (default 60; 0 skips)
  --service-freezes N    freezes per setting for stayup with start_prim starting the service (default 5; 0 skips)
  --products P           both (default), stayup or keepalived
  --logs DIR             copy the lab's logs (services, keepalived, stayupd, module logs) to DIR before teardown
  --wire-trace           trace the switch (kernel-stamped frames) and split every failover into phases:
                         last heartbeat out of the frozen node, gratuitous ARP, SYN-ACK, answer
  --keepalived-backup-priority N
                         keepalived's backup priority, 1..149 (default 100, keepalived's own default). It sets
                         the skew of its down timer: 3 adverts + (256 - N)/256 of one. With 1, the fast
                         setting's down timer is 39.96 ms, equal to stayup's 40 ms timeout (equal detection)
`;

const usage: (msg: string) => never = usageFailure('bench:failover', USAGE);

function parseArgs(argv: string[]): Args {
  const a: Args = { freezes: 10, settings: SETTINGS, idleSeconds: 60, serviceFreezes: 5, stayup: true, keepalived: true, wireTrace: false, keepalivedBackupPriority: PRIORITY.node2! };
  readOptions(argv, { usage: USAGE, fail: usage }, (o) => {
    switch (o.name) {
      case '--freezes':
        a.freezes = o.int(1);
        break;
      case '--idle-seconds':
        a.idleSeconds = o.int(0);
        break;
      case '--service-freezes':
        a.serviceFreezes = o.int(0);
        break;
      case '--settings': {
        const v = o.value();
        if (v === 'both') a.settings = SETTINGS;
        else if (v === 'slow' || v === 'fast') a.settings = SETTINGS.filter((s) => s.name === v);
        else usage('--settings is slow, fast or both');
        break;
      }
      case '--products': {
        const v = o.value();
        if (v !== 'both' && v !== 'stayup' && v !== 'keepalived') usage('--products is both, stayup or keepalived');
        a.stayup = v !== 'keepalived';
        a.keepalived = v !== 'stayup';
        break;
      }
      case '--logs': {
        const v = o.value();
        if (!v) usage('--logs needs a directory');
        a.logs = resolve(v);
        break;
      }
      case '--wire-trace':
        a.wireTrace = true;
        break;
      case '--keepalived-backup-priority':
        // Below node1's, so that node1 stays the master the freezes are made on.
        a.keepalivedBackupPriority = o.int(1, PRIORITY.node1! - 1);
        break;
      default:
        usage(`unknown option ${o.given}`);
    }
  });
  return a;
}

interface ProductFigures extends Summary {
  freezes: number;
  noTakeover: number;
  falseFailovers: number;
  failedAttemptsMedian: number | null;
  takeover: Summary;
  arpFlushes: number;
  /** Medians of the wire phases (ms after the frozen node's last heartbeat), with --wire-trace. */
  wire?: Record<string, number | null>;
  error?: string;
}

function figures(r: FreezeRunResult, d: PairDriver): ProductFigures {
  const outs = r.freezes.flatMap((f) => (f.outage ? [f.outage] : []));
  return {
    ...summarize(outs.map((o) => o.outageMs)),
    freezes: r.freezes.length,
    noTakeover: r.freezes.filter((f) => f.noTakeover).length,
    falseFailovers: r.falseFailovers,
    failedAttemptsMedian: summarize(outs.map((o) => o.failed)).median,
    takeover: summarize(outs.map((o) => o.takeoverMs)),
    arpFlushes: d.arpFlushes,
    ...(r.freezes.some((f) => f.wire) ? { wire: wireMedians(r.freezes.flatMap((f) => (f.wire ? [f.wire] : []))) } : {}),
  };
}

function wireMedians(ps: WirePhases[]): Record<string, number | null> {
  const keys = ['lastAnswer', 'freezeEnd', 'garp', 'synToNew', 'synack', 'answer', 'pulseMedian', 'pulseMax'] as const;
  return Object.fromEntries(keys.map((k) => [k, summarize(ps.flatMap((p) => (p[k] === null || Number.isNaN(p[k]) ? [] : [p[k]]))).median]));
}

function line(label: string, f: ProductFigures | undefined): string {
  if (!f) return `  ${label}: not run`;
  if (f.error && !f.n) return `  ${label}: FAILED: ${f.error.split('\n')[0]}`;
  const w = f.wire ? `\n  ${label} wire medians (ms after the frozen node's last heartbeat): ${Object.entries(f.wire).map(([k, v]) => `${k} ${fmt(v, '')}`).join(', ')}` : '';
  return `  ${label}: outage median ${fmt(f.median)}, p90 ${fmt(f.p90)}, min ${fmt(f.min)}, max ${fmt(f.max)} over ${f.n}/${f.freezes} freezes; takeover median ${fmt(f.takeover.median)}; failed attempts median ${fmt(f.failedAttemptsMedian, '')}; no takeover ${f.noTakeover}; false failovers ${f.falseFailovers}${f.arpFlushes ? `; client neighbour flushes ${f.arpFlushes}` : ''}${f.error ? `; FAILED: ${f.error.split('\n')[0]}` : ''}${w}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  PRIORITY.node2 = args.keepalivedBackupPriority;
  if (process.getuid?.() !== 0) usage('needs root (the lab uses network and mount namespaces)');
  if (args.keepalived && !existsSync(KEEPALIVED)) usage(`${KEEPALIVED} is missing: run scripts/setup.sh (Debian package keepalived)`);
  if (args.idleSeconds > 0 && !['/usr/bin/stress-ng', '/usr/local/bin/stress-ng'].some((p) => existsSync(p))) usage('stress-ng is missing: run scripts/setup.sh (Debian package stress-ng)');

  const errors: string[] = [];
  const notes: string[] = [];
  const probers = new Set<Prober>();
  let wire: WireTrace | undefined;
  const name = `${LAB_PREFIX}${process.pid}`;
  let lab: Lab | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const p of probers) await p.stop().catch(() => undefined);
      await wire?.stop().catch(() => undefined);
      if (args.logs && lab) saveLogs(lab, args.logs);
      const r = await Lab.down(name);
      if (r.found) say(`lab ${name} removed${r.warnings.length ? ` (warnings: ${r.warnings.join('; ')})` : ''}`);
    })());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench:failover: ${sig}, removing the lab\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`bench:failover: ${errText(e)}\n`);
    void cleanup().finally(() => process.exit(1));
  });

  const startProber = async (host: string, port: number, label: string): Promise<Prober> => {
    const p = await Prober.start(lab!, { host, port, intervalMs: PROBE_INTERVAL_MS, timeoutMs: PROBE_TIMEOUT_MS, label });
    probers.add(p);
    return p;
  };
  const stopProber = async (p: Prober | undefined): Promise<void> => {
    if (!p) return;
    await p.stop();
    probers.delete(p);
  };

  const rows: Array<Record<string, unknown>> = [];
  const idleRows: Array<Record<string, unknown>> = [];
  const serviceRows: Array<Record<string, unknown>> = [];
  let stayupSetup: string | undefined; // error text when the stayup side could not be set up or started
  const t0 = Date.now();

  try {
    await removeStaleLabs(LAB_PREFIX);
    lab = await Lab.up({ name, servers: 2 });
    const L = lab;
    say(`lab ${name}: ${L.servers.map((n) => `${n} ${L.addr(n)}`).join(', ')}, client ${L.addr('client')}`);
    if (args.wireTrace) {
      wire = await WireTrace.start(L);
      say('wire trace: every frame into the switch, kernel time stamps');
    }
    say(`settings: ${args.settings.map((s) => `${s.name} (pulse ${s.pulseMs} ms, timeout ${s.timeoutMs} ms)`).join(', ')}; ${args.freezes} freezes per product and setting; prober: new TCP connection every ${PROBE_INTERVAL_MS} ms, ${PROBE_TIMEOUT_MS} ms per attempt`);

    // The service on both servers (only the VIP moves).
    for (const n of L.servers) await L.spawn(n, [process.execPath, SERVICE_SCRIPT, 'serve', String(PORT)], { logFile: `${L.stateDir}/logs/${n}-service.log` });
    for (const n of L.servers) {
      const p = await startProber(L.addr(n), PORT, `${n} direct`);
      const ok = await p.waitStreak(5, 15_000, n);
      await stopProber(p);
      if (!ok) throw new Error(`the service on ${n}:${PORT} does not answer`);
    }
    say(`service on both servers, port ${PORT}`);

    // stayup: daemons, cluster, one VIP-only module and one service module per setting.
    const cluster = new StayupCluster(L);
    const modules = new Map<string, { vip: BenchModule; service: BenchModule }>();
    args.settings.forEach((s, i) => {
      const base = { pulseMs: s.pulseMs, timeoutMs: s.timeoutMs, servicePort: SERVICE_PORT };
      modules.set(s.name, {
        vip: { ...base, name: `fo_${s.name}`, vip: L.ip(101 + 2 * i), kind: 'vip' },
        service: { ...base, name: `svc_${s.name}`, vip: L.ip(102 + 2 * i), kind: 'service' },
      });
    });
    if (args.stayup) {
      try {
        await cluster.setup();
        say('stayup: daemons running, cluster.xml pushed to both nodes');
        for (const m of modules.values()) {
          for (const mod of args.serviceFreezes > 0 ? [m.vip, m.service] : [m.vip]) {
            const out = await cluster.install(mod);
            say(`stayup: module ${mod.name} (heart pulse ${mod.pulseMs} ms, timeout ${mod.timeoutMs} ms, vip ${mod.vip}, ${mod.kind === 'vip' ? 'scripts do nothing' : `start_prim starts the service on ${SERVICE_PORT}`}) installed: ${out.split('\n').filter((x) => /installed/.test(x)).map((x) => x.trim()).join('; ')}`);
          }
        }
      } catch (e) {
        stayupSetup = `stayup setup: ${errText(e)}`;
        errors.push(stayupSetup);
        say(`stayup: FAILED: ${stayupSetup}`);
      }
    }

    const kaVip = L.ip(100);

    /** One product's freeze series; errors are recorded and the lab healed. */
    const series = async (label: string, start: () => Promise<PairDriver>, stop: () => Promise<void>, host: string, port: number, s: Setting, freezes: number): Promise<ProductFigures> => {
      let prober: Prober | undefined;
      let d: PairDriver | undefined;
      try {
        d = await start();
        prober = await startProber(host, port, label);
        const r = await runFreezes(L, d, prober, { freezes, pulseMs: s.pulseMs, timeoutMs: s.timeoutMs, label, log: say, ...(wire ? { wire } : {}) });
        notes.push(...r.notes);
        return figures(r, d);
      } catch (e) {
        const msg = `${label}: ${errText(e)}`;
        errors.push(msg);
        say(`  ${label}: FAILED: ${msg}`);
        return { ...summarize([]), freezes: 0, noTakeover: 0, falseFailovers: 0, failedAttemptsMedian: null, takeover: summarize([]), arpFlushes: d?.arpFlushes ?? 0, error: msg };
      } finally {
        await stopProber(prober).catch(() => undefined);
        await stop().catch((e: unknown) => errors.push(`${label}: stop: ${errText(e)}`));
        await L.heal().catch(() => undefined);
      }
    };

    for (const s of args.settings) {
      const tag = `${s.name} (pulse ${s.pulseMs} ms, timeout ${s.timeoutMs} ms)`;
      say(`\n== setting ${tag}`);
      const mods = modules.get(s.name)!;
      let ka: ProductFigures | undefined;
      let su: ProductFigures | undefined;
      let advertUsedMs: number | undefined;
      let backupUsed: KeepalivedConfigUsed | undefined;
      let kaConfigTest = '';

      if (args.keepalived) {
        say(`keepalived: VRRP v3, unicast, advert_int ${advertIntSeconds(s.pulseMs)}, down_timer_adverts ${DOWN_TIMER_ADVERTS}, priorities node1 ${PRIORITY.node1} / node2 ${PRIORITY.node2}, vip ${kaVip}`);
        let pair: KeepalivedPair | undefined;
        ka = await series(
          `keepalived ${s.name}`,
          async () => {
            pair = new KeepalivedPair(L, kaVip, s.pulseMs, s.name);
            await pair.checkConfig();
            kaConfigTest = [...pair.configTest.values()].filter(Boolean).join(' | ');
            await pair.start();
            advertUsedMs = (await pair.waitConfigDumped('node1')).advertMs;
            // The backup (node2) is the one that takes over: its down timer is keepalived's detection time.
            backupUsed = await pair.waitConfigDumped('node2');
            say(`keepalived: advert_int ${advertIntSeconds(s.pulseMs)} configured, keepalived reports "Advert interval" = ${advertUsedMs} ms; backup: "Down timer adverts" = ${backupUsed.downTimerAdverts}, "Priority" = ${backupUsed.priority}, so its down timer is ${backupUsed.downTimerAdverts} x ${backupUsed.advertMs} ms + skew = ${backupUsed.downTimerMs} ms (stayup declares the peer lost at its timeout, ${s.timeoutMs} ms)${kaConfigTest ? `; keepalived -t said: ${kaConfigTest}` : ''}`);
            return new KeepalivedDriver(L, pair, say);
          },
          async () => pair?.stop(),
          kaVip,
          PORT,
          s,
          args.freezes,
        );
        say(line('keepalived', ka));
      }

      if (args.stayup) {
        if (stayupSetup) {
          su = { ...summarize([]), freezes: 0, noTakeover: 0, falseFailovers: 0, failedAttemptsMedian: null, takeover: summarize([]), arpFlushes: 0, error: stayupSetup };
        } else {
          const m = mods.vip;
          say(`stayup: module ${m.name}, vip ${m.vip}`);
          su = await series(
            `stayup ${s.name}`,
            async () => {
              try {
                await cluster.start(m.name);
              } catch (e) {
                stayupSetup = `stayup start: ${errText(e)}`;
                throw e;
              }
              return new StayupDriver(L, cluster, m, say);
            },
            async () => cluster.stop(m.name),
            m.vip,
            PORT,
            s,
            args.freezes,
          );
        }
        say(line('stayup', su));
      }

      const row: Record<string, unknown> = {
        pulse_ms: s.pulseMs,
        timeout_ms: s.timeoutMs,
        stayup_median_ms: su?.median ?? null,
        keepalived_median_ms: ka?.median ?? null,
        ratio: ratio(su?.median, ka?.median),
        stayup_p90_ms: su?.p90 ?? null,
        keepalived_p90_ms: ka?.p90 ?? null,
        stayup_min_ms: su?.min ?? null,
        stayup_max_ms: su?.max ?? null,
        keepalived_min_ms: ka?.min ?? null,
        keepalived_max_ms: ka?.max ?? null,
        false_failovers: (su?.falseFailovers ?? 0) + (ka?.falseFailovers ?? 0),
        stayup_false_failovers: su ? su.falseFailovers : null,
        keepalived_false_failovers: ka ? ka.falseFailovers : null,
        freezes: args.freezes,
        stayup_freezes_measured: su?.n ?? 0,
        keepalived_freezes_measured: ka?.n ?? 0,
        stayup_no_takeover: su?.noTakeover ?? null,
        keepalived_no_takeover: ka?.noTakeover ?? null,
        stayup_takeover_median_ms: su?.takeover.median ?? null,
        keepalived_takeover_median_ms: ka?.takeover.median ?? null,
        stayup_failed_attempts_median: su?.failedAttemptsMedian ?? null,
        keepalived_failed_attempts_median: ka?.failedAttemptsMedian ?? null,
        keepalived_advert_int_used: advertUsedMs === undefined ? null : advertUsedMs / 1000,
        keepalived_down_timer_adverts_used: backupUsed?.downTimerAdverts ?? null,
        keepalived_backup_priority_used: backupUsed?.priority ?? null,
        keepalived_down_timer_ms: backupUsed?.downTimerMs ?? null,
        ...(su?.wire?.garp != null ? { stayup_garp_after_detection_ms: round1(su.wire.garp - s.timeoutMs) } : {}),
        ...(ka?.wire?.garp != null && backupUsed ? { keepalived_garp_after_detection_ms: round1(ka.wire.garp - backupUsed.downTimerMs) } : {}),
        ...(kaConfigTest ? { keepalived_config_test: kaConfigTest } : {}),
        ...(su?.wire ? { stayup_wire_ms: su.wire } : {}),
        ...(ka?.wire ? { keepalived_wire_ms: ka.wire } : {}),
        ...(su?.error ? { stayup_error: su.error.split('\n')[0] } : {}),
        ...(ka?.error ? { keepalived_error: ka.error.split('\n')[0] } : {}),
      };
      rows.push(row);
      if (row.ratio !== null) say(`  ratio stayup / keepalived (median outage): ${row.ratio}`);
      if (row.stayup_garp_after_detection_ms !== undefined || row.keepalived_garp_after_detection_ms !== undefined) {
        say(`  gratuitous ARP after the nominal detection (median; stayup: its timeout ${s.timeoutMs} ms, keepalived: its down timer ${backupUsed?.downTimerMs ?? '?'} ms after the last heartbeat): stayup ${fmt((row.stayup_garp_after_detection_ms as number | undefined) ?? null)}, keepalived ${fmt((row.keepalived_garp_after_detection_ms as number | undefined) ?? null)}`);
      }

      // Idle check: both pairs at once, CPUs loaded.
      if (args.idleSeconds > 0) {
        say(`idle check ${tag}: ${args.idleSeconds} s, both pairs idle, CPUs loaded`);
        const idleRow: Record<string, unknown> = { pulse_ms: s.pulseMs, timeout_ms: s.timeoutMs, seconds: args.idleSeconds };
        const targets: Array<{ driver: PairDriver; prober: Prober }> = [];
        let pair: KeepalivedPair | undefined;
        let stayupStarted = false;
        try {
          if (args.keepalived) {
            pair = new KeepalivedPair(L, kaVip, s.pulseMs, `${s.name}-idle`);
            await pair.start();
            targets.push({ driver: new KeepalivedDriver(L, pair, say), prober: await startProber(kaVip, PORT, `keepalived idle ${s.name}`) });
          }
          if (args.stayup && !stayupSetup) {
            await cluster.start(mods.vip.name);
            stayupStarted = true;
            targets.push({ driver: new StayupDriver(L, cluster, mods.vip, say), prober: await startProber(mods.vip.vip, PORT, `stayup idle ${s.name}`) });
          } else if (args.stayup) idleRow.stayup_error = stayupSetup!.split('\n')[0];
          if (targets.length) {
            const res: IdleResult[] = await idleCheck(L, targets, args.idleSeconds, say);
            for (const r of res) {
              idleRow[`${r.product}_false_failovers`] = r.falseFailovers;
              idleRow[`${r.product}_vip_moves`] = r.vipMoves;
              idleRow[`${r.product}_state_changes`] = r.stateChanges;
              idleRow[`${r.product}_failed_probes`] = r.window.failed;
              idleRow[`${r.product}_probes`] = r.window.attempts;
              idleRow[`${r.product}_max_gap_ms`] = r.window.maxGapMs;
              say(`  idle ${r.product}: false failovers ${r.falseFailovers} (VIP moves ${r.vipMoves}, state changes ${r.stateChanges}); ${r.window.failed}/${r.window.attempts} probes failed; longest gap between answers ${r.window.maxGapMs} ms`);
            }
          }
        } catch (e) {
          const msg = `idle ${s.name}: ${errText(e)}`;
          errors.push(msg);
          idleRow.error = msg.split('\n')[0];
          say(`  FAILED: ${msg}`);
        } finally {
          for (const t of targets) await stopProber(t.prober).catch(() => undefined);
          await pair?.stop().catch((e: unknown) => errors.push(`idle ${s.name}: keepalived stop: ${errText(e)}`));
          if (stayupStarted) await cluster.stop(mods.vip.name).catch((e: unknown) => errors.push(`idle ${s.name}: stayup stop: ${errText(e)}`));
          await L.heal().catch(() => undefined);
        }
        idleRows.push(idleRow);
      }

      // stayup with start_prim starting the service on the new primary.
      if (args.stayup && args.serviceFreezes > 0) {
        const m = mods.service;
        say(`stayup service start ${tag}: module ${m.name}, vip ${m.vip}, service port ${SERVICE_PORT} on the primary only`);
        let sv: ProductFigures;
        if (stayupSetup) sv = { ...summarize([]), freezes: 0, noTakeover: 0, falseFailovers: 0, failedAttemptsMedian: null, takeover: summarize([]), arpFlushes: 0, error: stayupSetup };
        else {
          sv = await series(`stayup+service ${s.name}`, async () => (await cluster.start(m.name), new StayupDriver(L, cluster, m, say)), async () => cluster.stop(m.name), m.vip, SERVICE_PORT, s, args.serviceFreezes);
        }
        say(line('stayup + service start', sv));
        serviceRows.push({
          pulse_ms: s.pulseMs,
          timeout_ms: s.timeoutMs,
          freezes: args.serviceFreezes,
          stayup_median_ms: sv.median,
          stayup_p90_ms: sv.p90,
          stayup_min_ms: sv.min,
          stayup_max_ms: sv.max,
          stayup_no_takeover: sv.noTakeover,
          stayup_false_failovers: sv.falseFailovers,
          vip_only_median_ms: su?.median ?? null,
          ...(sv.error ? { error: sv.error.split('\n')[0] } : {}),
        });
      }
    }
  } catch (e) {
    errors.push(errText(e));
    process.stderr.write(`bench:failover: ${errText(e)}\n`);
  } finally {
    await cleanup();
  }

  const result = {
    bench: 'failover',
    settings: rows,
    idle: { seconds: args.idleSeconds, load: 'stress-ng --cpu 1 in each of the 2 servers (2 CPU-bound workers)', settings: idleRows },
    service_start: { freezes: args.serviceFreezes, settings: serviceRows },
    probe: { interval_ms: PROBE_INTERVAL_MS, attempt_timeout_ms: PROBE_TIMEOUT_MS },
    keepalived: { version: await keepalivedVersion(), priorities: PRIORITY, failback: 'frozen node: keepalived stopped, thawed, started again (preempts)' },
    duration_s: Math.round((Date.now() - t0) / 1000),
    notes,
    errors,
  };
  say(`\ndone in ${result.duration_s} s${errors.length ? `, ${errors.length} error(s)` : ''}`);
  say(JSON.stringify(result));
  return errors.length ? 1 : 0;
}

/** Copies what the lab logged (it is deleted with the lab) to dir. */
function saveLogs(lab: Lab, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    const copy = (from: string, to: string): void => {
      if (existsSync(from)) cpSync(from, join(dir, to), { recursive: true, dereference: false });
    };
    copy(join(lab.stateDir, 'logs'), 'logs');
    copy(join(lab.stateDir, 'keepalived'), 'keepalived');
    copy(join(lab.stateDir, 'stayup-modules'), 'stayup-modules');
    for (const n of lab.servers) {
      copy(lab.hostPath(n, '/var/lib/stayup/modvar'), join(n, 'modvar'));
      copy(lab.hostPath(n, '/var/log/stayup'), join(n, 'log'));
    }
    say(`logs copied to ${dir}`);
  } catch (e) {
    process.stderr.write(`bench:failover: cannot copy the logs to ${dir}: ${errText(e)}\n`);
  }
}

async function keepalivedVersion(): Promise<string | null> {
  if (!existsSync(KEEPALIVED)) return null;
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(KEEPALIVED, ['--version'], { encoding: 'utf8' });
  return /Keepalived v(\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? null;
}

process.exitCode = await main();
