import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ScriptOutput, truncationMarker, MAX_LINE_CHARS } from '../../src/scripts/output.ts';
import { scriptDirs } from './helpers.ts';

test('output still buffered in a paused stream is written exactly once when the run finishes', (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const file = join(d.log, 'u.ulog');
  const lines: string[] = [];
  const out = new ScriptOutput(openSync(file, 'a'), 1000, (s, l) => lines.push(`${s}:${l}`));
  const so = new PassThrough();
  const se = new PassThrough();
  out.attach('stdout', so);
  out.attach('stderr', se);
  so.write('first\n');
  so.pause();
  so.write('buffered\npartial');
  se.end('err\n');
  out.finish({ stdout: so, stderr: se });
  assert.equal(readFileSync(file, 'utf8'), 'first\nerr\nbuffered\npartial');
  assert.deepEqual(lines, ['stdout:first', 'stderr:err', 'stdout:buffered', 'stdout:partial']);
  assert.equal(out.bytesWritten, 'first\nerr\nbuffered\npartial'.length);
});

test('notes count against the cap; very long lines reach the callback in pieces', (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const file = join(d.log, 'u.ulog');
  const lines: string[] = [];
  const out = new ScriptOutput(openSync(file, 'a'), 100_000, (_s, l) => lines.push(l));
  const so = new PassThrough();
  out.attach('stdout', so);
  so.write('x'.repeat(MAX_LINE_CHARS * 2 + 5));
  so.end('\n');
  out.note('[note]\n');
  out.finish({ stdout: so });
  assert.deepEqual(lines.map((l) => l.length), [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]);
  assert.ok(readFileSync(file, 'utf8').endsWith('\n[note]\n'));
  const small = join(d.log, 's.ulog');
  const o2 = new ScriptOutput(openSync(small, 'a'), 4);
  o2.note('abcdefgh');
  o2.note('ijk');
  o2.finish({});
  assert.equal(readFileSync(small, 'utf8'), `abcd${truncationMarker(4)}`);
});

test('a userlog write error is reported and later output is dropped without failing', (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const out = new ScriptOutput(openSync(join(d.log, 'ro'), 'a+'), 1000);
  // A read-only descriptor makes every write fail with EBADF.
  const ro = new ScriptOutput(openSync(join(d.log, 'ro'), 'r'), 1000);
  ro.note('x');
  assert.match(ro.error ?? '', /EBADF/);
  ro.note('y');
  ro.finish({});
  out.finish({});
  assert.equal(readFileSync(join(d.log, 'ro'), 'utf8'), '');
});
