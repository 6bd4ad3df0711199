// The daemon's shell around the pure mirror machine (src/mirror): it turns the world into events and
// carries out the machine's effects, for one mirror module on this node.
//
// One event at a time: events (commands, heartbeats, script ends, replication reports, the timer) go
// into a queue; each is stamped with the monotonic clock when its step runs, and the next step only
// starts once every effect of the previous one has been carried out or started. Effects are carried out
// in array order (the contract in src/mirror/README.md):
//   persist      written and fsynced before anything after it (a failure faults the engine, see fault())
//   vipUp/Down   awaited, so start_prim (the next effect) finds the address in place, and a stop's
//                next scripts find it gone; a failure becomes an automated stopstart (counted by maxloop)
//   runScripts   started, not awaited: its end comes back as a scriptsDone event
//   sends, timer, logs, replies, ready: immediate
// Every seam (channel, VIP, scripts, replication, store, clock) is injected, so the same shell runs over
// UDP and real commands in the daemon and over in-memory twins in tests.
import { performance } from 'node:perf_hooks';
import type { HeartbeatChannel, FrameEvent, RejectEvent } from '../heartbeat/channel.ts';
import { initialMirrorState, step } from '../mirror/machine.ts';
import type {
  MirrorCommandName,
  MirrorConfig,
  MirrorEffect,
  MirrorEvent,
  MirrorPersisted,
  MirrorState,
  MirrorStateName,
  Qualifier,
  ReplicationRole,
  ReplicationSync,
} from '../mirror/types.ts';
import type { ErrorCode } from '../errors/codes.ts';
import { isStayupError } from '../errors/stayup-error.ts';
import { decodeHeartbeatMessage, encodeHeartbeatMessage } from './heartbeat-codec.ts';
import type { MirrorRecordStore } from './mirror-store.ts';
import { preciseTimeout, type PreciseTimer, type Scheduler } from '../util/scheduler.ts';
import type { CompareMode, ReplicaComparison } from '../replication/verify.ts';

export type RunScriptsEffect = Extract<MirrorEffect, { type: 'runScripts' }>;

/** Adds and removes the module's virtual IPs (VipManager in the daemon). */
export interface VipPort {
  up(): Promise<unknown>;
  down(): Promise<unknown>;
  /** Sends the gratuitous ARP again for addresses already up (after a split brain). */
  announce(): Promise<unknown>;
}

/** Runs one batch of module scripts (runTransitionScripts in the daemon). */
export interface ScriptPort {
  run(batch: RunScriptsEffect, signal: AbortSignal): Promise<{ ok: boolean; failedScript?: string }>;
}

/**
 * The replication layer's seam: the engine tells it the role the machine chose; it reports back with
 * MirrorEngine.replicationState(). A module without replicated data uses noReplication().
 */
export interface ReplicationPort {
  setRole(role: ReplicationRole, sync: ReplicationSync, report: (r: ReplicationReport) => void): void;
  close?(): void;
  /** What `stayup state -v` shows of it (part of MirrorStatus). */
  status?(): ReplicationStatus;
  /** rfsverify / rfsdiff (the daemon calls it; the engine does not). */
  compareReplicas?(mode: CompareMode): Promise<ReplicaComparison>;
  /** When this node's data was last in sync with its peer (ms since the epoch), whatever its role: syncdelta. */
  lastSyncMs?(): number | null;
}

export interface ReplicationReport {
  uptodate: boolean;
  reintegrationInterrupted: boolean;
  lastSyncMs: number | null;
  /** Primary: the peer stopped being replicated to (link lost, or stalled past sendtimeout/locktimeout). */
  peerLost?: boolean;
}

