import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePaths, type NodePaths } from '../../src/util/paths.ts';
import { writeFileAtomic } from '../../src/util/atomic-file.ts';
import {
  decodeSlot,
  encodeSlot,
  fileMirrorRecordStore,
  legacyMirrorRecordPath,
  mirrorRecordPath,
  parseMirrorRecord,
  SLOT_BYTES,
  SLOT_COUNT,
} from '../../src/engine/mirror-store.ts';
import { MemoryHeartbeatNetwork } from '../../src/heartbeat/memory.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { MirrorEngine, noReplication } from '../../src/engine/mirror-engine.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import type { MirrorPersisted } from '../../src/mirror/types.ts';

// The mirror's state record on disk: two checksummed slots written in place. Round trip, alternation,
// torn writes (every prefix and suffix of a slot write), both slots, the old mirror.json format and its
// migration, and every malformed form refused with the file, the slot and the field.

const good: MirrorPersisted = { uptodate: true, lastPrim: true, reintegrating: false, reintegrationInterrupted: false, gen: 4, incarnation: 2, lastSyncMs: null };
const rec = (gen: number): MirrorPersisted => ({ ...good, gen, lastSyncMs: 1_700_000_000_000 + gen });

function tmpPaths(t: { after: (fn: () => void) => void }): NodePaths {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-mstore-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return nodePaths({ STAYUP_VAR: dir });
}

/** Writes bytes at an offset of the record file, as an interrupted write would have left them. */
function writeAt(file: string, bytes: Buffer, offset: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

const slotOf = (file: string, i: number): ReturnType<typeof decodeSlot> => decodeSlot(readFileSync(file).subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES));

const corrupt = (message: string) => (e: unknown) => isStayupError(e) && e.code === 'STATE_CORRUPT' && e.message === message;

test('a record round-trips through the file, written 0600, two slots used in turn with increasing sequence numbers', (t) => {
  const paths = tmpPaths(t);
  const file = mirrorRecordPath(paths, 'm');
  const store = fileMirrorRecordStore(paths, 'm');
  assert.equal(store.load(), null, 'no record before the first persist');
  store.save(rec(1));
  assert.deepEqual(store.load(), rec(1));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(file).size, SLOT_COUNT * SLOT_BYTES);
  assert.deepEqual(slotOf(file, 0), { kind: 'record', seq: 1, text: JSON.stringify(rec(1)) });
  assert.deepEqual(slotOf(file, 1), { kind: 'empty' });
  store.save(rec(2));
  store.save(rec(3));
  assert.deepEqual([slotOf(file, 0), slotOf(file, 1)].map((s) => (s.kind === 'record' ? s.seq : s.kind)), [3, 2]);
  assert.deepEqual(store.load(), rec(3));
  // Another store over the same file (a restart) continues the sequence in the other slot.
  const again = fileMirrorRecordStore(paths, 'm');
  assert.deepEqual(again.load(), rec(3));
  again.save(rec(4));
  assert.deepEqual([slotOf(file, 0), slotOf(file, 1)].map((s) => (s.kind === 'record' ? s.seq : s.kind)), [3, 4]);
  assert.equal(statSync(file).size, SLOT_COUNT * SLOT_BYTES, 'saves write in place');
  // save() without a load() first finds the newest slot itself.
  fileMirrorRecordStore(paths, 'm').save(rec(5));
  assert.deepEqual([slotOf(file, 0), slotOf(file, 1)].map((s) => (s.kind === 'record' ? s.seq : s.kind)), [5, 4]);
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(5));
});

