// The replication stream spread over several connections (<rfs nbremconn>, protocol v3): frame k travels on
// connection k mod N and the secondary takes frame k from connection k mod N, so it applies the primary's
// order whatever each connection's speed. Over in-memory links whose secondary ends deliver after random
// delays (seeded): the reassembled order, a real target applying a chain of renames that any reordering
// breaks, a connection dying mid-stream (the whole link ends, the secondary holds a prefix), joins that
// name a wrong session or a taken place.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { greet } from '../../src/replication/handshake.ts';
import { memoryLinkPair, StripedLink, StripeReassembler, type FrameLink } from '../../src/replication/link.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { PROTOCOL_VERSION, type Frame } from '../../src/replication/protocol.ts';
import { Prng } from '../../src/sim/prng.ts';
import { runtimePair, runtimeSkip, sh, tree } from './runtime-pair.ts';
import { IN_SYNC_TARGET, inlineTarget, testSource, until } from './scripted-peer.ts';

/**
 * The receiving end of an in-memory connection that delivers what arrives later than it came: a few frames
 * at a time, each batch after 0..maxDelayMs, in order. pause() holds them (as a socket stops reading).
 */
class SlowLink implements FrameLink {
  private readonly queue: Frame[] = [];
  private readonly events = new EventEmitter();
  private timer: NodeJS.Timeout | null = null;
  private paused = false;
  pauses = 0;

  constructor(
    private readonly inner: FrameLink,
    private readonly rng: Prng,
    private readonly maxDelayMs: number,
  ) {
    inner.onFrame((f) => {
      this.queue.push(f);
      this.pump();
    });
  }

  get remote(): string {
    return this.inner.remote;
  }
  send(f: Frame): boolean {
    return this.inner.send(f);
  }
  drained(): Promise<void> {
    return this.inner.drained();
  }
  onFrame(fn: (f: Frame) => void): void {
    this.events.on('frame', fn);
  }
  onClose(fn: (e: Error | null) => void): void {
    this.inner.onClose(fn);
  }
  close(): void {
    this.inner.close();
  }
  pause(): void {
    if (!this.paused) this.pauses++;
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    this.pump();
  }

  private pump(): void {
    if (this.timer || this.paused || this.queue.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      for (let n = this.rng.int(1, 8); n > 0 && !this.paused && this.queue.length > 0; n--) this.events.emit('frame', this.queue.shift()!);
      this.pump();
    }, this.rng.int(0, this.maxDelayMs));
  }
}

/** N in-memory connections: the primary's ends, and the secondary's ends slowed down at random. */
function connections(n: number, rng: Prng, maxDelayMs = 3): { primary: FrameLink[]; secondary: SlowLink[] } {
  const primary: FrameLink[] = [];
  const secondary: SlowLink[] = [];
  for (let i = 0; i < n; i++) {
    const [a, b] = memoryLinkPair();
    primary.push(a);
    secondary.push(new SlowLink(b, rng, maxDelayMs));
  }
  return { primary, secondary };
}

const seq = (f: Frame): number => (f.type === 'write' ? f.data.readUInt32LE(0) : -1);