/** The replication's state for operators (RfsRuntime.status()). Times in ms; *Ms dates since the epoch. */
export interface ReplicationStatus {
  role: ReplicationRole;
  /** The replicated directories are intercepted (FUSE), and read-only to applications. */
  mounted: boolean;
  readOnly: boolean;
  /** Primary: connected to the secondary; secondary: a primary is connected. */
  linkUp: boolean;
  /** Primary: application calls waiting for the secondary's acknowledgement. */
  pendingAcks: number;
  /** Primary: paths in the journal, to compare or send at the next reintegration. */
  journalPaths: number;
  /** The reintegration under way: sent by this primary (with its progress) or received by this secondary. */
  reintegration: {
    direction: 'sending' | 'receiving';
    scope: string;
    elapsedMs: number;
    files: number | null;
    bytesSent: number | null;
    bytesPerS: number | null;
  } | null;
  /** The last reintegration this node sent since its daemon started. */
  lastReintegration: { scope: string; filesCopied: number; bytesSent: number; durationMs: number; endedMs: number } | null;
  /** The sync point this node's data matches, and when it was last in sync. */
  syncId: string | null;
  lastSyncMs: number | null;
  /** The last role ended cleanly (false while a role runs). */
  clean: boolean;
  /** The last time the stall watchdog dropped the secondary, and why. */
  lastStall: { atMs: number; reason: string } | null;
  /** The replication protocol version the link speaks (negotiated at its hello/welcome), null without a link. */
  protocolVersion: number | null;
  /** TCP connections the link's stream is spread over (<rfs nbremconn>, if the peer speaks it), 0 without a link. */
  linkConnections: number;
  /** Why no link can be set up (a refused handshake: no common protocol version, a malformed welcome...), until one is. */
  linkError: { code: string; message: string; sinceMs: number } | null;
}

/** Nothing to replicate: a SECOND is in sync as soon as it has the role. */
export function noReplication(nowMs: () => number = () => Date.now()): ReplicationPort {
  return {
    setRole(role, _sync, report) {
      if (role === 'second') queueMicrotask(() => report({ uptodate: true, reintegrationInterrupted: false, lastSyncMs: nowMs() }));
    },
  };
}

/** A monotonic clock and its timers (the engine's timer is not unref'd: a running module keeps the daemon up). */
export interface EngineClock extends Scheduler {
  nowMs(): number;
  /**
   * Calls fn once nowMs() >= atMs, to a fraction of a millisecond (a loss deadline). Without it the engine
   * uses setTimeout, which may be a millisecond or two late.
   */
  setDeadline?(fn: () => void, atMs: number): PreciseTimer;
  /** Wall-clock now, ms since the epoch (last-sync dates are wall-clock dates). Default Date.now(). */
  wallNowMs?(): number;
  /**
   * Runs fn once the event loop has polled I/O (setImmediate). Without it, fn runs at once. A timer
   * callback runs before the loop reads the sockets, so after this process was descheduled a tick would
   * otherwise be stepped before the peer's heartbeats that arrived meanwhile.
   */
  afterIo?(fn: () => void): void;
}

export const realClock: EngineClock = {
  nowMs: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setDeadline: (fn, atMs) => preciseTimeout(fn, atMs, () => performance.now()),
  afterIo: (fn) => void setImmediate(fn),
};

export type EngineLogLevel = 'U' | 'E' | 'C' | 'I' | 'D';
export type EngineLog = (level: EngineLogLevel, source: string, message: string, fields?: Record<string, unknown>) => void;

export interface MirrorEngineOptions {
  module: string;
  config: MirrorConfig;
  /** Its frames' receivedAtMs must be on the engine's clock (both default to performance.now()). */
  channel: HeartbeatChannel;
  vip: VipPort | null;
  scripts: ScriptPort;
  replication: ReplicationPort;
  store: MirrorRecordStore;
  log: EngineLog;
  clock?: EngineClock;
}

export interface CommandReply {
  ok: boolean;
  code: ErrorCode | null;
  message: string;
}

export interface MirrorStatus {
  module: string;
  node: string;
  peer: string;
  state: MirrorStateName;
  qualifier: Qualifier;
  reason: string;
  ready: boolean;
  vip: boolean;
  /** Why the engine stopped working (ENGINE_FAULTED), if it did. */
  faulted: string | null;
  persisted: MirrorPersisted;
  remote: { alive: boolean; state: MirrorStateName | null; qualifier: Qualifier | null };
  lans: Array<{ lan: string; up: boolean; lastHeardAgoMs: number | null }>;
  /** A script batch is running. */
  busy: boolean;
  /** Checkers attached to the module (intf.*, ip.*): the last result of each. */
  checkers: Array<{ name: string; up: boolean; reason: string }>;
  /** The replication of a module with <rfs>, else null. */
  replication: ReplicationStatus | null;
}

type Waiter = { test: (s: MirrorStatus) => boolean; resolve: (s: MirrorStatus) => void };

