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
