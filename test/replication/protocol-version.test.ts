// Protocol version negotiation (protocol.ts): each node speaks a range; the hello names the primary's
// highest, the secondary's welcome the highest both speak, or, when the ranges do not meet, a version that
// tells the primary so. Both ends then speak the chosen version: with v1 the secondary sends no `applied`
// frame and the primary keeps what v1 cannot prove applied. Tested over the in-memory link with a real
// target, then with two real runtimes on loopback (one an older node), and with ranges that do not meet.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { greet } from '../../src/replication/handshake.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { answerVersion, PROTOCOL_VERSION, type Frame, type VersionRange } from '../../src/replication/protocol.ts';
import { freePorts, loopbackRuntime, rfsConfig } from '../daemon/rfs-harness.ts';
import { runtimePair, runtimeSkip, scriptedSecondary, sh, tree } from './runtime-pair.ts';
import { inlineTarget, scriptedPair, until } from './scripted-peer.ts';

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
    const { target, logs, refusals, greeted } = inlineTarget(dir, { versions: secondary });
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
    assert.deepEqual(h.greeted.map((g) => g.version), [1]);
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

describe('two real runtimes on loopback (TLS), the primary writing through its FUSE mount', { skip: runtimeSkip() }, () => {
  let base: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'stayup-version-rt-'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  const pair = (name: string, primary: VersionRange | undefined, secondary: VersionRange | undefined) =>
    runtimePair(base, name, { ...(primary ? { primary: { versions: primary } } : {}), ...(secondary ? { secondary: { versions: secondary } } : {}) });

  it('an older secondary (v1 only): the pair speaks v1 and replicates (async="second", live writes and a rename)', async () => {
    const p = await pair('v1', undefined, { min: 1, max: 1 });
    try {
      await until(() => p.reports2.some((r) => r.uptodate), 'the secondary up to date');
      assert.equal(p.rt1.status().protocolVersion, 1);
      assert.equal(p.rt2.status().protocolVersion, 1);
      await sh('sh', ['-c', `mkdir ${p.d1}/a && echo one > ${p.d1}/a/f && echo two > ${p.d1}/g && mv ${p.d1}/g ${p.d1}/a/h && sync ${p.d1}/a/h`]);
      await until(() => tree(p.d2).join() === tree(p.d1).join(), 'the copies identical');
      assert.deepEqual(tree(p.d2).map((l) => l.replace(/=.*/, '')), ['/a/', '/a/f', '/a/h']);
      assert.equal(readFileSync(join(p.d2, 'a/h'), 'utf8'), 'two\n');
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

describe('a secondary from before version negotiation (it takes a hello of exactly v2, closes on any other)', { skip: runtimeSkip() }, () => {
  it('the primary says v2 at its next hello (logged once, as I), and the pair speaks v2', async () => {
    const base = mkdtempSync(join(tmpdir(), 'stayup-legacy-'));
    const port = await freePorts('127.0.0.1');
    const KEY = Buffer.alloc(32, 3);
    const hellos: number[] = [];
    // The secondary of the release before negotiation, as target.ts had it: exact version check.
    const { server } = await scriptedSecondary(port, KEY, (f) => {
      if (f.type !== 'hello' || f.version !== 2) return null;
      hellos.push(f.version);
      return { type: 'welcome', version: 2, node: 'n2', state: JSON.stringify({ sync: 'incremental', syncId: null, clean: true, lastSyncMs: null, hints: [] }) };
    });
    const logs: string[] = [];
    const data = join(base, 'data');
    mkdirSync(data);
    const rt = loopbackRuntime({ rfs: rfsConfig(data, { nbremconn: 3 }), port, stateDir: join(base, 'state'), logs, moduleKey: KEY });
    try {
      rt.setRole('prim', 'none', () => {});
      await until(() => rt.status().linkUp, 'the link', 10_000);
      assert.equal(rt.status().protocolVersion, 2);
      assert.deepEqual(hellos, [2]);
      assert.deepEqual(logs.filter((l) => l.startsWith('E')), []);
      assert.ok(logs.includes(`I n2 closed the link on a hello of v${PROTOCOL_VERSION} without a welcome: a node from before version negotiation takes only v2, the next hello says v2`), logs.join('\n'));
      assert.ok(logs.includes('I Replication link to n2 established (protocol v2, 1 connection: nbremconn 3 needs protocol v3)'), logs.join('\n'));
    } finally {
      await rt.close();
      server.close();
      rmSync(base, { recursive: true, force: true });
    }
  });
});
