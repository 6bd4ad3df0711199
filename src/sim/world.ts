// The simulated world of one mirror module: two nodes' machines, and in-memory twins of everything the
// daemon shell would touch — a lossy network of heartbeat lans, a script executor, the virtual IP, the
// disk (persisted records), replication and the application's data. Every source of nondeterminism is
// the seeded Prng, so a seed replays exactly. The invariant checker (invariants.ts) runs after every step.
import {
  initialMirrorState,
  step as realStep,
  isPrimaryState,
  isStartScript,
  formatCall,
  SCRIPT_ORDER,
  type MirrorConfig,
  type MirrorEffect,
  type MirrorEvent,
  type MirrorPersisted,
  type MirrorState,
  type StepResult,
  type ScriptCall,
  type ReplicationRole,
  type ReplicationSync,
  type MirrorCommandName,
} from '../mirror/index.ts';
import { Prng } from './prng.ts';
import { EventQueue } from './queue.ts';
import { missingWrites } from './data.ts';

const traceLines = Number(process.env.STAYUP_SIM_TRACE ?? 80);

export type StepFn = (state: MirrorState, event: MirrorEvent) => StepResult;

export interface WorldOptions {
  seed: number;
  stepFn?: StepFn;
  config: Omit<MirrorConfig, 'self' | 'peer'>;
  names: [string, string];
  delayMinMs: number;
  delayJitterMs: number;
  scriptMinMs: number;
  scriptMaxMs: number;
}

/** A broken invariant: carries the seed and the step so the run can be replayed. */
export class SimFailure extends Error {
  constructor(
    readonly seed: number,
    readonly stepNo: number,
    readonly timeMs: number,
    readonly invariant: string,
    readonly trace: string,
  ) {
    super(
      `sim seed ${seed}, step ${stepNo}, t=${timeMs}ms: ${invariant}\n` +
        `replay: STAYUP_SIM_SEED=${seed} node --import tsx scripts/test.mjs sim\n` +
        `last steps:\n${trace}`,
    );
    this.name = 'SimFailure';
  }
}

/** One write of the application: a version of the data, in a tree (split brains make branches). */
export interface Version {
  id: number;
  parent: Version | null;
  depth: number;
  writer: string;
  atMs: number;
  /** The other node may lack this write and still be promoted (a documented split-brain case). */
  exemptForOther: boolean;
}

export interface HbMeta {
  sentAtMs: number;
  /** The sender's application ran as primary when it sent (truth, not what the message says). */
  senderApp: boolean;
}

export interface Batch {
  id: number;
  token: number;
  calls: ScriptCall[];
  index: number;
  effect: Extract<MirrorEffect, { type: 'runScripts' }>;
}

export class SimNode {
  machine: MirrorState | null = null;
  persisted: MirrorPersisted | null = null;
  frozen = false;
  frozenQueue: Array<{ ev: MirrorEvent; meta: HbMeta | null }> = [];
  timerToken = 0;
  batchToken = 0;
  batch: Batch | null = null;
  vip = false;
  /** The application runs as primary: from the end of start_prim to the end of stop_prim. */
  app = false;
  ready = false;
  repl: { role: ReplicationRole; synced: boolean; token: number } = { role: 'off', synced: false, token: 0 };
  data: Version;
  lastPeerHb: (HbMeta & { processedAtMs: number }) | null = null;
  /** The transition whose scripts run: its table row and how many calls were made. */
  tx: { key: string; done: number } | null = null;
  /** The operator asked prim/primforce (answered ok, or not answered yet): the next promotion need not prove its data. */
  primAccepted = false;
  primPending = new Set<string>();
  get primRequested(): boolean {
    return this.primAccepted || this.primPending.size > 0;
  }
  consumePrim(): void {
    this.primAccepted = false;
    this.primPending.clear();
  }
  pendingRequests = new Set<string>();
  other!: SimNode;

  constructor(
    readonly name: string,
    readonly config: MirrorConfig,
    root: Version,
  ) {
    this.data = root;
  }

  get running(): boolean {
    return this.machine !== null && this.machine.state !== 'STOP';
  }
}

export interface TraceEntry {
  t: number;
  node: string;
  ev: MirrorEvent | string;
  state: string;
  effects: MirrorEffect[];
}

