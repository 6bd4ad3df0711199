// The two products behind one interface, the freeze loop and the idle check.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, SpawnedProcess } from '../../src/lab/lab.ts';
import { KeepalivedPair } from './keepalived.ts';
import { monoMs, type Prober } from './probe-client.ts';
import { outageOf, windowReport, type Outage, type WindowReport } from './outage.ts';
import { fmtStates, readyPrimary, type BenchModule, type NodeState, type StayupCluster } from './stayup.ts';
import { fmtPhases, wirePhases, type WirePhases, type WireTrace } from './wire-trace.ts';

export type Log = (line: string) => void;

/** Consecutive answers from the primary that make the client side "stable" (30 × 10 ms = 0.3 s). */
export const STABLE_STREAK = 30;

export interface PairDriver {
  readonly product: 'stayup' | 'keepalived';
  readonly vip: string;
  /** Times the client's neighbour entry for the VIP had to be flushed to reach the primary (see README). */
  arpFlushes: number;
  /** Waits until the pair can take a freeze and the client is answered by the primary; returns the primary. */
  waitReady(prober: Prober, timeoutMs: number): Promise<string>;
  /** The pair's state, to compare before and after a quiet window. */
  snapshot(): Promise<string>;
  /** State changes between two snapshots. */
  changes(before: string, after: string): number;
  /** What changed between two snapshots, for the report. */
  describe(before: string, after: string): string;
  /** After the takeover: thaw the frozen node and let it rejoin. */
  recover(frozen: string): Promise<void>;
  /** What the product itself says about the takeover since the snapshot (stayup's takeover times). */
  takeoverDetail?(since: string): string | undefined;
}

/** Nodes holding `vip` on eth0 now. */
export async function vipHolders(lab: Lab, vip: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of lab.servers) {
    const r = await lab.exec(node, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'], { timeoutMs: 10_000 });
    const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>;
    if (links.some((l) => (l.addr_info ?? []).some((a) => a.local === vip))) out.push(node);
  }
  return out;
}

/**
 * Waits until the client is answered by `primary` STABLE_STREAK times in a row. If that does not happen
 * within 3 s although the pair says it is stable, the client's neighbour entry for the VIP is stale (it
 * still points at the other server's MAC): it is deleted once, and counted.
 */
async function waitClient(lab: Lab, d: PairDriver, prober: Prober, primary: string, deadline: number, log: Log): Promise<void> {
  const first = Math.min(3000, Math.max(0, deadline - Date.now()));
  if (await prober.waitStreak(STABLE_STREAK, first, primary)) return;
  d.arpFlushes++;
  log(`    (${d.product}: the client is not answered by ${primary} 3 s after the pair settled; deleting its neighbour entry for ${d.vip})`);
  await lab.exec('client', ['ip', 'neigh', 'del', d.vip, 'dev', 'eth0']);
  if (await prober.waitStreak(STABLE_STREAK, Math.max(1000, deadline - Date.now()), primary)) return;
  throw new Error(`${d.product}: the client is not answered by ${primary} (last answers: ${prober.records.slice(-3).map((r) => (r.ok ? r.srv : r.err)).join(', ')})`);
}

export class KeepalivedDriver implements PairDriver {
  readonly product = 'keepalived' as const;
  arpFlushes = 0;
  constructor(
    private readonly lab: Lab,
    readonly pair: KeepalivedPair,
    private readonly log: Log,
  ) {}

  get vip(): string {
    return this.pair.vip;
  }

