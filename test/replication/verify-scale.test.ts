import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import { compareReplicas, TaskPool, type ObjectAttrs, type ReplicaSide } from '../../src/replication/verify.ts';
import type { EntryType } from '../../src/replication/protocol.ts';

// The comparison of a big tree (rfsverify over a million files) must keep what waits bounded: it walks
// depth first, comparing a directory's files before listing the next directory.

/** A tree of `dirs` directories of `files` empty files each, served from memory; counts what it is asked. */
class SyntheticSide implements ReplicaSide {
  listed = 0;
  /** Directories listed when the first file's checksums were asked. */
  listedAtFirstSums: number | null = null;

  constructor(
    readonly node: string,
    private readonly dirs: number,
    private readonly files: number,
  ) {}

  async list(p: string): Promise<Map<string, EntryType> | null> {
    const depth = p.split('/').length;
    if (depth > 2) return null;
    this.listed++;
    await Promise.resolve();
    if (depth === 1) return new Map(Array.from({ length: this.dirs }, (_, i) => [`d${i}`, 'dir'] as const));
    return new Map(Array.from({ length: this.files }, (_, i) => [`f${i}`, 'file'] as const));
  }

  async stat(p: string): Promise<ObjectAttrs | null> {
    await Promise.resolve();
    const type: EntryType = p.split('/').length <= 2 ? 'dir' : 'file';
    return { type, mode: 0o644, uid: 0, gid: 0, size: 0, mtimeNs: 0n, target: '' };
  }

  async sums(_p: string): Promise<{ size: number; sums: Buffer } | null> {
    this.listedAtFirstSums ??= this.listed;
    await Promise.resolve();
    return { size: 0, sums: Buffer.alloc(0) };
  }
}

describe('rfsverify at scale', () => {
  it('compares a directory\'s files before listing the other directories (depth first, bounded queue)', async () => {
    const source = new SyntheticSide('n1', 300, 50);
    const copy = new SyntheticSide('n2', 300, 50);
    const r = await compareReplicas({ source, copy, dirs: [{ dir: '/data', filter: new ReplicationFilter([]) }] });
    assert.equal(r.differing, 0);
    assert.deepEqual(r.compared, { files: 300 * 50, directories: 301, other: 0 });
    // Oldest-first listed all 301 directories before the first file (and then held 15,000 tasks).
    assert.ok(source.listedAtFirstSums !== null && source.listedAtFirstSums < 40, `directories listed before the first file was compared: ${source.listedAtFirstSums}`);
  });

  it('runs the newest task first and never more than its limit at once', async () => {
    const pool = new TaskPool(2);
    const order: number[] = [];
    let running = 0;
    let most = 0;
    const task = (n: number) => async (): Promise<void> => {
      running++;
      most = Math.max(most, running);
      order.push(n);
      await new Promise((r) => setImmediate(r));
      running--;
    };
    for (let i = 0; i < 6; i++) pool.run(task(i));
    await pool.done();
    assert.equal(most, 2);
    assert.deepEqual(order, [0, 1, 5, 4, 3, 2]);
    assert.equal(pool.peakQueued, 4);
  });
});

describe('rfsverify round trips', () => {
  it('asks a file\'s checksums with its attributes (one round trip per file, not two)', async () => {
    /** Counts the files whose checksums were asked while their attributes were still on the way. */
    class Latent extends SyntheticSide {
      private readonly statting = new Set<string>();
      overlapped = 0;
      override async stat(p: string): Promise<ObjectAttrs | null> {
        this.statting.add(p);
        await new Promise((r) => setImmediate(r));
        this.statting.delete(p);
        return super.stat(p);
      }
      override async sums(p: string): Promise<{ size: number; sums: Buffer } | null> {
        if (this.statting.has(p)) this.overlapped++;
        return super.sums(p);
      }
    }
    const source = new Latent('n1', 3, 20);
    const copy = new Latent('n2', 3, 20);
    const r = await compareReplicas({ source, copy, dirs: [{ dir: '/data', filter: new ReplicationFilter([]) }] });
    assert.equal(r.differing, 0);
    assert.equal(copy.overlapped, 60);
  });
});