export interface WorldHooks {
  /** Called after every machine step and world change. Throws SimFailure on a broken invariant. */
  afterStep(w: World): void;
  onStartPrim(w: World, n: SimNode): void;
  onBatchStart(w: World, n: SimNode, e: Extract<MirrorEffect, { type: 'runScripts' }>): void;
  /** Before each effect is carried out (the disk still holds what earlier effects persisted). */
  onEffect(w: World, n: SimNode, e: MirrorEffect, index: number, all: readonly MirrorEffect[]): void;
}

export class World {
  readonly rng: Prng;
  readonly q = new EventQueue();
  readonly nodes: [SimNode, SimNode];
  readonly lans: Map<string, { up: boolean; loss: number }>;
  readonly stepFn: StepFn;
  stepNo = 0;
  scriptFailP = 0;
  requestSeq = 0;
  versionSeq = 0;
  /**
   * The two nodes' data may have diverged legitimately: both were primary while cut off from each other
   * (split brain), or the operator forced one with prim/primforce. Until one of them starts to
   * resynchronise from the other, what either writes may be missing on the other.
   */
  diverged = false;
  /** Both nodes hold the virtual IP since this time (null when not). */
  dualVipSinceMs: number | null = null;
  private ring: TraceEntry[] = [];
  private ringAt = 0;
  hooks: WorldHooks | null = null;

  constructor(readonly opts: WorldOptions) {
    this.rng = new Prng(opts.seed);
    this.stepFn = opts.stepFn ?? realStep;
    const root: Version = { id: 0, parent: null, depth: 0, writer: '-', atMs: 0, exemptForOther: false };
    const [a, b] = opts.names;
    this.nodes = [
      new SimNode(a, { ...opts.config, self: a, peer: b }, root),
      new SimNode(b, { ...opts.config, self: b, peer: a }, root),
    ];
    this.nodes[0].other = this.nodes[1];
    this.nodes[1].other = this.nodes[0];
    this.lans = new Map(opts.config.heartbeats.map((h) => [h.lan, { up: true, loss: 0 }]));
  }

