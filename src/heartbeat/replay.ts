// Anti-replay for heartbeat frames, applied only to frames that authenticated (so a forgery cannot
// poison it). Per sender and per lan, a boot's sequence numbers must go strictly up; a sender restart
// shows up as a new boot id, which replaces the old one; a boot once replaced is refused for good.
//
// Boot ids start with the sender's start time, so a restart normally has a larger id and is taken at
// once. A smaller, never-seen id is an older boot (a replay) — or a restart after the sender's clock
// stepped back; it is taken only once the current boot has been silent for `newBootAfterSilenceMs`.
import type { RejectReason } from './frame.ts';

export interface ReplayGuardOptions {
  /** How long the current boot of a sender must be silent before an older-looking boot id replaces it. Default 5000. */
  newBootAfterSilenceMs?: number;
  /** Replaced boot ids remembered per sender (refused as 'stale-boot'). Default 16. */
  retiredBoots?: number;
  /** Senders tracked (the least recently heard is forgotten first). Default 16. */
  maxSenders?: number;
}

interface SenderState {
  bootId: string;
  lastHeardMs: number;
  /** Highest sequence number accepted, per lan. */
  seq: Map<string, number>;
  retired: string[];
}

export type ReplayVerdict = 'ok' | Extract<RejectReason, 'replay' | 'stale-boot'>;

export class HeartbeatReplayGuard {
  readonly #senders = new Map<string, SenderState>();
  readonly #silenceMs: number;
  readonly #retired: number;
  readonly #maxSenders: number;

  constructor(opts: ReplayGuardOptions = {}) {
    this.#silenceMs = opts.newBootAfterSilenceMs ?? 5000;
    this.#retired = opts.retiredBoots ?? 16;
    this.#maxSenders = opts.maxSenders ?? 16;
  }

  /** Checks an authentic frame and, when it is accepted, remembers it. `nowMs`: a monotonic clock. */
  accept(f: { from: string; lan: string; bootId: string; seq: number }, nowMs: number): ReplayVerdict {
    let s = this.#senders.get(f.from);
    if (!s) {
      if (this.#senders.size >= this.#maxSenders) {
        let oldest: string | undefined;
        let t = Infinity;
        for (const [name, st] of this.#senders) if (st.lastHeardMs < t) [oldest, t] = [name, st.lastHeardMs];
        this.#senders.delete(oldest!);
      }
      s = { bootId: f.bootId, lastHeardMs: nowMs, seq: new Map(), retired: [] };
      this.#senders.set(f.from, s);
    } else if (f.bootId !== s.bootId) {
      if (s.retired.includes(f.bootId)) return 'stale-boot';
      // Equal-length lower-case hex: string order is numeric order.
      const newer = f.bootId > s.bootId;
      if (!newer && nowMs - s.lastHeardMs < this.#silenceMs) return 'stale-boot';
      s.retired.push(s.bootId);
      if (s.retired.length > this.#retired) s.retired.shift();
      s.bootId = f.bootId;
      s.seq.clear();
    }
    const last = s.seq.get(f.lan) ?? 0;
    if (f.seq <= last) return 'replay';
    s.seq.set(f.lan, f.seq);
    s.lastHeardMs = Math.max(s.lastHeardMs, nowMs);
    return 'ok';
  }

  /** The boot of a sender currently accepted, if any. */
  currentBoot(from: string): string | undefined {
    return this.#senders.get(from)?.bootId;
  }
}
