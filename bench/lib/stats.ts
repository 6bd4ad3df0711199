// Order statistics for the failover bench.

export interface Summary {
  n: number;
  median: number | null;
  p90: number | null;
  min: number | null;
  max: number | null;
}

/** Rounds to 0.1 (the prober's clock is µs, its cadence 10 ms: one decimal is plenty). */
export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/**
 * The q-quantile of ascending `sorted` by linear interpolation between order statistics (R's type 7,
 * numpy's default): p90 of 10 values lies between the 9th and the 10th.
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new RangeError('quantile of an empty list');
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

export function summarize(xs: readonly number[]): Summary {
  if (xs.length === 0) return { n: 0, median: null, p90: null, min: null, max: null };
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, median: round1(quantile(s, 0.5)), p90: round1(quantile(s, 0.9)), min: round1(s[0]!), max: round1(s[s.length - 1]!) };
}

/** a / b rounded to 0.01, or null when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return Math.round((a / b) * 100) / 100;
}

export function fmt(x: number | null | undefined, unit = ' ms'): string {
  return x === null || x === undefined ? '-' : `${x}${unit}`;
}
