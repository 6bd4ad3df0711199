// The mirror machine is a pure function: its sources import nothing from node (no clock, timer, socket,
// file or randomness), and step() never mutates the state it is given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { step, initialMirrorState, type MirrorState } from '../../src/mirror/index.ts';

const dir = join(import.meta.dirname, '../../src/mirror');

test('src/mirror imports nothing that reaches the system', () => {
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
    const src = readFileSync(join(dir, f), 'utf8');
    const code = src.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    for (const m of code.matchAll(/from\s+'([^']+)'/g)) {
      const spec = m[1]!;
      assert.ok(spec.startsWith('./') || spec === '../errors/codes.ts', `${f} imports ${spec}`);
    }
    for (const banned of ['Date.now', 'new Date', 'Math.random', 'setTimeout', 'setInterval', 'performance.', 'process.']) {
      assert.ok(!code.includes(banned), `${f} uses ${banned}`);
    }
  }
});

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

test('step never mutates its input state', () => {
  let s: MirrorState = initialMirrorState(
    {
      self: 'n1',
      peer: 'n2',
      failover: true,
      defaultPrim: 'alone',
      maxLoop: 3,
      loopIntervalMs: 1000,
      heartbeats: [{ lan: 'lan1', pulseMs: 100, timeoutMs: 500 }],
      vip: { tcpreset: true },
      replicatedData: true,
    },
    { uptodate: true, lastPrim: true, reintegrating: false, reintegrationInterrupted: false, gen: 1, incarnation: 0, lastSyncMs: null },
    0,
  );
  const events = [
    { type: 'command', nowMs: 0, command: 'start' },
    { type: 'scriptsDone', nowMs: 10, id: 1, ok: true },
    { type: 'tick', nowMs: 600 },
    { type: 'scriptsDone', nowMs: 620, id: 2, ok: true },
    { type: 'scriptsDone', nowMs: 640, id: 3, ok: true },
    { type: 'command', nowMs: 700, command: 'stop' },
  ] as const;
  for (const e of events) {
    const frozen = deepFreeze(structuredClone(s));
    const r = step(frozen, e);
    s = r.state;
  }
  assert.equal(s.state, 'ALONE');
  assert.equal(s.qualifier, 'Transient');
});
