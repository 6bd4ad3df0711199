// Reads what tcp-prober.mjs printed and measures outages: the gap between the last answer before a
// failure and the first answer after it.
import { readFileSync } from 'node:fs';

export interface ProbeRecord {
  t: number;
  ok: boolean;
  ms: number;
  from?: string;
  err?: string;
}

export function readProbeLog(file: string): ProbeRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: ProbeRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as ProbeRecord);
    } catch {
      // the line being written
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

export interface Outage {
  /** Time of the last answer before the failure (ms since epoch). */
  lastOkMs: number;
  /** Time of the first answer after it. */
  firstOkMs: number;
  outageMs: number;
  failedAttempts: number;
  before: string;
  after: string;
}

/**
 * The outages within [fromMs, toMs]: a run of failed attempts between two answers, or a change of the
 * answering server with no failure in between (counted as 0 ms, so a silent move is still reported).
 */
export function outages(records: readonly ProbeRecord[], fromMs = -Infinity, toMs = Infinity): Outage[] {
  const rs = records.filter((r) => r.t >= fromMs && r.t <= toMs);
  const out: Outage[] = [];
  let lastOk: ProbeRecord | null = null;
  let failed = 0;
  for (const r of rs) {
    if (!r.ok) {
      failed++;
      continue;
    }
    if (lastOk && (failed > 0 || r.from !== lastOk.from)) {
      out.push({ lastOkMs: lastOk.t, firstOkMs: r.t, outageMs: Math.round(r.t - lastOk.t), failedAttempts: failed, before: lastOk.from ?? '', after: r.from ?? '' });
    }
    lastOk = r;
    failed = 0;
  }
  return out;
}
