import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DirtySet } from '../../src/replication/dirty-set.ts';
import { ReplicationFilter, replPathProblem } from '../../src/replication/paths.ts';

test('zones, whole objects and coverage', () => {
  const d = new DirtySet(1024);
  d.markZones('0/f', 1000, 100);
  assert.deepEqual([...d.get('0/f')!.zones!], [0, 1]);
  d.markAll('0/f');
  d.markZones('0/f', 5000, 1);
  assert.equal(d.get('0/f')!.zones, null);
  d.markList('0/d', true);
  assert.ok(d.covers('0/d/x/y'));
  assert.ok(!d.covers('0/e'));
});

test('renames move marks with the name; removals list the parent', () => {
  const d = new DirtySet(1024);
  d.markZones('0/a/f', 0, 1);
  d.renamed('0/a', '0/b', false);
  assert.ok(d.has('0/b/f') && !d.has('0/a/f'));
  assert.ok(d.get('0/b')!.deep);
  d.removed('0/b');
  assert.ok(!d.has('0/b/f') && !d.has('0/b'));
  assert.ok(d.get('0')!.list);
});

test('takeNext gives parents before children', () => {
  const d = new DirtySet(1024);
  d.markAll('0/a/b/c');
  d.markList('0/a');
  d.markAll('0/a/b');
  const order: string[] = [];
  for (let n = d.takeNext(); n; n = d.takeNext()) order.push(n[0]);
  assert.deepEqual(order, ['0/a', '0/a/b', '0/a/b/c']);
});

test('replication paths from the network are checked', () => {
  assert.equal(replPathProblem('0/a/b', 1), null);
  assert.match(replPathProblem('1/a', 1)!, /directory index/);
  assert.match(replPathProblem('0/../etc', 1)!, /segment/);
  assert.match(replPathProblem('0//a', 1)!, /segment/);
  assert.match(replPathProblem('/etc', 1)!, /directory index/);
});

test('notreplicated paths and regexpaths', () => {
  const f = new ReplicationFilter([{ path: 'tmp' }, { regexpath: '\\.log$' }]);
  assert.ok(f.replicates('data/x'));
  assert.ok(!f.replicates('tmp') && !f.replicates('tmp/a'));
  assert.ok(f.replicates('tmpx'));
  assert.ok(!f.replicates('a/b.log'));
  const only = new ReplicationFilter([{ regexpath: '!^keep' }]);
  assert.ok(only.replicates('keep/a') && !only.replicates('other'));
});

test('fine marks: per MiB within a budget; whole-object marks, renames, takes and replays keep the count right', () => {
  const MiB = 1024 * 1024;
  const d = new DirtySet(8 * MiB, 10);
  d.markZones('0/a', 0, 4096);
  d.markZones('0/a', 9 * MiB + 5, 2 * MiB);
  assert.deepEqual([...d.get('0/a')!.zones!].sort(), [0, 1]);
  assert.deepEqual([...d.get('0/a')!.fine!].sort((x, y) => x - y), [0, 9, 10, 11]);
  assert.equal(d.fineMarks, 4);
  d.renamed('0/a', '0/b', false);
  assert.equal(d.fineMarks, 0, 'a renamed file is compared whole');
  d.markZones('0/c', 0, 6 * MiB);
  assert.equal(d.fineMarks, 6);
  d.markZones('0/e', 0, 5 * MiB);
  assert.equal(d.get('0/e')!.fine, null, 'past the budget: zones only');
  assert.deepEqual([...d.get('0/e')!.zones!], [0]);
  assert.equal(d.fineMarks, 6);
  d.markZones('0/c', 20 * MiB, 5 * MiB);
  assert.equal(d.get('0/c')!.fine, null, 'a file that would pass the budget loses its fine marks');
  assert.equal(d.fineMarks, 0);
  d.markZones('0/f', 0, 1);
  d.markZones('0/f', 8 * MiB, 1, false);
  assert.equal(d.get('0/f')!.fine, null, 'a replayed zone is known only as a zone');
  d.markZones('0/g', 3 * MiB, 1);
  assert.equal(d.fineMarks, 1);
  while (d.takeNext()) {}
  assert.equal(d.fineMarks, 0);
});

test('removals and renames of files cost their depth, not a walk of every mark (a million during a first sync)', () => {
  const d = new DirtySet(8 * 1024 * 1024);
  const files = 200_000;
  for (let i = 0; i < files; i++) d.markAll(`0/g${i % 10}/d${i % 200}/f${i}`);
  const t0 = performance.now();
  for (let i = 0; i < 2000; i++) d.removed(`0/g${i % 10}/d${i % 200}/f${i}`);
  for (let i = 2000; i < 2500; i++) d.renamed(`0/g${i % 10}/d${i % 200}/f${i}`, `0/g${i % 10}/d${i % 200}/r${i}`, false);
  const ms = performance.now() - t0;
  // A walk of the 200,000 marks per call took 5-20 s here; by depth it is a few milliseconds.
  assert.ok(ms < 1500, `2500 removals and renames among ${files} marks took ${Math.round(ms)} ms`);
  assert.ok(!d.has('0/g0/d0/f0') && d.get('0/g0/d0')!.list);
  assert.ok(d.has('0/g0/d100/r2100') && !d.has('0/g0/d100/f2100'));
  // A directory with marks below it still takes them along.
  d.renamed('0/g1/d1', '0/g1/moved', false);
  assert.ok(d.has('0/g1/moved/f2801') && !d.has('0/g1/d1/f2801'));
  d.removed('0/g1/moved');
  assert.ok(!d.has('0/g1/moved/f2801') && !d.has('0/g1/moved'));
  d.markAll('0/g1/moved/new');
  d.removed('0/g1/moved');
  assert.ok(!d.has('0/g1/moved/new'), 'the counts below a directory follow removals and new marks');
});

test('a first reintegration holds about one listing per level, not an entry per file of the tree', () => {
  const d = new DirtySet(1024 * 1024);
  // As source.ts does it: the root listed deep; each listing marks what it finds (20 x 50 directories of
  // 100 files: 100,000 files).
  d.markList('0', true);
  let peak = 0;
  let files = 0;
  const seen = new Set<string>();
  for (let n = d.takeNext(); n; n = d.takeNext()) {
    const [p, e] = n;
    const parent = p.slice(0, p.lastIndexOf('/'));
    assert.ok(p === '0' || seen.has(parent), `${p} before its parent`);
    seen.add(p);
    const depth = p.split('/').length - 1;
    if (e.list && depth === 0) for (let g = 0; g < 20; g++) d.markList(`${p}/g${g}`, true);
    else if (e.list && depth === 1) for (let k = 0; k < 50; k++) d.markList(`${p}/d${k}`, true);
    else if (e.list && depth === 2) for (let f = 0; f < 100; f++) d.markAll(`${p}/f${f}`);
    else files++;
    peak = Math.max(peak, d.size);
  }
  assert.equal(files, 100_000);
  // Shallowest-first listed the 1000 directories before any file: 100,000 entries at once.
  assert.ok(peak < 500, `at most ${peak} entries at once`);
});

test('takeNext: a deep mark under a directory still marked waits for it', () => {
  const d = new DirtySet(1024);
  d.markAll('0/new/f');
  d.markZones('0/old/g', 0, 10);
  d.markList('0/new');
  const order: string[] = [];
  for (let n = d.takeNext(); n; n = d.takeNext()) order.push(n[0]);
  assert.deepEqual(order, ['0/old/g', '0/new', '0/new/f']);
});
