// The replication stream's frames: one ordered, length-prefixed binary stream per direction.
//
//   frame = u32 length (of what follows) | u8 type | fields in the order of the type's schema
//   u8/u32 = unsigned, little-endian; i64 = signed 64-bit (bigint); str = u32 length + UTF-8;
//   bytes = u32 length + raw; opt-* = u8 present flag + the value.
//
// The source (primary) sends file operations and resync requests; the target (secondary) answers with
// cumulative acknowledgements and the replies to resync requests. Frames carry no sequence number: both
// ends count the source's frames, and an ACK carries how many frames have been received (async="second")
// or applied (async="none"). Every field is checked on decode; a bad frame is a ProtocolError that names
// the frame type and the field, and the connection is dropped (nothing of that frame is applied).

// Versions: v1 the first stream; v2 adds `applied` (the secondary says what it has applied, not only
// received); v3 adds `stripes` and `join` (the stream spread over several connections: nbremconn); v4
// adds `xattrs` (a reintegration brings extended attributes over). A node speaks a range of versions: a
// rolling upgrade leaves one node older for a while.
//
// Negotiation. The hello keeps the exact layout every earlier version decodes (version, module, node,
// session): decodeFrame refuses bytes after the last field and unknown frame types, so a new field, or a
// frame of its own for the range, would make an older secondary drop the hello as malformed instead of
// saying which version it speaks. So the hello's `version` is the primary's highest version, and its lowest
// is not sent: the secondary answers in its `welcome` with the highest version both speak,
// min(hello's, its own highest), which needs only the primary's highest; when that is below its own lowest
// there is none, and its welcome names its lowest instead (above the hello's version: the primary knows
// then). The primary checks the welcome's version against its own lowest (a secondary too old). The
// secondary also puts its range in the welcome's JSON state (`versions`, ignored by older primaries), so
// the primary's error can name both ranges. From the welcome on both ends speak the chosen version.
/** The highest protocol version this code speaks (the hello's version). */
export const PROTOCOL_VERSION = 4;
/** The lowest protocol version this code still speaks. */
export const PROTOCOL_MIN_VERSION = 1;
/** From this version on, the secondary sends `applied` frames. */
export const APPLIED_SINCE_VERSION = 2;
/** From this version on, the stream may be spread over several connections (`stripes`, `join`). */
export const STRIPES_SINCE_VERSION = 3;
/**
 * From this version on, a reintegration sends each compared object's extended attributes (`xattrs`), and a
 * verify link answers xattrsReq.
 */
export const XATTRS_SINCE_VERSION = 4;
/** At most this many connections carry one stream (<rfs nbremconn> allows 1..64). */
export const MAX_STRIPES = 64;

/**
 * Nodes from before negotiation took a hello of exactly this version and closed the link on any other,
 * without a welcome: a primary that sees that after a higher hello says this version next (rfs-runtime.ts).
 */
export const PRE_NEGOTIATION_VERSION = 2;

/** The protocol versions one node speaks, both ends included. */
export interface VersionRange {
  min: number;
  max: number;
}

export const SUPPORTED_VERSIONS: VersionRange = { min: PROTOCOL_MIN_VERSION, max: PROTOCOL_VERSION };

/**
 * The secondary's side of the negotiation (see above): the version its welcome names for a hello of
 * `helloVersion`, and whether the two ranges meet at all (as far as the secondary can tell: the primary
 * checks its own lowest version).
 */
export function answerVersion(helloVersion: number, own: VersionRange): { version: number; common: boolean } {
  const highest = Math.min(helloVersion, own.max);
  return highest >= own.min ? { version: highest, common: true } : { version: own.min, common: false };
}

