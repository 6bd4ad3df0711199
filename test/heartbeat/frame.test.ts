import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BOOT_ID_BYTES,
  FRAME_FIXED_BYTES,
  FRAME_TAG_BYTES,
  HeartbeatKey,
  MAX_FRAME_BYTES,
  MAX_PAYLOAD_BYTES,
  decodeFrame,
  encodeFrame,
  newBootId,
  type DecodeResult,
  type FrameHeader,
  type RejectReason,
} from '../../src/heartbeat/frame.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const key = new HeartbeatKey(generateModuleKey());
const boot = newBootId(1_800_000_000_000);
const header: FrameHeader = { moduleId: 3, from: 'node1', lan: 'lan-a', bootId: boot, seq: 42, sentAtMs: 1_800_000_000_123 };
const payload = Buffer.from(JSON.stringify({ state: 'PRIM', qualifier: 'Ready', resources: { 'heartbeat.lan-a': 'up' } }));

function rejected(r: DecodeResult): RejectReason {
  assert.equal(r.ok, false, 'the frame is refused');
  return (r as { reason: RejectReason }).reason;
}

test('a frame round-trips: header fields, payload, key tag', () => {
  const bytes = encodeFrame(key, header, payload);
  assert.equal(bytes.length, FRAME_FIXED_BYTES + 'node1'.length + 'lan-a'.length + payload.length + FRAME_TAG_BYTES);
  const r = decodeFrame(key, bytes, { moduleId: 3 });
  assert.ok(r.ok);
  assert.deepEqual({ ...r.frame, payload: r.frame.payload.toString() }, {
    ...header,
    version: 1,
    keyTag: key.id.slice(0, 8),
    payload: payload.toString(),
  });
  // An empty payload and the largest one both work; the header stays readable, the payload does not.
  for (const p of [Buffer.alloc(0), Buffer.alloc(MAX_PAYLOAD_BYTES, 0x61)]) {
    const e = encodeFrame(key, header, p);
    const d = decodeFrame(key, e);
    assert.ok(d.ok && d.frame.payload.equals(p));
    assert.ok(e.length <= MAX_FRAME_BYTES);
  }
  assert.ok(bytes.includes(Buffer.from('node1')) && bytes.includes(Buffer.from('lan-a')), 'names are in clear');
  assert.ok(!bytes.includes(Buffer.from('PRIM')), 'the payload is encrypted');
});

test('two frames of one boot never share a nonce; two boots never share a key', () => {
  const a = encodeFrame(key, header, payload);
  const b = encodeFrame(key, { ...header, seq: 43 }, payload);
  const c = encodeFrame(key, { ...header, bootId: newBootId(1_800_000_000_000) }, payload);
  const ct = (x: Buffer): Buffer => x.subarray(FRAME_FIXED_BYTES + 10, x.length - FRAME_TAG_BYTES);
  assert.ok(!ct(a).equals(ct(b)));
  assert.ok(!ct(a).equals(ct(c)));
  assert.equal(encodeFrame(key, header, payload).toString('hex'), a.toString('hex'), 'encoding is a pure function');
});

test('boot ids: 12 bytes, start with the clock, so a later boot sorts after an earlier one', () => {
  const a = newBootId(1_800_000_000_000);
  const b = newBootId(1_800_000_000_001);
  assert.equal(a.length, BOOT_ID_BYTES * 2);
  assert.ok(b > a);
  assert.notEqual(newBootId(5), newBootId(5), 'random low half');
});