test('a crash in the middle of a save (every prefix or suffix of the slot written) leaves the record before it', (t) => {
  const paths = tmpPaths(t);
  const file = mirrorRecordPath(paths, 'm');
  const store = fileMirrorRecordStore(paths, 'm');
  store.save(rec(1)); // slot 0, seq 1
  store.save(rec(2)); // slot 1, seq 2
  const before = readFileSync(file);
  // The third save goes to slot 0 (it holds the older record) with seq 3.
  const next = encodeSlot(3, rec(3));
  const used = 56 + Buffer.byteLength(JSON.stringify(rec(3)));
  // Every length over the header and the record, then page-sized steps to the whole slot.
  const lengths = [...Array.from({ length: used + 8 }, (_, i) => i), ...Array.from({ length: 8 }, (_, i) => (i + 1) * 512)];
  for (const k of lengths) {
    for (const side of ['prefix', 'suffix'] as const) {
      writeFileSync(file, before);
      if (side === 'prefix') writeAt(file, next.subarray(0, k), 0);
      else writeAt(file, next.subarray(SLOT_BYTES - k), SLOT_BYTES - k);
      // The new record counts only when its bytes are all there (a prefix that stops on a byte the old
      // record had in the same place is whole too); otherwise the newest whole record is the one before.
      const whole = readFileSync(file).subarray(0, used).equals(next.subarray(0, used));
      assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), whole ? rec(3) : rec(2), `${side} of ${k} bytes`);
    }
  }
  // After a torn save the next save overwrites the torn slot, never the newest whole one.
  writeFileSync(file, before);
  writeAt(file, next.subarray(0, 40), 0);
  const restarted = fileMirrorRecordStore(paths, 'm');
  assert.deepEqual(restarted.load(), rec(2));
  assert.equal(slotOf(file, 0).kind, 'torn');
  restarted.save(rec(7));
  assert.deepEqual(slotOf(file, 0), { kind: 'record', seq: 3, text: JSON.stringify(rec(7)) });
  assert.deepEqual(slotOf(file, 1), { kind: 'record', seq: 2, text: JSON.stringify(rec(2)) });
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(7));
});

test('both slots: the higher sequence number wins wherever it is; no whole slot is STATE_CORRUPT naming both', (t) => {
  const paths = tmpPaths(t);
  const file = mirrorRecordPath(paths, 'm');
  mkdirSync(paths.moduleVarDir('m'), { recursive: true });
  writeFileSync(file, Buffer.concat([encodeSlot(9, rec(9)), encodeSlot(8, rec(8))]));
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(9));
  writeFileSync(file, Buffer.concat([encodeSlot(8, rec(8)), encodeSlot(9, rec(9))]));
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(9));
  // A file cut short (slot 1 missing) still gives slot 0.
  writeFileSync(file, encodeSlot(4, rec(4)).subarray(0, 200));
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(4));

  const flip = (b: Buffer, at: number): Buffer => {
    const c = Buffer.from(b);
    c[at] = c[at]! ^ 0xff;
    return c;
  };
  writeFileSync(file, Buffer.concat([flip(encodeSlot(8, rec(8)), 100), flip(encodeSlot(9, rec(9)), 12)]));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), corrupt(`${file}: no whole record (slot 0: checksum mismatch; slot 1: checksum mismatch)`));
  writeFileSync(file, Buffer.alloc(2 * SLOT_BYTES));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), corrupt(`${file}: no whole record (slot 0: empty; slot 1: empty)`));
  writeFileSync(file, Buffer.concat([Buffer.from('{"uptodate":true}'), Buffer.alloc(SLOT_BYTES)]));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), corrupt(`${file}: no whole record (slot 0: no slot header; slot 1: empty)`));
});

test('a whole slot with a malformed record, or in a newer format, is refused: never the older slot instead', (t) => {
  const paths = tmpPaths(t);
  const file = mirrorRecordPath(paths, 'm');
  mkdirSync(paths.moduleVarDir('m'), { recursive: true });
  writeFileSync(file, Buffer.concat([encodeSlot(1, rec(1)), encodeSlot(2, { ...rec(2), gen: -1 })]));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), corrupt(`${file} slot 1: field gen must be a whole number`));
  const newer = encodeSlot(2, rec(2));
  newer.writeUInt32LE(2, 8);
  writeFileSync(file, Buffer.concat([encodeSlot(1, rec(1)), newer]));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), corrupt(`${file} slot 1: record format 2, this version reads format 1`));
  // A save after such a refusal (the engine then persists what it claims) overwrites it and reads back.
  const store = fileMirrorRecordStore(paths, 'm');
  assert.throws(() => store.load());
  store.save(rec(3));
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(3));
});

