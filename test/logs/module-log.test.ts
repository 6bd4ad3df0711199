import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import {
  ModuleLog,
  tail,
  formatRecord,
  printi,
  printe,
  moduleLogDir,
  setModuleLogStderr,
  flushModuleLogs,
  type LogRecord,
} from '../../src/logs/module-log.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Runs fn with process.stderr.write captured. */
function captureStderr(fn: () => void): string {
  const orig = process.stderr.write.bind(process.stderr);
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = orig;
  }
  return out;
}

test('records get increasing seq, ts, level, source, module and optional fields', (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('mirror', { dir, stderr: false });
  const before = Date.now();
  const a = log.append('E', 'admin', 'Action start called by admin@1.2.3.4', { user: 'admin', from: '1.2.3.4' });
  const b = log.event('heart', 'Local state ALONE Ready');
  assert.equal(a.seq, 1);
  assert.equal(b.seq, 2);
  assert.equal(a.module, 'mirror');
  assert.equal(a.source, 'admin');
  assert.deepEqual(a.fields, { user: 'admin', from: '1.2.3.4' });
  assert.equal('fields' in b, false);
  assert.ok(Date.parse(a.ts) >= before - 1000);
  assert.deepEqual(tail('mirror', { dir }), [a, b]);
});

test('tail leaves out I and D unless verbose, returns the last count records oldest first', (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  const levels = ['U', 'E', 'C', 'S', 'I', 'D'] as const;
  for (let i = 0; i < 30; i++) log.append(levels[i % 6]!, 'heart', `msg ${i}`);
  const normal = tail('m', { dir });
  assert.equal(normal.length, 20);
  assert.ok(normal.every((r) => r.level !== 'I' && r.level !== 'D'));
  const verbose = tail('m', { dir, verbose: true });
  assert.equal(verbose.length, 30);
  assert.deepEqual(verbose.map((r) => r.seq), Array.from({ length: 30 }, (_, i) => i + 1));
  assert.deepEqual(tail('m', { dir, count: 3 }).map((r) => r.message), ['msg 25', 'msg 26', 'msg 27']);
  assert.deepEqual(tail('m', { dir, count: 3, verbose: true }).map((r) => r.message), ['msg 27', 'msg 28', 'msg 29']);
  assert.deepEqual(log.tail({ count: 1 }).map((r) => r.level), ['S']);
  assert.deepEqual(tail('m', { dir, count: 0 }), []);
  assert.deepEqual(tail('other', { dir: join(dir, 'nope') }), []);
});

test('the default log directory is under the module var dir of STAYUP_VAR', (t) => {
  const v = tmp(t);
  const env = { STAYUP_VAR: v };
  assert.equal(moduleLogDir('pg', env), join(v, 'modvar', 'pg', 'log'));
  const log = new ModuleLog('pg', { env, stderr: false });
  log.critical('rfs', 'Replication broken');
  assert.equal(tail('pg', { env })[0]!.message, 'Replication broken');
  assert.ok(existsSync(join(v, 'modvar', 'pg', 'log', 'module.jsonl')));
  assert.throws(() => moduleLogDir('../etc', env), (e) => isStayupError(e) && e.code === 'MODULE_NAME_INVALID');
});

test('formatRecord prints local time with milliseconds, the level and the message', () => {
  const ts = new Date(2025, 2, 4, 5, 6, 7, 89);
  const r: LogRecord = { seq: 1, ts: ts.toISOString(), level: 'E', source: 'admin', module: 'm', message: 'Action start called by admin@1.2.3.4' };
  assert.equal(formatRecord(r), '2025-03-04 05:06:07.089  E  Action start called by admin@1.2.3.4');
  assert.equal(formatRecord({ ...r, message: 'two\nlines' }), '2025-03-04 05:06:07.089  E  two \\n lines');
});

test('each record is mirrored to stderr as a journald-style line when its turn is written, unless switched off', (t) => {
  const dir = tmp(t);
  const on = new ModuleLog('web', { dir, stderr: true });
  assert.equal(captureStderr(() => on.event('heart', 'Local state PRIM Ready')), '', 'not before the end of the turn');
  assert.equal(captureStderr(flushModuleLogs), 'stayup[web]: E Local state PRIM Ready\n');
  assert.equal(captureStderr(() => (on.debug('heart', 'line1\nline2'), flushModuleLogs())), 'stayup[web]: D line1 \\n line2\n');
  const off = new ModuleLog('web', { dir, stderr: false });
  assert.equal(captureStderr(() => (off.event('heart', 'quiet'), flushModuleLogs())), '');
  setModuleLogStderr(false);
  try {
    assert.equal(captureStderr(() => (new ModuleLog('web', { dir }).event('heart', 'quiet too'), flushModuleLogs())), '');
  } finally {
    setModuleLogStderr(true);
  }
  assert.equal(tail('web', { dir }).length, 3);
});

