// Scripted scenarios in the simulated world (no random faults): the behaviours the mirror issue asks
// to demonstrate, with every invariant checked after every step as in the random runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { World, makeChecker, type SimNode } from '../../src/sim/index.ts';
import { EMPTY_PERSISTED, type MirrorPersisted } from '../../src/mirror/index.ts';

interface Setup {
  lans?: number;
  defaultPrim?: string;
  failover?: boolean;
  n1?: Partial<MirrorPersisted>;
  n2?: Partial<MirrorPersisted>;
}

function world(o: Setup = {}): { w: World; n1: SimNode; n2: SimNode; run: (ms: number) => void; calls: string[] } {
  const w = new World({
    seed: 1,
    names: ['n1', 'n2'],
    config: {
      failover: o.failover ?? true,
      defaultPrim: o.defaultPrim ?? 'alone',
      maxLoop: 3,
      loopIntervalMs: 60_000,
      heartbeats: Array.from({ length: o.lans ?? 2 }, (_, i) => ({ lan: `lan${i + 1}`, pulseMs: 100, timeoutMs: 500 })),
      vip: { tcpreset: true },
      replicatedData: true,
    },
    delayMinMs: 1,
    delayJitterMs: 5,
    scriptMinMs: 10,
    scriptMaxMs: 20,
  });
  const calls: string[] = [];
  const checker = makeChecker();
  w.hooks = {
    ...checker,
    onBatchStart(world, n, e) {
      checker.onBatchStart(world, n, e);
      for (const c of e.calls) calls.push(`${n.name} ${c.script}${c.forceOnly ? ' force' : ''}`);
    },
  };
  const [n1, n2] = w.nodes;
  if (o.n1) n1.persisted = { ...EMPTY_PERSISTED, ...o.n1 };
  if (o.n2) n2.persisted = { ...EMPTY_PERSISTED, ...o.n2 };
  w.boot(n1);
  w.boot(n2);
  const writer = (): void => {
    for (const n of w.nodes) w.write(n);
    w.q.after(40, writer);
  };
  w.q.after(40, writer);
  const run = (ms: number): void => {
    const until = w.now + ms;
    while (w.q.runNext(until)) {
      // invariants run in the hooks
    }
    w.q.nowMs = until;
  };
  return { w, n1, n2, run, calls };
}

const st = (n: SimNode): string => (n.machine ? `${n.machine.state}(${n.machine.qualifier})` : 'down');

/** n1 primary with up-to-date data, n2 its Ready secondary. */
function pair(o: Setup = {}): ReturnType<typeof world> {
  const env = world({ n1: { uptodate: true, lastPrim: true, gen: 1 }, ...o });
  env.w.command(env.n1, 'start');
  env.w.command(env.n2, 'start');
  env.run(3000);
  assert.equal(st(env.n1), 'PRIM(Ready)');
  assert.equal(st(env.n2), 'SECOND(Ready)');
  assert.equal(env.n1.vip, true);
  return env;
}

test('global start: the node with up-to-date data becomes primary, the other resynchronises', () => {
  const { w, n1, n2, run } = world({ n2: { uptodate: true, lastPrim: true, gen: 3 } });
  w.command(n1, 'start');
  w.command(n2, 'start');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)');
  assert.equal(st(n1), 'SECOND(Ready)');
  assert.equal(n1.data, n2.data, 'the secondary has the primary data');
});

test('global start of two nodes that cannot prove their data: both wait until prim', () => {
  const { w, n1, n2, run } = world();
  w.command(n1, 'start');
  w.command(n2, 'start');
  run(3000);
  assert.equal(st(n1), 'WAIT(NotReady)');
  assert.equal(st(n2), 'WAIT(NotReady)');
  assert.match(n1.machine!.reason, /^Data may be not uptodate for replicated directories/);
  w.command(n2, 'prim');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)');
  assert.equal(st(n1), 'SECOND(Ready)');
});

test('one of two heartbeat lans cut: no failover', () => {
  const { w, n1, n2, run } = pair();
  w.setLan('lan1', false);
  run(5000);
  assert.equal(st(n1), 'PRIM(Ready)');
  assert.equal(st(n2), 'SECOND(Ready)');
});