/** "v1..v2", or "v2" for a range of one version. */
export function rangeText(r: VersionRange): string {
  return r.min === r.max ? `v${r.min}` : `v${r.min}..v${r.max}`;
}
/** A frame larger than this is refused before buffering it (1 MiB writes + headers, 8 MiB resync blocks). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024 + 4096;

type Kind = 'u8' | 'u32' | 'i64' | 'str' | 'bytes' | 'opt-u32' | 'opt-i64';
type KindValue<K extends Kind> = K extends 'u8' | 'u32'
  ? number
  : K extends 'i64'
    ? bigint
    : K extends 'str'
      ? string
      : K extends 'bytes'
        ? Buffer
        : K extends 'opt-u32'
          ? number | null
          : bigint | null;

const SCHEMAS = {
  // source -> target: the handshake
  hello: [1, { version: 'u32', module: 'str', node: 'str', session: 'str' }],
  /**
   * v3, on the first connection right after the welcome when the stream is spread over several: frame k of
   * the stream travels on connection k mod count (the first connection is number 0). Not a stream frame.
   */
  stripes: [2, { count: 'u32' }],
  /**
   * v3, the first frame of every other connection: it carries the stream of `session` (the id the welcome
   * gave), as connection `index` of `count`. Not a stream frame.
   */
  join: [3, { session: 'str', index: 'u32', count: 'u32' }],
  // source -> target: file operations, applied in order (paths relative to the replicated root)
  create: [10, { path: 'str', flags: 'u32', mode: 'u32', uid: 'u32', gid: 'u32', mtimeNs: 'i64' }],
  write: [11, { path: 'str', offset: 'i64', mtimeNs: 'i64', sync: 'u8', data: 'bytes' }],
  mknod: [12, { path: 'str', mode: 'u32', rdev: 'u32', uid: 'u32', gid: 'u32' }],
  mkdir: [13, { path: 'str', mode: 'u32', uid: 'u32', gid: 'u32' }],
  symlink: [14, { path: 'str', target: 'str', uid: 'u32', gid: 'u32' }],
  link: [15, { path: 'str', newPath: 'str' }],
  unlink: [16, { path: 'str' }],
  rmdir: [17, { path: 'str' }],
  rename: [18, { path: 'str', newPath: 'str', flags: 'u32' }],
  setattr: [19, { path: 'str', mode: 'opt-u32', uid: 'opt-u32', gid: 'opt-u32', size: 'opt-i64', atimeNs: 'opt-i64', mtimeNs: 'opt-i64' }],
  fallocate: [20, { path: 'str', mode: 'u32', offset: 'i64', length: 'i64', mtimeNs: 'i64' }],
  setxattr: [21, { path: 'str', name: 'str', flags: 'u32', value: 'bytes' }],
  removexattr: [22, { path: 'str', name: 'str' }],
  fsync: [23, { path: 'str', datasync: 'u8' }],
  // source -> target: reintegration
  syncBegin: [30, { syncId: 'str', scope: 'str' }],
  listReq: [31, { id: 'u32', path: 'str' }],
  sumReq: [32, { id: 'u32', path: 'str', blockSize: 'u32' }],
  /** Remove a path and everything under it (an entry the source does not have). */
  rmtree: [33, { path: 'str' }],
  /** Make `path` a regular file of `size` bytes with these attributes (created if missing). */
  fileMeta: [34, { path: 'str', mode: 'u32', uid: 'u32', gid: 'u32', size: 'i64', mtimeNs: 'i64' }],
  /** Directory attributes after its entries were reconciled. */
  dirMeta: [35, { path: 'str', mode: 'u32', uid: 'u32', gid: 'u32', mtimeNs: 'i64' }],
  syncEnd: [36, { syncId: 'str', lastSyncMs: 'i64' }],
  /** While in sync: the last sync time moves on (both nodes persist it). */
  syncMark: [37, { lastSyncMs: 'i64' }],
  /** rfsverify/rfsdiff only, on the verify link (never the replication stream): an object's attributes. */
  statReq: [38, { id: 'u32', path: 'str' }],
  /**
   * Checksums of the blocks of [offset, offset+length) (offset a multiple of blockSize), answered by `sum`
   * with one checksum per block that starts before the end of the file: a reintegration compares a file
   * window by window, or only the zones its journal marked.
   */
  rangeSumReq: [39, { id: 'u32', path: 'str', blockSize: 'u32', offset: 'i64', length: 'i64' }],
  /**
   * Reintegration (v4): the object's extended attributes become exactly these (packXattrs): the others are
   * removed. Live changes go as setxattr/removexattr; this brings over what changed while the peer was away.
   */
  xattrs: [40, { path: 'str', entries: 'bytes' }],
  /** rfsverify/rfsdiff only, on the verify link (v4): an object's extended attributes, answered by xattrList. */
  xattrsReq: [41, { id: 'u32', path: 'str' }],
  // target -> source
  welcome: [50, { version: 'u32', node: 'str', state: 'str' }],
  ack: [51, { count: 'i64' }],
  /** The entries of a directory: names and types packed (see packEntries). */
  list: [52, { id: 'u32', exists: 'u8', entries: 'bytes' }],
  /** A file's size and block checksums (16 bytes per block; for a rangeSumReq, those of its range), or exists 0. */
  sum: [53, { id: 'u32', exists: 'u8', kind: 'u8', size: 'i64', sums: 'bytes' }],
  /** The target failed to apply frame number `count`: it is no longer a faithful copy. */
  fail: [54, { count: 'i64', error: 'str' }],
  /**
   * How many frames the target has applied (with async="second" its acks come on receipt, before): the
   * primary keeps the paths of the frames after this, to mark them for the reintegration if the link breaks.
   */
  applied: [56, { count: 'i64' }],
  /** The answer to xattrsReq: the object's extended attributes (packXattrs), or exists 0. */
  xattrList: [57, { id: 'u32', exists: 'u8', entries: 'bytes' }],
  /** The answer to statReq: kind (an ENTRY_TYPES index), attributes, and a symlink's target ('' otherwise). */
  stat: [55, { id: 'u32', exists: 'u8', kind: 'u8', mode: 'u32', uid: 'u32', gid: 'u32', size: 'i64', mtimeNs: 'i64', target: 'str' }],
} as const satisfies Record<string, readonly [number, Record<string, Kind>]>;

