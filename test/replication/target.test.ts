// The secondary's receiving side (target.ts) with its apply worker: acknowledgements on receipt
// (async="second") or after applying (async="none"), everything received applied by the time closeFds()
// returns, a frame that cannot be applied answered with `fail`.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { memoryLinkPair, type FrameLink } from '../../src/replication/link.ts';
import { nativeAvailable, loadRfsNative } from '../../src/replication/native-binding.ts';
import { PROTOCOL_VERSION, type Frame } from '../../src/replication/protocol.ts';
import { ReplicationTarget } from '../../src/replication/target.ts';

const native = nativeAvailable();
const skip = native === true ? false : native;

describe('replication target', { skip }, () => {
  const base = `/tmp/stayup-target-${process.pid}`;
  before(() => mkdirSync(base, { recursive: true }));
  after(() => rmSync(base, { recursive: true, force: true }));

  /** A target over a fresh directory and the primary's end of its link, greeted. */
  async function setup(name: string, async: 'second' | 'none', applyIn?: 'inline') {
    const dir = join(base, name);
    mkdirSync(dir);
    const n = loadRfsNative();
    const events: string[] = [];
    const target = new ReplicationTarget({
      fs: n.fs,
      roots: [{ rootFd: n.openRoot(dir) }],
      async,
      node: 'n2',
      ...(applyIn ? { applyIn } : {}),
      events: { synced: () => events.push('synced'), mark: () => {}, syncBegan: () => events.push('syncBegan'), diverged: (r) => events.push(`diverged ${r}`), log: () => {} },
    });
    const [src, dst] = memoryLinkPair();
    const got: Frame[] = [];
    src.onFrame((f) => got.push(f));
    target.attach(dst, {});
    src.send({ type: 'hello', version: PROTOCOL_VERSION, module: 'm', node: 'n1', session: '1' });
    await until(() => got.some((f) => f.type === 'welcome'));
    return { dir, target, src: src as FrameLink, got, events };
  }

  const until = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; !cond(); i++) {
      if (i > 2000) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const acked = (got: Frame[]): bigint => got.reduce((n, f) => (f.type === 'ack' && f.count > n ? f.count : n), 0n);

  for (const applyIn of [undefined, 'inline'] as const) {
    it(`async="second": acknowledged on receipt; closeFds() returns once all of it is applied (${applyIn ?? 'worker'})`, async () => {
      const { dir, target, src, got } = await setup(`second-${applyIn ?? 'worker'}`, 'second', applyIn);
      const block = 64 * 1024;
      src.send({ type: 'create', path: '0/f', flags: 1, mode: 0o644, uid: 0, gid: 0, mtimeNs: 1n });
      for (let i = 0; i < 200; i++) src.send({ type: 'write', path: '0/f', offset: BigInt(i * block), mtimeNs: 2n, sync: 0, data: Buffer.alloc(block, i % 251) });
      await until(() => acked(got) === 201n);
      // No await from here: what was acknowledged must be on disk when closeFds() returns.
      target.closeFds();
      const data = readFileSync(join(dir, 'f'));
      assert.equal(data.length, 200 * block);
      for (let i = 0; i < 200; i++) assert.equal(data[i * block + block - 1], i % 251, `block ${i}`);
    });
  }

  it('async="none": acknowledged after applying; a frame that cannot be applied is answered with fail', async () => {
    const { target, src, got, events } = await setup('none', 'none');
    src.send({ type: 'syncBegin', syncId: 's1', scope: 'test' });
    src.send({ type: 'mkdir', path: '0/d', mode: 0o755, uid: 0, gid: 0 });
    await until(() => acked(got) === 2n);
    assert.deepEqual(events, ['syncBegan']);
    await until(() => got.some((f) => f.type === 'applied' && f.count === 2n));
    src.send({ type: 'write', path: '0/missing', offset: 0n, mtimeNs: 1n, sync: 0, data: Buffer.from('x') });
    src.send({ type: 'mkdir', path: '0/e', mode: 0o755, uid: 0, gid: 0 });
    await until(() => got.some((f) => f.type === 'fail'));
    const fail = got.find((f) => f.type === 'fail') as Extract<Frame, { type: 'fail' }>;
    assert.equal(fail.count, 3n);
    assert.match(fail.error, /frame 3 \(write 0\/missing\): ENOENT/);
    assert.equal(acked(got), 2n, 'nothing after the failed frame is acknowledged');
    assert.match(events[1]!, /^diverged frame 3/);
    target.closeFds();
  });
});