test('printi goes to the verbose log only, printe to the normal log; neither writes to stderr', (t) => {
  const dir = tmp(t);
  const out = captureStderr(() => {
    printi('m', 'checking the database', { dir });
    printe('m', 'database is down', { dir });
  });
  assert.equal(out, '');
  assert.deepEqual(tail('m', { dir }).map((r) => `${r.level} ${r.source} ${r.message}`), ['E script database is down']);
  assert.deepEqual(tail('m', { dir, verbose: true }).map((r) => `${r.level} ${r.message}`), [
    'I checking the database',
    'E database is down',
  ]);
});

test('a torn last line (crash mid-write) is skipped on read and never glues onto the next record', async (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  for (let i = 1; i <= 3; i++) log.event('heart', `ok ${i}`);
  await nextTurn(); // written; then a writer dies in the middle of its next record
  const torn = '{"seq":4,"ts":"2025-01-01T00:00:00.000Z","level":"E","sou';
  appendFileSync(join(dir, 'module.jsonl'), torn);
  appendFileSync(join(dir, 'verbose.jsonl'), torn);
  assert.deepEqual(tail('m', { dir }).map((r) => r.message), ['ok 1', 'ok 2', 'ok 3']);
  assert.deepEqual(tail('m', { dir, verbose: true }).map((r) => r.message), ['ok 1', 'ok 2', 'ok 3']);
  // A new writer (as after a restart) continues the sequence after the last whole record.
  const after = new ModuleLog('m', { dir, stderr: false }).event('heart', 'after crash');
  assert.equal(after.seq, 4);
  assert.deepEqual(tail('m', { dir }).map((r) => r.message), ['ok 1', 'ok 2', 'ok 3', 'after crash']);
  const lines = readFileSync(join(dir, 'module.jsonl'), 'utf8').split('\n');
  assert.equal(lines[3], torn, 'the torn line was ended, not overwritten');
  // Garbage and foreign lines in the middle are skipped too.
  appendFileSync(join(dir, 'module.jsonl'), 'not json\n{"seq":"x"}\n[]\n');
  log.event('heart', 'last');
  assert.deepEqual(tail('m', { dir }).map((r) => r.message).slice(-2), ['after crash', 'last']);
});

test('logs rotate by size, keep N files, and seq and tail continue across rotations', (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false, maxBytes: 2000, keep: 2 });
  for (let i = 1; i <= 100; i++) log.append(i % 2 ? 'E' : 'D', 'heart', `message number ${i}`);
  flushModuleLogs();
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl') || /\.jsonl\.\d+$/.test(f)).sort();
  assert.deepEqual(files, ['module.jsonl', 'module.jsonl.1', 'module.jsonl.2', 'verbose.jsonl', 'verbose.jsonl.1', 'verbose.jsonl.2']);
  for (const f of files) assert.ok(readFileSync(join(dir, f)).length <= 2000, f);
  const verbose = tail('m', { dir, verbose: true, keep: 2, count: 1000 });
  assert.equal(verbose.at(-1)!.seq, 100);
  assert.deepEqual(verbose.map((r) => r.seq), Array.from({ length: verbose.length }, (_, i) => 101 - verbose.length + i));
  const normal = tail('m', { dir, keep: 2, count: 5 });
  assert.deepEqual(normal.map((r) => r.seq), [91, 93, 95, 97, 99]);
  // A fresh writer finds the sequence even when the current file was just rotated and is empty.
  for (const f of ['verbose.jsonl', 'module.jsonl']) {
    renameSync(join(dir, `${f}.1`), join(dir, `${f}.2`));
    renameSync(join(dir, f), join(dir, `${f}.1`));
    writeFileSync(join(dir, f), '');
  }
  assert.equal(new ModuleLog('m', { dir, stderr: false, maxBytes: 2000, keep: 2 }).event('heart', 'x').seq, 101);
});

test('two writers on one module (as daemon and CLI would be) share one sequence', (t) => {
  const dir = tmp(t);
  const a = new ModuleLog('m', { dir, stderr: false });
  const b = new ModuleLog('m', { dir, stderr: false });
  const seqs: number[] = [];
  for (let i = 0; i < 10; i++) seqs.push(a.event('heart', `a${i}`).seq, b.event('admin', `b${i}`).seq);
  assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => i + 1));
});

