import assert from 'node:assert/strict';
import { closeSync, fstatSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadRfsNative } from '../../src/replication/native-binding.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { RfsNative } from '../../src/replication/rfs-runtime.ts';
import { nextWindow, SUM_WINDOW_BYTES, SUM_WINDOW_SPAN_BYTES } from '../../src/replication/source.ts';
import { DataMap, HOLE_WEIGHT } from '../../src/replication/sparse.ts';
import type { ComparisonResult } from '../../src/replication/verify.ts';
import { compareTrees, fullReintegration, treePairSkip } from './tree-pair.ts';

// Sparse files of several TB: a reintegration and rfsverify read and send their data, not their holes, and
// the secondary's copy stays sparse (a hole where the primary has one is punched, never filled with zeros).
// A 2 TiB file with a few MiB of data in it, on the real file system (ext4 holds files up to 16 TiB).

const skip = treePairSkip();
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

describe('sparse files of several TB', { skip }, () => {
  let base: string;
  let A: string; // the primary's data
  let B: string; // the secondary's
  let native: RfsNative;
  const dirs = [{ dir: '/data', filter: new ReplicationFilter([]) }];
  /** Where A's big file holds data: offsets above 4 GiB and 2^40, not aligned, the last bytes. */
  const SIZE = 2 * TiB;
  const pieces: Array<[number, Buffer]> = [
    [0, Buffer.from('the first block')],
    [4 * GiB + 12_345, Buffer.alloc(10 * KiB, 'past 32 bits ')],
    [TiB, Buffer.alloc(3 * MiB + 7, 'at one TiB ')],
    [SIZE - 4 * KiB, Buffer.alloc(4 * KiB, 'the end ')],
  ];

  before(() => {
    native = loadRfsNative();
    base = mkdtempSync(join(tmpdir(), 'stayup-sparse-'));
    A = join(base, 'a');
    B = join(base, 'b');
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  function writeAt(path: string, at: number, data: Buffer): void {
    const fd = openSync(path, 'r+');
    try {
      writeSync(fd, data, 0, data.length, at);
    } finally {
      closeSync(fd);
    }
  }

  function readAt(path: string, at: number, length: number): Buffer {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(length);
      const n = readSync(fd, b, 0, length, at);
      return b.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  /** Bytes the file really occupies on disk. */
  const allocated = (path: string): number => statSync(path).blocks * 512;

  function build(): void {
    rmSync(A, { recursive: true, force: true });
    rmSync(B, { recursive: true, force: true });
    mkdirSync(A);
    mkdirSync(B);
    writeFileSync(join(A, 'small.txt'), 'a small file beside it');
    const fd = openSync(join(A, 'disk.img'), 'w');
    ftruncateSync(fd, SIZE);
    for (const [at, data] of pieces) writeSync(fd, data, 0, data.length, at);
    closeSync(fd);
  }

  /** A full reintegration A -> B, as a split brain's or `fullsync`'s. */
  const reintegrate = () => fullReintegration({ native, source: A, copy: B, filter: dirs[0]!.filter, work: base, timeoutMs: 120_000 });
  /** rfsverify on n2 (B), with the verify link's 256 MiB windows. */
  const verify = (): Promise<ComparisonResult> => compareTrees({ native, source: 'remote', local: B, remote: A, dirs, windowBytes: 256 * MiB });

  it('the data map: holes and data of a real sparse file, and windows that weigh holes lightly', () => {
    build();
    const fd = openSync(join(A, 'disk.img'), 'r');
    try {
      const flat = native.fs.dataRanges(fd, 0, SIZE);
      assert.equal(flat[0], SIZE, 'the whole file scanned');
      const ranges: Array<[number, number]> = [];
      for (let i = 1; i < flat.length; i += 2) ranges.push([flat[i]!, flat[i + 1]!]);
      // Each piece lies in data the file system allocated (whole 4 KiB blocks), and there is no other data.
      assert.equal(ranges.length, pieces.length);
      for (const [i, [at, data]] of pieces.entries()) {
        const [s, e] = ranges[i]!;
        assert.ok(s <= at && at + data.length <= e && e - s < data.length + 8 * KiB, `piece ${i} at ${at} in [${s}, ${e})`);
      }
      const map = DataMap.of(native.fs, fd, 0, SIZE);
      assert.equal(map.isHole(0, MiB), false);
      assert.equal(map.isHole(MiB, MiB), true);
      assert.equal(map.isHole(4 * GiB, MiB), false);
      assert.equal(map.isHole(TiB - MiB, MiB), true);
      assert.equal(map.isHole(TiB + 3 * MiB, 4 * KiB), false, 'the last 7 bytes of the piece at 1 TiB');
      // A window over holes spans up to 1 GiB; over data, 16 MiB.
      const all = { ranges: [[0, Infinity] as [number, number]], cursor: MiB };
      const spanOf = (from: number, limit: number, budget: number) => DataMap.of(native.fs, fd, from, limit).span(from, limit, budget);
      assert.deepEqual(nextWindow(all, SIZE, MiB, spanOf), [[MiB, MiB + SUM_WINDOW_SPAN_BYTES]]);
      assert.deepEqual(nextWindow({ ...all, cursor: 0 }, SIZE, MiB, spanOf), [[0, SUM_WINDOW_SPAN_BYTES]]);
      // From 1 TiB: 3 MiB + 4 KiB of data, then holes at 1/64 for the 13 MiB - 4 KiB left of the budget.
      assert.deepEqual(nextWindow({ ...all, cursor: TiB }, SIZE, MiB, spanOf), [[TiB, TiB + 835 * MiB]]);
      assert.equal(HOLE_WEIGHT, 1 / 64);
      assert.deepEqual(nextWindow({ ...all, cursor: 0 }, SIZE, MiB), [[0, SUM_WINDOW_BYTES]], 'without a map: 16 MiB');
    } finally {
      closeSync(fd);
    }
  });

  it('a full reintegration sends the data of a 2 TiB file, not its holes; the copy stays sparse; rfsverify agrees', async () => {
    build();
    const { stats, ms } = await reintegrate();
    const img = join(B, 'disk.img');
    assert.equal(statSync(img).size, SIZE);
    for (const [at, data] of pieces) assert.deepEqual(readAt(img, at, data.length), data);
    // Whole 1 MiB blocks around the pieces at most, never the holes.
    assert.ok(stats.bytesSent <= 8 * MiB, `bytes sent ${stats.bytesSent}`);
    assert.ok(allocated(img) <= 8 * MiB, `the copy occupies ${allocated(img)} bytes`);
    const v = await verify();
    assert.deepEqual(v.differences, []);
    assert.equal(v.compared.files, 2);
    console.log(`# 2 TiB sparse file: first reintegration ${Math.round(ms)} ms, ${stats.bytesSent} bytes sent, copy occupies ${allocated(img)} bytes`);
  });

  it('the secondary\'s data where the primary has a hole is punched; new data far out is sent; nothing else', async () => {
    build();
    await reintegrate();
    const img = join(B, 'disk.img');
    // The secondary holds data the primary does not (a split brain's loser): 2 MiB at 100 GiB.
    writeAt(img, 100 * GiB, Buffer.alloc(2 * MiB, 'divergent '));
    // The primary wrote far out meanwhile, and punched out the piece past 4 GiB.
    writeAt(join(A, 'disk.img'), 1.5 * TiB, Buffer.alloc(MiB, 'new data '));
    const fdA = openSync(join(A, 'disk.img'), 'r+');
    native.fs.fallocate(fdA, 0x03, 4 * GiB, MiB);
    closeSync(fdA);
    const before = await verify();
    assert.deepEqual(before.differences.map((d) => d.path), ['/data/disk.img']);
    assert.match(before.differences[0]!.reasons.join(), /content: 4 of 2097152 blocks differ/);
    const { stats, ms } = await reintegrate();
    assert.equal(stats.bytesSent, MiB, 'only the new MiB is sent: the holes are punched');
    assert.deepEqual(readAt(img, 100 * GiB, 2 * MiB), Buffer.alloc(2 * MiB));
    assert.deepEqual(readAt(img, 4 * GiB, 32 * KiB), Buffer.alloc(32 * KiB));
    assert.deepEqual(readAt(img, 1.5 * TiB, MiB), Buffer.alloc(MiB, 'new data '));
    assert.ok(allocated(img) <= 10 * MiB, `the copy occupies ${allocated(img)} bytes`);
    const fd = openSync(img, 'r');
    assert.equal(fstatSync(fd).size, SIZE);
    closeSync(fd);
    assert.deepEqual((await verify()).differences, []);
    console.log(`# 2 TiB sparse file, compared block by block: ${Math.round(ms)} ms, ${stats.bytesSent} bytes sent`);
  });
});
