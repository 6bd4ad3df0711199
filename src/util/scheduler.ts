// Timers as a seam: components that wait take a Scheduler, so tests can drive time by hand.
import { performance } from 'node:perf_hooks';

export interface Scheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers, unref'd: a pending check or announcement never keeps the process alive by itself. */
export const realScheduler: Scheduler = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * How long before a precise deadline setTimeout hands over to polling. setTimeout wakes on whole
 * milliseconds of the event loop's cached clock (floored), so it may come up to a millisecond early or
 * late; waking this much early leaves room for both.
 */
export const PRECISE_LEAD_MS = 2;

/** A pending preciseTimeout; cancel() is idempotent. */
export interface PreciseTimer {
  cancel(): void;
}

/**
 * Calls fn once nowMs() >= atMs, within a few tens of microseconds when the process is not starved.
 * setTimeout alone fires up to about 2 ms after its time (millisecond rounding of the loop's clock, and a
 * re-arm when it comes early). This sleeps with setTimeout until about PRECISE_LEAD_MS before atMs, then
 * yields to the event loop with setImmediate until the time has come, and calls fn from setImmediate
 * too: the loop polls I/O just before, so a heartbeat that reached the socket before the deadline is
 * taken in before fn declares it missing. The last stretch costs at most ~PRECISE_LEAD_MS of polling:
 * meant for rare deadlines (the moment a peer is declared lost), not for every pulse. The timer keeps the
 * process alive.
 */
export function preciseTimeout(fn: () => void, atMs: number, nowMs: () => number = () => performance.now()): PreciseTimer {
  let coarse: NodeJS.Timeout | null = null;
  let poll: NodeJS.Immediate | null = null;
  let done = false;
  const check = (): void => {
    poll = null;
    if (done) return;
    const left = atMs - nowMs();
    if (left > PRECISE_LEAD_MS) {
      coarse = setTimeout(() => {
        coarse = null;
        poll = setImmediate(check);
      }, Math.floor(left - PRECISE_LEAD_MS / 2));
    } else if (left > 0) poll = setImmediate(check);
    else {
      done = true;
      fn();
    }
  };
  // Never from inside the caller, even when atMs has passed: fn runs on a later turn, like setTimeout's.
  poll = setImmediate(check);
  return {
    cancel() {
      done = true;
      if (coarse) clearTimeout(coarse);
      if (poll) clearImmediate(poll);
      coarse = null;
      poll = null;
    },
  };
}
