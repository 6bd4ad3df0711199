import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FrameApplier, syncFileSystemOf } from '../../src/replication/frame-applier.ts';
import { loadRfsNative, nativeAvailable } from '../../src/replication/native-binding.ts';
import type { Frame } from '../../src/replication/protocol.ts';

const skip = process.platform !== 'linux' ? 'Linux only' : nativeAvailable() === true ? false : String(nativeAvailable());

test('syncEnd makes every file of the reintegration durable, not only the descriptors still cached', { skip }, () => {
  const native = loadRfsNative();
  const dir = mkdtempSync(join(tmpdir(), 'stayup-applier-'));
  const rootFd = native.openRoot(dir);
  try {
    const synced: number[] = [];
    const applier = new FrameApplier({ fs: native.fs, roots: [{ rootFd }], async: 'second', syncRoot: (fd) => synced.push(fd) });
    const out = { send: (): void => {}, synced: (): void => {}, mark: (): void => {} };
    const mtimeNs = 1_700_000_000_000_000_000n;
    // More files than the descriptor cache holds (128): the first ones were closed without an fsync.
    for (let i = 0; i < 300; i++) {
      const path = `0/f${i}`;
      const frames: Frame[] = [
        { type: 'fileMeta', path, mode: 0o644, uid: 0, gid: 0, size: 5n, mtimeNs },
        { type: 'write', path, offset: 0n, mtimeNs, sync: 0, data: Buffer.from(`f${i}`.padEnd(5, '.')) },
      ];
      for (const f of frames) applier.apply(f, out);
    }
    applier.apply({ type: 'syncEnd', syncId: 's1', lastSyncMs: 1n }, out);
    assert.deepEqual(synced, [rootFd], 'the whole file system of the replicated directory is synced');
    assert.equal(readFileSync(join(dir, 'f0'), 'utf8'), 'f0...');
    applier.closeFds();
    syncFileSystemOf(rootFd); // the default: `sync -f` on the root, which must work on the daemon's descriptor
  } finally {
    closeSync(rootFd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a punched hole on a file system that cannot punch (EOPNOTSUPP) becomes zeros; any other fallocate error stays an error', { skip }, () => {
  const native = loadRfsNative();
  const dir = mkdtempSync(join(tmpdir(), 'stayup-applier-'));
  const rootFd = native.openRoot(dir);
  const refusal = (code: string) => (): never => {
    throw Object.assign(new Error(`${code}: fallocate`), { code });
  };
  try {
    const out = { send: (): void => {}, synced: (): void => {}, mark: (): void => {} };
    const mtimeNs = 1_700_000_000_000_000_000n;
    const setUp = (fallocate: () => never): FrameApplier => {
      const applier = new FrameApplier({ fs: { ...native.fs, fallocate }, roots: [{ rootFd }], async: 'second', syncRoot: () => {} });
      applier.apply({ type: 'fileMeta', path: '0/f', mode: 0o644, uid: 0, gid: 0, size: 3n << 20n, mtimeNs }, out);
      applier.apply({ type: 'write', path: '0/f', offset: 0n, mtimeNs, sync: 0, data: Buffer.alloc(3 << 20, 0x61) }, out);
      return applier;
    };
    const punch: Frame = { type: 'fallocate', path: '0/f', mode: 0x03, offset: 1n << 20n, length: 4n << 20n, mtimeNs };
    const a = setUp(refusal('EOPNOTSUPP'));
    a.apply(punch, out);
    a.closeFds();
    const data = readFileSync(join(dir, 'f'));
    assert.equal(data.length, 3 << 20, 'the size stays (KEEP_SIZE): zeros only up to the end of the file');
    assert.ok(data.subarray(0, 1 << 20).every((b) => b === 0x61));
    assert.ok(data.subarray(1 << 20).every((b) => b === 0));
    const b = setUp(refusal('EIO'));
    assert.throws(() => b.apply(punch, out), { code: 'EIO' });
    assert.throws(() => b.apply({ ...punch, mode: 0 }, { ...out }), { code: 'EIO' }, 'a plain allocation is not replaced by zeros');
    b.closeFds();
    const c = setUp(refusal('EOPNOTSUPP'));
    assert.throws(() => c.apply({ ...punch, mode: 0 }, out), { code: 'EOPNOTSUPP' }, 'only a punch falls back to zeros');
    c.closeFds();
  } finally {
    closeSync(rootFd);
    rmSync(dir, { recursive: true, force: true });
  }
});
