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
