// The primary's watchdog over a peer that stalls with its connection open (a SIGSTOPped daemon, a link
// that drops every packet while TCP still holds the connection): TLS and TCP errors and the peer's close
// end the link by themselves, a stall does not, and the application's writes would wait for it forever.
//
// The reference's two limits (<rfs sendtimeout="30s" locktimeout="100s">), as stayup applies them:
//   sendtimeout  frames wait for the peer and it has acknowledged none of them for this long: it has
//                stopped taking the stream (the reference: a TCP send blocked that long);
//   locktimeout  the oldest application call held for the peer's acknowledgement has waited longer than
//                this, even if acknowledgements still trickle in (behind a long reintegration queue).
// Past either, the runtime drops the peer (the source journals what it did not acknowledge and releases
// the held calls) and the primary goes on without it.
//
// The source counts frames but keeps no send times, so the watchdog samples the counts at each check:
// times are measured from the first check that saw a frame sent (or an acknowledgement arrive), so they
// are at most one check interval shorter than they really are.

export interface SourceFigures {
  sentFrames: bigint;
  ackedFrames: bigint;
  /** The frame whose acknowledgement releases the oldest held application call, if one is held. */
  oldestHeldFrame: bigint | null;
}

export class StallWatchdog {
  /** (frames sent, when a check first saw that many), oldest first; only counts beyond the acknowledged. */
  private samples: Array<{ sent: bigint; atMs: number }> = [];
  /** The acknowledged count at the last check, and since when frames wait without it moving. */
  private acked: bigint | null = null;
  private waitingSinceMs = 0;

  constructor(private readonly o: { sendTimeoutMs: number; lockTimeoutMs: number }) {}

  /** A new link: its frame counts start again. */
  reset(): void {
    this.samples = [];
    this.acked = null;
  }

  /** Why the peer counts as stalled at `nowMs` (a monotonic clock), or null. Call it periodically. */
  check(p: SourceFigures, nowMs: number): string | null {
    const last = this.samples[this.samples.length - 1];
    if (!last || p.sentFrames > last.sent) this.samples.push({ sent: p.sentFrames, atMs: nowMs });
    while (this.samples.length > 0 && this.samples[0]!.sent <= p.ackedFrames) this.samples.shift();
    const oldest = this.samples[0];
    const progressed = this.acked === null || p.ackedFrames > this.acked;
    this.acked = p.ackedFrames;
    if (!oldest) {
      this.waitingSinceMs = nowMs;
      return null;
    }
    // Frames wait: since the last acknowledgement, or since the first of them was seen, whichever is later.
    this.waitingSinceMs = progressed ? nowMs : Math.max(this.waitingSinceMs, oldest.atMs);
    const silentMs = nowMs - this.waitingSinceMs;
    if (silentMs >= this.o.sendTimeoutMs) {
      return `the peer acknowledged nothing for ${seconds(silentMs)} with frames waiting (sendtimeout ${seconds(this.o.sendTimeoutMs)})`;
    }
    if (p.oldestHeldFrame !== null) {
      const held = this.samples.find((s) => s.sent >= p.oldestHeldFrame!);
      const heldMs = held ? nowMs - held.atMs : 0;
      if (heldMs >= this.o.lockTimeoutMs) return `an application call waited ${seconds(heldMs)} for the peer (locktimeout ${seconds(this.o.lockTimeoutMs)})`;
    }
    return null;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}