  get now(): number {
    return this.q.nowMs;
  }

  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`sim: no node ${name}`);
    return n;
  }

  /** Some heartbeat lan connects the two nodes (partitions are symmetric). */
  connected(): boolean {
    for (const l of this.lans.values()) if (l.up) return true;
    return false;
  }

  fail(invariant: string): never {
    throw new SimFailure(this.opts.seed, this.stepNo, this.now, invariant, this.formatTrace());
  }

  // ------------------------------------------------------------------------------------------ trace

  record(e: TraceEntry): void {
    const max = traceLines;
    if (this.ring.length < max) this.ring.push(e);
    else this.ring[this.ringAt] = e;
    this.ringAt = (this.ringAt + 1) % max;
  }

  formatTrace(): string {
    const ordered = [...this.ring.slice(this.ringAt), ...this.ring.slice(0, this.ringAt)];
    return ordered.map(formatEntry).join('\n');
  }

  // ------------------------------------------------------------------------------------------ servers

  /** The server boots: its daemon starts with what it had persisted. */
  boot(n: SimNode): void {
    if (n.machine) return;
    n.machine = initialMirrorState(n.config, n.persisted, this.now);
    this.record({ t: this.now, node: n.name, ev: 'boot', state: stateOf(n), effects: [] });
  }

  /** Power loss: memory, processes, the virtual IP and the timers are gone; the disk stays. */
  crash(n: SimNode): void {
    if (!n.machine) return;
    n.machine = null;
    n.frozen = false;
    n.frozenQueue = [];
    n.timerToken += 1;
    n.batch = null;
    n.batchToken += 1;
    n.tx = null;
    n.vip = false;
    n.app = false;
    n.ready = false;
    n.repl = { role: 'off', synced: false, token: n.repl.token + 1 };
    n.pendingRequests.clear();
    n.consumePrim();
    n.lastPeerHb = null;
    this.record({ t: this.now, node: n.name, ev: 'crash', state: 'down', effects: [] });
    this.afterChange();
  }

  freeze(n: SimNode): void {
    if (!n.machine || n.frozen) return;
    n.frozen = true;
    this.record({ t: this.now, node: n.name, ev: 'freeze', state: stateOf(n), effects: [] });
  }

  resume(n: SimNode): void {
    if (!n.frozen) return;
    n.frozen = false;
    this.record({ t: this.now, node: n.name, ev: 'resume', state: stateOf(n), effects: [] });
    const queued = n.frozenQueue;
    n.frozenQueue = [];
    for (const { ev, meta } of queued) {
      if (!n.machine || n.frozen) break;
      this.process(n, { ...ev, nowMs: this.now }, meta);
    }
  }

  setLan(lan: string, up: boolean, loss?: number): void {
    const l = this.lans.get(lan);
    if (!l) throw new Error(`sim: no lan ${lan}`);
    l.up = up;
    if (loss !== undefined) l.loss = loss;
    this.record({ t: this.now, node: '-', ev: `lan ${lan} ${up ? 'up' : 'down'} loss=${l.loss}`, state: '', effects: [] });
    this.afterChange();
  }

  command(n: SimNode, command: MirrorCommandName, o: { identity?: string; nosync?: boolean } = {}): void {
    if (!n.machine) return;
    const requestId = `r${++this.requestSeq}`;
    if (command === 'prim' || command === 'primforce') n.primPending.add(requestId);
    this.deliver(n, {
      type: 'command',
      nowMs: this.now,
      command,
      requestId,
      ...(o.identity ? { identity: o.identity } : {}),
      ...(o.nosync ? { nosync: true } : {}),
    });
  }

  // ------------------------------------------------------------------------------------------ steps

  deliver(n: SimNode, ev: MirrorEvent, meta: HbMeta | null = null): void {
    if (!n.machine) return;
    if (ev.type === 'command' && ev.requestId) n.pendingRequests.add(ev.requestId);
    if (n.frozen) {
      // A socket buffer: bounded; heartbeats beyond it are dropped, everything else is kept.
      if (ev.type !== 'heartbeatReceived' || n.frozenQueue.length < 512) n.frozenQueue.push({ ev, meta });
      return;
    }
    this.process(n, ev, meta);
  }

  private process(n: SimNode, ev: MirrorEvent, meta: HbMeta | null): void {
    this.stepNo += 1;
    // What the node knows of its peer: a stopped machine ignores heartbeats and forgets at start.
    const wasStopped = n.machine!.state === 'STOP';
    if (ev.type === 'heartbeatReceived' && meta && !wasStopped) {
      n.lastPeerHb = { ...meta, processedAtMs: this.now };
    }
    let r: StepResult;
    try {
      r = this.stepFn(n.machine!, ev);
    } catch (err) {
      this.record({ t: this.now, node: n.name, ev, state: stateOf(n), effects: [] });
      return this.fail(`the machine threw: ${(err as Error).stack ?? String(err)}`);
    }
    n.machine = r.state;
    if (wasStopped && r.state.state !== 'STOP') n.lastPeerHb = null;
    this.record({ t: this.now, node: n.name, ev, state: stateOf(n), effects: r.effects });
    r.effects.forEach((e, i) => {
      this.hooks?.onEffect(this, n, e, i, r.effects);
      this.execute(n, e);
    });
    // An accepted prim/primforce holds until the node's next promotion (a failed start_* in between
    // restarts it with the record prim wrote); a refusal or becoming SECOND withdraws it.
    if (n.machine && n.machine.state === 'SECOND') n.primAccepted = false;
    this.afterChange();
  }

  afterChange(): void {
    const [a, b] = this.nodes;
    if (a.vip && b.vip) this.dualVipSinceMs ??= this.now;
    else this.dualVipSinceMs = null;
    const isolated = !this.connected() || a.frozen || b.frozen;
    if (isolated && a.running && b.running && primaryLike(a) && primaryLike(b)) this.diverged = true;
    this.hooks?.afterStep(this);
  }

  private execute(n: SimNode, e: MirrorEffect): void {
    switch (e.type) {
      case 'persist': {
        // A node that starts claiming its data alone while cut off from a running peer starts a
        // documented split brain: the peer may be claiming the same at the same time.
        const claims = e.record.uptodate && !n.persisted?.uptodate;
        if (claims && n.other.running && (!this.connected() || n.frozen || n.other.frozen)) this.diverged = true;
        n.persisted = { ...e.record };
        return;
      }
      case 'runScripts':
        if (n.batch) this.fail(`${n.name}: runScripts #${e.id} while batch #${n.batch.id} runs`);
        this.hooks?.onBatchStart(this, n, e);
        n.batch = { id: e.id, token: ++n.batchToken, calls: e.calls, index: 0, effect: e };
        this.startCall(n);
        return;
      case 'cancelScripts':
        // The cancelled batch may have ended already (its scriptsDone waiting in a frozen node's queue).
        n.tx = null;
        if (n.batch && n.batch.id === e.id) {
          n.batch = null;
          n.batchToken += 1;
        }
        return;
      case 'vipUp':
        if (n.vip) this.fail(`${n.name}: vipUp while the virtual IP is already up`);
        n.vip = true;
        return;
      case 'vipDown':
        n.vip = false;
        return;
      case 'ready':
        n.ready = e.ready;
        return;
      case 'setReplication':
        this.setReplication(n, e.role, e.sync);
        return;
      case 'sendHeartbeat':
        this.send(n, e.lan, e);
        return;
      case 'setTimer': {
        const token = ++n.timerToken;
        this.q.at(e.atMs, () => {
          if (n.timerToken === token && n.machine) this.deliver(n, { type: 'tick', nowMs: this.now });
        });
        return;
      }
      case 'log':
        return;
      case 'reply':
        if (e.requestId) n.pendingRequests.delete(e.requestId);
        if (e.requestId && n.primPending.delete(e.requestId) && e.ok) {
          // The operator chose this node's data (the machine persists that choice): what the peer wrote
          // and this node lacks is given up, and the two lineages may diverge until one resynchronises.
          n.primAccepted = true;
          for (const v of missingWrites(n.data, n.other.data, n.other.name)) v.exemptForOther = true;
          this.diverged = true;
        }
        return;
    }
  }

  // ------------------------------------------------------------------------------------------ network

  private send(from: SimNode, lanName: string, e: Extract<MirrorEffect, { type: 'sendHeartbeat' }>): void {
    const lan = this.lans.get(lanName);
    if (!lan || !lan.up) return;
    if (lan.loss > 0 && this.rng.chance(lan.loss)) return;
    const to = from.other;
    const meta: HbMeta = { sentAtMs: this.now, senderApp: from.app };
    const delay = this.opts.delayMinMs + this.rng.int(0, this.opts.delayJitterMs);
    this.q.after(delay, () =>
      this.deliver(to, { type: 'heartbeatReceived', nowMs: this.now, lan: lanName, message: e.message }, meta),
    );
  }

  // ------------------------------------------------------------------------------------------ scripts

  private startCall(n: SimNode): void {
    const b = n.batch!;
    const call = b.calls[b.index]!;
    if (call.script === 'start_prim') this.hooks?.onStartPrim(this, n);
    const duration = this.rng.int(this.opts.scriptMinMs, this.opts.scriptMaxMs);
    const fails = isStartScript(call.script) && this.scriptFailP > 0 && this.rng.chance(this.scriptFailP);
    const token = b.token;
    this.q.after(duration, () => {
      if (!n.machine || !n.batch || n.batch.token !== token) return;
      if (call.script === 'start_prim' && !fails) n.app = true;
      if (call.script === 'stop_prim') n.app = false;
      if (fails) {
        n.batch = null;
        n.tx = null;
        this.deliver(n, { type: 'scriptsDone', nowMs: this.now, id: b.id, ok: false, failedScript: call.script });
        return;
      }
      b.index += 1;
      if (b.index < b.calls.length) {
        this.startCall(n);
        this.afterChange();
        return;
      }
      n.batch = null;
      this.deliver(n, { type: 'scriptsDone', nowMs: this.now, id: b.id, ok: true });
    });
  }

  // ------------------------------------------------------------------------------------------ replication and data

  private setReplication(n: SimNode, role: ReplicationRole, sync: ReplicationSync): void {
    n.repl = { role, synced: false, token: n.repl.token + 1 };
    if (role === 'second') this.diverged = false;
    if (role === 'second') this.reintegrate(n, n.repl.token, sync === 'none' ? 5 : this.rng.int(50, 600));
  }

  private reintegrate(n: SimNode, token: number, delayMs: number): void {
    this.q.after(delayMs, () => {
      if (!n.machine || n.repl.token !== token || n.repl.role !== 'second') return;
      const src = n.other;
      const ok = !n.frozen && src.machine && !src.frozen && this.connected() && isPrimaryState(src.machine.state);
      if (!ok) return this.reintegrate(n, token, 100);
      n.data = src.data;
      n.repl.synced = true;
      this.deliver(n, { type: 'replicationState', nowMs: this.now, uptodate: true, reintegrationInterrupted: false, lastSyncMs: this.now });
    });
  }

  /** The replication of a synchronised SECOND breaks (it will resynchronise). */
  breakReplication(n: SimNode): void {
    if (!n.machine || n.repl.role !== 'second' || !n.repl.synced) return;
    n.repl = { role: 'second', synced: false, token: n.repl.token + 1 };
    this.deliver(n, { type: 'replicationState', nowMs: this.now, uptodate: false, reintegrationInterrupted: false, lastSyncMs: null });
    this.reintegrate(n, n.repl.token, this.rng.int(50, 400));
  }

  /**
   * The application writes where it runs as primary and clients reach it (through the virtual IP), with
   * semi-synchronous replication to a synchronised SECOND.
   */
  write(n: SimNode): void {
    if (!n.machine || n.frozen || !n.app || !n.vip) return;
    const o = n.other;
    const reachable = this.connected() && !o.frozen;
    const mirrored = o.machine !== null && o.repl.role === 'second' && o.repl.synced;
    if (mirrored && !reachable) return; // the write blocks until the primary gives up its secondary
    // Writes the other node may lack without being stale: made while the two were cut off, while both
    // were primary (a split brain, whose loser is resynchronised), or while their data has diverged.
    const exempt = (o.running && !reachable) || (o.running && primaryLike(o)) || this.diverged;
    const v: Version = { id: ++this.versionSeq, parent: n.data, depth: n.data.depth + 1, writer: n.name, atMs: this.now, exemptForOther: exempt };
    n.data = v;
    if (mirrored) o.data = v;
  }
}

