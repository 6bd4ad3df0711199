// The primary keeps the paths of frames the secondary acknowledged on receipt but has not applied yet
// (async="second"): if the link breaks then, they are marked for the reintegration, since a secondary
// whose daemon died lost them. Once the secondary says they are applied, they are forgotten.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { Frame } from '../../src/replication/protocol.ts';
import { ReplicationSource } from '../../src/replication/source.ts';

const base = `/tmp/stayup-source-applied-${process.pid}`;
after(() => rmSync(base, { recursive: true, force: true }));

async function run(peerApplies: boolean): Promise<Journal> {
  const dir = join(base, String(peerApplies));
  mkdirSync(dir, { recursive: true });
  const journal = new Journal(join(dir, 'journal.jsonl'), 1 << 20);
  journal.reset('s0', Date.now());
  const source = new ReplicationSource({
    dirs: [{ underPath: dir, filter: new ReplicationFilter([]), reply: () => {} }],
    journal,
    blockBytes: 1 << 20,
    nbrei: 1,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => Date.now(),
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: () => {}, lost: () => {} },
  });
  const [s, t] = memoryLinkPair();
  // The secondary, scripted: acknowledges every frame on receipt, and says it applied them only if asked to.
  let received = 0n;
  const got: Frame[] = [];
  t.onFrame((f) => {
    got.push(f);
    received++;
    t.send({ type: 'ack', count: received });
    if (peerApplies) t.send({ type: 'applied', count: received });
  });
  source.attach(s, { sync: 'incremental', syncId: 's0', clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false });
  const settle = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; !cond(); i++) {
      if (i > 1000) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  await settle(() => source.inSync);
  source.onOp(0, { op: 'mkdir', path: 'd', mode: 0o755, uid: 0, gid: 0, job: 0 });
  await settle(() => got.some((f) => f.type === 'mkdir') && source.status().unacked === 0);
  await new Promise((r) => setTimeout(r, 20));
  source.detach('test');
  return journal;
}

it('acknowledged but not applied: marked when the link breaks', async () => {
  const j = await run(false);
  assert.ok(j.dirty.get('0/d')?.list, 'the mkdir the peer had not applied is to be compared');
});

it('applied: nothing is marked', async () => {
  const j = await run(true);
  assert.equal(j.dirty.size, 0);
});
