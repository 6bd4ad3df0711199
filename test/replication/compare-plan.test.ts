// The plan of a file comparison in a reintegration (source.ts): which byte ranges the journal's zones
// give, which window of checksums comes next, and which live changes the comparison will read itself.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextWindow, stillToRead, SUM_WINDOW_BYTES, zoneRanges } from '../../src/replication/source.ts';

const MiB = 1024 * 1024;
const K64 = 64 * 1024;

describe('file comparison plan', () => {
  it('zones become merged byte ranges in increasing order', () => {
    assert.deepEqual(zoneRanges(new Set([5, 0, 1, 3]), 8 * MiB), [
      [0, 16 * MiB],
      [24 * MiB, 32 * MiB],
      [40 * MiB, 48 * MiB],
    ]);
    assert.deepEqual(zoneRanges(new Set(), 8 * MiB), []);
  });

  it('windows gather parts of the ranges, block-aligned, SUM_WINDOW_BYTES at most, up to the end of the file', () => {
    const W = SUM_WINDOW_BYTES;
    const Z = W / 2;
    const job = { ranges: zoneRanges(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 22]), Z), cursor: 0 };
    assert.deepEqual(nextWindow(job, 1000 * W, K64), [[0, W]]);
    job.cursor = W;
    assert.deepEqual(nextWindow(job, 1000 * W, K64), [[W, 2 * W]]);
    job.cursor = 4 * W;
    assert.deepEqual(nextWindow(job, 1000 * W, K64), [[4 * W, 4.5 * W], [10 * W, 10.5 * W]], 'several ranges in one window');
    job.cursor = 4.5 * W;
    assert.deepEqual(nextWindow(job, 1000 * W, K64), [[10 * W, 10.5 * W], [11 * W, 11.5 * W]]);
    assert.deepEqual(nextWindow(job, 10 * W + 10, K64), [[10 * W, 10 * W + K64]], 'the last block of a file is partial');
    assert.equal(nextWindow(job, 10 * W, K64), null, 'the rest of the zones lie past the end of the file');
    job.cursor = 11.5 * W;
    assert.equal(nextWindow(job, 1000 * W, K64), null);
    const fine = { ranges: zoneRanges(new Set([0, 10, 20, 30]), MiB), cursor: 0 };
    assert.deepEqual(nextWindow(fine, 100 * MiB, K64), [[0, MiB], [10 * MiB, 11 * MiB], [20 * MiB, 21 * MiB], [30 * MiB, 31 * MiB]]);
    const whole = { ranges: [[0, Infinity]] as Array<[number, number]>, cursor: 3 * MiB + 5 };
    assert.deepEqual(nextWindow(whole, 200 * W, MiB), [[3 * MiB, 3 * MiB + W]], 'a cursor inside a block restarts at the block');
    assert.equal(nextWindow({ ranges: [[0, Infinity]], cursor: 0 }, 0, MiB), null, 'an empty file has nothing to read');
  });

  it('a change is left to the comparison only when it lies wholly in what is still to read', () => {
    const job = { ranges: [[0, 8 * MiB], [16 * MiB, 24 * MiB]] as Array<[number, number]>, cursor: 4 * MiB };
    assert.equal(stillToRead(job, 5 * MiB, 4096), true);
    assert.equal(stillToRead(job, 3 * MiB, 4096), false, 'already read: journaled again');
    assert.equal(stillToRead(job, 4 * MiB - 1, 2), false, 'straddles the cursor');
    assert.equal(stillToRead(job, 8 * MiB - 10, 20), false, 'runs out of the range');
    assert.equal(stillToRead(job, 10 * MiB, 1), false, 'between the ranges');
    assert.equal(stillToRead(job, 16 * MiB, 8 * MiB), true);
    assert.equal(stillToRead({ ranges: [[0, 8 * MiB], [8 * MiB, 16 * MiB]], cursor: 0 }, 8 * MiB - 1, 2), true, 'across adjacent ranges');
    assert.equal(stillToRead({ ranges: [[0, Infinity]], cursor: MiB }, 50 * MiB, MiB), true, 'a whole-file comparison reads what the file grows to');
  });
});
