// The divergent files of a node about to become secondary are copied next to the replicated directory
// before its reintegration overwrites them: journal paths and files changed since it left sync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, utimesSync, readFileSync, readlinkSync, statSync, existsSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keepAside, keptFolder, stampOf, CHANGED_MARGIN_MS } from '../../src/replication/keep-aside.ts';

function setup(): { root: string; data: string; other: string } {
  const root = mkdtempSync(join(tmpdir(), 'stayup-keep-'));
  const data = join(root, 'data');
  const other = join(root, 'logs');
  mkdirSync(join(data, 'sub', 'deep'), { recursive: true });
  mkdirSync(other);
  return { root, data, other };
}

test('journal paths and files changed since the node left sync are kept with their metadata; older files are not', async () => {
  const { root, data, other } = setup();
  try {
    // A change time cannot be set back: the old file is written first, and the node "leaves sync" after it
    // (with no margin: CHANGED_MARGIN_MS is for clocks, not for this test).
    const old = new Date(Date.now() - CHANGED_MARGIN_MS - 60_000);
    writeFileSync(join(data, 'old.txt'), 'old');
    utimesSync(join(data, 'old.txt'), old, old);
    await sleep(30);
    const leftSyncMs = Date.now();
    await sleep(30);
    // Written since, its modification time set back as tar -x or cp -p do: its change time tells.
    writeFileSync(join(data, 'restored.txt'), 'restored by tar');
    utimesSync(join(data, 'restored.txt'), old, old);
    writeFileSync(join(data, 'journaled-old.txt'), 'listed by the journal although its mtime is old');
    utimesSync(join(data, 'journaled-old.txt'), old, old);
    writeFileSync(join(data, 'sub', 'deep', 'new.bin'), Buffer.alloc(70_000, 7));
    chmodSync(join(data, 'sub', 'deep', 'new.bin'), 0o640);
    symlinkSync('deep/new.bin', join(data, 'sub', 'link'));
    writeFileSync(join(other, 'second-dir.log'), 'in the second replicated directory');
    const stamp = stampOf(Date.now());
    const r = await keepAside({
      dirs: [
        { dir: data, underPath: data },
        { dir: other, underPath: other },
      ],
      journalPaths: ['0/journaled-old.txt', '0/removed-since.txt', '0/sub'],
      changedSinceMs: leftSyncMs,
      changedMarginMs: 0,
      stamp,
    });
    assert.deepEqual(r.paths, ['0/journaled-old.txt', '0/restored.txt', '0/sub/deep/new.bin', '0/sub/link', '1/second-dir.log']);
    assert.equal(r.files, 5);
    assert.equal(r.bytes, 'listed by the journal although its mtime is old'.length + 'restored by tar'.length + 70_000 + 'in the second replicated directory'.length);
    assert.deepEqual(r.notKept, []);
    const k0 = keptFolder(data, stamp);
    assert.deepEqual(r.folders, [k0, keptFolder(other, stamp)]);
    assert.equal(k0, join(root, 'data.stayup-kept', stamp));
    assert.ok(!existsSync(join(k0, 'old.txt')), 'an old file is not divergent');
    assert.deepEqual(readFileSync(join(k0, 'sub', 'deep', 'new.bin')), Buffer.alloc(70_000, 7));
    const st = statSync(join(k0, 'sub', 'deep', 'new.bin'));
    assert.equal(st.mode & 0o7777, 0o640);
    // Times are copied to the millisecond (utimes takes the Date of a stat).
    const origMtimeMs = statSync(join(data, 'sub', 'deep', 'new.bin')).mtimeMs;
    assert.ok(Math.abs(st.mtimeMs - origMtimeMs) < 1, `${st.mtimeMs} vs ${origMtimeMs}`);
    assert.equal(readlinkSync(join(k0, 'sub', 'link')), 'deep/new.bin');
    assert.equal(Math.round(statSync(join(k0, 'journaled-old.txt')).mtimeMs), old.getTime());
    assert.equal(readFileSync(join(root, 'logs.stayup-kept', stamp, 'second-dir.log'), 'utf8'), 'in the second replicated directory');
    // The originals are untouched: the reintegration, not this, replaces them.
    assert.equal(readFileSync(join(data, 'old.txt'), 'utf8'), 'old');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('journal paths only when no date is given; a keep-aside run again for the same episode never overwrites its copy', async () => {
  const { root, data } = setup();
  try {
    writeFileSync(join(data, 'a.txt'), 'first');
    writeFileSync(join(data, 'b.txt'), 'not in the journal');
    const req = { dirs: [{ dir: data, underPath: data }], journalPaths: ['0/a.txt'], changedSinceMs: null, stamp: 'same' };
    const first = await keepAside(req);
    assert.deepEqual(first.paths, ['0/a.txt']);
    writeFileSync(join(data, 'a.txt'), 'second');
    const again = await keepAside(req);
    assert.deepEqual(again.paths, ['0/a.txt'], 'still a path the reintegration must bring back');
    assert.equal(again.files, 0);
    assert.deepEqual(again.notKept, []);
    assert.equal(readFileSync(join(keptFolder(data, 'same'), 'a.txt'), 'utf8'), 'first');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('stamps are safe folder names', () => {
  assert.equal(stampOf(Date.UTC(2026, 10, 22, 9, 8, 7, 654)), '2026-11-22T09-08-07Z');
});