test('writers in several processes never duplicate a seq nor interleave lines', async (t) => {
  const dir = tmp(t);
  const url = new URL('../../src/logs/module-log.ts', import.meta.url).href;
  const code = `const { ModuleLog } = await import(${JSON.stringify(url)});
const log = new ModuleLog('m', { dir: ${JSON.stringify(dir)}, stderr: false, maxBytes: 8000, keep: 50 });
for (let i = 0; i < 60; i++) log.append(i % 3 ? 'E' : 'I', 'p' + process.pid, 'record ' + i);`;
  const run = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'inherit'] });
      p.on('error', reject);
      p.on('exit', (c) => resolve(c ?? -1));
    });
  assert.deepEqual(await Promise.all([run(), run(), run()]), [0, 0, 0]);
  const all = tail('m', { dir, verbose: true, count: 10_000, keep: 50 });
  assert.equal(all.length, 180);
  assert.deepEqual(all.map((r) => r.seq), Array.from({ length: 180 }, (_, i) => i + 1));
  assert.equal(tail('m', { dir, count: 10_000, keep: 50 }).length, 120);
  assert.ok(!existsSync(join(dir, '.module.lock')), 'the lock is released');
});

test('a stale lock left by a dead process is broken', (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, '.module.lock'), '999999999\n');
  const r = new ModuleLog('m', { dir, stderr: false }).event('heart', 'after stale lock');
  assert.equal(r.seq, 1);
});

test('oversized messages and fields are clamped; unserialisable fields are dropped', (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  const big = log.event('x', 'y'.repeat(10_000), { blob: 'z'.repeat(20_000) });
  assert.equal(big.message.length, 4097);
  assert.match(String(big.fields?.fieldsDropped), /characters/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const c = log.event('x', 'cyclic', cyclic);
  assert.match(String(c.fields?.fieldsDropped), /not serialisable/);
  assert.throws(() => log.append('Z' as never, 'x', 'bad level'), RangeError);
  assert.equal(tail('m', { dir }).length, 2);
});

test('an unwritable log directory gives IO', (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'file'), '');
  const log = new ModuleLog('m', { dir: join(dir, 'file', 'sub'), stderr: false });
  assert.throws(() => log.event('x', 'y'), (e) => isStayupError(e) && e.code === 'IO');
});

/** The descriptors this process has open on `file` (through /proc/self/fd). */
function openDescriptors(file: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}


