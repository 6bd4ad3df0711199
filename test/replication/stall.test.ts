import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Rfs } from '../../src/config/userconfig/types.ts';
import type { ReplicationReport } from '../../src/engine/mirror-engine.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { greetPeer } from '../../src/replication/handshake.ts';
import { Journal } from '../../src/replication/journal.ts';
import { connectLink, memoryLinkPair } from '../../src/replication/link.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import { PROTOCOL_VERSION, type Frame } from '../../src/replication/protocol.ts';
import { greetSecondary, type RfsRuntime } from '../../src/replication/rfs-runtime.ts';
import { ReplicationSource } from '../../src/replication/source.ts';
import { StallWatchdog } from '../../src/replication/stall-watchdog.ts';
import { freePorts, loopbackRuntime, rfsConfig } from '../daemon/rfs-harness.ts';
import { scriptedSecondary } from './runtime-pair.ts';

// The primary's link to a peer that misbehaves: one that stops acknowledging with its connection open
// (the stall watchdog: sendtimeout, locktimeout), and one whose welcome is malformed (refused, nothing
// attached, nothing changed).

/** A primary's source over the in-memory link; the other end receives and never answers (a stalled peer). */
function stalledSource(): { source: ReplicationSource; journal: Journal; replies: Array<[number, number]>; lost: string[]; received: Frame[]; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-stall-'));
  const journal = new Journal(join(dir, 'journal.jsonl'), 1024 * 1024);
  journal.reset('sync-1', Date.now());
  const replies: Array<[number, number]> = [];
  const lost: string[] = [];
  const source = new ReplicationSource({
    dirs: [{ underPath: dir, filter: new ReplicationFilter([]), reply: (job, errno) => replies.push([job, errno]) }],
    journal,
    blockBytes: 1024 * 1024,
    nbrei: 2,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => null,
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: () => {}, lost: (why) => lost.push(why) },
  });
  const [s, t] = memoryLinkPair();
  const received: Frame[] = [];
  t.onFrame((f) => received.push(f));
  source.attach(s, { sync: 'incremental', syncId: 'sync-1', clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false });
  return { source, journal, replies, lost, received, dir };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('stall watchdog over the in-memory link: the peer stops answering', () => {
  it('sendtimeout: nothing acknowledged for that long drops the peer; the held call returns, its path is journaled', async () => {
    const { source, journal, replies, lost, received, dir } = stalledSource();
    try {
      const wd = new StallWatchdog({ sendTimeoutMs: 30_000, lockTimeoutMs: 100_000 });
      source.onOp(0, { op: 'create', job: 1, handle: 7, path: 'f', flags: 1, mode: 0o644, uid: 0, gid: 0, mtimeNs: 1n });
      source.onOp(0, { op: 'write', job: 2, handle: 7, offset: 0, data: Buffer.from('record 1'), mtimeNs: 2n });
      await until(() => received.some((f) => f.type === 'write'), 'the write frame');
      assert.deepEqual(replies, [], 'the application calls wait for the peer');
      const t0 = 1000;
      assert.equal(wd.check(source.progress(), t0), null);
      assert.equal(wd.check(source.progress(), t0 + 29_999), null);
      const why = wd.check(source.progress(), t0 + 30_000);
      assert.equal(why, 'the peer acknowledged nothing for 30 s with frames waiting (sendtimeout 30 s)');
      // What the runtime does with it (rfs-runtime.ts watch()).
      source.detach(`stalled: ${why}`);
      assert.deepEqual(replies, [[1, 0], [2, 0]], 'the held calls return');
      assert.deepEqual(lost, ['stalled: the peer acknowledged nothing for 30 s with frames waiting (sendtimeout 30 s)']);
      assert.ok(journal.dirty.has('0/f'), 'what the peer did not acknowledge is in the journal');
      assert.equal(source.connected, false);
    } finally {
      journal.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('locktimeout: acknowledgements trickle in, but a held call waits past the limit', () => {
    const wd = new StallWatchdog({ sendTimeoutMs: 30_000, lockTimeoutMs: 100_000 });
    // Frame 10 holds an application call; the peer acknowledges some frames every 20 s, never frame 10.
    assert.equal(wd.check({ sentFrames: 12n, ackedFrames: 0n, oldestHeldFrame: 10n }, 0), null);
    let t = 0;
    for (let acked = 1n; acked <= 5n; acked++) {
      t += 20_000;
      const why = wd.check({ sentFrames: 12n + acked, ackedFrames: acked, oldestHeldFrame: 10n }, t);
      assert.equal(why, t < 100_000 ? null : 'an application call waited 100 s for the peer (locktimeout 100 s)', `at ${t} ms`);
    }
  });

  it('a peer that acknowledges keeps the link, however long it runs; a new link starts the counts again', () => {
    const wd = new StallWatchdog({ sendTimeoutMs: 1000, lockTimeoutMs: 2000 });
    for (let i = 1; i <= 100; i++) assert.equal(wd.check({ sentFrames: BigInt(i * 10), ackedFrames: BigInt(i * 10 - 5), oldestHeldFrame: BigInt(i * 10) }, i * 500), null);
    wd.reset();
    assert.equal(wd.check({ sentFrames: 3n, ackedFrames: 0n, oldestHeldFrame: null }, 60_000), null);
    assert.match(wd.check({ sentFrames: 3n, ackedFrames: 0n, oldestHeldFrame: null }, 61_000) ?? '', /sendtimeout/);
  });
});

// ------------------------------------------------------------------------------------------ the runtime

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the replication runtime needs Linux';
  if (process.getuid?.() !== 0) return 'the replication runtime needs root';
  const n = nativeAvailable();
  return n === true ? false : n;
}

describe('the runtime as primary against a misbehaving secondary (real TLS link on loopback)', { skip: skipReason() }, () => {
  const KEY = Buffer.alloc(32, 7);
  let base: string;
  let data: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'stayup-stall-rt-'));
    data = join(base, 'data');
    mkdirSync(data);
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  const fakeSecondary = (port: number, welcome: (hello: Frame) => Frame) => scriptedSecondary(port, KEY, welcome);

  const runtime = (port: number, rfs: Rfs, logs: string[], stateDir: string): RfsRuntime => loopbackRuntime({ rfs, port, stateDir, logs, moduleKey: KEY });


  const goodWelcome = (): Frame => ({ type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: JSON.stringify({ sync: 'incremental', syncId: null, clean: false, lastSyncMs: null, hints: [] }) });

  it('a secondary that stops acknowledging is dropped after sendtimeout: logged, reported to the machine (peerLost), shown in the status', async () => {
    const port = await freePorts('127.0.0.1');
    const logs: string[] = [];
    const reports: ReplicationReport[] = [];
    // It answers the welcome and then swallows everything: the reintegration's first request is never answered.
    const sec = await fakeSecondary(port, goodWelcome);
    const rt = runtime(port, rfsConfig(data, { sendtimeoutMs: 600 }), logs, join(base, 'state-stall'));
    try {
      rt.setRole('prim', 'none', (r) => reports.push(r));
      await until(() => rt.status().linkUp, 'the link');
      const t0 = performance.now();
      await until(() => reports.some((r) => r.peerLost), 'the peerLost report', 10_000);
      const took = performance.now() - t0;
      assert.ok(took >= 500, `dropped after ${took} ms, before sendtimeout`);
      assert.ok(logs.some((l) => /^E Replication to n2 stalled: the peer acknowledged nothing for 0\.\d s with frames waiting \(sendtimeout 0\.6 s\); the primary goes on without it$/.test(l)), logs.join('\n'));
      assert.ok(logs.some((l) => l.startsWith('E Replication to n2 interrupted: stalled: the peer acknowledged nothing')), logs.join('\n'));
      assert.deepEqual(reports.find((r) => r.peerLost), { uptodate: true, reintegrationInterrupted: false, lastSyncMs: null, peerLost: true });
      const st = rt.status();
      assert.match(st.lastStall?.reason ?? '', /sendtimeout 0\.6 s/);
      assert.equal(st.role, 'prim');
    } finally {
      await rt.close();
      sec.server.close();
      for (const l of sec.links) l.close();
    }
  });

  it('a malformed welcome is refused with a clear error; nothing is attached and nothing changes', async () => {
    const port = await freePorts('127.0.0.1');
    const logs: string[] = [];
    const stateDir = join(base, 'state-welcome');
    const sec = await fakeSecondary(port, () => ({ type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: JSON.stringify({ sync: 'sideways', syncId: 42 }) }));
    const rt = runtime(port, rfsConfig(data), logs, stateDir);
    try {
      rt.setRole('prim', 'none', () => {});
      const recordBefore = readFileSync(join(stateDir, 'state.json'), 'utf8');
      await until(() => logs.some((l) => l.includes('welcome state field')), 'the refusal');
      // Retried every second, logged once.
      await until(() => sec.links.length >= 2, 'a retry', 5000);
      assert.deepEqual(
        logs.filter((l) => l.includes('welcome')),
        ['E replication: n2 welcome state field "sync" is "sideways", expected "incremental", "full" or "none"; retrying every 1 s'],
      );
      assert.equal(rt.status().linkUp, false);
      assert.equal(readFileSync(join(stateDir, 'state.json'), 'utf8'), recordBefore, 'the record changed');
      assert.ok(!logs.some((l) => l.includes('established')), logs.join('\n'));
    } finally {
      await rt.close();
      sec.server.close();
      for (const l of sec.links) l.close();
    }
  });
});

