// MemoryHeartbeatNetwork: the in-memory twin of the UDP heartbeat lans, for the deterministic simulator
// and for tests (as memberlist's MockNetwork). Its transports implement HeartbeatChannel with the same
// framing core as HeartbeatTransport (real encryption, real anti-replay, same counters); only the wire
// differs. Faults: per-lan loss probability, one-way cuts, partitions; raw injection for hostile bytes.
//
// Nothing here reads a clock or a random source unless given one: pass `now`, `random` and `schedule`
// from the simulator and a run replays exactly from its seed.
import { EventEmitter } from 'node:events';
import { StayupError } from '../errors/stayup-error.ts';
import { HeartbeatEndpoint, type ChannelOptions, type HeartbeatChannel, type HeartbeatEvents, type LanCounters } from './channel.ts';

export interface WireMessage {
  lan: string;
  from: string;
  to: string;
  bytes: Buffer;
}

export interface MemoryNetworkOptions {
  /** Monotonic clock given to every transport (receivedAtMs, anti-replay). Default performance.now. */
  now?: () => number;
  /** Wall clock for boot ids and sentAtMs. Default Date.now. */
  wallClock?: () => number;
  /** Uniform in [0, 1), for loss. Default Math.random (pass a seeded one for replayable runs). */
  random?: () => number;
  /** Delivery delay of a message, ms (default 0). */
  delayMs?: number | ((m: WireMessage) => number);
  /** Runs a delivery later. Default: setTimeout, or a microtask for 0 ms. The simulator passes its scheduler. */
  schedule?: (deliver: () => void, delayMs: number) => void;
}

export interface MemoryTransportOptions extends ChannelOptions {
  lans: string[];
}

export interface MemoryNetworkStats {
  sent: number;
  delivered: number;
  /** Dropped by loss, cuts or partitions. */
  dropped: number;
  /** Nobody listening on that lan at the destination. */
  undeliverable: number;
}

const ANY = '*';

export class MemoryHeartbeatNetwork {
  readonly #endpoints = new Map<string, MemoryHeartbeatTransport>();
  readonly #loss = new Map<string, number>();
  /** "lan\0from\0to" (each may be "*"). */
  readonly #cuts = new Set<string>();
  readonly #taps = new Set<(m: WireMessage) => void>();
  readonly #opts: MemoryNetworkOptions;
  readonly stats: MemoryNetworkStats = { sent: 0, delivered: 0, dropped: 0, undeliverable: 0 };

  constructor(opts: MemoryNetworkOptions = {}) {
    this.#opts = opts;
  }