test('append() touches no file: the records of a turn are written at the next one, on files that stay open, shared by every writer of the directory', async (t) => {
  const dir = tmp(t);
  const a = new ModuleLog('m', { dir, stderr: false });
  a.event('heart', 'one');
  new ModuleLog('m', { dir, stderr: false }).info('heart', 'two');
  a.event('heart', 'three');
  assert.equal(existsSync(join(dir, 'verbose.jsonl')), false, 'nothing written yet');
  assert.equal(existsSync(join(dir, '.module.lock')), false, 'no lock taken yet');
  await nextTurn();
  assert.ok(!existsSync(join(dir, '.module.lock')), 'the lock is held only while writing');
  assert.deepEqual(readFileSync(join(dir, 'verbose.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as LogRecord).seq), [1, 2, 3]);
  assert.equal(openDescriptors(join(dir, 'module.jsonl')), 1);
  assert.equal(openDescriptors(join(dir, 'verbose.jsonl')), 1);
  a.event('heart', 'four');
  await nextTurn();
  assert.deepEqual(tail('m', { dir, verbose: true }).map((r) => `${r.seq} ${r.message}`), ['1 one', '2 two', '3 three', '4 four']);
  assert.equal(openDescriptors(join(dir, 'verbose.jsonl')), 1);
});

test('records another process wrote while ours waited: ours are numbered after them, and the records append() returned say so', async (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  log.event('heart', 'one');
  await nextTurn();
  const mine = log.event('heart', 'mine');
  const alsoMine = log.info('heart', 'also mine');
  assert.deepEqual([mine.seq, alsoMine.seq], [2, 3]);
  // Another process writes its record 2 meanwhile (whole lines, to both files, as a ModuleLog does).
  const other = JSON.stringify({ seq: 2, ts: new Date().toISOString(), level: 'E', source: 'other', module: 'm', message: 'other' });
  appendFileSync(join(dir, 'module.jsonl'), `${other}\n`);
  appendFileSync(join(dir, 'verbose.jsonl'), `${other}\n`);
  await nextTurn();
  assert.deepEqual([mine.seq, alsoMine.seq], [3, 4]);
  assert.deepEqual(tail('m', { dir, verbose: true }).map((r) => `${r.seq} ${r.message}`), ['1 one', '2 other', '3 mine', '4 also mine']);
  assert.equal(log.event('heart', 'next').seq, 5);
});

test('a write that fails at the end of the turn is reported on stderr with the records it concerns, and gives the lock back', (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  log.event('heart', 'one');
  log.info('heart', 'two');
  mkdirSync(join(dir, 'verbose.jsonl')); // the file cannot be opened any more
  const said = captureStderr(flushModuleLogs);
  assert.match(said, new RegExp(`^stayup: cannot write the module log in ${dir}: EISDIR.* \\(records 1 to 2 may be missing\\)\n$`));
  assert.ok(!existsSync(join(dir, '.module.lock')));
  rmSync(join(dir, 'verbose.jsonl'), { recursive: true });
  assert.equal(log.event('heart', 'three').seq, 1, 'the sequence is read again from the files: nothing was written');
  assert.deepEqual(tail('m', { dir, verbose: true }).map((r) => r.message), ['three']);
});

test('a file rotated or removed behind the open descriptor: the next record goes to the file the path names', async (t) => {
  const dir = tmp(t);
  const log = new ModuleLog('m', { dir, stderr: false });
  log.event('heart', 'before');
  await nextTurn();
  // An operator's tool (logrotate without copytruncate) moves both files away.
  renameSync(join(dir, 'module.jsonl'), join(dir, 'module.jsonl.1'));
  renameSync(join(dir, 'verbose.jsonl'), join(dir, 'verbose.jsonl.1'));
  const after = log.event('heart', 'after');
  flushModuleLogs();
  assert.equal(after.seq, 2, 'the sequence goes on from the rotated file');
  assert.deepEqual(readFileSync(join(dir, 'module.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as LogRecord).message), ['after']);
  assert.deepEqual(readFileSync(join(dir, 'module.jsonl.1'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as LogRecord).message), ['before']);
  assert.equal(openDescriptors(join(dir, 'module.jsonl.1')), 0, 'the old file is closed');
  // A file moved while a record waits for the end of its turn: the record goes to the path's new file.
  log.info('heart', 'queued');
  renameSync(join(dir, 'verbose.jsonl'), join(dir, 'verbose.jsonl.2'));
  assert.deepEqual(tail('m', { dir, verbose: true, keep: 0 }).map((r) => r.message), ['queued']);
  await nextTurn();
  // The whole directory removed (module uninstalled) and written to again.
  rmSync(dir, { recursive: true, force: true });
  const fresh = log.critical('rfs', 'after removal');
  assert.deepEqual(tail('m', { dir }).map((r) => r.message), ['after removal']);
  assert.equal(fresh.seq, 1, 'numbered again from the files as they are when written');
  await nextTurn();
});

test('a writer in another process between and during our turns: one sequence, whole lines', async (t) => {
  const dir = tmp(t);
  const rot = { maxBytes: 4000, keep: 1000 };
  const log = new ModuleLog('m', { dir, stderr: false, ...rot });
  const url = new URL('../../src/logs/module-log.ts', import.meta.url).href;
  const started = join(dir, 'child-started');
  const code = `const { ModuleLog } = await import(${JSON.stringify(url)});
const { writeFileSync } = await import('node:fs');
const log = new ModuleLog('m', { dir: ${JSON.stringify(dir)}, stderr: false, maxBytes: ${rot.maxBytes}, keep: ${rot.keep} });
writeFileSync(${JSON.stringify(started)}, '');
for (let i = 0; i < 40; i++) { log.append(i % 2 ? 'E' : 'D', 'child', 'child ' + i); await new Promise((r) => setTimeout(r, 5)); }`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'inherit'] });
  let running = true;
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (c) => {
      running = false;
      resolve(c ?? -1);
    });
  });
  // Three records in one turn, every millisecond or so, from the moment the child starts writing until it has ended.
  let mine = 0;
  while (running) {
    if (existsSync(started) && mine < 3000) for (let j = 0; j < 3; j++) log.append(mine % 2 ? 'E' : 'D', 'parent', `parent ${mine++}`);
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(await exited, 0);
  log.event('parent', 'last');
  const all = tail('m', { dir, verbose: true, count: 100_000, keep: rot.keep });
  assert.equal(all.length, mine + 41);
  assert.deepEqual(all.map((r) => r.seq), Array.from({ length: all.length }, (_, i) => i + 1));
  assert.equal(all.filter((r) => r.source === 'child').length, 40);
  const bySource = all.map((r) => r.source).join(' ');
  assert.match(bySource, /child .*parent .*child/, 'the two writers took turns');
  // The normal log holds every E record of both, in the same order.
  assert.deepEqual(tail('m', { dir, count: 100_000, keep: rot.keep }).map((r) => r.seq), all.filter((r) => r.level === 'E').map((r) => r.seq));
});