function primaryLike(n: SimNode): boolean {
  return n.app || n.vip || (n.machine !== null && isPrimaryState(n.machine.state));
}

export function stateOf(n: SimNode): string {
  const m = n.machine;
  if (!m) return 'down';
  return `${m.state}(${m.qualifier})${n.frozen ? ' frozen' : ''}${n.vip ? ' vip' : ''}${n.app ? ' app' : ''}`;
}

function formatEvent(ev: MirrorEvent | string): string {
  if (typeof ev === 'string') return ev;
  switch (ev.type) {
    case 'tick':
      return 'tick';
    case 'command':
      return `cmd ${ev.command}${ev.identity ? ` -i ${ev.identity}` : ''}${ev.nosync ? ' nosync' : ''}${ev.fullsync ? ' fullsync' : ''}`;
    case 'heartbeatReceived': {
      const m = ev.message;
      return `hb ${ev.lan} #${m.seq} ${m.state}(${m.qualifier})${m.primActive ? ' prim' : ''}${m.established ? ' est' : ''}${m.exiting ? ' exiting' : ''}${m.swapping ? ' swapping' : ''} gen=${m.gen}`;
    }
    case 'scriptsDone':
      return `done#${ev.id} ${ev.ok ? 'ok' : `FAIL ${ev.failedScript ?? ''}`}`;
    case 'replicationState':
      return `repl uptodate=${+ev.uptodate}`;
    case 'checker':
      return `checker ${ev.name} ${ev.up ? 'up' : 'down'}`;
    case 'syncedCheck':
      return `synced recent=${+ev.recent}`;
  }
}

