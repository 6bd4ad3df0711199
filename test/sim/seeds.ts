// Runs a range of simulator seeds and reports the first failure with its replay line.
import { runSeed, SimFailure, type RunStats } from '../../src/sim/index.ts';

export const REPLAY_SEED = process.env.STAYUP_SIM_SEED;

function parseRange(v: string | undefined): { from: number; count: number } | null {
  const m = v ? /^(\d+):(\d+)$/.exec(v) : null;
  return m ? { from: Number(m[1]), count: Number(m[2]) } : null;
}
export const SEED_RANGE = parseRange(process.env.STAYUP_SIM_SEEDS);

export function runRange(from: number, count: number): { stats: RunStats[]; ms: number } {
  const t0 = performance.now();
  const stats: RunStats[] = [];
  for (let seed = from; seed < from + count; seed++) {
    try {
      stats.push(runSeed(seed));
    } catch (err) {
      if (err instanceof SimFailure) {
        console.error(`\nreplay: STAYUP_SIM_SEED=${err.seed} node --import tsx scripts/test.mjs sim\n`);
      } else {
        console.error(`\nsim seed ${seed} threw; replay: STAYUP_SIM_SEED=${seed} node --import tsx scripts/test.mjs sim\n`);
      }
      throw err;
    }
  }
  return { stats, ms: performance.now() - t0 };
}
