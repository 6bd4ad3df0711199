// Sparse files: where a file holds data (SEEK_DATA/SEEK_HOLE), so that checksums and copies skip its holes.
// A disk image or a database file of several TB with little data in it is compared and copied in the time
// of its data, and stays sparse on the secondary (a hole is sent as a punch, never as zeros).
//
// A hole reads as zeros, so a block wholly inside one has the checksum of zeros without being read
// (frame-applier.ts, blockSumAt). A map
// is a snapshot: a caller that waits (an await) between taking it and using it must take it again (see
// ReplicationSource.sendDiffering: an application write into a hole after the map was taken is sent live
// only if the comparison's cursor has passed it).

import type { PeerFs } from './peer-fs.ts';

export type DataRangesFs = Pick<PeerFs, 'dataRanges'>;

/** fallocate(2) mode of a hole punched in a file whose size stays: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE. */
export const PUNCH_HOLE_MODE = 0x02 | 0x01;

/** How much a hole weighs against a comparison window's budget, relative to data (reading it costs nothing). */
export const HOLE_WEIGHT = 1 / 64;

/** Where one span of a file holds data. Without a reader (no native helpers) everything is data. */
export class DataMap {
  private constructor(
    /** Sorted, disjoint [start, end) pairs within the span. */
    private readonly ranges: ReadonlyArray<readonly [number, number]>,
    /** Past this offset the map says nothing: data, to be safe. */
    private readonly scannedTo: number,
  ) {}

  static of(fs: DataRangesFs | undefined, fd: number, start: number, end: number): DataMap {
    if (!fs || end <= start) return new DataMap([], start);
    const flat = fs.dataRanges(fd, start, end - start);
    const ranges: Array<[number, number]> = [];
    for (let i = 1; i + 1 < flat.length; i += 2) ranges.push([flat[i]!, flat[i + 1]!]);
    return new DataMap(ranges, flat[0]!);
  }

  /** Is [at, at + length) wholly a hole? */
  isHole(at: number, length: number): boolean {
    const end = at + length;
    if (end > this.scannedTo) return false;
    const r = this.firstEndingAfter(at);
    return r === undefined || r[0] >= end;
  }

  /**
   * Where a window that starts at `from` ends, at most at `limit`, when data costs 1 per byte and holes
   * HOLE_WEIGHT, within `budget`; and what it cost.
   */
  span(from: number, limit: number, budget: number): { end: number; cost: number } {
    let at = from;
    let cost = 0;
    const take = (to: number, weight: number): boolean => {
      const room = (budget - cost) / weight;
      if (to - at >= room) {
        at += Math.max(0, Math.floor(room));
        cost = budget;
        return false;
      }
      cost += (to - at) * weight;
      at = to;
      return true;
    };
    for (let i = this.indexEndingAfter(from); i < this.ranges.length && at < limit; i++) {
      const [s, e] = this.ranges[i]!;
      if (s > at && !take(Math.min(s, limit), HOLE_WEIGHT)) return { end: at, cost };
      if (at < limit && !take(Math.min(e, limit), 1)) return { end: at, cost };
    }
    if (at < limit) take(Math.min(this.scannedTo, limit), HOLE_WEIGHT);
    if (at < limit && cost < budget) take(limit, 1);
    return { end: at, cost };
  }

  private firstEndingAfter(at: number): readonly [number, number] | undefined {
    return this.ranges[this.indexEndingAfter(at)];
  }

  /** Index of the first range whose end is past `at` (binary search). */
  private indexEndingAfter(at: number): number {
    let lo = 0;
    let hi = this.ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ranges[mid]![1] <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
