// The primary keeps the paths of frames the secondary acknowledged on receipt but has not applied yet
// (async="second"): if the link breaks then, they are marked for the reintegration, since a secondary
// whose daemon died lost them. Once the secondary says they are applied, they are forgotten.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { after, it } from 'node:test';
import type { Journal } from '../../src/replication/journal.ts';
import { scriptedPair, until } from './scripted-peer.ts';

const base = `/tmp/stayup-source-applied-${process.pid}`;
after(() => rmSync(base, { recursive: true, force: true }));

async function run(peerApplies: boolean): Promise<Journal> {
  // The secondary, scripted: acknowledges every frame on receipt, and says it applied them only if asked to.
  const { source, journal, got } = scriptedPair(join(base, String(peerApplies)), (_f, received, peer) => {
    peer.send({ type: 'ack', count: received });
    if (peerApplies) peer.send({ type: 'applied', count: received });
  });
  const settle = until;
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
