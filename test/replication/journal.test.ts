import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Journal, ZONES_PER_OPERATION_MAX } from '../../src/replication/journal.ts';

test('a write to a big file journals only its new zones, without copying the file\'s marks (several TB per module)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-journal-'));
  try {
    const zone = 4096;
    const j = new Journal(join(dir, 'journal.jsonl'), zone);
    j.reset('sync-1', 0);
    const zones = 200_000;
    // A big file written while the peer is away: 200,000 zones marked (as 1.5 TiB would be in 8 MiB zones),
    // by writes of 1 MiB.
    for (let at = 0; at < zones * zone; at += 256 * zone) j.markZones('0/big', at, Math.min(256 * zone, zones * zone - at));
    const t0 = performance.now();
    for (let i = 0; i < 3000; i++) j.markZones('0/big', (i * 7919 % zones) * zone, 100);
    j.markZones('0/big', zones * zone, 2 * zone);
    const ms = performance.now() - t0;
    // A copy of the 200,000 marks per write took about 20 s for these 3001 writes.
    assert.ok(ms < 1500, `3001 writes to a file with ${zones} marked zones took ${Math.round(ms)} ms`);
    j.flush();
    j.close();
    const back = new Journal(join(dir, 'journal.jsonl'), zone);
    assert.ok(back.load());
    assert.equal(back.dirty.get('0/big')!.zones!.size, zones + 2, 'each zone journaled once, the two new ones too');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('records are written once per turn (or per batch); flush writes the rest and makes them durable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-journal-'));
  try {
    const file = join(dir, 'journal.jsonl');
    const j = new Journal(file, 8 * 1024 * 1024);
    j.reset('sync-1', 0);
    for (let i = 0; i < 1000; i++) j.markAll(`0/d/f${i}`);
    // Fewer than a batch's bytes in this turn: nothing written yet (a write() per record was a million
    // system calls during a first reintegration, which marks every file once).
    assert.equal(statSync(file).size, 0);
    await new Promise((r) => setImmediate(r));
    const afterTurn = statSync(file).size;
    assert.ok(afterTurn > 0, 'the turn\'s records are written at its end');
    for (let i = 1000; i < 5000; i++) j.markAll(`0/d/f${i}`);
    assert.ok(statSync(file).size > afterTurn, 'a full batch is written at once');
    j.flush();
    const back = new Journal(file, 8 * 1024 * 1024);
    assert.ok(back.load());
    assert.equal(back.dirty.size, 5000);
    j.markAll('0/d/last');
    j.close();
    assert.ok(back.load() && back.dirty.has('0/d/last'), 'close writes what is pending');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one operation over more than ZONES_PER_OPERATION_MAX zones (a fallocate, a punched hole) marks its file whole', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-journal-'));
  try {
    const zone = 8 * 1024 * 1024;
    const j = new Journal(join(dir, 'journal.jsonl'), zone);
    j.reset('sync-1', 0);
    j.markZones('0/image', 0, ZONES_PER_OPERATION_MAX * zone);
    assert.equal(j.dirty.get('0/image')!.zones!.size, ZONES_PER_OPERATION_MAX, 'up to the limit: zones');
    j.markZones('0/image', 0, 2 * 1024 ** 4);
    assert.equal(j.dirty.get('0/image')!.zones, null, '2 TiB at once: the whole file');
    j.flush();
    j.close();
    const back = new Journal(join(dir, 'journal.jsonl'), zone);
    assert.ok(back.load());
    assert.equal(back.dirty.get('0/image')!.zones, null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
