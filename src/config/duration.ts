// Durations in configuration attributes (SafeKit 8.2.5 syntax): a decimal number followed by one of the
// units d, h, m, s, ms, us — `700ms`, `24h`, `1.5s`. A bare number is read in the attribute's legacy
// implicit unit (heart pulse: ms, loop_interval: hours, most others: seconds; see README.md), so 7.x
// files keep their meaning. Everything is converted to whole milliseconds, rounded half up.

export type DurationUnit = 'd' | 'h' | 'm' | 's' | 'ms' | 'us';

const unitMs: Record<DurationUnit, number> = {
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
  us: 0.001,
};

export interface DurationRule {
  /** The unit of a bare number in this attribute. */
  implicitUnit: DurationUnit;
  /** Whether 0 is meaningful (e.g. loop_interval="0" disables the counter). */
  allowZero?: boolean;
}

export type DurationResult = { ok: true; ms: number } | { ok: false; message: string };

/** Ten years: far above any sensible timeout, low enough that arithmetic on it stays exact. */
const maxMs = 10 * 365 * unitMs.d;

/** Parses a duration attribute. Error messages name the attribute and say what is wrong. */
export function parseDuration(text: string, attr: string, rule: DurationRule): DurationResult {
  const trimmed = text.trim();
  const match = /^(\d+(?:\.\d*)?|\.\d+)([A-Za-zµ]*)$/.exec(trimmed);
  if (!match) {
    return {
      ok: false,
      message: `attribute "${attr}" must be a duration such as "700ms", "30s" or "24h", got "${text}"`,
    };
  }
  const [, digits, unitText] = match as unknown as [string, string, string];
  const unit = unitText === '' ? rule.implicitUnit : unitText;
  if (!isUnit(unit)) {
    return {
      ok: false,
      message: `attribute "${attr}": unknown unit "${unitText}" in "${trimmed}" (use d, h, m, s, ms or us)`,
    };
  }
  const exact = Number(digits) * unitMs[unit];
  const ms = Math.round(exact);
  if (ms > maxMs) return { ok: false, message: `attribute "${attr}": "${trimmed}" is too long (at most 3650d)` };
  if (ms === 0 && !rule.allowZero) {
    return exact === 0
      ? { ok: false, message: `attribute "${attr}" must not be zero` }
      : { ok: false, message: `attribute "${attr}": "${trimmed}" rounds to 0ms, which is not allowed` };
  }
  return { ok: true, ms };
}

function isUnit(u: string): u is DurationUnit {
  return Object.hasOwn(unitMs, u);
}

/**
 * Formats milliseconds with an explicit unit, choosing the largest of h, m, s and ms that divides the value
 * exactly, so `parseDuration(formatDuration(x))` gives x back whatever the implicit unit (days are left
 * out because "24h" reads better than "1d" in every default we have).
 */
export function formatDuration(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`not a duration in milliseconds: ${ms}`);
  if (ms === 0) return '0s';
  for (const unit of ['h', 'm', 's'] as const) {
    if (ms % unitMs[unit] === 0) return `${ms / unitMs[unit]}${unit}`;
  }
  return `${ms}ms`;
}
