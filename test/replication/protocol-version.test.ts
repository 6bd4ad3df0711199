// Protocol version negotiation (protocol.ts): each node speaks a range; the hello names the primary's
// highest, the secondary's welcome the highest both speak, or, when the ranges do not meet, a version that
// tells the primary so. Both ends then speak the chosen version: with v1 the secondary sends no `applied`
// frame and the primary keeps what v1 cannot prove applied. Tested over the in-memory link with a real
// target, then with two real runtimes on loopback (one an older node), and with ranges that do not meet.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { ReplicationReport } from '../../src/engine/mirror-engine.ts';
import { isStayupError, type StayupError } from '../../src/errors/stayup-error.ts';
import { greet } from '../../src/replication/handshake.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { loadRfsNative, nativeAvailable } from '../../src/replication/native-binding.ts';
import { answerVersion, type Frame, type VersionRange } from '../../src/replication/protocol.ts';
import type { RfsRuntime } from '../../src/replication/rfs-runtime.ts';
import { ReplicationTarget } from '../../src/replication/target.ts';
import { freePorts, loopbackRuntime, rfsConfig } from '../daemon/rfs-harness.ts';
import { fuseSkipReason } from './fuse-env.ts';
import { scriptedPair, until } from './scripted-peer.ts';

const native = nativeAvailable();
const nativeSkip = native === true ? false : native;

it('answerVersion: the highest common version, or the secondary\'s lowest when the primary\'s highest is below it', () => {
  assert.deepEqual(answerVersion(2, { min: 1, max: 2 }), { version: 2, common: true });
  assert.deepEqual(answerVersion(1, { min: 1, max: 2 }), { version: 1, common: true }, 'old primary, new secondary');
  assert.deepEqual(answerVersion(2, { min: 1, max: 1 }), { version: 1, common: true }, 'new primary, old secondary (the primary checks its own lowest)');
  assert.deepEqual(answerVersion(5, { min: 1, max: 2 }), { version: 2, common: true }, 'a primary newer than anything known');
  assert.deepEqual(answerVersion(1, { min: 2, max: 3 }), { version: 2, common: false });
  assert.deepEqual(answerVersion(0, { min: 1, max: 2 }), { version: 1, common: false });
});

describe('negotiation between a primary (greet) and a real target, over the in-memory link', { skip: nativeSkip }, () => {
  const base = `/tmp/stayup-protocol-version-${process.pid}`;
  before(() => mkdirSync(base, { recursive: true }));
  after(() => rmSync(base, { recursive: true, force: true }));

  let n = 0;
  /** A target speaking `secondary`; a primary speaking `primary` greets it. */
  async function handshake(primary: VersionRange, secondary: VersionRange) {
    const dir = join(base, String(++n));
    mkdirSync(dir);
    const nat = loadRfsNative();
    const logs: string[] = [];
    const refusals: StayupError[] = [];
    const greeted: number[] = [];
    const target = new ReplicationTarget({
      fs: nat.fs,
      roots: [{ rootFd: nat.openRoot(dir) }],
      async: 'second',
      node: 'n2',
      applyIn: 'inline',
      versions: secondary,
      events: {
        synced: () => {},
        mark: () => {},
        syncBegan: () => {},
        diverged: () => {},
        log: (level, message) => logs.push(`${level} ${message}`),
        greeted: (v) => greeted.push(v),
        refused: (e) => refusals.push(e),
      },
    });
    const [src, dst] = memoryLinkPair();
    target.attach(dst, { sync: 'incremental' });
    const closed = new Promise<void>((r) => src.onClose(() => r()));
    const result = await greet(src, { module: 'm', node: 'n1', session: '1' }, { peer: 'n2', timeoutMs: 2000, versions: primary }).then(
      (g) => ({ ok: true as const, version: g.version, state: g.state }),
      (e: unknown) => ({ ok: false as const, error: e }),
    );
    return { result, logs, refusals, greeted, target, src, dst, dir, closed };
  }

  /**
   * The link agreed on `version`: a reintegration's first frame and a mkdir go, and the secondary answers
   * with `answer` counting both; returns every frame it sent back. The link is closed.
   */
  async function streamMkdir(h: Awaited<ReturnType<typeof handshake>>, version: number, answer: 'ack' | 'applied'): Promise<Frame[]> {
    assert.ok(h.result.ok);
    assert.equal(h.result.version, version);
    const got: Frame[] = [];
    h.src.onFrame((f) => got.push(f));
    h.src.send({ type: 'syncBegin', syncId: 's1', scope: 'test' });
    h.src.send({ type: 'mkdir', path: '0/d', mode: 0o755, uid: 0, gid: 0 });
    await until(() => got.some((f) => f.type === answer && f.count === 2n), `the ${answer} count`);
    h.src.close();
    return got;
  }

  function assertVersionError(result: Awaited<ReturnType<typeof handshake>>['result'], message: string): void {
    assert.ok(!result.ok);
    assert.ok(isStayupError(result.error), String(result.error));
    assert.equal(result.error.code, 'REPLICATION_VERSION');
    assert.equal(result.error.message, message);
  }

  it('old primary (v1), new secondary (v1..v2): both speak v1', async () => {
    const h = await handshake({ min: 1, max: 1 }, { min: 1, max: 2 });
    assert.ok(h.result.ok);
    assert.equal(h.result.version, 1);
    assert.deepEqual(h.greeted, [1]);
    assert.deepEqual(h.result.state['versions'], { min: 1, max: 2 }, 'the welcome says the secondary\'s range');
    h.src.close();
  });

  it('new primary (v1..v2), old secondary (v1): both speak v1, and the secondary sends no `applied` frame', async () => {
    const h = await handshake({ min: 1, max: 2 }, { min: 1, max: 1 });
    const got = await streamMkdir(h, 1, 'ack');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(readdirSync(h.dir).includes('d'), 'applied');
    assert.deepEqual(got.filter((f) => f.type === 'applied'), [], 'a v1 primary would drop the link on an `applied` frame');
  });

  it('both v1..v2: v2, with `applied` frames', async () => {
    await streamMkdir(await handshake({ min: 1, max: 2 }, { min: 1, max: 2 }), 2, 'applied');
  });

  it('secondary too old (v1, primary v2): the primary refuses with REPLICATION_VERSION, both ranges, upgrade the secondary', async () => {
    const h = await handshake({ min: 2, max: 2 }, { min: 1, max: 1 });
    assertVersionError(h.result, 'replication: no common protocol version: n2 speaks v1, n1 (this node) v2: upgrade n2');
    h.src.close();
  });

  it('primary too old (v1, secondary v2..v3): the secondary refuses, logs it once, closes; the primary says upgrade itself', async () => {
    const h = await handshake({ min: 1, max: 1 }, { min: 2, max: 3 });
    assertVersionError(h.result, 'replication: no common protocol version: n2 speaks v2..v3, n1 (this node) v1: upgrade n1');
    await h.closed;
    const secondarySays = 'replication: no common protocol version: n1 speaks v1 at most, n2 (this node) v2..v3: upgrade n1';
    assert.deepEqual(h.logs, [`E ${secondarySays}`]);
    assert.equal(h.refusals[0]?.code, 'REPLICATION_VERSION');
    assert.deepEqual(h.greeted, []);
    // The primary retries: the same refusal is not logged again by the same target.
    for (let i = 0; i < 3; i++) {
      const [src, dst] = memoryLinkPair();
      h.target.attach(dst, { sync: 'incremental' });
      await assert.rejects(greet(src, { module: 'm', node: 'n1', session: '1' }, { peer: 'n2', timeoutMs: 2000, versions: { min: 1, max: 1 } }), /upgrade n1/);
    }
    assert.deepEqual(h.logs, [`E ${secondarySays}`]);
    assert.equal(h.refusals.length, 4);
  });
});