test('both lans cut: both go ALONE (split brain); when they return the former SECOND exits and resynchronises', () => {
  const { w, n1, n2, run } = pair();
  w.setLan('lan1', false);
  w.setLan('lan2', false);
  run(2000);
  assert.equal(st(n1), 'ALONE(Ready)');
  assert.equal(st(n2), 'ALONE(Ready)');
  const n2Data = n2.data;
  w.setLan('lan1', true);
  w.setLan('lan2', true);
  run(3000);
  assert.equal(st(n1), 'PRIM(Ready)', 'the node that was primary before the isolation stays');
  assert.equal(st(n2), 'SECOND(Ready)');
  assert.notEqual(n2.data, n2Data, 'what n2 wrote alone is given up');
  assert.equal(n2.data, n1.data);
});

test('the primary crashes: the secondary takes over with the virtual IP; the old primary comes back as SECOND', () => {
  const { w, n1, n2, run } = pair();
  w.crash(n1);
  run(1500);
  assert.equal(st(n2), 'ALONE(Ready)');
  assert.equal(n2.vip, true);
  w.boot(n1);
  w.command(n1, 'start');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)');
  assert.equal(st(n1), 'SECOND(Ready)');
});

test('a lone restarted node whose peer took over waits for the peer instead of starting with stale data', () => {
  const { w, n1, n2, run } = pair();
  w.crash(n1);
  run(1500);
  assert.equal(st(n2), 'ALONE(Ready)');
  w.crash(n2);
  w.boot(n1);
  w.command(n1, 'start');
  run(2000);
  assert.equal(st(n1), 'WAIT(NotReady)');
  w.boot(n2);
  w.command(n2, 'start');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)', 'n2 had the data');
  assert.equal(st(n1), 'SECOND(Ready)');
});

test('swap: stop_prim on the old primary ends before start_prim on the new one; roles are exchanged', () => {
  const { w, n1, n2, run, calls } = pair();
  calls.length = 0;
  w.command(n1, 'swap');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)');
  assert.equal(st(n1), 'SECOND(Ready)');
  assert.ok(calls.indexOf('n1 stop_prim') < calls.indexOf('n2 start_prim'));
  assert.deepEqual(
    calls.filter((c) => c.startsWith('n1')),
    ['n1 stop_prim', 'n1 transition', 'n1 start_second', 'n1 start_sec'],
  );
  assert.deepEqual(
    calls.filter((c) => c.startsWith('n2')),
    ['n2 stop_sec', 'n2 stop_second', 'n2 transition', 'n2 start_prim'],
  );
});

test('swap requested on the secondary', () => {
  const { w, n1, n2, run } = pair();
  w.command(n2, 'swap');
  run(3000);
  assert.equal(st(n2), 'PRIM(Ready)');
  assert.equal(st(n1), 'SECOND(Ready)');
});

test('defaultprim: the preferred node takes the primary role back once it is a Ready secondary', () => {
  const { w, n1, n2, run } = pair({ defaultPrim: 'n1' });
  w.crash(n1);
  run(1500);
  assert.equal(st(n2), 'ALONE(Ready)');
  w.boot(n1);
  w.command(n1, 'start');
  run(4000);
  assert.equal(st(n1), 'PRIM(Ready)', 'failback to n1');
  assert.equal(st(n2), 'SECOND(Ready)');
});

test('failover off: the secondary waits "Failover-off configured" until prim', () => {
  const { w, n1, n2, run } = pair({ failover: false });
  w.crash(n1);
  run(1500);
  assert.equal(st(n2), 'WAIT(NotReady)');
  assert.equal(n2.machine!.reason, 'Failover-off configured');
  w.command(n2, 'prim');
  run(1000);
  assert.equal(st(n2), 'ALONE(Ready)');
});

test('a frozen primary: the secondary takes over; when the primary resumes, the former SECOND exits', () => {
  const { w, n1, n2, run } = pair();
  w.freeze(n1);
  run(1500);
  assert.equal(st(n2), 'ALONE(Ready)');
  w.resume(n1);
  run(3000);
  assert.equal(st(n1), 'PRIM(Ready)');
  assert.equal(st(n2), 'SECOND(Ready)');
  assert.equal(n1.vip && !n2.vip, true);
});

test('maxloop: the 4th automated restart stops the module and the peer takes over', () => {
  const { w, n1, n2, run } = pair();
  for (let i = 0; i < 3; i++) {
    w.command(n1, 'restart', { identity: 'errd' });
    run(500);
    assert.equal(st(n1), 'PRIM(Ready)');
  }
  w.command(n1, 'restart', { identity: 'errd' });
  run(2000);
  assert.equal(st(n1), 'STOP(NotReady)');
  assert.equal(st(n2), 'ALONE(Ready)');
});
