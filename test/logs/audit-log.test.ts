import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendAudit, readAudit } from '../../src/logs/audit-log.ts';
import { nodePaths } from '../../src/util/paths.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('audit records say who ran what, from where, and how it ended', (t) => {
  const path = join(tmp(t), 'log', 'commands.jsonl');
  const a = appendAudit({ user: 'admin', role: 'admin', remote: '10.0.0.5', command: 'start -m mirror', module: 'mirror', ok: true }, { path });
  const b = appendAudit({ user: 'bob', role: 'monitor', command: 'stop -m mirror', module: 'mirror', ok: false, code: 'AUTH_FORBIDDEN' }, { path });
  assert.equal(a.seq, 1);
  assert.equal(b.seq, 2);
  assert.ok(!Number.isNaN(Date.parse(a.ts)));
  assert.equal('remote' in b, false);
  assert.deepEqual(readAudit({ path }), [a, b]);
  assert.deepEqual(readAudit({ path, count: 1 }), [b]);
  assert.deepEqual(
    readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    [a, b],
    'one JSON record per line',
  );
});

test('the default file is nodePaths().auditLog; node paths may also be passed first', (t) => {
  const v = tmp(t);
  const env = { STAYUP_VAR: v };
  appendAudit({ user: 'root', role: 'admin', command: 'level', ok: true }, { env });
  const paths = nodePaths(env);
  assert.ok(existsSync(paths.auditLog));
  const r = appendAudit(paths, { user: 'root', role: 'admin', command: 'POST /api/v1/modules/m/start', ok: true, status: 200 });
  assert.equal(r.seq, 2);
  assert.equal(r.status, 200);
  assert.deepEqual(readAudit(paths, { count: 10 }).map((x) => x.command), ['level', 'POST /api/v1/modules/m/start']);
  assert.deepEqual(readAudit({ env }).map((x) => x.seq), [1, 2]);
});

test('a torn last line is skipped, and the next record starts on its own line with the next seq', (t) => {
  const path = join(tmp(t), 'commands.jsonl');
  appendAudit({ user: 'u', role: 'admin', command: 'one', ok: true }, { path });
  appendFileSync(path, '{"seq":2,"ts":"2025-01-01T00:0');
  assert.deepEqual(readAudit({ path }).map((r) => r.command), ['one']);
  // The writer notices the file changed behind its back and re-reads the last whole record's seq.
  const again = appendAudit({ user: 'u', role: 'admin', command: 'two', ok: true }, { path });
  assert.equal(again.seq, 2);
  assert.deepEqual(readAudit({ path }).map((r) => r.command), ['one', 'two']);
  assert.equal(readFileSync(path, 'utf8').split('\n').length, 4);
});

test('the audit log rotates by size and reads across rotations', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'commands.jsonl');
  for (let i = 1; i <= 40; i++) appendAudit({ user: 'u', role: 'admin', command: `cmd ${i}`, ok: true }, { path, maxBytes: 1000, keep: 3, fsync: false });
  assert.deepEqual(readdirSync(dir).sort(), ['commands.jsonl', 'commands.jsonl.1', 'commands.jsonl.2', 'commands.jsonl.3']);
  const recs = readAudit({ path, keep: 3, count: 1000 });
  assert.equal(recs.at(-1)!.seq, 40);
  assert.deepEqual(recs.map((r) => r.seq), Array.from({ length: recs.length }, (_, i) => 41 - recs.length + i));
  assert.deepEqual(readAudit({ path, keep: 3, count: 2 }).map((r) => r.command), ['cmd 39', 'cmd 40']);
});

test('long fields are clipped; a missing log reads as empty; an unwritable one gives IO', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'commands.jsonl');
  const r = appendAudit({ user: 'u'.repeat(5000), role: 'admin', command: 'x', ok: true }, { path });
  assert.equal(r.user.length, 1025);
  assert.deepEqual(readAudit({ path: join(dir, 'none.jsonl') }), []);
  writeFileSync(join(dir, 'file'), '');
  assert.throws(
    () => appendAudit({ user: 'u', role: 'admin', command: 'x', ok: true }, { path: join(dir, 'file', 'a.jsonl') }),
    (e) => isStayupError(e) && e.code === 'IO',
  );
});