describe('the primary over a v1 link (no `applied` frames)', () => {
  const base = `/tmp/stayup-source-v1-${process.pid}`;
  after(() => rmSync(base, { recursive: true, force: true }));

  async function run(name: string, acksOnReceipt: boolean) {
    const pair = scriptedPair(join(base, name), (_f, received, peer) => peer.send({ type: 'ack', count: received }), { acksOnReceipt, peerReportsApplied: false });
    await until(() => pair.source.inSync, 'in sync');
    for (let i = 0; i < 50; i++) pair.source.onOp(0, { op: 'mkdir', path: `d${i % 5}`, mode: 0o755, uid: 0, gid: 0, job: 0 });
    await until(() => pair.got.filter((f) => f.type === 'mkdir').length === 50 && pair.source.status().unacked === 0, 'the acknowledgements');
    await new Promise((r) => setTimeout(r, 20));
    pair.source.detach('test');
    return pair.journal;
  }

  it('async="second": everything acknowledged on receipt is marked when the link breaks (nothing proves it applied)', async () => {
    const j = await run('second', true);
    assert.deepEqual([...j.dirty.all()].map(([p]) => p).sort(), ['0/d0', '0/d1', '0/d2', '0/d3', '0/d4']);
  });

  it('async="none": the acknowledgement comes after applying, so nothing is marked', async () => {
    const j = await run('none', false);
    assert.equal(j.dirty.size, 0);
  });
});

// ------------------------------------------------------------------------------------------ two runtimes

function runtimeSkip(): string | false {
  if (process.platform !== 'linux') return 'the replication runtime needs Linux';
  return fuseSkipReason() || nativeSkip;
}

const sh = promisify(execFile);