export type FrameName = keyof typeof SCHEMAS;
type SchemaOf<N extends FrameName> = (typeof SCHEMAS)[N][1];
type Fields<N extends FrameName> = { -readonly [F in keyof SchemaOf<N>]: SchemaOf<N>[F] extends Kind ? KindValue<SchemaOf<N>[F]> : never };
export type Frame = { [N in FrameName]: { type: N } & Fields<N> }[FrameName];
export type FrameOf<N extends FrameName> = Extract<Frame, { type: N }>;

const BY_CODE = new Map<number, FrameName>(Object.entries(SCHEMAS).map(([n, [code]]) => [code, n as FrameName]));

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Encodes a frame. Byte fields are not copied: the result is a list of buffers to write in order. */
export function encodeFrame(frame: Frame): Buffer[] {
  const [code, schema] = SCHEMAS[frame.type];
  const values = frame as unknown as Record<string, unknown>;
  let headLen = 5;
  const tail: Buffer[] = [];
  const strings: Buffer[] = [];
  for (const [field, kind] of Object.entries(schema) as Array<[string, Kind]>) {
    const v = values[field];
    switch (kind) {
      case 'u8': headLen += 1; break;
      case 'u32': headLen += 4; break;
      case 'i64': headLen += 8; break;
      case 'opt-u32': headLen += v === null || v === undefined ? 1 : 5; break;
      case 'opt-i64': headLen += v === null || v === undefined ? 1 : 9; break;
      case 'str': { const b = Buffer.from(v as string, 'utf8'); strings.push(b); headLen += 4 + b.length; break; }
      case 'bytes': headLen += 4; break;
    }
  }
  const head = Buffer.allocUnsafe(headLen);
  let o = 4;
  head[o++] = code;
  let si = 0;
  let bodyBytes = 0;
  for (const [field, kind] of Object.entries(schema) as Array<[string, Kind]>) {
    const v = values[field];
    switch (kind) {
      case 'u8': head[o++] = v as number; break;
      case 'u32': head.writeUInt32LE(v as number, o); o += 4; break;
      case 'i64': head.writeBigInt64LE(v as bigint, o); o += 8; break;
      case 'opt-u32':
        if (v === null || v === undefined) head[o++] = 0;
        else { head[o++] = 1; head.writeUInt32LE(v as number, o); o += 4; }
        break;
      case 'opt-i64':
        if (v === null || v === undefined) head[o++] = 0;
        else { head[o++] = 1; head.writeBigInt64LE(v as bigint, o); o += 8; }
        break;
      case 'str': { const b = strings[si++]!; head.writeUInt32LE(b.length, o); o += 4; b.copy(head, o); o += b.length; break; }
      case 'bytes': {
        // Byte fields are always last in their schema, so the payload can follow the head unchanged.
        const b = v as Buffer;
        head.writeUInt32LE(b.length, o); o += 4;
        tail.push(b);
        bodyBytes += b.length;
        break;
      }
    }
  }
  head.writeUInt32LE(headLen - 4 + bodyBytes, 0);
  return tail.length ? [head, ...tail] : [head];
}