describe('the runtime as secondary', { skip: skipReason() }, () => {
  it('a new secondary episode (setRole second again) listens again: the primary\'s next connection is welcomed', async () => {
    const base = mkdtempSync(join(tmpdir(), 'stayup-relisten-'));
    const data = join(base, 'data');
    mkdirSync(data);
    const port = await freePorts('127.0.0.2');
    const logs: string[] = [];
    const rt = loopbackRuntime({ rfs: rfsConfig(data), port, stateDir: join(base, 'state'), logs, moduleKey: Buffer.alloc(32, 7), self: 'n2' });
    try {
      rt.setRole('second', 'incremental', () => {});
      await new Promise((r) => setTimeout(r, 200));
      rt.setRole('second', 'incremental', () => {});
      await new Promise((r) => setTimeout(r, 500));
      const link = await connectLink({ host: '127.0.0.2', port, moduleKey: Buffer.alloc(32, 7), module: 'm', node: 'n1', timeoutMs: 3000 });
      try {
        const state = await greetPeer(link, { module: 'm', node: 'n1', session: '2' }, { peer: 'n2', timeoutMs: 3000 });
        assert.equal(state['sync'], 'incremental');
      } finally {
        link.close();
      }
      assert.deepEqual(logs.filter((l) => l.startsWith('E ')), []);
    } finally {
      await rt.close();
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('greetSecondary (the primary side of the replication handshake) refuses every malformed welcome', () => {
  const cases: Array<[string, Frame, string]> = [
    ['another frame', { type: 'ack', count: 1n }, 'replication: n2 answered ack, expected welcome'],
    ['state not JSON', { type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: '{sync:' }, /^replication: n2 welcome field "state" is not JSON \(/.source],
    ['state not an object', { type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: '[1,2]' }, 'replication: n2 welcome field "state" is not a JSON object'],
    ['sync missing', { type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: '{}' }, 'replication: n2 welcome state field "sync" is missing, expected "incremental", "full" or "none"'],
    ['syncId a number', { type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: '{"sync":"full","syncId":7}' }, 'replication: n2 welcome state field "syncId" is not a string or null'],
    ['hints not paths', { type: 'welcome', version: PROTOCOL_VERSION, node: 'n2', state: '{"sync":"full","hints":[1]}' }, 'replication: n2 welcome state field "hints" is not a list of paths'],
  ];
  for (const [what, frame, message] of cases) {
    it(what, async () => {
      const [a, b] = memoryLinkPair();
      b.onFrame(() => b.send(frame));
      try {
        await greetSecondary(a, { module: 'm', node: 'n1', session: '1' }, 'n2', { timeoutMs: 2000 });
        assert.fail('accepted');
      } catch (e) {
        assert.ok(isStayupError(e), String(e));
        assert.equal(e.code, 'REPLICATION_PROTOCOL');
        if (message.startsWith('^')) assert.match(e.message, new RegExp(message));
        else assert.equal(e.message, message);
      } finally {
        a.close();
      }
    });
  }
});
