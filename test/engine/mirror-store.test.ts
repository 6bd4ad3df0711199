import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePaths } from '../../src/util/paths.ts';
import { fileMirrorRecordStore, mirrorRecordPath, parseMirrorRecord } from '../../src/engine/mirror-store.ts';
import { MemoryHeartbeatNetwork } from '../../src/heartbeat/memory.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { MirrorEngine, noReplication } from '../../src/engine/mirror-engine.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

// The mirror's state record on disk: round trip, mode, and every malformed form refused with the file
// and the field; an engine over a damaged record starts as a node that claims nothing.

const good = { uptodate: true, lastPrim: true, reintegrating: false, reintegrationInterrupted: false, gen: 4, incarnation: 2, lastSyncMs: null };

test('a record round-trips through the file, written 0600', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-mstore-'));
  try {
    const paths = nodePaths({ STAYUP_VAR: dir });
    const store = fileMirrorRecordStore(paths, 'm');
    assert.equal(store.load(), null, 'no record before the first persist');
    store.save(good);
    assert.deepEqual(store.load(), good);
    assert.equal(statSync(mirrorRecordPath(paths, 'm')).mode & 0o777, 0o600);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

test('an engine over a damaged record logs it and starts claiming nothing (data not up to date)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-mstore-'));
  try {
    const paths = nodePaths({ STAYUP_VAR: dir });
    const store = fileMirrorRecordStore(paths, 'm');
    store.save(good);
    writeFileSync(mirrorRecordPath(paths, 'm'), '{"uptodate": tru');
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
      store,
      log: (level, _source, message) => logs.push(`${level} ${message}`),
    });
    assert.equal(engine.status().persisted.uptodate, false);
    assert.equal(engine.status().persisted.lastPrim, false);
    assert.match(logs.join('\n'), /^E .*mirror\.json: not JSON .*: starting as a node whose data may be not uptodate$/m);
    await engine.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
