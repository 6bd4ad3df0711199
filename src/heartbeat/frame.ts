// Mirror heartbeat frames: a compact binary header, then the payload sealed with AES-256-GCM.
//
// The key of a frame is derived (HKDF-SHA256) from the module key, the sender's name and its boot id,
// so every sender boot has its own key; the GCM nonce is the sequence number, which never repeats
// within a boot. The whole header is the additional authenticated data. See README.md for the byte table.
//
// encodeFrame / decodeFrame are pure: no clock, no I/O, no randomness (boot ids are made by newBootId).
// A bad frame is not an exception: decodeFrame returns the reason, which the transports count.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { keyId } from '../crypto/cluster-key.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { MAX_MODULE_ID, MIN_MODULE_ID } from '../packages/module-store.ts';

export const FRAME_MAGIC = 0x5348; // "SH"
export const FRAME_VERSION = 1;
/** Bytes of the fixed part of the header, before the two names. */
export const FRAME_FIXED_BYTES = 40;
export const FRAME_TAG_BYTES = 16;
export const BOOT_ID_BYTES = 12;
export const KEY_TAG_BYTES = 4;
/** Names (node, lan) are cluster.xml identifiers: ASCII, 1 to 64 characters. */
export const MAX_NAME_BYTES = 64;
/** The opaque payload (the mirror machine's state summary) is at most this long. */
export const MAX_PAYLOAD_BYTES = 1200;
/**
 * No datagram longer than this is even parsed: it is the largest UDP payload in one 1500-byte Ethernet
 * frame, so a heartbeat is never fragmented. The largest valid frame is 40 + 64 + 64 + 1200 + 16 = 1384.
 */
export const MAX_FRAME_BYTES = 1472;

/** HKDF labels: distinct from the API seal's ("stayup-seal-v1"). */
const HKDF_SALT = 'stayup-heartbeat-v1';
const HKDF_INFO_PREFIX = 'stayup-heartbeat-v1 frame key';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Why a datagram was refused. The first group is decided by decodeFrame, the rest by the receiver. */
export const rejectReasons = [
  /** Longer than MAX_FRAME_BYTES, or a payload over MAX_PAYLOAD_BYTES. */
  'oversize',
  /** Shorter than its header says (or than the fixed header). */
  'truncated',
  /** Not a stayup heartbeat at all. */
  'bad-magic',
  'bad-version',
  /** A heartbeat of another module (its id differs). */
  'wrong-module',
  /** Names that are not identifiers, sequence 0, trailing bytes. */
  'malformed',
  /** Sealed under another module key (the key tags differ): re-apply the key to both nodes. */
  'key-mismatch',
  /** Authentication failed: a byte was changed in transit, or a forgery. */
  'bad-tag',
  /** Authentic, but for another lan than the socket it came in on. */
  'wrong-lan',
  /** Authentic, but not from this node's peer (or from this node itself). */
  'unknown-sender',
  /** Sequence number not above the last one accepted from that sender boot on that lan. */
  'replay',
  /** From a boot of the sender older than the one already heard. */
  'stale-boot',
] as const;
export type RejectReason = (typeof rejectReasons)[number];

export interface FrameHeader {
  moduleId: number;
  /** Sender node name (cluster.xml). */
  from: string;
  /** Lan name (cluster.xml) the frame is sent on. */
  lan: string;
  /** 24 hex digits: 48-bit start time in ms, then 48 random bits (see newBootId). */
  bootId: string;
  /** 1, 2, 3, … per sender boot; at most Number.MAX_SAFE_INTEGER. */
  seq: number;
  /** Sender's wall clock, ms since the epoch (informative: never used to accept or refuse). */
  sentAtMs: number;
}

export interface HeartbeatFrame extends FrameHeader {
  version: number;
  /** First 8 hex digits of keyId(module key). */
  keyTag: string;
  payload: Buffer;
}

export type DecodeResult = { ok: true; frame: HeartbeatFrame } | { ok: false; reason: RejectReason; detail: string };

/**
 * The module key, ready for framing: checks its size once, computes its public tag, and caches the
 * per-(sender, boot) frame keys it derives (a bounded cache; it changes no result).
 */
