// The in-memory network runs the real framing core: these tests cover the receive-side rejections
// (wrong lan, unknown sender, replay, old boot), anti-replay across a peer restart, and the fault controls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryHeartbeatNetwork, type MemoryHeartbeatTransport, type WireMessage } from '../../src/heartbeat/memory.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { encodeFrame, HeartbeatKey, newBootId } from '../../src/heartbeat/frame.ts';
import type { FrameEvent, RejectEvent } from '../../src/heartbeat/channel.ts';

const moduleKey = generateModuleKey();

/** A small seeded PRNG, as the simulator would pass. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A network whose deliveries run only when the test flushes them: fully deterministic. */
function manualNet(extra: { random?: () => number } = {}) {
  const queue: Array<() => void> = [];
  let clock = 0;
  const net = new MemoryHeartbeatNetwork({ now: () => clock, wallClock: () => 1_800_000_000_000 + clock, schedule: (fn) => queue.push(fn), ...extra });
  return {
    net,
    flush: () => {
      while (queue.length) queue.shift()!();
    },
    advance: (ms: number) => (clock += ms),
  };
}

function pair(net: MemoryHeartbeatNetwork, lans = ['a', 'b']) {
  const n1 = net.transport({ moduleId: 1, moduleKey, node: 'node1', peer: 'node2', lans });
  const n2 = net.transport({ moduleId: 1, moduleKey, node: 'node2', peer: 'node1', lans });
  return { n1, n2 };
}

function record(t: MemoryHeartbeatTransport) {
  const frames: FrameEvent[] = [];
  const rejects: RejectEvent[] = [];
  t.on('frame', (e) => frames.push(e));
  t.on('rejected', (e) => rejects.push(e));
  return { frames, rejects };
}

test('send goes out on every lan with increasing sequence numbers; the peer gets each frame once', () => {
  const { net, flush, advance } = manualNet();
  const { n1, n2 } = pair(net);
  const got = record(n2);
  advance(7);
  n1.send(Buffer.from('{"state":"PRIM"}'));
  n1.sendOn('b', Buffer.from('{"state":"PRIM"}'));
  flush();
  assert.deepEqual(
    got.frames.map((f) => [f.lan, f.from, f.seq, f.payload.toString(), f.receivedAtMs, f.source]),
    [
      ['a', 'node1', 1, '{"state":"PRIM"}', 7, 'node1'],
      ['b', 'node1', 2, '{"state":"PRIM"}', 7, 'node1'],
      ['b', 'node1', 3, '{"state":"PRIM"}', 7, 'node1'],
    ],
  );
  assert.equal(got.frames[0]!.bootId, n1.bootId);
  assert.deepEqual(n1.counters().a!.sent, 1);
  assert.deepEqual(n1.counters().b!.sent, 2);
  assert.equal(n2.counters().b!.received, 2);
  assert.equal(n2.counters().b!.lastReceivedAtMs, 7);
  assert.equal(got.rejects.length, 0);
});

test('receive-side rejections: replayed frame, frame moved to another lan, own frame echoed, third node', () => {
  const { net, flush } = manualNet();
  const { n1, n2 } = pair(net);
  const got = record(n2);
  const wire: WireMessage[] = [];
  net.tap((m) => wire.push(m));
  n1.send(Buffer.from('x'));
  flush();
  assert.equal(got.frames.length, 2);
  const [onA, onB] = wire;
  net.inject('a', 'node2', onA!.bytes); // the same frame again
  net.inject('b', 'node2', onA!.bytes); // lan a's frame replayed on lan b
  // A frame of node2 itself (e.g. reflected back by a misconfigured switch).
  const own = encodeFrame(new HeartbeatKey(moduleKey), { moduleId: 1, from: 'node2', lan: 'a', bootId: n2.bootId, seq: 1, sentAtMs: 0 }, Buffer.from('x'));
  net.inject('a', 'node2', own);
  // A third node that knows the module key but is not the peer.
  const third = encodeFrame(new HeartbeatKey(moduleKey), { moduleId: 1, from: 'node3', lan: 'a', bootId: newBootId(), seq: 1, sentAtMs: 0 }, Buffer.from('x'));
  net.inject('a', 'node2', third);
  net.inject('a', 'node2', Buffer.from('garbage'));
  flush();
  assert.deepEqual(
    got.rejects.map((r) => [r.lan, r.reason]),
    [
      ['a', 'replay'],
      ['b', 'wrong-lan'],
      ['a', 'unknown-sender'],
      ['a', 'unknown-sender'],
      ['a', 'bad-magic'],
    ],
  );
  assert.equal(got.rejects[2]!.detail, 'a frame of this node came back');
  assert.equal(got.rejects[3]!.detail, 'frame from "node3", the peer is "node1"');
  assert.equal(onB!.lan, 'b');
  const c = n2.counters();
  assert.equal(c.a!.rejected.replay, 1);
  assert.equal(c.a!.rejected['unknown-sender'], 2);
  assert.equal(c.a!.rejected['bad-magic'], 1);
  assert.equal(c.b!.rejected['wrong-lan'], 1);
  assert.equal(c.a!.received, 1);
  assert.equal(c.b!.rejected.replay, 0, 'every reason is counted from 0');
});