function formatEffect(e: MirrorEffect): string | null {
  switch (e.type) {
    case 'sendHeartbeat':
    case 'setTimer':
      return null;
    case 'runScripts':
      return `run#${e.id} ${e.current}->${e.next} [${e.calls.map(formatCall).join(',')}]`;
    case 'persist':
      return `persist(up=${+e.record.uptodate},last=${+e.record.lastPrim},gen=${e.record.gen})`;
    case 'log':
      return `log:${e.message}`;
    case 'reply':
      return `reply ${e.command} ${e.ok ? 'ok' : 'refused'}`;
    case 'vipDown':
      return 'vipDown';
    case 'ready':
      return `ready=${+e.ready}`;
    case 'setReplication':
      return `repl ${e.role}/${e.sync}`;
    case 'cancelScripts':
      return `cancel#${e.id}`;
    case 'vipUp':
      return 'vipUp';
  }
}

function formatEntry(e: TraceEntry): string {
  const fx = e.effects.map(formatEffect).filter((s) => s !== null);
  return `${String(e.t).padStart(6)} ${e.node.padEnd(3)} ${formatEvent(e.ev).padEnd(44)} -> ${e.state}${fx.length ? `  ${fx.join('; ')}` : ''}`;
}

/** The script calls of a row, for order checks: force matters only where the table has it. */
export function rowNames(key: string): string[] | null {
  const row = SCRIPT_ORDER[key];
  return row ? row.map(formatCall) : null;
}
