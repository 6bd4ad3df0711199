// With acknowledgements on receipt (async="second"), an fsync proves nothing the writes before it did not:
// it returns once every earlier frame is acknowledged, without a round trip of its own. With async="none"
// (the secondary acknowledges after its own disk write), the fsync waits for its own acknowledgement.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { after, it } from 'node:test';
import { scriptedPair, until } from './scripted-peer.ts';

const base = `/tmp/stayup-source-fsync-${process.pid}`;
after(() => rmSync(base, { recursive: true, force: true }));

async function scenario(acksOnReceipt: boolean): Promise<{ repliedBeforeOwnAck: boolean; repliedBeforeEarlierAck: boolean }> {
  // The secondary, scripted: it acknowledges only when the test says so.
  const { source, peer: t, got, replied } = scriptedPair(join(base, String(acksOnReceipt)), () => {}, { acksOnReceipt });
  const received = (): bigint => BigInt(got.length);
  const ackAll = (): void => void t.send({ type: 'ack', count: received() });
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
  void t.send({ type: 'ack', count: received() - 1n });
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