describe('StripedLink and StripeReassembler: the primary\'s order, whatever each connection\'s speed', () => {
  for (let seed = 1; seed <= 40; seed++) {
    it(`seed ${seed}`, async () => {
      const rng = new Prng(seed);
      const n = rng.int(2, 6);
      const { primary, secondary } = connections(n, rng);
      const out: number[] = [];
      // A small queue limit, so that connections that run ahead are paused and resumed.
      const reassembler = new StripeReassembler(n, (f) => out.push(seq(f)), 4096);
      secondary.forEach((l, i) => {
        reassembler.add(i, l);
        l.onFrame((f) => reassembler.push(i, f));
      });
      const striped = new StripedLink(primary);
      const total = rng.int(200, 600);
      for (let k = 0; k < total; k++) {
        const data = Buffer.alloc(rng.int(4, 2048));
        data.writeUInt32LE(k, 0);
        striped.send({ type: 'write', path: '0/f', offset: 0n, mtimeNs: 0n, sync: 0, data });
        if (rng.chance(0.05)) await new Promise((r) => setTimeout(r, rng.int(0, 3)));
      }
      await until(() => out.length === total, `${total} frames (seed ${seed}, ${n} connections; got ${out.length})`);
      assert.deepEqual(out, Array.from({ length: total }, (_, k) => k));
      assert.equal(reassembler.connections, n);
      striped.close();
    });
  }

  it('a connection ahead of the others is paused past its queue limit, the one awaited never', async () => {
    const rng = new Prng(7);
    const { primary, secondary } = connections(2, rng, 0);
    const out: number[] = [];
    const reassembler = new StripeReassembler(2, (f) => out.push(seq(f)), 1000);
    secondary.forEach((l, i) => reassembler.add(i, l));
    // Connection 0 delivers frames 0, 2, 4... but connection 1 is held: after frame 0, all wait on it.
    secondary[0]!.onFrame((f) => reassembler.push(0, f));
    const held: Frame[] = [];
    secondary[1]!.onFrame((f) => held.push(f));
    const striped = new StripedLink(primary);
    for (let k = 0; k < 20; k++) {
      const data = Buffer.alloc(200);
      data.writeUInt32LE(k, 0);
      striped.send({ type: 'write', path: '0/f', offset: 0n, mtimeNs: 0n, sync: 0, data });
    }
    await until(() => secondary[0]!.pauses > 0 && held.length === 10, 'connection 0 paused');
    assert.deepEqual(out, [0]);
    assert.equal(secondary[1]!.pauses, 0);
    for (const f of held) reassembler.push(1, f);
    await until(() => out.length === 20, 'every frame');
    assert.deepEqual(out, Array.from({ length: 20 }, (_, k) => k));
    striped.close();
  });
});

// ------------------------------------------------------------------------------------------ a real target

const native = nativeAvailable();

