import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeFrame, encodeFrame, FrameReader, packEntries, packXattrs, ProtocolError, unpackEntries, unpackXattrs, type Frame } from '../../src/replication/protocol.ts';
import { connectLink, listenLinks, memoryLinkPair } from '../../src/replication/link.ts';

const samples: Frame[] = [
  { type: 'hello', version: 1, module: 'm', node: 'n1', session: 's' },
  { type: 'write', path: '0/a/b', offset: 12345678901n, mtimeNs: 1700000000123456789n, sync: 1, data: randomBytes(5000) },
  { type: 'setattr', path: '1', mode: 0o640, uid: null, gid: 7, size: null, atimeNs: -5n, mtimeNs: 3n },
  { type: 'rename', path: '0/é', newPath: '0/x y', flags: 2 },
  { type: 'rangeSumReq', id: 8, path: '0/big', blockSize: 65536, offset: 8n * 1048576n, length: 16n * 1048576n },
  { type: 'sum', id: 9, exists: 1, kind: 0, size: 4096n, sums: randomBytes(32) },
  { type: 'ack', count: 99n },
  { type: 'stripes', count: 3 },
  { type: 'join', session: '0f6c1e4a-session', index: 2, count: 3 },
];

const wire = (f: Frame): Buffer => Buffer.concat(encodeFrame(f));

test('every frame decodes to what was encoded, also when split at every byte', () => {
  const all = Buffer.concat(samples.map(wire));
  const out: Frame[] = [];
  const r = new FrameReader();
  for (let i = 0; i < all.length; i += 7) r.push(all.subarray(i, i + 7), (b) => out.push(decodeFrame(Buffer.from(b))));
  assert.deepEqual(out, samples);
});

test('bad frames are refused with the frame type and the field', () => {
  const w = wire(samples[1]!);
  assert.throws(() => decodeFrame(w.subarray(4, w.length - 1)), (e: Error) => e instanceof ProtocolError && /write: field data/.test(e.message));
  assert.throws(() => decodeFrame(Buffer.from([200])), /unknown frame type 200/);
  const extra = Buffer.concat([w.subarray(4), Buffer.from([0])]);
  assert.throws(() => decodeFrame(extra), /unexpected bytes/);
  const badOpt = wire(samples[2]!).subarray(4);
  badOpt[1 + 4 + 1] = 2; // type, path "1" (u32 length + 1 byte), then the presence byte of `mode`
  assert.throws(() => decodeFrame(badOpt), /setattr: field mode has presence byte 2/);
  const huge = Buffer.alloc(8);
  huge.writeUInt32LE(0xffffffff, 0);
  assert.throws(() => new FrameReader().push(huge, () => {}), /frame length/);
});

test('directory entries pack and unpack', () => {
  const entries = [{ name: 'a', type: 'file' as const }, { name: 'dir é', type: 'dir' as const }, { name: 'l', type: 'symlink' as const }];
  assert.deepEqual(unpackEntries(packEntries(entries)), entries);
  assert.throws(() => unpackEntries(Buffer.from([9, 0, 0, 0, 0])), /entry type 9/);
});

test('the memory link carries frames in order', async () => {
  const [a, b] = memoryLinkPair();
  const got: Frame[] = [];
  b.onFrame((f) => got.push(f));
  for (const f of samples) a.send(f);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, samples);
});

test('the TLS link authenticates with the module key and refuses another key or node', async () => {
  const key = randomBytes(32);
  const rejects: string[] = [];
  const got: Frame[] = [];
  const server = await listenLinks({ host: '127.0.0.1', port: 0, moduleKey: key, module: 'm', peerNode: 'n1', onLink: (l) => l.onFrame((f) => { got.push(f); l.send({ type: 'ack', count: 1n }); }), onReject: (w) => rejects.push(w) });
  const port = (server.address() as { port: number }).port;
  try {
    const link = await connectLink({ host: '127.0.0.1', port, moduleKey: key, module: 'm', node: 'n1', timeoutMs: 3000 });
    const acked = new Promise<Frame>((r) => link.onFrame(r));
    link.send(samples[1]!);
    assert.deepEqual(await acked, { type: 'ack', count: 1n });
    assert.deepEqual(got, [samples[1]]);
    link.close();
    await assert.rejects(connectLink({ host: '127.0.0.1', port, moduleKey: randomBytes(32), module: 'm', node: 'n1', timeoutMs: 3000 }));
    await assert.rejects(connectLink({ host: '127.0.0.1', port, moduleKey: key, module: 'm', node: 'intruder', timeoutMs: 3000 }));
    assert.ok(rejects.some((r) => /intruder/.test(r)), rejects.join('; '));
  } finally {
    server.close();
  }
});

test('extended attribute sets round-trip; a malformed one is refused with the frame and the field named', () => {
  const set = [
    { name: 'user.a', value: Buffer.from('1') },
    { name: 'security.capability', value: Buffer.from([0, 1, 2, 255]) },
    { name: 'user.empty', value: Buffer.alloc(0) },
  ];
  assert.deepEqual(unpackXattrs(packXattrs(set)), set);
  assert.deepEqual(unpackXattrs(Buffer.alloc(0)), []);
  const ok = packXattrs([{ name: 'user.a', value: Buffer.from('abc') }]);
  const refused = (b: Buffer, message: string): void => assert.throws(() => unpackXattrs(b), (e: Error) => e instanceof ProtocolError && e.message === message);
  refused(ok.subarray(0, 2), 'frame xattrs: name length runs past the end');
  refused(ok.subarray(0, 8), 'frame xattrs: name runs past the end');
  refused(ok.subarray(0, ok.length - 1), 'frame xattrs: value runs past the end');
  refused(packXattrs([{ name: '', value: Buffer.from('x') }]), 'frame xattrs: an empty name or one with a NUL');
  refused(packXattrs([{ name: 'user.a\0b', value: Buffer.from('x') }]), 'frame xattrs: an empty name or one with a NUL');
});