test('anti-replay across a peer restart: the new boot is heard at once, frames of the old boot are refused', async () => {
  const { net, flush, advance } = manualNet();
  let { n1, n2 } = pair(net);
  const got = record(n2);
  const wire: WireMessage[] = [];
  net.tap((m) => wire.push(m));
  for (let i = 0; i < 5; i++) n1.send(Buffer.from(`old ${i}`));
  flush();
  assert.equal(got.frames.length, 10);
  const oldFrames = wire.filter((m) => m.from === 'node1').map((m) => m);
  const oldBoot = n1.bootId;

  // node1 restarts: a new transport, a new boot id, sequence numbers from 1 again.
  await n1.close();
  advance(1500);
  n1 = net.transport({ moduleId: 1, moduleKey, node: 'node1', peer: 'node2', lans: ['a', 'b'] });
  assert.notEqual(n1.bootId, oldBoot);
  assert.ok(n1.bootId > oldBoot, 'a later boot sorts after');
  n1.send(Buffer.from('new 0'));
  flush();
  assert.deepEqual(got.frames.slice(10).map((f) => [f.lan, f.seq, f.payload.toString()]), [
    ['a', 1, 'new 0'],
    ['b', 2, 'new 0'],
  ]);
  // An attacker replays the old boot's frames (all of them, even those with seq above the new ones).
  for (const m of oldFrames) net.inject(m.lan, 'node2', m.bytes);
  flush();
  assert.equal(got.frames.length, 12, 'nothing of the old boot is accepted');
  assert.deepEqual([...new Set(got.rejects.map((r) => r.reason))], ['stale-boot']);
  assert.equal(got.rejects.length, oldFrames.length);
  n1.send(Buffer.from('new 1'));
  flush();
  assert.equal(got.frames.length, 14);
  void n2;
});

test('faults: loss on one lan, one-way cut, partition, heal', () => {
  const { net, flush } = manualNet({ random: mulberry32(42) });
  const { n1, n2 } = pair(net);
  const g1 = record(n1);
  const g2 = record(n2);
  const count = (g: { frames: FrameEvent[] }, lan: string) => g.frames.filter((f) => f.lan === lan).length;

  net.setLoss('a', 1);
  n1.send(Buffer.from('1'));
  flush();
  assert.deepEqual([count(g2, 'a'), count(g2, 'b')], [0, 1], 'lan a loses everything, lan b works');
  net.setLoss('a', 0.5);
  for (let i = 0; i < 100; i++) n1.sendOn('a', Buffer.from('x'));
  flush();
  assert.ok(count(g2, 'a') > 10 && count(g2, 'a') < 90, `about half arrives (${count(g2, 'a')})`);
  net.heal();

  net.cut('b', 'node1', 'node2');
  n1.send(Buffer.from('2'));
  n2.send(Buffer.from('2'));
  flush();
  assert.equal(count(g2, 'b'), 1, 'node1 -> node2 on b is cut');
  assert.equal(count(g1, 'b'), 1, 'node2 -> node1 on b still works');
  net.heal('b');

  net.partition();
  const before = g2.frames.length;
  n1.send(Buffer.from('3'));
  flush();
  assert.equal(g2.frames.length, before, 'a full partition drops everything');
  net.heal();
  n1.send(Buffer.from('4'));
  flush();
  assert.equal(g2.frames.length, before + 2);
  assert.ok(net.stats.dropped > 0 && net.stats.delivered > 0);
});

test('a transport of another module key counts key-mismatch, never delivers', () => {
  const { net, flush } = manualNet();
  const n1 = net.transport({ moduleId: 1, moduleKey: generateModuleKey(), node: 'node1', peer: 'node2', lans: ['a'] });
  const n2 = net.transport({ moduleId: 1, moduleKey, node: 'node2', peer: 'node1', lans: ['a'] });
  const got = record(n2);
  n1.send(Buffer.from('x'));
  flush();
  assert.equal(got.frames.length, 0);
  assert.equal(n2.counters().a!.rejected['key-mismatch'], 1);
});

test('default scheduling delivers asynchronously without a scheduler', async () => {
  const net = new MemoryHeartbeatNetwork();
  const { n1, n2 } = pair(net, ['a']);
  const got = record(n2);
  n1.send(Buffer.from('x'));
  assert.equal(got.frames.length, 0, 'not re-entrant');
  await new Promise((r) => setImmediate(r));
  assert.equal(got.frames.length, 1);
  await n1.close();
  await n2.close();
});