export class HeartbeatKey {
  /** keyId() of the module key: a public fingerprint (16 hex digits). */
  readonly id: string;
  readonly tag: Buffer;
  readonly #ikm: Buffer;
  readonly #cache = new Map<string, Buffer>();
  static readonly cacheSize = 32;

  constructor(moduleKey: Uint8Array) {
    if (moduleKey.length !== 32) throw new StayupError('MODULE_KEY_INVALID', `a module key is 32 bytes, not ${moduleKey.length}`);
    this.#ikm = Buffer.from(moduleKey);
    this.id = keyId(this.#ikm);
    this.tag = Buffer.from(this.id.slice(0, KEY_TAG_BYTES * 2), 'hex');
  }

  /** The AES-256-GCM key of one sender boot. */
  frameKey(from: string, bootId: string): Buffer {
    const k = `${from}\0${bootId}`;
    let key = this.#cache.get(k);
    if (key) {
      this.#cache.delete(k);
    } else {
      key = Buffer.from(hkdfSync('sha256', this.#ikm, HKDF_SALT, `${HKDF_INFO_PREFIX}\0${bootId}\0${from}`, 32));
      if (this.#cache.size >= HeartbeatKey.cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
    }
    this.#cache.set(k, key);
    return key;
  }
}

/**
 * A new boot id: the 48-bit wall clock in ms (so a later boot usually sorts after an earlier one), then
 * 48 random bits (so two boots never share an id, hence never a frame key).
 */
export function newBootId(wallClockMs: number = Date.now()): string {
  const b = Buffer.alloc(BOOT_ID_BYTES);
  b.writeUIntBE(Math.max(0, Math.min(Math.floor(wallClockMs), 2 ** 48 - 1)), 0, 6);
  randomBytes(6).copy(b, 6);
  return b.toString('hex');
}

function nonce(seq: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(seq), 4);
  return iv;
}

/** Builds a sealed frame. Throws BAD_ARGUMENT on invalid fields (a caller's bug, never peer input). */
export function encodeFrame(key: HeartbeatKey, h: FrameHeader, payload: Uint8Array): Buffer {
  const bad = (what: string): never => {
    throw new StayupError('BAD_ARGUMENT', `heartbeat frame: ${what}`);
  };
  if (!Number.isInteger(h.moduleId) || h.moduleId < MIN_MODULE_ID || h.moduleId > MAX_MODULE_ID) bad(`module id ${h.moduleId} out of range`);
  if (!NAME_RE.test(h.from)) bad(`sender ${JSON.stringify(h.from)} is not a node name`);
  if (!NAME_RE.test(h.lan)) bad(`lan ${JSON.stringify(h.lan)} is not a lan name`);
  if (!/^[0-9a-f]{24}$/.test(h.bootId)) bad('boot id is not 24 hex digits');
  if (!Number.isSafeInteger(h.seq) || h.seq < 1) bad(`sequence number ${h.seq} out of range`);
  if (!Number.isSafeInteger(h.sentAtMs) || h.sentAtMs < 0) bad(`timestamp ${h.sentAtMs} out of range`);
  if (payload.length > MAX_PAYLOAD_BYTES) bad(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);

  const headerLen = FRAME_FIXED_BYTES + h.from.length + h.lan.length;
  const out = Buffer.alloc(headerLen + payload.length + FRAME_TAG_BYTES);
  out.writeUInt16BE(FRAME_MAGIC, 0);
  out.writeUInt8(FRAME_VERSION, 2);
  out.writeUInt8(h.moduleId, 3);
  key.tag.copy(out, 4);
  out.write(h.bootId, 8, 'hex');
  out.writeBigUInt64BE(BigInt(h.seq), 20);
  out.writeBigUInt64BE(BigInt(h.sentAtMs), 28);
  out.writeUInt8(h.from.length, 36);
  out.writeUInt8(h.lan.length, 37);
  out.writeUInt16BE(payload.length, 38);
  out.write(h.from, FRAME_FIXED_BYTES, 'latin1');
  out.write(h.lan, FRAME_FIXED_BYTES + h.from.length, 'latin1');

  const cipher = createCipheriv('aes-256-gcm', key.frameKey(h.from, h.bootId), nonce(h.seq));
  cipher.setAAD(out.subarray(0, headerLen));
  const ct = Buffer.concat([cipher.update(payload), cipher.final()]);
  ct.copy(out, headerLen);
  cipher.getAuthTag().copy(out, headerLen + ct.length);
  return out;
}

export interface DecodeExpect {
  /** Refuse frames of another module ('wrong-module'). */
  moduleId?: number;
}

/** Parses, checks and opens a frame. Never throws on any input. */
export function decodeFrame(key: HeartbeatKey, bytes: Uint8Array, expect: DecodeExpect = {}): DecodeResult {
  const no = (reason: RejectReason, detail: string): DecodeResult => ({ ok: false, reason, detail });
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length > MAX_FRAME_BYTES) return no('oversize', `datagram of ${b.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  if (b.length < 3) return no('truncated', `datagram of ${b.length} bytes`);
  if (b.readUInt16BE(0) !== FRAME_MAGIC) return no('bad-magic', 'not a stayup heartbeat');
  const version = b.readUInt8(2);
  if (version !== FRAME_VERSION) return no('bad-version', `version ${version}, expected ${FRAME_VERSION}`);
  if (b.length < FRAME_FIXED_BYTES + FRAME_TAG_BYTES) return no('truncated', `datagram of ${b.length} bytes is shorter than a header`);
  const moduleId = b.readUInt8(3);
  if (expect.moduleId !== undefined && moduleId !== expect.moduleId) return no('wrong-module', `module id ${moduleId}, expected ${expect.moduleId}`);
  const fromLen = b.readUInt8(36);
  const lanLen = b.readUInt8(37);
  const payloadLen = b.readUInt16BE(38);
  if (payloadLen > MAX_PAYLOAD_BYTES) return no('oversize', `payload of ${payloadLen} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  const headerLen = FRAME_FIXED_BYTES + fromLen + lanLen;
  const total = headerLen + payloadLen + FRAME_TAG_BYTES;
  if (b.length < total) return no('truncated', `datagram of ${b.length} bytes, header says ${total}`);
  if (b.length > total) return no('malformed', `${b.length - total} bytes after the frame`);
  const from = b.toString('latin1', FRAME_FIXED_BYTES, FRAME_FIXED_BYTES + fromLen);
  const lan = b.toString('latin1', FRAME_FIXED_BYTES + fromLen, headerLen);
  if (!NAME_RE.test(from)) return no('malformed', 'sender is not a node name');
  if (!NAME_RE.test(lan)) return no('malformed', 'lan is not a lan name');
  const seqBig = b.readBigUInt64BE(20);
  const sentBig = b.readBigUInt64BE(28);
  if (seqBig < 1n || seqBig > BigInt(Number.MAX_SAFE_INTEGER)) return no('malformed', `sequence number ${seqBig} out of range`);
  if (sentBig > BigInt(Number.MAX_SAFE_INTEGER)) return no('malformed', 'timestamp out of range');
  const keyTag = b.toString('hex', 4, 8);
  if (!key.tag.equals(b.subarray(4, 8))) {
    return no('key-mismatch', `sealed with module key ${keyTag}…, this node has ${key.id.slice(0, 8)}…: apply the same module key to both nodes`);
  }
  const bootId = b.toString('hex', 8, 20);
  const seq = Number(seqBig);
  let payload: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.frameKey(from, bootId), nonce(seq));
    decipher.setAAD(b.subarray(0, headerLen));
    decipher.setAuthTag(b.subarray(total - FRAME_TAG_BYTES, total));
    payload = Buffer.concat([decipher.update(b.subarray(headerLen, headerLen + payloadLen)), decipher.final()]);
  } catch {
    return no('bad-tag', `frame from "${from}" on lan "${lan}" does not authenticate`);
  }
  return {
    ok: true,
    frame: { version, moduleId, keyTag, from, lan, bootId, seq, sentAtMs: Number(sentBig), payload },
  };
}
