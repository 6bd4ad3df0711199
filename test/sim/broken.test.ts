// The invariants can fail: each deliberately broken machine variant (broken-variants.ts) must be caught
// by the invariant it breaks within the first 300 seeds, with the seed and the replay line in the report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed, SimFailure } from '../../src/sim/index.ts';
import { VARIANTS } from './broken-variants.ts';

for (const v of VARIANTS) {
  test(`sim catches a machine that ${v.name}`, () => {
    for (let seed = 1; seed <= 300; seed++) {
      try {
        runSeed(seed, { stepFn: v.stepFn });
      } catch (err) {
        if (!(err instanceof SimFailure)) throw err;
        if (!v.caughtAs.test(err.invariant)) continue;
        assert.match(err.message, new RegExp(`^sim seed ${seed}, step \\d+, t=\\d+ms: `));
        assert.match(err.message, new RegExp(`replay: STAYUP_SIM_SEED=${seed} node --import tsx scripts/test.mjs sim`));
        return;
      }
    }
    assert.fail(`no seed out of 300 caught it as ${v.caughtAs}`);
  });
}

test('a seed replays identically', () => {
  const a = runSeed(4242);
  const b = runSeed(4242);
  assert.deepEqual(a, b);
});
