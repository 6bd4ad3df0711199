import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LossDetector, type LossTransition } from '../../src/heartbeat/loss-detector.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const lans = [
  { lan: 'a', timeoutMs: 1000 },
  { lan: 'b', timeoutMs: 1000 },
];

/** Feeds frames every `pulse` ms on the given lans from `from` to `to`, ticking at each pulse. */
function run(d: LossDetector, from: number, to: number, pulse: number, on: string[]): LossTransition[] {
  const out: LossTransition[] = [];
  for (let t = from; t < to; t += pulse) {
    for (const l of on) out.push(...d.frameReceived(l, t));
    out.push(...d.tick(t));
  }
  return out;
}

test('start: the first frames bring the lans and the peer up', () => {
  const d = new LossDetector(lans, 0);
  assert.equal(d.peer, 'unknown');
  assert.equal(d.lanState('a'), 'init');
  assert.deepEqual(d.frameReceived('a', 100), [
    { kind: 'lan', lan: 'a', state: 'up', atMs: 100 },
    { kind: 'peer', state: 'up', atMs: 100 },
  ]);
  assert.deepEqual(d.frameReceived('b', 150), [{ kind: 'lan', lan: 'b', state: 'up', atMs: 150 }]);
  assert.deepEqual(d.tick(900), []);
});

test('one of two lans lost: that lan goes down, the peer stays up', () => {
  const d = new LossDetector(lans, 0);
  const early = run(d, 0, 2000, 100, ['a', 'b']);
  assert.equal(early.filter((t) => t.kind === 'peer').length, 1);
  const out = run(d, 2000, 10_000, 100, ['a']); // lan b silent from 1900
  assert.deepEqual(out, [{ kind: 'lan', lan: 'b', state: 'down', atMs: 2900 }]);
  assert.equal(d.peer, 'up');
  assert.deepEqual(d.snapshot(), {
    peer: 'up',
    lans: { a: { state: 'up', lastFrameMs: 9900, timeoutMs: 1000 }, b: { state: 'down', lastFrameMs: 1900, timeoutMs: 1000 } },
  });
});

test('both lans lost: peerLost once the last one has been silent for its timeout; recovery', () => {
  const d = new LossDetector(lans, 0);
  run(d, 0, 1000, 100, ['a', 'b']); // last frames at 900
  run(d, 1000, 1500, 100, ['a']); // lan a lives on until 1400
  assert.deepEqual(d.tick(1899), []);
  assert.deepEqual(d.tick(1900), [{ kind: 'lan', lan: 'b', state: 'down', atMs: 1900 }]);
  assert.equal(d.peer, 'up', 'lan a still counts');
  assert.equal(d.nextDeadlineMs(), 2400);
  assert.deepEqual(d.tick(2399), []);
  assert.deepEqual(d.tick(2400), [
    { kind: 'lan', lan: 'a', state: 'down', atMs: 2400 },
    { kind: 'peer', state: 'lost', atMs: 2400 },
  ]);
  assert.equal(d.nextDeadlineMs(), undefined);
  assert.deepEqual(d.tick(60_000), [], 'reported once');
  // Recovery: a frame on lan b alone brings the peer back.
  assert.deepEqual(d.frameReceived('b', 61_000), [
    { kind: 'lan', lan: 'b', state: 'up', atMs: 61_000 },
    { kind: 'peer', state: 'up', atMs: 61_000 },
  ]);
  assert.equal(d.lanState('a'), 'down');
  assert.deepEqual(d.frameReceived('a', 61_050), [{ kind: 'lan', lan: 'a', state: 'up', atMs: 61_050 }]);
});

test('a late tick reports the expiries at their deadlines, in order, before a frame', () => {
  const d = new LossDetector(
    [
      { lan: 'a', timeoutMs: 3000 },
      { lan: 'b', timeoutMs: 1000 },
    ],
    0,
  );
  d.frameReceived('a', 0);
  d.frameReceived('b', 500);
  // Nothing ticked for 10 s, then a frame on b: the loss happened in between and is reported first.
  assert.deepEqual(d.frameReceived('b', 10_000), [
    { kind: 'lan', lan: 'b', state: 'down', atMs: 1500 },
    { kind: 'lan', lan: 'a', state: 'down', atMs: 3000 },
    { kind: 'peer', state: 'lost', atMs: 3000 },
    { kind: 'lan', lan: 'b', state: 'up', atMs: 10_000 },
    { kind: 'peer', state: 'up', atMs: 10_000 },
  ]);
});

test('a peer never heard is lost when every lan times out from the start', () => {
  const d = new LossDetector(lans, 5000);
  assert.deepEqual(d.tick(5999), []);
  assert.deepEqual(d.tick(6000), [
    { kind: 'lan', lan: 'a', state: 'down', atMs: 6000 },
    { kind: 'lan', lan: 'b', state: 'down', atMs: 6000 },
    { kind: 'peer', state: 'lost', atMs: 6000 },
  ]);
});

test('time never goes back; bad input is refused', () => {
  const d = new LossDetector(lans, 0);
  d.frameReceived('a', 500);
  d.frameReceived('b', 500);
  assert.deepEqual(d.tick(100), [], 'an earlier now is taken as the latest one');
  assert.deepEqual(d.frameReceived('a', 200), [], 'a frame stamped earlier counts at the latest now');
  assert.equal(d.snapshot().lans.a!.lastFrameMs, 500);
  assert.throws(() => d.frameReceived('c', 1), (e) => isStayupError(e) && e.code === 'BAD_ARGUMENT');
  assert.throws(() => new LossDetector([], 0), /no lan/);
  assert.throws(() => new LossDetector([{ lan: 'a', timeoutMs: 0 }], 0), /must be > 0/);
  assert.throws(() => new LossDetector([lans[0]!, lans[0]!], 0), /listed twice/);
});
