// The seeded simulator over seeds 1001-2000; see seeds-a.test.ts. Skipped when STAYUP_SIM_SEED replays one seed.
import { test } from 'node:test';
import { REPLAY_SEED, runRange } from './seeds.ts';

test('sim: seeds 1001-2000 keep every invariant', { skip: REPLAY_SEED !== undefined }, () => {
  const { stats, ms } = runRange(1001, 1000);
  const steps = stats.reduce((n, s) => n + s.steps, 0);
  console.log(`sim seeds 1001-2000: ${steps} steps in ${Math.round(ms)} ms`);
});