describe('a real target behind several slow connections', { skip: native === true ? false : native }, () => {
  const base = `/tmp/stayup-nbremconn-${process.pid}`;
  before(() => mkdirSync(base, { recursive: true }));
  after(() => rmSync(base, { recursive: true, force: true }));
  let made = 0;

  /** A target over a fresh directory; the primary greets it on connection 0 and opens the stream over `n`. */
  async function stream(n: number, seed: number) {
    const dir = join(base, `t${++made}`);
    const { target, logs, greeted } = inlineTarget(dir);
    const rng = new Prng(seed);
    const { primary, secondary } = connections(n, rng);
    for (const l of secondary) target.attach(l, { sync: 'incremental' });
    const g = await greet(primary[0]!, { module: 'm', node: 'n1', session: '1' }, { peer: 'n2', timeoutMs: 2000 });
    const session = g.state['session'] as string;
    assert.equal(typeof session, 'string');
    primary[0]!.send({ type: 'stripes', count: n });
    for (let i = 1; i < n; i++) primary[i]!.send({ type: 'join', session, index: i, count: n });
    const got: Frame[] = [];
    const striped = new StripedLink(primary);
    striped.onFrame((f) => got.push(f));
    return { dir, target, striped, primary, secondary, got, logs, greeted, session };
  }

  const acked = (got: Frame[]): bigint => got.reduce((m, f) => (f.type === 'ack' && f.count > m ? f.count : m), 0n);

  it('a chain of renames, each needing the one before, applied in the primary\'s order (3 connections, 10 seeds)', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const s = await stream(3, seed);
      const links = 200;
      s.striped.send({ type: 'syncBegin', syncId: 's', scope: 'test' });
      s.striped.send({ type: 'create', path: '0/f0', flags: 1, mode: 0o644, uid: 0, gid: 0, mtimeNs: 1n });
      for (let k = 1; k <= links; k++) {
        s.striped.send({ type: 'rename', path: `0/f${k - 1}`, newPath: `0/f${k}`, flags: 0 });
        const data = Buffer.alloc(4);
        data.writeUInt32LE(k, 0);
        s.striped.send({ type: 'write', path: `0/f${k}`, offset: BigInt((k - 1) * 4), mtimeNs: 2n, sync: 0, data });
      }
      const total = BigInt(2 + 2 * links);
      await until(() => acked(s.got) === total || s.got.some((f) => f.type === 'fail'), `the acknowledgement of ${total} frames`);
      assert.deepEqual(s.got.filter((f) => f.type === 'fail'), [], `seed ${seed}: ${s.logs.join('\n')}`);
      s.target.closeFds();
      const content = readFileSync(join(s.dir, `f${links}`));
      assert.deepEqual(Array.from({ length: links }, (_, k) => content.readUInt32LE(k * 4)), Array.from({ length: links }, (_, k) => k + 1), `seed ${seed}`);
      assert.deepEqual(readdirSync(s.dir), [`f${links}`]);
      assert.equal(s.target.connections, 3);
      s.striped.close();
    }
  });

  it('a connection dying mid-stream ends the whole link: the primary journals what was not acknowledged, the secondary holds a prefix', async () => {
    const s = await stream(3, 99);
    const { source, journal, lost } = testSource(join(base, `source${made}`), { acksOnReceipt: true });
    source.attach(s.striped, IN_SYNC_TARGET);
    await until(() => source.inSync, 'in sync');
    const dirs = 300;
    let killed = false;
    for (let k = 0; k < dirs; k++) {
      source.onOp(0, { op: 'mkdir', path: `d${k}`, mode: 0o755, uid: 0, gid: 0, job: 0 });
      if (k === 150) {
        // Connection 2 dies at the secondary's end, with frames in flight on every connection.
        s.secondary[2]!.close();
        killed = true;
      }
      if (k % 20 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    assert.ok(killed);
    await until(() => lost.length > 0, 'the link lost');
    assert.match(lost[0]!, /^connection 2 of 3 ended/);
    await until(() => s.greeted[0] !== undefined && s.target.connections === 0, 'the secondary\'s stream ended');
    s.target.closeFds();
    // What the secondary applied is a prefix of the mkdirs, and what it lacks is in the journal.
    const have = new Set(readdirSync(s.dir));
    const k = [...Array(dirs).keys()].findIndex((i) => !have.has(`d${i}`));
    assert.ok(k >= 0 && k < dirs, 'the secondary has every directory: the connection died too late');
    for (let i = k; i < dirs; i++) assert.ok(!have.has(`d${i}`), `d${i} applied after the missing d${k}`);
    for (let i = k; i < dirs; i++) assert.ok(journal.dirty.covers(`0/d${i}`), `0/d${i} neither on the secondary nor in the journal`);
    journal.close();
  });

  it('a join naming another session, or a place already taken, is refused (REPLICATION_JOIN_REFUSED); the stream goes on', async () => {
    const s = await stream(2, 5);
    const tryJoin = async (session: string, index: number): Promise<{ fail: Frame | undefined; closed: boolean }> => {
      const [a, b] = memoryLinkPair();
      const back: Frame[] = [];
      a.onFrame((f) => back.push(f));
      let closed = false;
      a.onClose(() => (closed = true));
      s.target.attach(b, { sync: 'incremental' });
      a.send({ type: 'join', session, index, count: 2 });
      await until(() => closed, 'the refused connection closed');
      return { fail: back.find((f) => f.type === 'fail'), closed };
    };
    const wrong = await tryJoin('not-the-session', 1);
    assert.deepEqual(wrong.fail, { type: 'fail', count: 0n, error: 'replication: connection from memory-b refused: it joins stream session "not-the-session", and the current one is another (a stream of an earlier connection?)' });
    const taken = await tryJoin(s.session, 1);
    assert.equal(taken.fail?.type === 'fail' && taken.fail.error, 'replication: connection from memory-b refused: connection 1 has joined already');
    assert.equal(s.logs.filter((l) => l.includes('refused')).length, 2);
    s.striped.send({ type: 'syncBegin', syncId: 's', scope: 'test' });
    s.striped.send({ type: 'mkdir', path: '0/still', mode: 0o755, uid: 0, gid: 0 });
    await until(() => acked(s.got) === 2n, 'the stream acknowledged');
    s.target.closeFds();
    assert.deepEqual(readdirSync(s.dir), ['still']);
    s.striped.close();
  });
});