describe('two real runtimes on loopback (TLS), the primary writing through its FUSE mount', { skip: runtimeSkip() }, () => {
  const KEY = Buffer.alloc(32, 9);
  let base: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'stayup-version-rt-'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  /** node1 primary (its data mounted writable) and node2 secondary, each speaking its range. */
  async function pair(name: string, primary: VersionRange | undefined, secondary: VersionRange | undefined) {
    const port = await freePorts('127.0.0.1');
    const d1 = join(base, `${name}-n1`);
    const d2 = join(base, `${name}-n2`);
    mkdirSync(d1);
    mkdirSync(d2);
    const logs1: string[] = [];
    const logs2: string[] = [];
    const reports2: ReplicationReport[] = [];
    const withVersions = (v: VersionRange | undefined) => (v ? { protocolVersions: v } : {});
    const rt1 = loopbackRuntime({ rfs: rfsConfig(d1), port, stateDir: join(base, `${name}-s1`), logs: logs1, moduleKey: KEY, ...withVersions(primary) });
    const rt2 = loopbackRuntime({ rfs: rfsConfig(d2), port, stateDir: join(base, `${name}-s2`), logs: logs2, moduleKey: KEY, self: 'n2', ...withVersions(secondary) });
    rt2.setRole('second', 'incremental', (r) => reports2.push(r));
    await rt1.beforeScripts({ type: 'runScripts', id: 1, current: 'WAIT', next: 'ALONE', action: 'prim', calls: [{ script: 'start_prim' }] } as never);
    rt1.setRole('prim', 'none', () => {});
    const close = async (): Promise<void> => {
      await rt1.afterScripts({ type: 'runScripts', id: 2, current: 'ALONE', next: 'STOP', action: 'stop', calls: [{ script: 'stop_prim' }] } as never);
      await rt1.close();
      await rt2.close();
    };
    return { rt1, rt2, d1, d2, logs1, logs2, reports2, close };
  }

  const tree = (dir: string): string[] =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .map((e) => {
        const p = join(e.parentPath, e.name);
        return `${p.slice(dir.length)}${e.isFile() ? `=${readFileSync(p, 'utf8')}` : '/'}`;
      })
      .sort();

  it('an older secondary (v1 only): the pair speaks v1 and replicates (async="second", live writes and a rename)', async () => {
    const p = await pair('v1', undefined, { min: 1, max: 1 });
    try {
      await until(() => p.reports2.some((r) => r.uptodate), 'the secondary up to date');
      assert.equal(p.rt1.status().protocolVersion, 1);
      assert.equal(p.rt2.status().protocolVersion, 1);
      await sh('sh', ['-c', `mkdir ${p.d1}/a && echo one > ${p.d1}/a/f && echo two > ${p.d1}/g && mv ${p.d1}/g ${p.d1}/a/h && sync ${p.d1}/a/h`]);
      await until(() => tree(p.d2).join() === tree(p.d1).join(), 'the copies identical');
      assert.deepEqual(tree(p.d2), ['/a/', '/a/f=one\n', '/a/h=two\n']);
      assert.ok(p.logs1.includes('I Replication link to n2 established (protocol v1)'), p.logs1.join('\n'));
      assert.deepEqual(p.logs1.filter((l) => l.startsWith('E')), []);
    } finally {
      await p.close();
    }
  });

  // The primary retries every second: after several retries, still one E line per node.
  const disjoint: Array<{ what: string; primary: VersionRange; secondary: VersionRange; onPrimary: string; onSecondary: string | null }> = [
    {
      what: 'a secondary older than the primary',
      primary: { min: 2, max: 2 },
      secondary: { min: 1, max: 1 },
      onPrimary: 'replication: no common protocol version: n2 speaks v1, n1 (this node) v2: upgrade n2',
      // Its highest common version is v1 as far as it can tell (v1 <= the hello's v2): the primary refuses.
      onSecondary: null,
    },
    {
      what: 'a primary older than the secondary',
      primary: { min: 1, max: 1 },
      secondary: { min: 2, max: 2 },
      onPrimary: 'replication: no common protocol version: n2 speaks v2, n1 (this node) v1: upgrade n1',
      onSecondary: 'replication: no common protocol version: n1 speaks v1 at most, n2 (this node) v2: upgrade n1',
    },
  ];
  for (const c of disjoint) {
    it(`ranges that do not meet (${c.what}): one E line per node however many retries, linkError in the status, the secondary never up to date, the primary journals`, async () => {
      const p = await pair(c.what.replaceAll(' ', '-'), c.primary, c.secondary);
      try {
        await until(() => p.logs1.some((l) => l.includes('no common protocol version')), 'the refusal');
        await new Promise((r) => setTimeout(r, 2500));
        assert.deepEqual(p.logs1.filter((l) => l.startsWith('E')), [`E ${c.onPrimary}; retrying every 1 s`]);
        assert.deepEqual(p.logs2.filter((l) => l.startsWith('E')), c.onSecondary ? [`E ${c.onSecondary}`] : []);
        const st = p.rt1.status();
        assert.equal(st.linkUp, false);
        assert.equal(st.protocolVersion, null);
        assert.equal(st.linkError?.code, 'REPLICATION_VERSION');
        assert.equal(st.linkError?.message, c.onPrimary);
        assert.equal(p.rt2.status().linkError?.message, c.onSecondary ?? undefined);
        assert.ok(!p.reports2.some((r) => r.uptodate), 'the secondary was reported up to date');
        // The primary keeps serving: its writes go to the journal.
        await sh('sh', ['-c', `echo alone > ${p.d1}/x`]);
        await until(() => p.rt1.status().journalPaths > 0, 'the write journaled');
      } finally {
        await p.close();
      }
    });
  }
});