/** How often a repeated heartbeat rejection (same lan, same reason) is logged again. */
const REJECT_LOG_INTERVAL_MS = 60_000;
/** How often the syncdelta answer is recomputed (it changes with time alone). */
const SYNCED_CHECK_INTERVAL_MS = 5_000;

/**
 * When each step of a takeover happened, from the moment the peer's last heartbeat reached this node's
 * socket to the virtual IP being up: logged once per takeover (level D) so a slow failover can be taken
 * apart from the module log alone. Times are the engine clock's.
 */
class TakeoverTimes {
  readonly marks: Array<[string, number]> = [];
  constructor(readonly heardAtMs: number) {}
  mark(label: string, atMs: number): void {
    if (!this.marks.some(([l]) => l === label)) this.marks.push([label, atMs]);
  }
  describe(): string {
    return this.marks.map(([l, t]) => `${l} ${(t - this.heardAtMs).toFixed(1)}`).join(', ');
  }
}

export class MirrorEngine {
  readonly module: string;
  #s: MirrorState;
  readonly #o: MirrorEngineOptions;
  readonly #clock: EngineClock;
  readonly #queue: Array<(nowMs: number) => MirrorEvent | null> = [];
  #draining = false;
  #timer: PreciseTimer | null = null;
  #batch: { id: number; abort: AbortController } | null = null;
  #requestSeq = 0;
  readonly #pending = new Map<string, (r: CommandReply) => void>();
  readonly #waiters = new Set<Waiter>();
  readonly #listeners = new Set<(s: MirrorStatus) => void>();
  readonly #rejectLogged = new Map<string, number>();
  #faulted: string | null = null;
  /** What the health check answers: the last ready effect carried out (not the state's, which leads it). */
  #ready = false;
  #closed = false;
  readonly #closers: Array<() => void> = [];
  readonly #checkers = new Map<string, { up: boolean; reason: string; wait: boolean }>();
  /** Settles when the queue is empty (tests and close() wait on it). */
  #idle: Promise<void> = Promise.resolve();
  #idleResolve: (() => void) | null = null;
  /** When the peer's last authentic frame reached the socket (the channel's clock), any lan. */
  #heardAtMs: number | null = null;
  /** The running timer's wake-up time and when its callback first ran (for the takeover times). */
  #timerDueMs: number | null = null;
  #timerFiredMs: number | null = null;
  /** From the peer declared lost to the virtual IP up, while that is under way. */
  #takeover: TakeoverTimes | null = null;