/** A frame that crossed a thread (structured cloning turns its Buffers into plain Uint8Arrays), as decoded. */
export function reviveBuffers(f: Frame): Frame {
  const o = f as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(o)) if (v instanceof Uint8Array && !Buffer.isBuffer(v)) o[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return f;
}

/** Decodes one frame body (type byte + fields, without the length prefix). */
export function decodeFrame(body: Buffer): Frame {
  if (body.length < 1) throw new ProtocolError('empty frame');
  const name = BY_CODE.get(body[0]!);
  if (!name) throw new ProtocolError(`unknown frame type ${body[0]}`);
  const [, schema] = SCHEMAS[name];
  const out: Record<string, unknown> = { type: name };
  let o = 1;
  const need = (n: number, field: string): void => {
    if (o + n > body.length) throw new ProtocolError(`frame ${name}: field ${field} runs past the end of the frame`);
  };
  for (const [field, kind] of Object.entries(schema) as Array<[string, Kind]>) {
    switch (kind) {
      case 'u8': need(1, field); out[field] = body[o++]; break;
      case 'u32': need(4, field); out[field] = body.readUInt32LE(o); o += 4; break;
      case 'i64': need(8, field); out[field] = body.readBigInt64LE(o); o += 8; break;
      case 'opt-u32':
      case 'opt-i64': {
        need(1, field);
        const present = body[o++];
        if (present === 0) { out[field] = null; break; }
        if (present !== 1) throw new ProtocolError(`frame ${name}: field ${field} has presence byte ${present}`);
        if (kind === 'opt-u32') { need(4, field); out[field] = body.readUInt32LE(o); o += 4; }
        else { need(8, field); out[field] = body.readBigInt64LE(o); o += 8; }
        break;
      }
      case 'str':
      case 'bytes': {
        need(4, field);
        const n = body.readUInt32LE(o); o += 4;
        need(n, field);
        const slice = body.subarray(o, o + n); o += n;
        if (kind === 'bytes') { out[field] = slice; break; }
        const s = slice.toString('utf8');
        if (Buffer.byteLength(s) !== n) throw new ProtocolError(`frame ${name}: field ${field} is not valid UTF-8`);
        out[field] = s;
        break;
      }
    }
  }
  if (o !== body.length) throw new ProtocolError(`frame ${name}: ${body.length - o} unexpected bytes after the last field`);
  return out as Frame;
}