  async waitReady(prober: Prober, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let holder: string | undefined;
    for (;;) {
      const holders = await this.pair.holders();
      // Preempt is on: the pair is settled once the highest priority node is MASTER with the VIP (right
      // after its restart the backup still holds it, until the preemption).
      if (holders.length === 1 && holders[0] === this.pair.preferred) {
        const h = holders[0];
        const others = this.lab.servers.filter((n) => n !== h);
        if (this.pair.state(h) === 'MASTER' && others.every((n) => this.pair.state(n) === 'BACKUP')) {
          holder = h;
          break;
        }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `keepalived pair not stable within ${timeoutMs} ms: VIP on [${holders.join(', ')}], states ${this.lab.servers.map((n) => `${n} ${this.pair.state(n)}`).join(', ')}\n${this.lab.servers.map((n) => `--- ${n}\n${this.pair.logTail(n)}`).join('\n')}`,
        );
      }
      await sleep(100);
    }
    await waitClient(this.lab, this, prober, holder, deadline, this.log);
    return holder;
  }

  /** `<times a node entered MASTER>/<all transitions>` from the logs. */
  async snapshot(): Promise<string> {
    const all = this.lab.servers.flatMap((n) => this.pair.transitions(n));
    return `${all.filter((t) => t.state === 'MASTER').length}/${all.length}`;
  }

  /** One per entry into MASTER (a spurious takeover), at least one if anything changed. */
  changes(before: string, after: string): number {
    const [m0, a0] = before.split('/').map(Number) as [number, number];
    const [m1, a1] = after.split('/').map(Number) as [number, number];
    return Math.max(m1 - m0, a1 !== a0 ? 1 : 0);
  }

  describe(before: string, after: string): string {
    return `keepalived MASTER entries/transitions ${before} -> ${after}`;
  }

  /**
   * The frozen (hung) node is "rebooted": keepalived stopped while it is still frozen (its goodbye advert is
   * dropped), thawed, keepalived started again; with its higher priority it preempts and announces the VIP
   * with gratuitous ARP. A plain thaw would leave the client's neighbour entry on the backup's MAC: the old
   * master never left MASTER, so it sends no GARP (shared/reference/lab.md §3, trap 3).
   */
  async recover(frozen: string): Promise<void> {
    await this.pair.stopNode(frozen);
    await this.lab.thaw(frozen);
    await this.pair.startNode(frozen);
  }
}

export class StayupDriver implements PairDriver {
  readonly product = 'stayup' as const;
  arpFlushes = 0;
  /** Times `stayup prim` had to pick the first primary (both nodes WAIT(NotReady) after the first start). */
  primCommands = 0;
  constructor(
    private readonly lab: Lab,
    private readonly cluster: StayupCluster,
    readonly module: BenchModule,
    private readonly log: Log,
  ) {}

  get vip(): string {
    return this.module.vip;
  }

  async waitReady(prober: Prober, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const started = Date.now();
    let st: NodeState[] = [];
    let prim: string | undefined;
    for (;;) {
      // Block in one waitstate first (cheap), then read both states once.
      const left = deadline - Date.now();
      const firstWait = Math.max(5000, 3 * this.module.timeoutMs + 3000);
      await this.cluster.waitState(this.module.name, ['PRIM', 'SECOND'], Math.max(1000, Math.min(left, this.primCommands ? left : firstWait)));
      st = await this.cluster.states(this.module.name);
      prim = readyPrimary(st);
      if (prim) {
        const holders = await vipHolders(this.lab, this.vip);
        if (holders.length === 1 && holders[0] === prim) break;
      }
      // A fresh pair where neither node can prove its data stays WAIT(NotReady): name the primary once.
      if (!this.primCommands && Date.now() - started >= firstWait && st.every((s) => s.state === 'WAIT' && s.qualifier === 'NotReady')) {
        this.primCommands++;
        this.log(`    (stayup: both nodes WAIT(NotReady) after ${firstWait} ms; stayup prim -m ${this.module.name} on node1)`);
        await this.cluster.cliOk('node1', ['prim', '-m', this.module.name]);
      }
      if (Date.now() > deadline) {
        const v = await Promise.all(this.lab.servers.map(async (n) => `--- ${n}: stayup state -m ${this.module.name} -v\n${await this.cluster.verbose(n, this.module.name)}`));
        throw new Error(`stayup module ${this.module.name} not PRIM(Ready)+SECOND(Ready) with the VIP on the primary within ${timeoutMs} ms: ${fmtStates(st)}\n${v.join('\n')}`);
      }
      await sleep(500);
    }
    await waitClient(this.lab, this, prober, prim, deadline, this.log);
    return prim;
  }

  /**
   * Where each node's module log is (node -> last seq). Read on the host, so watching a quiet window
   * costs the lab's CPUs nothing (a `stayup state` run is a Node start on a 2-CPU machine, enough to
   * disturb 40 ms heartbeats).
   */
  async snapshot(): Promise<string> {
    const last: Record<string, number> = {};
    for (const r of this.cluster.logRecords(this.module.name)) last[r.node] = Math.max(last[r.node] ?? 0, r.seq);
    return JSON.stringify(last);
  }