  constructor(o: MirrorEngineOptions) {
    this.module = o.module;
    this.#o = o;
    this.#clock = o.clock ?? realClock;
    let persisted: MirrorPersisted | null = null;
    try {
      persisted = o.store.load();
    } catch (e) {
      // A damaged record claims nothing: the node starts as one whose data is not provably current.
      o.log('E', 'mirror', `${(e as Error).message}: starting as a node whose data may be not uptodate`);
    }
    this.#s = initialMirrorState(o.config, persisted, this.#clock.nowMs());
    o.channel.on('frame', (f) => this.#onFrame(f));
    o.channel.on('rejected', (r) => this.#onRejected(r));
    o.channel.on('warning', (w) => this.#o.log('I', 'heartbeat', `lan ${w.lan}: ${w.message}`));
  }

  // ----------------------------------------------------------------------------------------- inputs

  /** An operator or automated command. Resolves with the machine's answer (accepted or refused). */
  command(command: MirrorCommandName, opts: { identity?: string; nosync?: boolean; fullsync?: boolean } = {}): Promise<CommandReply> {
    if (this.#faulted) return Promise.resolve({ ok: false, code: 'ENGINE_FAULTED', message: this.#faulted });
    if (this.#closed) return Promise.resolve({ ok: false, code: 'CONFLICT', message: 'the module engine is closed' });
    const requestId = `r${++this.#requestSeq}`;
    return new Promise((resolve) => {
      this.#pending.set(requestId, resolve);
      this.#enqueue((nowMs) => ({
        type: 'command',
        nowMs,
        command,
        requestId,
        ...(opts.identity ? { identity: opts.identity } : {}),
        ...(opts.nosync ? { nosync: true } : {}),
        ...(opts.fullsync ? { fullsync: true } : {}),
      }));
    });
  }

  /**
   * A checker's result. A "wait" checker's change of state goes to the machine (the node waits while it
   * is down); other checkers only show in the status (their action is a command, sent by their binding).
   */
  reportChecker(name: string, up: boolean, reason: string, action: 'wait' | 'other'): void {
    const had = this.#checkers.get(name);
    this.#checkers.set(name, { up, reason, wait: action === 'wait' });
    if (action === 'wait' && (had === undefined ? !up : had.up !== up)) this.#enqueue((nowMs) => ({ type: 'checker', nowMs, name, up }));
    // A wait checker's change is the machine's event ("Checker … down", E): only the detail here.
    if (had?.up !== up) this.#o.log(up || action === 'wait' ? 'I' : 'E', 'checker', `${name} ${up ? 'up' : 'down'}: ${reason}`);
  }

  /** The replication layer's report (also what noReplication() calls). */
  replicationState(r: ReplicationReport): void {
    this.#enqueue((nowMs) => ({ type: 'replicationState', nowMs, ...r }));
  }

  // ----------------------------------------------------------------------------------------- outputs

  status(): MirrorStatus {
    const s = this.#s;
    const now = this.#clock.nowMs();
    const peer = s.peerAlive ? s.peer : null;
    return {
      module: this.module,
      node: s.config.self,
      peer: s.config.peer,
      state: s.state,
      qualifier: s.qualifier,
      reason: this.#faulted ?? s.reason,
      ready: this.#ready && !this.#faulted,
      vip: s.vip,
      faulted: this.#faulted,
      persisted: { ...s.persisted },
      remote: { alive: s.peerAlive, state: peer?.message.state ?? null, qualifier: peer?.message.qualifier ?? null },
      lans: s.lans.map((l) => ({ lan: l.lan, up: l.up, lastHeardAgoMs: l.lastHeardMs === null ? null : Math.round(now - l.lastHeardMs) })),
      busy: this.#batch !== null,
      checkers: [...this.#checkers].map(([name, c]) => ({ name, up: c.up, reason: c.reason })).sort((a, b) => a.name.localeCompare(b.name)),
      replication: this.#o.replication.status?.() ?? null,
    };
  }

  /** The replication layer (the daemon reaches rfsverify/rfsdiff through it). */
  get replication(): ReplicationPort {
    return this.#o.replication;
  }

  /** The health check's answer: no I/O, no queueing. */
  get ready(): boolean {
    return this.#ready && !this.#faulted;
  }

  onChange(fn: (s: MirrorStatus) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Resolves with the status once `test` holds (checked now and after every step), or null at the deadline. */
  waitFor(test: (s: MirrorStatus) => boolean, timeoutMs: number): Promise<MirrorStatus | null> {
    const now = this.status();
    if (test(now)) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w: Waiter = {
        test,
        resolve: (s) => {
          this.#clock.clearTimeout(t);
          this.#waiters.delete(w);
          resolve(s);
        },
      };
      const t = this.#clock.setTimeout(() => {
        this.#waiters.delete(w);
        resolve(null);
      }, timeoutMs);
      this.#waiters.add(w);
    });
  }

  /** Resolves when every queued event has been stepped (tests). */
  settled(): Promise<void> {
    return this.#idle;
  }