test('every decode-time rejection has its reason', () => {
  const good = encodeFrame(key, header, payload);
  const cases: Array<[string, Uint8Array, RejectReason, { moduleId?: number }?]> = [];
  const mut = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  // Tampering with any single byte (header or ciphertext or tag) breaks authentication.
  const headerLen = FRAME_FIXED_BYTES + 10;
  for (const at of [8, 19, 26, 27, 30, 35, FRAME_FIXED_BYTES + 1, headerLen, headerLen + 5, good.length - 1]) {
    cases.push([`byte ${at} flipped`, mut((b) => (b[at]! ^= 0x01)), 'bad-tag']);
  }
  cases.push(['sender renamed (same length)', mut((b) => b.write('node2', FRAME_FIXED_BYTES, 'latin1')), 'bad-tag']);
  cases.push(['another module key', encodeFrame(new HeartbeatKey(generateModuleKey()), header, payload), 'key-mismatch']);
  cases.push(['key tag forged to ours, other key', (() => {
    const other = encodeFrame(new HeartbeatKey(generateModuleKey()), header, payload);
    key.tag.copy(other, 4);
    return other;
  })(), 'bad-tag']);
  cases.push(['truncated tail', good.subarray(0, good.length - 1), 'truncated']);
  cases.push(['truncated to the fixed header', good.subarray(0, FRAME_FIXED_BYTES), 'truncated']);
  cases.push(['two bytes', good.subarray(0, 2), 'truncated']);
  cases.push(['empty', Buffer.alloc(0), 'truncated']);
  cases.push(['trailing byte', Buffer.concat([good, Buffer.from([0])]), 'malformed']);
  cases.push(['oversize datagram', Buffer.concat([good, Buffer.alloc(MAX_FRAME_BYTES)]), 'oversize']);
  cases.push(['payload length over the cap', mut((b) => b.writeUInt16BE(MAX_PAYLOAD_BYTES + 1, 38)), 'oversize']);
  cases.push(['bad magic', mut((b) => (b[0] = 0x47)), 'bad-magic']);
  cases.push(['version 2', mut((b) => (b[2] = 2)), 'bad-version']);
  cases.push(['wrong module', good, 'wrong-module', { moduleId: 4 }]);
  cases.push(['empty sender name', mut((b) => (b[36] = 0)), 'malformed']);
  cases.push(['non-identifier sender', mut((b) => (b[FRAME_FIXED_BYTES] = 0x2f)), 'malformed']);
  cases.push(['sequence 0', mut((b) => b.writeBigUInt64BE(0n, 20)), 'malformed']);
  cases.push(['sequence past 2^53', mut((b) => b.writeBigUInt64BE(2n ** 60n, 20)), 'malformed']);
  for (const [what, bytes, reason, expect] of cases) {
    const r = decodeFrame(key, bytes, expect ?? { moduleId: 3 });
    assert.equal(rejected(r), reason, what);
    assert.ok((r as { detail: string }).detail.length > 0, `${what}: has a detail`);
  }
  // Random garbage never throws.
  for (let i = 0; i < 2000; i++) {
    const n = Math.floor(Math.random() * 200);
    const b = Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)));
    if (i % 2 && n >= 3) b.writeUInt16BE(0x5348, 0), (b[2] = 1);
    assert.equal(decodeFrame(key, b).ok, false);
  }
});

test('the key mismatch message names both fingerprints (no secret)', () => {
  const other = new HeartbeatKey(generateModuleKey());
  const r = decodeFrame(key, encodeFrame(other, header, payload));
  assert.ok(!r.ok);
  assert.equal(r.detail, `sealed with module key ${other.id.slice(0, 8)}…, this node has ${key.id.slice(0, 8)}…: apply the same module key to both nodes`);
});

test('encodeFrame refuses bad fields with BAD_ARGUMENT (caller bugs, not peer input)', () => {
  const bad: Array<[Partial<FrameHeader>, Buffer?]> = [
    [{ moduleId: 0 }],
    [{ moduleId: 33 }],
    [{ from: '' }],
    [{ from: 'x'.repeat(65) }],
    [{ lan: 'a b' }],
    [{ bootId: 'zz' }],
    [{ seq: 0 }],
    [{ seq: 1.5 }],
    [{ sentAtMs: -1 }],
    [{}, Buffer.alloc(MAX_PAYLOAD_BYTES + 1)],
  ];
  for (const [h, p] of bad) {
    assert.throws(() => encodeFrame(key, { ...header, ...h }, p ?? payload), (e) => isStayupError(e) && e.code === 'BAD_ARGUMENT', JSON.stringify(h));
  }
  assert.throws(() => new HeartbeatKey(Buffer.alloc(16)), (e) => isStayupError(e) && e.code === 'MODULE_KEY_INVALID');
});
