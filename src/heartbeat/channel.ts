// The seam between the mirror and the network: a HeartbeatChannel sends the node's state summary on
// every heartbeat lan and emits the peer's authentic frames. Two implementations share the framing core
// below: HeartbeatTransport (UDP, one socket per lan) and MemoryHeartbeatNetwork's transports (in
// memory, for the deterministic simulator), so the simulator runs the real codec and anti-replay.
import { EventEmitter } from 'node:events';
import { StayupError } from '../errors/stayup-error.ts';
import { checkModuleId } from '../packages/module-store.ts';
import { HeartbeatKey, decodeFrame, encodeFrame, newBootId, rejectReasons, type RejectReason } from './frame.ts';
import { HeartbeatReplayGuard, type ReplayGuardOptions } from './replay.ts';

export interface FrameEvent {
  lan: string;
  /** Sender node name (authenticated). */
  from: string;
  seq: number;
  bootId: string;
  /** Sender's wall clock (informative). */
  sentAtMs: number;
  /** This node's monotonic clock (the channel's `now`) when the frame was accepted. */
  receivedAtMs: number;
  payload: Buffer;
  /** Source "addr:port" for UDP, the sender's name in memory. */
  source: string;
}

export interface RejectEvent {
  lan: string;
  reason: RejectReason;
  detail: string;
  source: string;
  receivedAtMs: number;
}

export interface LanCounters {
  /** Frames handed to the network. */
  sent: number;
  /** Sends that failed locally (e.g. no route, EPERM from a firewall). */
  sendErrors: number;
  /** Authentic frames accepted. */
  received: number;
  /** Datagrams refused, by reason (every reason is present, 0 when none). */
  rejected: Record<RejectReason, number>;
  /** `now` of the last accepted frame, if any. */
  lastReceivedAtMs?: number;
}

export interface HeartbeatEvents {
  frame: [FrameEvent];
  rejected: [RejectEvent];
  /** A socket or send problem that is counted, not thrown (the channel keeps running). */
  warning: [{ lan: string; message: string }];
}

/** What the mirror's shell uses; both transports implement it. */
export interface HeartbeatChannel extends EventEmitter<HeartbeatEvents> {
  readonly node: string;
  readonly peer: string;
  /** Lan names, in configuration order. */
  readonly lans: readonly string[];
  /** This channel's boot id (a new one per channel). */
  readonly bootId: string;
  /** Sends the payload on every lan (each lan frame gets its own sequence number). */
  send(payload: Uint8Array): void;
  /** Sends on one lan (for lans with their own pulse). */
  sendOn(lan: string, payload: Uint8Array): void;
  /** A copy of the counters, per lan. */
  counters(): Record<string, LanCounters>;
  close(): Promise<void>;
}

export interface ChannelOptions {
  moduleId: number;
  /** 32 bytes (readModuleKey / generateModuleKey). */
  moduleKey: Uint8Array;
  /** This node's name in cluster.xml. */
  node: string;
  /** The other node of the mirror module. */
  peer: string;
  /** Monotonic clock for receivedAtMs and anti-replay (default performance.now). */
  now?: () => number;
  /** Wall clock for the boot id and sentAtMs (default Date.now). */
  wallClock?: () => number;
  /** Default: newBootId(wallClock()). */
  bootId?: string;
  replay?: ReplayGuardOptions;
}

export function emptyCounters(): LanCounters {
  return { sent: 0, sendErrors: 0, received: 0, rejected: Object.fromEntries(rejectReasons.map((r) => [r, 0])) as Record<RejectReason, number> };
}

export type ReceiveResult = { ok: true; event: FrameEvent } | { ok: false; event: RejectEvent };

