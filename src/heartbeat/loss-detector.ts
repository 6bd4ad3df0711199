// Which heartbeat lans are alive, and whether the peer is: a pure object with no timer. The caller feeds
// it accepted frames and ticks it (at its pulse, or at nextDeadlineMs()), always with a MONOTONIC clock
// (performance.now, the simulator's clock): a wall clock stepping forward would declare a false loss.
//
// A lan is down when no frame came on it for its timeout (counted from the start for a lan never heard).
// The peer is lost when every lan is down, i.e. when the last one goes down; one frame on any lan brings
// that lan and the peer back up. The decision of what a lost peer means belongs to the mirror machine.
import { StayupError } from '../errors/stayup-error.ts';

export interface LossDetectorLan {
  lan: string;
  /** Silence after which the lan is down (the <heartbeat timeout>). */
  timeoutMs: number;
}

/** 'init': not heard yet and not timed out; the peer is 'unknown' until its first frame or a timeout. */
export type LanState = 'init' | 'up' | 'down';
export type PeerState = 'unknown' | 'up' | 'lost';

export type LossTransition =
  | { kind: 'lan'; lan: string; state: 'up' | 'down'; atMs: number }
  | { kind: 'peer'; state: 'up' | 'lost'; atMs: number };

interface LanTrack {
  lan: string;
  timeoutMs: number;
  state: LanState;
  /** Last frame, or the start for a lan never heard. */
  sinceMs: number;
  lastFrameMs?: number;
}

export interface LossSnapshot {
  peer: PeerState;
  lans: Record<string, { state: LanState; lastFrameMs?: number; timeoutMs: number }>;
}

export class LossDetector {
  readonly #lans = new Map<string, LanTrack>();
  #peer: PeerState = 'unknown';
  #nowMs: number;

  constructor(lans: readonly LossDetectorLan[], startMs: number) {
    if (lans.length === 0) throw new StayupError('BAD_ARGUMENT', 'loss detector: no lan');
    for (const l of lans) {
      if (this.#lans.has(l.lan)) throw new StayupError('BAD_ARGUMENT', `loss detector: lan "${l.lan}" is listed twice`);
      if (!(l.timeoutMs > 0)) throw new StayupError('BAD_ARGUMENT', `loss detector: lan "${l.lan}" timeout ${l.timeoutMs} must be > 0`);
      this.#lans.set(l.lan, { lan: l.lan, timeoutMs: l.timeoutMs, state: 'init', sinceMs: startMs });
    }
    this.#nowMs = startMs;
  }

  get peer(): PeerState {
    return this.#peer;
  }

  lanState(lan: string): LanState {
    return this.#track(lan).state;
  }

  /** An authentic frame came on a lan. Expiries up to nowMs are reported first, in order. */
  frameReceived(lan: string, nowMs: number): LossTransition[] {
    const t = this.#track(lan);
    const out = this.tick(nowMs);
    const at = this.#nowMs;
    t.sinceMs = at;
    t.lastFrameMs = at;
    if (t.state !== 'up') {
      t.state = 'up';
      out.push({ kind: 'lan', lan, state: 'up', atMs: at });
    }
    if (this.#peer !== 'up') {
      this.#peer = 'up';
      out.push({ kind: 'peer', state: 'up', atMs: at });
    }
    return out;
  }

  /** Reports the lans whose timeout passed (at their deadline) and the peer's loss. Time never goes back. */
  tick(nowMs: number): LossTransition[] {
    this.#nowMs = Math.max(this.#nowMs, nowMs);
    const out: LossTransition[] = [];
    const expired = [...this.#lans.values()]
      .filter((t) => t.state !== 'down' && this.#nowMs - t.sinceMs >= t.timeoutMs)
      .sort((a, b) => a.sinceMs + a.timeoutMs - (b.sinceMs + b.timeoutMs));
    for (const t of expired) {
      t.state = 'down';
      out.push({ kind: 'lan', lan: t.lan, state: 'down', atMs: t.sinceMs + t.timeoutMs });
    }
    if (this.#peer !== 'lost' && [...this.#lans.values()].every((t) => t.state === 'down')) {
      this.#peer = 'lost';
      out.push({ kind: 'peer', state: 'lost', atMs: Math.max(...[...this.#lans.values()].map((t) => t.sinceMs + t.timeoutMs)) });
    }
    return out;
  }

  /** When the next lan would go down without a frame (undefined when every lan is down already). */
  nextDeadlineMs(): number | undefined {
    let next: number | undefined;
    for (const t of this.#lans.values()) {
      if (t.state === 'down') continue;
      const d = t.sinceMs + t.timeoutMs;
      if (next === undefined || d < next) next = d;
    }
    return next;
  }

  snapshot(): LossSnapshot {
    return {
      peer: this.#peer,
      lans: Object.fromEntries(
        [...this.#lans.values()].map((t) => [t.lan, { state: t.state, timeoutMs: t.timeoutMs, ...(t.lastFrameMs === undefined ? {} : { lastFrameMs: t.lastFrameMs }) }]),
      ),
    };
  }

  #track(lan: string): LanTrack {
    const t = this.#lans.get(lan);
    if (!t) throw new StayupError('BAD_ARGUMENT', `loss detector: no lan "${lan}" (lans: ${[...this.#lans.keys()].join(', ')})`);
    return t;
  }
}