test('the old mirror.json is read until the first save, which creates mirror.state and removes it', (t) => {
  const paths = tmpPaths(t);
  const legacy = legacyMirrorRecordPath(paths, 'm');
  const file = mirrorRecordPath(paths, 'm');
  // Exactly what the earlier versions wrote.
  writeFileAtomic(legacy, `${JSON.stringify(rec(6))}\n`, 0o600);
  const store = fileMirrorRecordStore(paths, 'm');
  assert.deepEqual(store.load(), rec(6));
  assert.equal(existsSync(file), false, 'loading changes nothing');
  store.save(rec(7));
  assert.equal(existsSync(legacy), false);
  assert.deepEqual(slotOf(file, 0), { kind: 'record', seq: 1, text: JSON.stringify(rec(7)) });
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(7));
  // A crash between the creation of mirror.state and the removal of mirror.json: mirror.state wins.
  writeFileAtomic(legacy, `${JSON.stringify(rec(6))}\n`, 0o600);
  assert.deepEqual(fileMirrorRecordStore(paths, 'm').load(), rec(7));
  // A damaged mirror.json is refused, naming it.
  rmSync(file);
  writeFileSync(legacy, '{"uptodate": tru');
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), (e: unknown) => isStayupError(e) && e.code === 'STATE_CORRUPT' && e.message.startsWith(`${legacy}: not JSON`));
});

test('a record file that cannot be read or written gives IO naming it', (t) => {
  const paths = tmpPaths(t);
  const file = mirrorRecordPath(paths, 'm');
  const store = fileMirrorRecordStore(paths, 'm');
  store.save(rec(1));
  rmSync(file);
  mkdirSync(file); // a directory where the file should be
  const io = (prefix: string) => (e: unknown) => isStayupError(e) && e.code === 'IO' && e.message.startsWith(`${prefix} ${file}: EISDIR`);
  assert.throws(() => store.save(rec(2)), io('cannot open'));
  assert.throws(() => fileMirrorRecordStore(paths, 'm').load(), io('cannot read'));
});

for (const [what, text, message] of [
  ['not JSON', '{"uptodate":', 'f.json: not JSON'],
  ['a string', '"x"', 'f.json: not an object'],
  ['uptodate as a number', JSON.stringify({ ...good, uptodate: 1 }), 'f.json: field uptodate must be true or false'],
  ['a negative generation', JSON.stringify({ ...good, gen: -1 }), 'f.json: field gen must be a whole number'],
  ['lastSyncMs as text', JSON.stringify({ ...good, lastSyncMs: 'yesterday' }), 'f.json: field lastSyncMs must be a number or null'],
] as const) {
  test(`a record with ${what} is refused (STATE_CORRUPT)`, () => {
    assert.throws(
      () => parseMirrorRecord(text, 'f.json'),
      (e: unknown) => isStayupError(e) && e.code === 'STATE_CORRUPT' && e.message.startsWith(message),
    );
  });
}

test('an engine over a damaged record logs it and starts claiming nothing (data not up to date)', async (t) => {
  const paths = tmpPaths(t);
  const store = fileMirrorRecordStore(paths, 'm');
  store.save(good);
  writeFileSync(mirrorRecordPath(paths, 'm'), Buffer.alloc(2 * SLOT_BYTES, 0x5a));
  const logs: string[] = [];
  const net = new MemoryHeartbeatNetwork();
  const channel = net.transport({ moduleId: 1, moduleKey: generateModuleKey(), node: 'n1', peer: 'n2', lans: ['default'] });
  const engine = new MirrorEngine({
    module: 'm',
    config: { self: 'n1', peer: 'n2', failover: true, defaultPrim: 'alone', maxLoop: 3, loopIntervalMs: 0, heartbeats: [{ lan: 'default', pulseMs: 100, timeoutMs: 1000 }], vip: null, replicatedData: true },
    channel,
    vip: null,
    scripts: { run: async () => ({ ok: true }) },
    replication: noReplication(),
    store: fileMirrorRecordStore(paths, 'm'),
    log: (level, _source, message) => logs.push(`${level} ${message}`),
  });
  assert.equal(engine.status().persisted.uptodate, false);
  assert.equal(engine.status().persisted.lastPrim, false);
  assert.match(logs.join('\n'), /^E .*mirror\.state: no whole record \(slot 0: no slot header; slot 1: no slot header\): starting as a node whose data may be not uptodate$/m);
  await engine.close();
});