/** Framing, anti-replay and counters of one node's channel; no I/O. */
export class HeartbeatEndpoint {
  readonly moduleId: number;
  readonly node: string;
  readonly peer: string;
  readonly lans: readonly string[];
  readonly bootId: string;
  readonly now: () => number;
  readonly #wallClock: () => number;
  readonly #key: HeartbeatKey;
  readonly #guard: HeartbeatReplayGuard;
  readonly #counters = new Map<string, LanCounters>();
  #seq = 0;

  constructor(opts: ChannelOptions, lans: readonly string[]) {
    checkModuleId(opts.moduleId);
    if (opts.node === opts.peer) throw new StayupError('BAD_ARGUMENT', `heartbeat: node and peer are both "${opts.node}"`);
    if (lans.length === 0) throw new StayupError('BAD_ARGUMENT', 'heartbeat: no lan');
    if (new Set(lans).size !== lans.length) throw new StayupError('BAD_ARGUMENT', `heartbeat: a lan is listed twice (${lans.join(', ')})`);
    this.moduleId = opts.moduleId;
    this.node = opts.node;
    this.peer = opts.peer;
    this.lans = [...lans];
    this.now = opts.now ?? (() => performance.now());
    this.#wallClock = opts.wallClock ?? Date.now;
    this.bootId = opts.bootId ?? newBootId(this.#wallClock());
    this.#key = new HeartbeatKey(opts.moduleKey);
    this.#guard = new HeartbeatReplayGuard(opts.replay);
    for (const l of lans) this.#counters.set(l, emptyCounters());
  }

  #lan(lan: string): LanCounters {
    const c = this.#counters.get(lan);
    if (!c) throw new StayupError('BAD_ARGUMENT', `heartbeat: no lan "${lan}" (lans: ${this.lans.join(', ')})`);
    return c;
  }

  /** The next frame for a lan (takes a sequence number). */
  build(lan: string, payload: Uint8Array): Buffer {
    this.#lan(lan);
    return encodeFrame(
      this.#key,
      { moduleId: this.moduleId, from: this.node, lan, bootId: this.bootId, seq: ++this.#seq, sentAtMs: Math.floor(this.#wallClock()) },
      payload,
    );
  }

  sent(lan: string, ok: boolean): void {
    const c = this.#lan(lan);
    if (ok) c.sent++;
    else c.sendErrors++;
  }

  /** Everything that arrived on a lan's socket goes through here. Never throws. */
  receive(lan: string, bytes: Uint8Array, source: string): ReceiveResult {
    const c = this.#counters.get(lan); // always set: the transports only receive on their lans
    const receivedAtMs = this.now();
    const reject = (reason: RejectReason, detail: string): ReceiveResult => {
      if (c) c.rejected[reason]++;
      return { ok: false, event: { lan, reason, detail, source, receivedAtMs } };
    };
    const d = decodeFrame(this.#key, bytes, { moduleId: this.moduleId });
    if (!d.ok) return reject(d.reason, d.detail);
    const f = d.frame;
    if (f.lan !== lan) return reject('wrong-lan', `frame for lan "${f.lan}" arrived on lan "${lan}"`);
    if (f.from !== this.peer) return reject('unknown-sender', f.from === this.node ? 'a frame of this node came back' : `frame from "${f.from}", the peer is "${this.peer}"`);
    const v = this.#guard.accept(f, receivedAtMs);
    if (v !== 'ok') {
      return reject(v, v === 'replay' ? `sequence ${f.seq} from "${f.from}" on lan "${lan}" was already passed` : `boot ${f.bootId} of "${f.from}" is older than boot ${this.#guard.currentBoot(f.from)}`);
    }
    if (c) {
      c.received++;
      c.lastReceivedAtMs = receivedAtMs;
    }
    return { ok: true, event: { lan, from: f.from, seq: f.seq, bootId: f.bootId, sentAtMs: f.sentAtMs, receivedAtMs, payload: f.payload, source } };
  }

  counters(): Record<string, LanCounters> {
    return Object.fromEntries([...this.#counters].map(([l, c]) => [l, { ...c, rejected: { ...c.rejected } }]));
  }
}