  /**
   * One per takeover logged since the snapshot ("virtual IP … added"), at least one if a node lost its
   * peer, took an automatic action or resolved a split brain.
   */
  changes(before: string, after: string): number {
    const recs = this.cluster.logRecords(this.module.name, JSON.parse(before) as Record<string, number>);
    const limit = JSON.parse(after) as Record<string, number>;
    const inWin = recs.filter((r) => r.seq <= (limit[r.node] ?? 0));
    const takeovers = inWin.filter((r) => /^virtual IP \S+ added/.test(r.message)).length;
    const other = inWin.some((r) => /not heard on any heartbeat lan|^Action \w+ called by|Split brain/.test(r.message));
    return Math.max(takeovers, other ? 1 : 0);
  }

  /** The module log lines behind changes(before, after), for the report. */
  describe(before: string, after: string): string {
    const limit = JSON.parse(after) as Record<string, number>;
    return this.cluster
      .logRecords(this.module.name, JSON.parse(before) as Record<string, number>)
      .filter((r) => r.seq <= (limit[r.node] ?? 0) && /not heard|^Action|Split brain|virtual IP/.test(r.message))
      .map((r) => `${r.node}: ${r.message}`)
      .join('; ');
  }

  /** The engine's "Takeover times" line (module log, level D) of the node that took over. */
  takeoverDetail(since: string): string | undefined {
    const r = this.cluster.logRecords(this.module.name, JSON.parse(since) as Record<string, number>).find((x) => x.message.startsWith('Takeover times'));
    return r ? `${r.node}: ${r.message}` : undefined;
  }

  /** Just thaw: the split brain is resolved by stayup itself, the pair settles as its state says. */
  async recover(frozen: string): Promise<void> {
    await this.lab.thaw(frozen);
  }
}

export interface FreezeRecord {
  index: number;
  node: string;
  outage?: Outage;
  /** Client not answered by another server before the takeover deadline. */
  noTakeover?: boolean;
  /** The failover's phases on the wire (with --wire-trace). */
  wire?: WirePhases;
}

export interface FreezeRunResult {
  freezes: FreezeRecord[];
  /** VIP moves or state changes seen in the quiet windows before the freezes. */
  falseFailovers: number;
  notes: string[];
}

export interface FreezeOptions {
  freezes: number;
  pulseMs: number;
  timeoutMs: number;
  label: string;
  log: Log;
  /** Splits each failover into phases seen on the wire. */
  wire?: WireTrace;
}

/**
 * N freezes of the current primary. Each cycle: wait until the pair is ready and the client answered by
 * the primary; a quiet window (max(1 s, timeout) + a random part of a pulse, so the freeze falls at a
 * random phase of the heartbeat) in which any VIP move or state change is a false failover; freeze; wait
 * until another server answers; keep it frozen max(0.5 s, timeout) longer; recover.
 */
