// The seeded simulator over seeds 1-1000 (seeds-b.test.ts runs 1001-2000 in parallel): each seed is a
// random configuration, starting point, fault phase and quiet phase of a two-node mirror, with the
// invariants of src/sim/invariants.ts checked after every step.
//   STAYUP_SIM_SEED=<n>            runs only seed n (STAYUP_SIM_TRACE=<lines> shows more of its last steps)
//   STAYUP_SIM_SEEDS=<from>:<count> runs that range instead (a soak run)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from '../../src/sim/index.ts';
import { REPLAY_SEED, SEED_RANGE, runRange } from './seeds.ts';

if (REPLAY_SEED !== undefined) {
  test(`sim: replay seed ${REPLAY_SEED}`, () => {
    const r = runSeed(Number(REPLAY_SEED));
    console.log(`seed ${r.seed}: ${r.steps} steps, ends ${r.picture}`);
  });
} else if (SEED_RANGE !== null) {
  const { from, count } = SEED_RANGE;
  test(`sim: seeds ${from}-${from + count - 1} keep every invariant`, () => {
    const { stats, ms } = runRange(from, count);
    console.log(`sim seeds ${from}-${from + count - 1}: ${stats.reduce((n, s) => n + s.steps, 0)} steps in ${Math.round(ms)} ms`);
  });
} else {
  test('sim: seeds 1-1000 keep every invariant', () => {
    const { stats, ms } = runRange(1, 1000);
    const steps = stats.reduce((n, s) => n + s.steps, 0);
    console.log(`sim seeds 1-1000: ${steps} steps in ${Math.round(ms)} ms`);
    // The scenarios must exercise the interesting end states, not only stopped modules.
    const pairs = stats.filter((s) => /PRIM\(Ready\)/.test(s.picture) && /SECOND\(Ready\)/.test(s.picture)).length;
    const alone = stats.filter((s) => /ALONE\(Ready\)/.test(s.picture)).length;
    assert.ok(pairs > 300, `only ${pairs} runs end PRIM+SECOND`);
    assert.ok(alone > 50, `only ${alone} runs end ALONE`);
  });
}
