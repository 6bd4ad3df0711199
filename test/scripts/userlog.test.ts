import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createUserlog, listUserlogs, pruneUserlogs, userlogName } from '../../src/scripts/userlog.ts';
import { scriptDirs } from './helpers.ts';

test('userlog names follow the reference, in local time with milliseconds', () => {
  const d = new Date(2025, 0, 2, 3, 4, 5, 6);
  assert.equal(userlogName('start_prim', d), 'userlog_2025-01-02T030405.006_start_prim.ulog');
  assert.equal(userlogName('start_prim', d, 2), 'userlog_2025-01-02T030405.006.2_start_prim.ulog');
});

test('two runs in the same millisecond get distinct files, listed in creation order', (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const now = new Date(2025, 5, 6, 7, 8, 9, 10);
  const a = createUserlog(d.log, 'stop_prim', now);
  const b = createUserlog(d.log, 'stop_prim', now);
  const c = createUserlog(d.log, 'stop_prim', new Date(2025, 5, 6, 7, 8, 9, 11));
  for (const x of [a, b, c]) closeSync(x.fd);
  assert.equal(basename(a.path), 'userlog_2025-06-06T070809.010_stop_prim.ulog');
  assert.equal(basename(b.path), 'userlog_2025-06-06T070809.010.1_stop_prim.ulog');
  assert.deepEqual(listUserlogs(d.log, 'stop_prim'), [a.path, b.path, c.path]);
});

test('listing and pruning touch only the named script (not stop_prim for prim)', (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  for (const n of [
    'userlog_2025-01-01T000000.000_prim.ulog',
    'userlog_2025-01-01T000001.000_prim.ulog',
    'userlog_2025-01-01T000002.000_prim.ulog',
    'userlog_2025-01-01T000000.000_stop_prim.ulog',
    'userlog_garbage_prim.ulog',
    'notes.txt',
  ]) writeFileSync(join(d.log, n), '');
  assert.equal(listUserlogs(d.log, 'prim').length, 3);
  const gone = pruneUserlogs(d.log, 'prim', 1);
  assert.deepEqual(gone.map((p) => basename(p)), ['userlog_2025-01-01T000000.000_prim.ulog', 'userlog_2025-01-01T000001.000_prim.ulog']);
  assert.deepEqual(readdirSync(d.log).sort(), [
    'notes.txt',
    'userlog_2025-01-01T000000.000_stop_prim.ulog',
    'userlog_2025-01-01T000002.000_prim.ulog',
    'userlog_garbage_prim.ulog',
  ]);
  assert.deepEqual(listUserlogs(join(d.log, 'nope'), 'prim'), []);
});
