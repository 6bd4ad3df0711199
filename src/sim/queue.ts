// The simulator's clock and event queue: a binary heap ordered by (time, insertion order), so events at
// the same millisecond run in the order they were scheduled and every run of a seed is identical.

export interface SimEvent {
  atMs: number;
  seq: number;
  run: () => void;
}

export class EventQueue {
  nowMs = 0;
  private heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Schedules `run` at atMs (never in the past). */
  at(atMs: number, run: () => void): void {
    const ev: SimEvent = { atMs: Math.max(atMs, this.nowMs), seq: this.seq++, run };
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  after(delayMs: number, run: () => void): void {
    this.at(this.nowMs + delayMs, run);
  }

  /** Runs the next event; false when the queue is empty or the next event is after untilMs. */
  runNext(untilMs: number): boolean {
    const h = this.heap;
    const top = h[0];
    if (!top || top.atMs > untilMs) return false;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    this.nowMs = top.atMs;
    top.run();
    return true;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}
