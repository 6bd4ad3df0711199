// The seeded simulator over seeds 1001-2000; see seeds-a.test.ts. Skipped when STAYUP_SIM_SEED or
// STAYUP_SIM_SEEDS asks for other seeds.
import { test } from 'node:test';
import { REPLAY_SEED, SEED_RANGE, runRange } from './seeds.ts';

test('sim: seeds 1001-2000 keep every invariant', { skip: REPLAY_SEED !== undefined || SEED_RANGE !== null }, () => {
  const { stats, ms } = runRange(1001, 1000);
  const steps = stats.reduce((n, s) => n + s.steps, 0);
  console.log(`sim seeds 1001-2000: ${steps} steps in ${Math.round(ms)} ms`);
});