  /** A node's channel on this network (one per node at a time). */
  transport(opts: MemoryTransportOptions): MemoryHeartbeatTransport {
    if (this.#endpoints.has(opts.node)) throw new StayupError('CONFLICT', `memory heartbeat network: node "${opts.node}" already has a transport`);
    const core = new HeartbeatEndpoint(
      { ...opts, now: opts.now ?? this.#opts.now ?? (() => performance.now()), wallClock: opts.wallClock ?? this.#opts.wallClock ?? Date.now },
      opts.lans,
    );
    const t = new MemoryHeartbeatTransport(core, this);
    this.#endpoints.set(opts.node, t);
    return t;
  }

  /** Each message on `lan` (or every lan: "*") is lost with this probability. 0 removes the loss. */
  setLoss(lan: string, probability: number): void {
    if (!(probability >= 0 && probability <= 1)) throw new StayupError('BAD_ARGUMENT', `loss probability ${probability} is not in [0, 1]`);
    if (probability === 0) this.#loss.delete(lan);
    else this.#loss.set(lan, probability);
  }

  /** Drops every message from `from` to `to` on `lan` (one direction; "*" matches any). */
  cut(lan: string, from: string, to: string): void {
    this.#cuts.add(`${lan}\0${from}\0${to}`);
  }

  /** Drops everything on a lan (both directions), or on every lan without an argument. */
  partition(lan: string = ANY): void {
    this.cut(lan, ANY, ANY);
  }

  /** Removes the cuts and loss of a lan (or of everything). */
  heal(lan?: string): void {
    if (lan === undefined) {
      this.#cuts.clear();
      this.#loss.clear();
      return;
    }
    for (const c of [...this.#cuts]) if (c.startsWith(`${lan}\0`)) this.#cuts.delete(c);
    this.#loss.delete(lan);
  }

  /** Sees every message put on the wire (before faults), e.g. to capture frames for a replay test. */
  tap(fn: (m: WireMessage) => void): () => void {
    this.#taps.add(fn);
    return () => this.#taps.delete(fn);
  }

  /** Delivers raw bytes to a node on a lan, as if they came from `from` (faults do not apply). */
  inject(lan: string, to: string, bytes: Uint8Array, from = 'injected'): void {
    this.#deliver({ lan, from, to, bytes: Buffer.from(bytes) });
  }

  /** Called by the transports. */
  put(m: WireMessage): void {
    this.stats.sent++;
    for (const fn of this.#taps) fn(m);
    if (this.#isCut(m) || this.#lost(m.lan)) {
      this.stats.dropped++;
      return;
    }
    const d = this.#opts.delayMs;
    const delay = typeof d === 'function' ? d(m) : (d ?? 0);
    const run = (): void => this.#deliver(m);
    if (this.#opts.schedule) this.#opts.schedule(run, delay);
    else if (delay > 0) setTimeout(run, delay);
    else queueMicrotask(run);
  }

  /** Called by a transport's close. */
  detach(node: string, t: MemoryHeartbeatTransport): void {
    if (this.#endpoints.get(node) === t) this.#endpoints.delete(node);
  }

  #isCut(m: WireMessage): boolean {
    for (const lan of [m.lan, ANY]) for (const from of [m.from, ANY]) for (const to of [m.to, ANY]) if (this.#cuts.has(`${lan}\0${from}\0${to}`)) return true;
    return false;
  }

  #lost(lan: string): boolean {
    const p = Math.max(this.#loss.get(lan) ?? 0, this.#loss.get(ANY) ?? 0);
    return p > 0 && (this.#opts.random ?? Math.random)() < p;
  }

  #deliver(m: WireMessage): void {
    const t = this.#endpoints.get(m.to);
    if (!t || !t.lans.includes(m.lan)) {
      this.stats.undeliverable++;
      return;
    }
    this.stats.delivered++;
    t.receive(m.lan, m.bytes, m.from);
  }
}

export class MemoryHeartbeatTransport extends EventEmitter<HeartbeatEvents> implements HeartbeatChannel {
  readonly #core: HeartbeatEndpoint;
  readonly #net: MemoryHeartbeatNetwork;
  #closed = false;

  constructor(core: HeartbeatEndpoint, net: MemoryHeartbeatNetwork) {
    super();
    this.#core = core;
    this.#net = net;
  }

  get node(): string {
    return this.#core.node;
  }
  get peer(): string {
    return this.#core.peer;
  }
  get lans(): readonly string[] {
    return this.#core.lans;
  }
  get bootId(): string {
    return this.#core.bootId;
  }

  send(payload: Uint8Array): void {
    for (const lan of this.#core.lans) this.sendOn(lan, payload);
  }

  sendOn(lan: string, payload: Uint8Array): void {
    const bytes = this.#core.build(lan, payload);
    if (this.#closed) return;
    this.#core.sent(lan, true);
    this.#net.put({ lan, from: this.#core.node, to: this.#core.peer, bytes });
  }

  /** Delivery from the network. */
  receive(lan: string, bytes: Uint8Array, source: string): void {
    if (this.#closed) return;
    const r = this.#core.receive(lan, bytes, source);
    if (r.ok) this.emit('frame', r.event);
    else this.emit('rejected', r.event);
  }

  counters(): Record<string, LanCounters> {
    return this.#core.counters();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#net.detach(this.#core.node, this);
  }
}