  /**
   * Stops listening and drops the timer. The module must be STOP (the manager stops it first): a running
   * batch is left to finish on its own, its end ignored.
   */
  /** Called by close(): what was attached to this engine (process monitoring, checkers). */
  onClose(fn: () => void): void {
    this.#closers.push(fn);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const fn of this.#closers) fn();
    this.#timer?.cancel();
    this.#timer = null;
    await this.#idle;
    for (const [, resolve] of this.#pending) resolve({ ok: false, code: 'CONFLICT', message: 'the module engine closed' });
    this.#pending.clear();
    for (const w of this.#waiters) w.resolve(this.status());
    this.#o.replication.close?.();
    await this.#o.channel.close();
  }

  /** Starts the clock of a freshly built engine (its first tick). */
  start(): void {
    this.#enqueue((nowMs) => ({ type: 'tick', nowMs }));
    this.#startSyncedCheck();
  }

  /**
   * `<rfs syncdelta>`: the reference's syncedcheck. Whether the last sync is within syncdelta is a
   * wall-clock question, answered here and handed to the machine at start and whenever the answer changes.
   */
  #startSyncedCheck(): void {
    const deltaMs = this.#o.config.syncDeltaMs ?? 0;
    const port = this.#o.replication;
    if (!(deltaMs > 0) || !port.lastSyncMs) return;
    let last: boolean | null = null;
    const check = (): void => {
      const syncedMs = port.lastSyncMs!();
      const wallMs = this.#clock.wallNowMs?.() ?? Date.now();
      const recent = syncedMs !== null && wallMs - syncedMs <= deltaMs;
      if (recent === last) return;
      last = recent;
      this.#enqueue((nowMs) => ({ type: 'syncedCheck', nowMs, recent }));
    };
    const clock = this.#clock;
    let handle: unknown = null;
    const loop = (): void => {
      check();
      handle = clock.setTimeout(loop, SYNCED_CHECK_INTERVAL_MS);
    };
    loop();
    this.#closers.push(() => clock.clearTimeout(handle));
  }

  // ----------------------------------------------------------------------------------------- the loop

  #enqueue(make: (nowMs: number) => MirrorEvent | null): void {
    if (this.#closed) return;
    this.#queue.push(make);
    if (!this.#draining) {
      this.#draining = true;
      this.#idle = new Promise((r) => (this.#idleResolve = r));
      void this.#drain();
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const make = this.#queue.shift()!;
        if (this.#faulted) continue;
        const event = make(this.#clock.nowMs());
        if (!event) continue;
        let result: ReturnType<typeof step>;
        try {
          result = step(this.#s, event);
        } catch (e) {
          // A programmer error in the machine: stop driving it rather than act on a broken state.
          await this.#fault(`the mirror machine failed on ${event.type}: ${(e as Error).stack ?? String(e)}`);
          continue;
        }
        const before = this.#s;
        this.#s = result.state;
        this.#noteTakeover(before, event);
        if (before.state !== result.state.state || before.qualifier !== result.state.qualifier) {
          // The reference's normal-log line for every change of the local state.
          this.#o.log('E', 'mirror', `Local state ${result.state.state} ${result.state.qualifier}${result.state.reason ? ` (${result.state.reason})` : ''}`);
        }
        await this.#carryOut(result.effects);
        if (!before.peerAlive && this.#s.peerAlive && this.#s.vip && this.#o.vip) {
          // The peer is back after being lost: it may have held the address meanwhile (a split brain)
          // and the clients may still send to its hardware address. Announce ours again.
          this.#o.vip.announce().catch((e: Error) => this.#o.log('E', 'vip', `gratuitous ARP: ${e.message}`));
        }
        this.#notify();
      }
    } finally {
      this.#draining = false;
      this.#idleResolve?.();
    }
  }

  async #carryOut(effects: readonly MirrorEffect[]): Promise<void> {
    for (const e of effects) {
      if (this.#faulted) return;
      switch (e.type) {
        case 'persist':
          try {
            this.#o.store.save(e.record);
          } catch (err) {
            await this.#fault(`cannot persist the module state: ${(err as Error).message}`);
            return;
          }
          this.#takeover?.mark('state record written', this.#clock.nowMs());
          break;
        case 'vipUp':
          this.#takeover?.mark('virtual IP requested', this.#clock.nowMs());
          await this.#vip('up');
          if (this.#takeover) {
            this.#takeover.mark('virtual IP up', this.#clock.nowMs());
            this.#o.log('D', 'mirror', `Takeover times (ms after the peer's last heartbeat reached this node): ${this.#takeover.describe()}`);
            this.#takeover = null;
          }
          break;
        case 'vipDown':
          await this.#vip('down');
          break;
        case 'runScripts':
          this.#takeover?.mark(`scripts ${e.calls.map((c) => c.script).join(',')} started`, this.#clock.nowMs());
          this.#runScripts(e);
          break;
        case 'cancelScripts':
          if (this.#batch && this.#batch.id === e.id) {
            this.#batch.abort.abort();
            this.#batch = null;
          }
          break;
        case 'ready':
          this.#ready = e.ready;
          break;
        case 'setReplication':
          this.#o.replication.setRole(e.role, e.sync, (r) => this.replicationState(r));
          break;
        case 'sendHeartbeat':
          try {
            this.#o.channel.sendOn(e.lan, encodeHeartbeatMessage(e.message));
          } catch (err) {
            this.#o.log('I', 'heartbeat', `lan ${e.lan}: send failed: ${(err as Error).message}`);
          }
          break;
        case 'setTimer':
          this.#setTimer(e.atMs, e.precise);
          break;
        case 'log':
          this.#o.log(e.level, 'mirror', e.message);
          break;
        case 'reply': {
          const resolve = e.requestId ? this.#pending.get(e.requestId) : undefined;
          if (resolve) {
            this.#pending.delete(e.requestId!);
            resolve({ ok: e.ok, code: e.ok ? null : (e.code ?? 'CONFLICT'), message: e.message });
          }
          break;
        }
      }
    }
  }

  /**
   * One timer. It must not hand the tick over before atMs: the machine only re-arms when the wake-up time
   * changes, so a tick a fraction of a millisecond early (setTimeout's millisecond rounding against
   * performance.now()) would leave it with nothing to wake it. An early fire re-arms for the rest. A
   * precise wake-up (a loss deadline: the takeover starts there) goes to the clock's setDeadline, which
   * fires within a fraction of a millisecond instead of setTimeout's one or two late. Either way the tick
   * is handed over after the loop has read the sockets (afterIo), so heartbeats that arrived while this
   * process did not run are stepped first.
   */
  #setTimer(atMs: number, precise: boolean): void {
    this.#timer?.cancel();
    this.#timerDueMs = atMs;
    this.#timerFiredMs = null;
    const fire = (): void => {
      this.#timer = null;
      this.#enqueue((nowMs) => ({ type: 'tick', nowMs }));
    };
    if (precise && this.#clock.setDeadline) {
      this.#timer = this.#clock.setDeadline(() => {
        this.#timerFiredMs = this.#clock.nowMs();
        fire();
      }, atMs);
      return;
    }
    let cancelled = false;
    const arm = (): void => {
      const delay = atMs - this.#clock.nowMs();
      const h = this.#clock.setTimeout(
        () => {
          this.#timerFiredMs ??= this.#clock.nowMs();
          if (this.#clock.nowMs() < atMs) return arm();
          if (!this.#clock.afterIo) return fire();
          this.#clock.afterIo(() => {
            if (!cancelled) fire();
          });
        },
        Math.max(0, Math.ceil(delay)),
      );
      this.#timer = {
        cancel: () => {
          cancelled = true;
          this.#clock.clearTimeout(h);
        },
      };
    };
    arm();
  }

  #runScripts(e: RunScriptsEffect): void {
    const abort = new AbortController();
    const batch = { id: e.id, abort };
    this.#batch = batch;
    this.#o.scripts.run(e, abort.signal).then(
      (r) => this.#batchEnded(batch, r.ok, r.failedScript),
      (err) => {
        this.#o.log('E', 'script', `scripts ${e.current} -> ${e.next} could not run: ${(err as Error).message}`);
        this.#batchEnded(batch, false, e.calls[0]?.script);
      },
    );
  }

  #batchEnded(batch: { id: number }, ok: boolean, failedScript: string | undefined): void {
    if (this.#batch === batch) this.#batch = null;
    else return; // cancelled: the machine has moved on
    this.#enqueue((nowMs) => ({ type: 'scriptsDone', nowMs, id: batch.id, ok, ...(failedScript ? { failedScript } : {}) }));
  }

  async #vip(what: 'up' | 'down'): Promise<void> {
    const vip = this.#o.vip;
    if (!vip) return;
    try {
      await (what === 'up' ? vip.up() : vip.down());
    } catch (err) {
      const msg = isStayupError(err) ? err.message : String((err as Error)?.message ?? err);
      this.#o.log('E', 'vip', `virtual IP ${what}: ${msg}`);
      // The machine believes the address moved; the ip checker's rule (stopstart) puts things right.
      if (what === 'up') void this.command('stopstart', { identity: 'vip' });
    }
  }

  // ----------------------------------------------------------------------------------------- heartbeats

  #onFrame(f: FrameEvent): void {
    const d = decodeHeartbeatMessage(f.payload);
    if (!d.ok) {
      this.#logReject(f.lan, 'bad message', `heartbeat on lan ${f.lan} from ${f.from}: refused (${d.reason})`);
      return;
    }
    if (d.message.node !== this.#s.config.peer || f.from !== this.#s.config.peer) {
      this.#logReject(f.lan, 'wrong node', `heartbeat on lan ${f.lan} from ${f.from} (${d.message.node}): not the peer ${this.#s.config.peer}`);
      return;
    }
    const message = d.message;
    this.#heardAtMs = Math.max(this.#heardAtMs ?? -Infinity, f.receivedAtMs);
    // Heard when it reached the socket (the channel shares the engine's clock), not when its step runs:
    // a step that waited behind another (a state record being written) must not move the peer's timeout.
    this.#enqueue((nowMs) => ({ type: 'heartbeatReceived', nowMs: Math.min(nowMs, f.receivedAtMs), lan: f.lan, message }));
  }

  #onRejected(r: RejectEvent): void {
    const hint = r.reason === 'key-mismatch' || r.reason === 'bad-tag' ? ' (do the two nodes have the same module key? "stayup -H \'*\' module genkey -m MODULE")' : '';
    this.#logReject(r.lan, r.reason, `heartbeat on lan ${r.lan} from ${r.source} refused: ${r.reason} ${r.detail}${hint}`);
  }

  #logReject(lan: string, reason: string, message: string): void {
    const key = `${lan}/${reason}`;
    const now = this.#clock.nowMs();
    const last = this.#rejectLogged.get(key);
    if (last !== undefined && now - last < REJECT_LOG_INTERVAL_MS) return;
    this.#rejectLogged.set(key, now);
    this.#o.log('E', 'heartbeat', message);
  }

  /**
   * Starts the takeover times when a step declares the peer of a SECOND lost; notes the steps that lead to
   * the VIP; drops them if the node goes anywhere else than ALONE or the peer comes back first.
   */
  #noteTakeover(before: MirrorState, event: MirrorEvent): void {
    const after = this.#s;
    if (after.peerAlive || (after.state !== 'SECOND' && after.state !== 'ALONE')) {
      this.#takeover = null;
      return;
    }
    if (before.peerAlive && before.state === 'SECOND' && this.#heardAtMs !== null) {
      const t = new TakeoverTimes(this.#heardAtMs);
      const deadline = Math.max(...before.lans.filter((l) => l.up && l.lastHeardMs !== null).map((l) => l.lastHeardMs! + l.timeoutMs));
      const heardStep = Math.max(...before.lans.filter((l) => l.lastHeardMs !== null).map((l) => l.lastHeardMs!));
      t.mark('heard (stepped)', heardStep);
      t.mark('deadline', deadline);
      if (event.type === 'tick' && this.#timerDueMs !== null) {
        t.mark('tick due', this.#timerDueMs);
        if (this.#timerFiredMs !== null) t.mark('tick fired', this.#timerFiredMs);
      }
      t.mark(`lost (${event.type} stepped)`, event.nowMs);
      this.#takeover = t;
    } else if (this.#takeover && event.type === 'scriptsDone') this.#takeover.mark('scripts done (stepped)', event.nowMs);
  }

  // ----------------------------------------------------------------------------------------- faults

  /**
   * The engine cannot go on safely (its state cannot be persisted, or the machine threw). It stops acting:
   * the health check answers 404, the running batch is abandoned, the virtual IP is removed (a node that
   * cannot record what it does must not keep serving as primary), and commands answer ENGINE_FAULTED
   * until the daemon restarts. The peer then sees this node go silent and takes over if it may.
   */
  async #fault(why: string): Promise<void> {
    if (this.#faulted) return;
    this.#faulted = why;
    this.#ready = false;
    this.#o.log('C', 'mirror', `module engine stopped: ${why}`);
    this.#timer?.cancel();
    this.#timer = null;
    this.#batch?.abort.abort();
    this.#batch = null;
    if (this.#s.vip && this.#o.vip) {
      try {
        await this.#o.vip.down();
      } catch (e) {
        this.#o.log('C', 'vip', `virtual IP down after the fault: ${(e as Error).message}`);
      }
    }
    for (const [, resolve] of this.#pending) resolve({ ok: false, code: 'ENGINE_FAULTED', message: why });
    this.#pending.clear();
    await this.#o.channel.close().catch(() => {});
  }

  #notify(): void {
    if (this.#listeners.size === 0 && this.#waiters.size === 0) return;
    const st = this.status();
    for (const fn of this.#listeners) {
      try {
        fn(st);
      } catch (e) {
        this.#o.log('E', 'mirror', `status listener failed: ${(e as Error).message}`);
      }
    }
    for (const w of [...this.#waiters]) if (w.test(st)) w.resolve(st);
  }
}