// ------------------------------------------------------------------------------------------ two runtimes

describe('two real runtimes with nbremconn="3" (TLS on loopback, the primary writing through FUSE)', { skip: runtimeSkip() }, () => {
  let base: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'stayup-nbremconn-rt-'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it('the stream goes over 3 connections: the copies are identical after live writes and after a reintegration', async () => {
    const p = await runtimePair(base, 'n3', { primary: { rfs: { nbremconn: 3 } } });
    try {
      await until(() => p.reports2.some((r) => r.uptodate), 'the secondary up to date');
      assert.equal(p.rt1.status().linkConnections, 3);
      assert.equal(p.rt2.status().linkConnections, 3);
      assert.equal(p.rt1.status().protocolVersion, PROTOCOL_VERSION);
      assert.ok(p.logs1.includes(`I Replication link to n2 established (protocol v${PROTOCOL_VERSION}, 3 connections)`), p.logs1.join('\n'));
      // Live: many small writes, a large one (frames of every size on every connection), names changing.
      await sh('sh', ['-c', `cd ${p.d1} && mkdir a && for i in $(seq 1 200); do echo "record $i" >> a/log; done && head -c 9000000 /dev/urandom > a/big && mv a/log a/log.1 && sync a/big`]);
      await until(() => tree(p.d2).join() === tree(p.d1).join(), 'the copies identical after live writes', 20_000);
      // The secondary goes away; the primary writes on alone (journaled); it comes back and is reintegrated.
      p.rt2.setRole('off', 'none', () => {});
      await until(() => !p.rt1.status().linkUp, 'the link down');
      await sh('sh', ['-c', `cd ${p.d1} && head -c 3000000 /dev/urandom | dd of=a/big bs=1M seek=2 conv=notrunc status=none && echo new > b && rm a/log.1`]);
      const reports = p.reports2.length;
      p.second();
      await until(() => p.reports2.slice(reports).some((r) => r.uptodate), 'the secondary reintegrated', 20_000);
      await until(() => tree(p.d2).join() === tree(p.d1).join(), 'the copies identical after the reintegration');
      assert.equal(p.rt2.status().linkConnections, 3);
      assert.ok((p.rt1.status().lastReintegration?.bytesSent ?? 0) >= 3_000_000, JSON.stringify(p.rt1.status().lastReintegration));
      assert.deepEqual(p.logs1.filter((l) => l.startsWith('E') && !l.includes('interrupted')), []);
    } finally {
      await p.close();
    }
  });

  it('a peer that speaks only v2 gets one connection, said in the log', async () => {
    const p = await runtimePair(base, 'v2', { primary: { rfs: { nbremconn: 3 } }, secondary: { versions: { min: 1, max: 2 } } });
    try {
      await until(() => p.reports2.some((r) => r.uptodate), 'the secondary up to date');
      assert.equal(p.rt1.status().linkConnections, 1);
      assert.ok(p.logs1.includes('I Replication link to n2 established (protocol v2, 1 connection: nbremconn 3 needs protocol v3)'), p.logs1.join('\n'));
      await sh('sh', ['-c', `echo one > ${p.d1}/f`]);
      await until(() => tree(p.d2).join() === tree(p.d1).join(), 'the copies identical');
    } finally {
      await p.close();
    }
  });
});