/**
 * Frame bodies FrameReader copied into a buffer of their own (a frame that spans reads of the socket): no
 * other frame's bytes share their memory, so their buffer may be moved to another thread (transferred)
 * instead of copied.
 */
const ownBodies = new WeakSet<ArrayBufferLike>();

/** The memory of `b`, when it belongs to one frame body alone (see ownBodies), else null. */
export function ownedBodyMemory(b: Uint8Array): ArrayBuffer | null {
  const ab = b.buffer;
  return ab instanceof ArrayBuffer && ownBodies.has(ab) ? ab : null;
}

/**
 * Splits a byte stream into frame bodies. Feed it chunks as they arrive; it hands every complete frame body
 * to `onBody` (a view that stays valid: it is copied out of the stream buffer when it spans chunks).
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  push(chunk: Buffer, onBody: (body: Buffer) => void): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 4) return;
      const len = this.peekLength();
      if (len < 1 || len > this.maxFrameBytes) throw new ProtocolError(`frame length ${len} outside 1..${this.maxFrameBytes}`);
      if (this.buffered < 4 + len) return;
      onBody(this.take(4 + len).subarray(4));
    }
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    return Buffer.concat(this.chunks, 4).readUInt32LE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    // Buffer.allocUnsafeSlow: memory of its own, never a slice of Node's shared pool.
    const out = Buffer.allocUnsafeSlow(n);
    ownBodies.add(out.buffer);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}

/** Directory entries for a `list` frame: per entry u8 type (see ENTRY_TYPES) + u32 name length + name. */
export const ENTRY_TYPES = ['file', 'dir', 'symlink', 'other'] as const;
export type EntryType = (typeof ENTRY_TYPES)[number];

export function packEntries(entries: ReadonlyArray<{ name: string; type: EntryType }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const h = Buffer.allocUnsafe(5);
    h[0] = ENTRY_TYPES.indexOf(e.type);
    h.writeUInt32LE(name.length, 1);
    parts.push(h, name);
  }
  return Buffer.concat(parts);
}

export function unpackEntries(b: Buffer): Array<{ name: string; type: EntryType }> {
  const out: Array<{ name: string; type: EntryType }> = [];
  let o = 0;
  while (o < b.length) {
    if (o + 5 > b.length) throw new ProtocolError('list: truncated entry');
    const type = ENTRY_TYPES[b[o]!];
    if (!type) throw new ProtocolError(`list: entry type ${b[o]}`);
    const n = b.readUInt32LE(o + 1);
    o += 5;
    if (o + n > b.length) throw new ProtocolError('list: truncated entry name');
    out.push({ name: b.subarray(o, o + n).toString('utf8'), type });
    o += n;
  }
  return out;
}

/** Extended attributes for an `xattrs` frame: per entry u32 name length, name, u32 value length, value. */
export function packXattrs(entries: ReadonlyArray<{ name: string; value: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const h = Buffer.allocUnsafe(4);
    h.writeUInt32LE(name.length, 0);
    const v = Buffer.allocUnsafe(4);
    v.writeUInt32LE(e.value.length, 0);
    parts.push(h, name, v, e.value);
  }
  return Buffer.concat(parts);
}

export function unpackXattrs(b: Buffer): Array<{ name: string; value: Buffer }> {
  const out: Array<{ name: string; value: Buffer }> = [];
  let o = 0;
  const take = (what: string): Buffer => {
    if (o + 4 > b.length) throw new ProtocolError(`frame xattrs: ${what} length runs past the end`);
    const n = b.readUInt32LE(o);
    o += 4;
    if (o + n > b.length) throw new ProtocolError(`frame xattrs: ${what} runs past the end`);
    const part = b.subarray(o, o + n);
    o += n;
    return part;
  };
  while (o < b.length) {
    const name = take('name').toString('utf8');
    if (name === '' || name.includes('\0')) throw new ProtocolError('frame xattrs: an empty name or one with a NUL');
    out.push({ name, value: Buffer.from(take('value')) });
  }
  return out;
}