export async function runFreezes(lab: Lab, d: PairDriver, prober: Prober, o: FreezeOptions): Promise<FreezeRunResult> {
  const res: FreezeRunResult = { freezes: [], falseFailovers: 0, notes: [] };
  const readyTimeout = Math.max(60_000, 20 * o.timeoutMs);
  const quietMs = Math.max(1000, o.timeoutMs);
  const takeoverTimeout = Math.max(10_000, 10 * o.timeoutMs + 5000);
  const holdMs = Math.max(500, o.timeoutMs);
  let cycles = 0;
  while (res.freezes.length < o.freezes) {
    if (++cycles > 3 * o.freezes + 3) throw new Error(`${o.label}: too many false failovers (${res.falseFailovers}) to finish ${o.freezes} freezes`);
    const primary = await d.waitReady(prober, readyTimeout);
    const snap = await d.snapshot();
    const from = monoMs();
    await sleep(quietMs + Math.random() * o.pulseMs);
    const win = windowReport(prober.records, from, monoMs());
    const snap2 = await d.snapshot();
    const changes = d.changes(snap, snap2);
    if (win.moves || changes) {
      res.falseFailovers += Math.max(win.away, changes, 1);
      const note = `${o.label}: false failover before freeze ${res.freezes.length + 1}: client path ${win.path.join(' -> ')}; ${d.describe(snap, snap2)}`;
      res.notes.push(note);
      o.log(`  ${note}`);
      continue;
    }
    const freezeStart = monoMs();
    await lab.freeze(primary);
    const freezeEnd = monoMs();
    let thawAt: number;
    let first;
    try {
      first = await prober.waitFor((r) => r.ok && r.t1 > freezeEnd && r.srv !== primary, takeoverTimeout);
      if (first) await sleep(holdMs);
      thawAt = monoMs();
    } finally {
      await d.recover(primary).catch(async (e: unknown) => {
        await lab.thaw(primary).catch(() => undefined);
        throw e;
      });
    }
    const rec: FreezeRecord = { index: res.freezes.length + 1, node: primary };
    const out = first ? outageOf(prober.records, { node: primary, freezeStart, freezeEnd, thawAt }) : undefined;
    if (out) {
      rec.outage = out;
      o.log(`  ${o.label} freeze ${rec.index}/${o.freezes}: froze ${primary}, ${out.newServer} answered; outage ${out.outageMs} ms (takeover ${out.takeoverMs} ms, ${out.failed} failed attempts)`);
      if (o.wire && first) {
        // The two answers outageOf measured between.
        const lastAnswer = prober.records.filter((r) => r.ok && r.srv === primary && r.t1 <= freezeEnd).at(-1);
        const answer = prober.records.filter((r) => r.ok && r.srv !== primary && r.t1 > (lastAnswer?.t1 ?? freezeEnd) && r.t1 < thawAt!).sort((x, y) => x.t1 - y.t1)[0] ?? first;
        const p = wirePhases(o.wire, { frozen: primary, taker: out.newServer, vip: d.vip, freezeEnd, thawAt: thawAt!, lastAnswer, answer });
        if (p) rec.wire = p;
        o.log(`    ${p ? fmtPhases(p) : 'wire: the trace did not see the freeze'}`);
        o.wire.forget(thawAt! - 5000);
      }
      const detail = d.takeoverDetail?.(snap2);
      if (detail) o.log(`    ${detail}`);
    } else {
      rec.noTakeover = true;
      o.log(`  ${o.label} freeze ${rec.index}/${o.freezes}: froze ${primary}, NO other server answered within ${takeoverTimeout} ms`);
    }
    res.freezes.push(rec);
  }
  return res;
}

export interface IdleTarget {
  driver: PairDriver;
  prober: Prober;
}

export interface IdleResult {
  product: 'stayup' | 'keepalived';
  /** max(VIP moves away from the primary seen by the client, state changes of the pair) during the window. */
  falseFailovers: number;
  /** Times the client was answered by another server than the primary (a move and its way back count once). */
  vipMoves: number;
  stateChanges: number;
  window: WindowReport;
}

/**
 * Every pair ready and idle, both CPUs busy (one `stress-ng --cpu 1` in each server), for `seconds`:
 * VIP moves (the client answered by another server) and state changes (polled every 5 s) are false
 * failovers.
 */
export async function idleCheck(lab: Lab, targets: IdleTarget[], seconds: number, log: Log): Promise<IdleResult[]> {
  for (const t of targets) await t.driver.waitReady(t.prober, 120_000);
  const stress: SpawnedProcess[] = [];
  try {
    for (const node of lab.servers) {
      stress.push(await lab.spawn(node, ['stress-ng', '--cpu', '1', '--timeout', `${seconds + 60}s`, '--quiet'], { logFile: `${lab.stateDir}/logs/${node}-stress-ng.log` }));
    }
    await sleep(1000);
    const snaps = await Promise.all(targets.map((t) => t.driver.snapshot()));
    const changes = targets.map(() => 0);
    const last = [...snaps];
    const from = monoMs();
    const end = Date.now() + seconds * 1000;
    log(`  idle: ${seconds} s with ${lab.servers.length} stress-ng CPU workers`);
    while (Date.now() < end) {
      await sleep(Math.min(5000, Math.max(0, end - Date.now())));
      for (let i = 0; i < targets.length; i++) {
        const s = await targets[i]!.driver.snapshot();
        const c = targets[i]!.driver.changes(last[i]!, s);
        if (c) log(`  idle: ${targets[i]!.driver.product} state changed: ${targets[i]!.driver.describe(last[i]!, s)}`);
        changes[i]! += c;
        last[i] = s;
      }
    }
    const to = monoMs();
    return targets.map((t, i) => {
      const w = windowReport(t.prober.records, from, to);
      return { product: t.driver.product, falseFailovers: Math.max(w.away, changes[i]!), vipMoves: w.away, stateChanges: changes[i]!, window: w };
    });
  } finally {
    for (const p of stress) await lab.kill(p.pid, 'SIGKILL').catch(() => undefined);
  }
}
