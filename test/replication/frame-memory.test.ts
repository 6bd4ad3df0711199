import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { decodeFrame, encodeFrame, FrameReader, ownedBodyMemory, reviveBuffers, type Frame } from '../../src/replication/protocol.ts';

// The secondary moves the data of large write frames to its apply worker instead of copying it (target.ts).
// That is only safe for memory no other frame shares: FrameReader says which bodies it copied into memory
// of their own (a frame that spans reads of the socket).

const wire = (f: Frame): Buffer => Buffer.concat(encodeFrame(f));
const write = (data: Buffer): Frame => ({ type: 'write', path: '0/f', offset: 0n, mtimeNs: 1n, sync: 0, data });

function readAll(chunks: Buffer[]): Frame[] {
  const r = new FrameReader();
  const out: Frame[] = [];
  for (const c of chunks) r.push(c, (body) => out.push(decodeFrame(body)));
  return out;
}

test('a frame that spans reads gets memory of its own; frames inside one read share it and are never handed over', () => {
  const big = randomBytes(300 * 1024);
  const bytes = wire(write(big));
  const spanning = readAll([bytes.subarray(0, 16384), bytes.subarray(16384, 70000), bytes.subarray(70000)]);
  const data = (spanning[0] as Extract<Frame, { type: 'write' }>).data;
  assert.ok(data.equals(big));
  const mem = ownedBodyMemory(data);
  assert.ok(mem, 'the spanning frame owns its memory');
  assert.ok(mem.byteLength < big.length + 100, 'and that memory holds that frame alone');

  // Two frames delivered in one read: their bodies are views of the read's memory.
  const two = readAll([Buffer.concat([wire(write(randomBytes(1000))), wire(write(randomBytes(2000)))])]);
  for (const f of two) assert.equal(ownedBodyMemory((f as Extract<Frame, { type: 'write' }>).data), null);
});

test('a transferred write keeps its bytes on the other side and leaves nothing behind', () => {
  const big = randomBytes(200 * 1024);
  const bytes = wire(write(big));
  const [f] = readAll([bytes.subarray(0, 1000), bytes.subarray(1000)]);
  const mem = ownedBodyMemory((f as Extract<Frame, { type: 'write' }>).data)!;
  const { port1, port2 } = new MessageChannel();
  port1.postMessage({ frames: [f] }, [mem]);
  const got = receiveMessageOnPort(port2)!.message as { frames: Frame[] };
  const revived = reviveBuffers(got.frames[0]!) as Extract<Frame, { type: 'write' }>;
  assert.ok(Buffer.isBuffer(revived.data));
  assert.ok(revived.data.equals(big));
  assert.equal(mem.byteLength, 0, 'moved, not copied');
  port1.close();
});
