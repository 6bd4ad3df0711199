// What the client saw around one freeze, and VIP moves in a window, from the prober's records.
import { round1 } from './stats.ts';
import type { ProbeRecord } from './probe-client.ts';

export interface FreezeMark {
  /** The frozen node. */
  node: string;
  /** Monotonic ms just before the freeze command. */
  freezeStart: number;
  /** Monotonic ms when the freeze command returned (every frame of the node is dropped from here on). */
  freezeEnd: number;
  /** Monotonic ms when the node was thawed (or undefined: still frozen). */
  thawAt?: number;
}

export interface Outage {
  /** First success after the freeze minus last success before it (answer times). */
  outageMs: number;
  /**
   * First success after the freeze minus the end of the freeze command (a lower bound of the takeover:
   * the command itself takes a few ms, during which the node may still answer; negative when the takeover
   * was done before the command returned).
   */
  takeoverMs: number;
  /** Failed attempts started between those two successes' starts. */
  failed: number;
  /** Server that answered after the freeze. */
  newServer: string;
}

/**
 * The outage of one freeze: the frozen node's last success that ended before the freeze command returned,
 * then the first success from another server, before the thaw. Undefined when the client was not answered
 * again before the thaw (no takeover) or never before the freeze. Only the frozen node's answers open the
 * outage: when the freeze command is slow (on a loaded machine it can take 100 ms) the takeover may be
 * done before it returns, and the new server's answers would otherwise be taken for the last ones before.
 */
export function outageOf(records: readonly ProbeRecord[], m: FreezeMark): Outage | undefined {
  let before: ProbeRecord | undefined;
  for (const r of records) {
    if (r.ok && r.srv === m.node && r.t1 <= m.freezeEnd && (!before || r.t1 > before.t1)) before = r;
  }
  if (!before) return undefined;
  let after: ProbeRecord | undefined;
  for (const r of records) {
    if (r.ok && r.srv !== m.node && r.t1 > before.t1 && (m.thawAt === undefined || r.t1 < m.thawAt) && (!after || r.t1 < after.t1)) after = r;
  }
  if (!after) return undefined;
  // Attempts end up to their timeout after they start: count the failures by their start.
  const failed = records.filter((r) => !r.ok && r.t0 >= before!.t0 && r.t0 < after!.t0).length;
  return { outageMs: round1(after.t1 - before.t1), takeoverMs: round1(after.t1 - m.freezeEnd), failed, newServer: after.srv ?? '?' };
}

export interface WindowReport {
  /** Times the answering server changed between consecutive successes ending in the window. */
  moves: number;
  /** Of those, changes away from the server that answered first (a move and its way back count once). */
  away: number;
  /** Which servers answered, in order of change (e.g. node1 -> node2). */
  path: string[];
  failed: number;
  attempts: number;
  /** Longest time between two consecutive successes in the window. */
  maxGapMs: number;
}

/** VIP moves and failures among the records that ended in [from, to] (the last success before `from` counts as the start). */
export function windowReport(records: readonly ProbeRecord[], from: number, to: number): WindowReport {
  let prev: ProbeRecord | undefined;
  for (const r of records) if (r.ok && r.t1 < from && (!prev || r.t1 > prev.t1)) prev = r;
  const inWin = records.filter((r) => r.t1 >= from && r.t1 <= to).sort((a, b) => a.t1 - b.t1);
  let moves = 0;
  let away = 0;
  let maxGap = 0;
  const path: string[] = prev?.srv ? [prev.srv] : [];
  let last = prev;
  for (const r of inWin) {
    if (!r.ok) continue;
    if (last) {
      if (last.srv !== r.srv) {
        moves++;
        if (last.srv === path[0]) away++;
        path.push(r.srv ?? '?');
      }
      maxGap = Math.max(maxGap, r.t1 - last.t1);
    } else if (r.srv) path.push(r.srv);
    last = r;
  }
  // A stall still running at the end of the window counts too.
  if (last) maxGap = Math.max(maxGap, to - Math.max(last.t1, from));
  return { moves, away, path, failed: inWin.filter((r) => !r.ok).length, attempts: inWin.length, maxGapMs: round1(maxGap) };
}
