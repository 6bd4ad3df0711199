// With acknowledgements on receipt (async="second"), an fsync proves nothing the writes before it did not:
// it returns once every earlier frame is acknowledged, without a round trip of its own. With async="none"
// (the secondary acknowledges after its own disk write), the fsync waits for its own acknowledgement.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { Frame } from '../../src/replication/protocol.ts';
import { ReplicationSource } from '../../src/replication/source.ts';

const base = `/tmp/stayup-source-fsync-${process.pid}`;
after(() => rmSync(base, { recursive: true, force: true }));

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; !cond(); i++) {
    if (i > 2000) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
};

async function scenario(acksOnReceipt: boolean): Promise<{ repliedBeforeOwnAck: boolean; repliedBeforeEarlierAck: boolean }> {
  const dir = join(base, String(acksOnReceipt));
  mkdirSync(dir, { recursive: true });
  const journal = new Journal(join(dir, 'journal.jsonl'), 1 << 20);
  journal.reset('s0', Date.now());
  const replied = new Set<number>();
  const source = new ReplicationSource({
    dirs: [{ underPath: dir, filter: new ReplicationFilter([]), reply: (job) => replied.add(job) }],
    journal,
    blockBytes: 1 << 20,
    nbrei: 1,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => Date.now(),
    acksOnReceipt,
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: () => {}, lost: () => {} },
  });
  const [s, t] = memoryLinkPair();
  // The secondary, scripted: it acknowledges only when the test says so.
  let received = 0n;
  const got: Frame[] = [];
  t.onFrame((f) => {
    got.push(f);
    received++;
  });
  const ackAll = (): void => void t.send({ type: 'ack', count: received });
  source.attach(s, { sync: 'incremental', syncId: 's0', clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false });
  await until(() => got.some((f) => f.type === 'syncEnd'));
  ackAll();
  await until(() => source.inSync);

  source.onOp(0, { op: 'open', path: 'f', flags: 1, handle: 7, job: 1 } as never);
  source.onOp(0, { op: 'mkdir', path: 'd', mode: 0o755, uid: 0, gid: 0, job: 2 });
  await until(() => got.some((f) => f.type === 'mkdir'));
  // An fsync while the mkdir is not acknowledged yet: it must wait for it, whatever the mode.
  source.onOp(0, { op: 'fsyncdir', path: 'd', datasync: false, job: 3 });
  await until(() => got.some((f) => f.type === 'fsync'));
  await new Promise((r) => setTimeout(r, 20));
  const repliedBeforeEarlierAck = replied.has(3);
  // The secondary acknowledges everything before the fsync frame, not the fsync itself.
  void t.send({ type: 'ack', count: received - 1n });
  await until(() => replied.has(2));
  await new Promise((r) => setTimeout(r, 20));
  const repliedBeforeOwnAck = replied.has(3);
  ackAll();
  await until(() => replied.has(3));
  source.detach('test');
  return { repliedBeforeOwnAck, repliedBeforeEarlierAck };
}

it('async="second": an fsync returns once the frames before it are acknowledged, not waiting for its own', async () => {
  assert.deepEqual(await scenario(true), { repliedBeforeOwnAck: true, repliedBeforeEarlierAck: false });
});

it('async="none": an fsync waits for its own acknowledgement (the secondary acknowledges after its disk write)', async () => {
  assert.deepEqual(await scenario(false), { repliedBeforeOwnAck: false, repliedBeforeEarlierAck: false });
});
