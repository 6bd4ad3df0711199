import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeartbeatReplayGuard } from '../../src/heartbeat/replay.ts';
import { newBootId } from '../../src/heartbeat/frame.ts';

const bootA = newBootId(1_800_000_000_000);
const bootB = newBootId(1_800_000_060_000); // the same sender, restarted a minute later
const f = (bootId: string, seq: number, lan = 'a') => ({ from: 'node2', lan, bootId, seq });

test('within a boot, sequence numbers must go strictly up, per lan', () => {
  const g = new HeartbeatReplayGuard();
  assert.equal(g.accept(f(bootA, 1), 0), 'ok');
  assert.equal(g.accept(f(bootA, 5), 1), 'ok');
  assert.equal(g.accept(f(bootA, 5), 2), 'replay', 'the same frame twice');
  assert.equal(g.accept(f(bootA, 3), 3), 'replay', 'an older frame');
  assert.equal(g.accept(f(bootA, 4, 'b'), 4), 'ok', 'lans are independent: lan b is behind lan a');
  assert.equal(g.accept(f(bootA, 6), 5), 'ok', 'a gap (lost frames) is fine');
});

test('a restarted peer (new, later boot id) is accepted at once; its old boot is refused for good', () => {
  const g = new HeartbeatReplayGuard();
  assert.equal(g.accept(f(bootA, 900), 0), 'ok');
  assert.equal(g.accept(f(bootB, 1), 10), 'ok', 'seq starts again at 1 in the new boot');
  assert.equal(g.currentBoot('node2'), bootB);
  assert.equal(g.accept(f(bootA, 901), 20), 'stale-boot', 'a frame of the old boot (in flight, or replayed)');
  assert.equal(g.accept(f(bootA, 901), 1_000_000), 'stale-boot', 'even after a long silence: a replaced boot never comes back');
  assert.equal(g.accept(f(bootB, 1), 30), 'replay');
  assert.equal(g.accept(f(bootB, 2), 40), 'ok');
});

test('an older-looking unseen boot id is refused while the current boot talks, taken after a silence (clock stepped back)', () => {
  const g = new HeartbeatReplayGuard({ newBootAfterSilenceMs: 5000 });
  assert.equal(g.accept(f(bootB, 10), 0), 'ok');
  assert.equal(g.accept(f(bootA, 1), 1000), 'stale-boot');
  assert.equal(g.accept(f(bootA, 2), 4999), 'stale-boot');
  assert.equal(g.accept(f(bootA, 3), 5000), 'ok', 'bootB silent for 5 s: the peer restarted with its clock set back');
  assert.equal(g.accept(f(bootB, 11), 5001), 'stale-boot', 'and bootB is now retired');
});

test('the guard stays bounded', () => {
  const g = new HeartbeatReplayGuard({ maxSenders: 2 });
  for (let i = 0; i < 100; i++) assert.equal(g.accept({ from: `n${i}`, lan: 'a', bootId: bootA, seq: 1 }, i), 'ok');
  assert.equal(g.currentBoot('n0'), undefined);
  assert.equal(g.currentBoot('n99'), bootA);
});
