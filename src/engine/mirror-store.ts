// Where a mirror node keeps its MirrorPersisted record: <modvar>/<module>/mirror.state.
//
// The record is written on a takeover's critical path (it must be durable before the virtual IP moves), so
// it is written in place, not replaced: the file has two fixed 4 KiB slots, each holding one record with a
// sequence number and a SHA-256 over the slot's header and record. A save writes the slot that does not
// hold the newest record (pwrite) and fdatasyncs it. The file's size and blocks never change after it was
// created, so the fdatasync flushes one data block and waits for no journal commit (0.1 ms where
// tmp + fsync + rename + directory fsync took 1 to 4 ms, more when the disk is busy).
//
// Crash safety: a crash during a save can only damage the slot being written, which holds the record
// before the newest; the newest stays whole. The reader takes the valid slot with the highest sequence
// number. A slot whose checksum does not match (a torn write) is skipped: its save never returned, so
// nothing acted on it. A slot whose checksum matches but whose record is malformed, or a file with no
// valid slot, is STATE_CORRUPT (the engine then starts as a node that claims nothing).
//
// The file is created once, whole, atomically (tmp + fsync + rename + directory fsync), with the first
// record in slot 0. Nodes that kept the record in mirror.json (whole-file JSON, the format before) are
// read from it until the first save creates mirror.state; mirror.json is removed after that, and where
// both exist (a crash in between) mirror.state wins.
import { createHash } from 'node:crypto';
import { closeSync, constants as fsc, fdatasyncSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { MirrorPersisted } from '../mirror/types.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { NodePaths } from '../util/paths.ts';

export const MIRROR_RECORD_FILE = 'mirror.state';
/** The whole-file JSON record of earlier versions, read when mirror.state does not exist yet. */
export const LEGACY_MIRROR_RECORD_FILE = 'mirror.json';

/** One slot per page, so writing one slot never rewrites the page of the other. */
export const SLOT_BYTES = 4096;
export const SLOT_COUNT = 2;
const MAGIC = Buffer.from('stayupMR', 'latin1');
const FORMAT_VERSION = 1;
// Slot layout: magic (8) | format version u32 LE (4) | sequence u64 LE (8) | record length u32 LE (4) |
// SHA-256 of the 24 header bytes then the record (32) | record (UTF-8 JSON) | zeros.
const HEADER_BYTES = 24;
const DIGEST_BYTES = 32;
const RECORD_OFFSET = HEADER_BYTES + DIGEST_BYTES;
const MAX_RECORD_BYTES = SLOT_BYTES - RECORD_OFFSET;

export function mirrorRecordPath(paths: NodePaths, module: string): string {
  return join(paths.moduleVarDir(module), MIRROR_RECORD_FILE);
}

export function legacyMirrorRecordPath(paths: NodePaths, module: string): string {
  return join(paths.moduleVarDir(module), LEGACY_MIRROR_RECORD_FILE);
}

export interface MirrorRecordStore {
  /** The record, or null when the node never persisted one (first start). Throws STATE_CORRUPT or IO. */
  load(): MirrorPersisted | null;
  /** Durable when it returns. Throws IO. */
  save(record: MirrorPersisted): void;
}

const BOOL_FIELDS = ['uptodate', 'lastPrim', 'reintegrating', 'reintegrationInterrupted'] as const;

/** Parses a record; throws STATE_CORRUPT naming the file (and slot) and the field. */
export function parseMirrorRecord(text: string, file: string): MirrorPersisted {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new StayupError('STATE_CORRUPT', `${file}: not JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null) throw new StayupError('STATE_CORRUPT', `${file}: not an object`);
  const o = v as Record<string, unknown>;
  for (const k of BOOL_FIELDS) {
    if (typeof o[k] !== 'boolean') throw new StayupError('STATE_CORRUPT', `${file}: field ${k} must be true or false`);
  }
  for (const k of ['gen', 'incarnation'] as const) {
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) throw new StayupError('STATE_CORRUPT', `${file}: field ${k} must be a whole number`);
  }
  if (o.lastSyncMs !== null && typeof o.lastSyncMs !== 'number') {
    throw new StayupError('STATE_CORRUPT', `${file}: field lastSyncMs must be a number or null`);
  }
  return {
    uptodate: o.uptodate as boolean,
    lastPrim: o.lastPrim as boolean,
    reintegrating: o.reintegrating as boolean,
    reintegrationInterrupted: o.reintegrationInterrupted as boolean,
    gen: o.gen as number,
    incarnation: o.incarnation as number,
    lastSyncMs: (o.lastSyncMs as number | null) ?? null,
  };
}

function slotDigest(slot: Buffer, recordBytes: number): Buffer {
  return createHash('sha256')
    .update(slot.subarray(0, HEADER_BYTES))
    .update(slot.subarray(RECORD_OFFSET, RECORD_OFFSET + recordBytes))
    .digest();
}

/** One slot's bytes (SLOT_BYTES, zero-padded) holding `record` under sequence number `seq`. */
export function encodeSlot(seq: number, record: MirrorPersisted): Buffer {
  const json = Buffer.from(JSON.stringify(record), 'utf8');
  if (json.length > MAX_RECORD_BYTES) throw new RangeError(`a mirror record of ${json.length} bytes does not fit a slot`);
  const slot = Buffer.alloc(SLOT_BYTES);
  MAGIC.copy(slot, 0);
  slot.writeUInt32LE(FORMAT_VERSION, 8);
  slot.writeBigUInt64LE(BigInt(seq), 12);
  slot.writeUInt32LE(json.length, 20);
  json.copy(slot, RECORD_OFFSET);
  slotDigest(slot, json.length).copy(slot, HEADER_BYTES);
  return slot;
}

export type DecodedSlot =
  | { kind: 'empty' }
  /** Not a whole slot: a write that was interrupted (or never made). Skipped by the reader. */
  | { kind: 'torn'; why: string }
  /** Whole, but in a format this version does not read (written by a newer stayup): never skipped. */
  | { kind: 'foreign'; version: number }
  | { kind: 'record'; seq: number; text: string };

/** Reads one slot (fewer than SLOT_BYTES bytes: the rest counts as zeros). */
export function decodeSlot(bytes: Buffer): DecodedSlot {
  const slot = Buffer.alloc(SLOT_BYTES);
  bytes.copy(slot, 0, 0, Math.min(bytes.length, SLOT_BYTES));
  if (slot.every((b) => b === 0)) return { kind: 'empty' };
  if (!slot.subarray(0, MAGIC.length).equals(MAGIC)) return { kind: 'torn', why: 'no slot header' };
  const length = slot.readUInt32LE(20);
  if (length > MAX_RECORD_BYTES) return { kind: 'torn', why: `record length ${length} out of range` };
  // A torn write never changes the version (every format-1 slot has the same bytes there).
  const version = slot.readUInt32LE(8);
  if (version !== FORMAT_VERSION) return { kind: 'foreign', version };
  if (!slotDigest(slot, length).equals(slot.subarray(HEADER_BYTES, RECORD_OFFSET))) return { kind: 'torn', why: 'checksum mismatch' };
  const seq = slot.readBigUInt64LE(12);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) return { kind: 'torn', why: 'sequence number out of range' };
  return { kind: 'record', seq: Number(seq), text: slot.subarray(RECORD_OFFSET, RECORD_OFFSET + length).toString('utf8') };
}

/**
 * What the slots of a file hold: the newest whole record (with its slot), why each other slot was skipped,
 * and the first slot in a format this version does not read.
 */
export interface SlotScan {
  newest: { slot: number; seq: number; text: string } | null;
  skipped: string[];
  foreign: { slot: number; version: number } | null;
}

export function scanSlots(file: Buffer): SlotScan {
  const s: SlotScan = { newest: null, skipped: [], foreign: null };
  for (let i = 0; i < SLOT_COUNT; i++) {
    const d = decodeSlot(file.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
    if (d.kind === 'record') {
      if (!s.newest || d.seq > s.newest.seq) s.newest = { slot: i, seq: d.seq, text: d.text };
    } else if (d.kind === 'foreign') s.foreign ??= { slot: i, version: d.version };
    else s.skipped.push(`slot ${i}: ${d.kind === 'empty' ? 'empty' : d.why}`);
  }
  return s;
}

function readUpTo(file: string, bytes: number): Buffer | null {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const buf = Buffer.alloc(bytes);
    let got = 0;
    while (got < bytes) {
      const n = readSync(fd, buf, got, bytes - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

export function fileMirrorRecordStore(paths: NodePaths, module: string): MirrorRecordStore {
  const file = mirrorRecordPath(paths, module);
  const legacy = legacyMirrorRecordPath(paths, module);
  // Where the newest whole record is (null: none, or not looked yet) and its sequence number.
  let newest: { slot: number; seq: number } | null = null;
  let scanned = false;
  const io = (what: string, e: unknown): StayupError =>
    new StayupError('IO', `cannot ${what} ${file}: ${(e as Error).message}`, { cause: e });

  /** The slots as they are on disk, or null when the file does not exist. */
  const scan = (): SlotScan | null => {
    let bytes: Buffer | null;
    try {
      bytes = readUpTo(file, SLOT_COUNT * SLOT_BYTES);
    } catch (e) {
      throw io('read', e);
    }
    const s = bytes ? scanSlots(bytes) : null;
    newest = s?.newest ? { slot: s.newest.slot, seq: s.newest.seq } : null;
    scanned = true;
    return s;
  };

  const create = (record: MirrorPersisted, seq: number): void => {
    const whole = Buffer.alloc(SLOT_COUNT * SLOT_BYTES);
    encodeSlot(seq, record).copy(whole, 0);
    try {
      writeFileAtomic(file, whole, 0o600);
    } catch (e) {
      throw io('write', e);
    }
    newest = { slot: 0, seq };
    // mirror.state is durable (directory fsynced) and wins over mirror.json: removing it is only tidying.
    try {
      rmSync(legacy, { force: true });
    } catch {
      // left behind: never read again
    }
  };

  return {
    load() {
      const s = scan();
      if (s === null) {
        let text: string;
        try {
          text = readFileSync(legacy, 'utf8');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw new StayupError('IO', `cannot read ${legacy}: ${(e as Error).message}`, { cause: e });
        }
        return parseMirrorRecord(text, legacy);
      }
      // A slot of a newer format may hold the newest record: falling back to the other would be stale.
      if (s.foreign) throw new StayupError('STATE_CORRUPT', `${file} slot ${s.foreign.slot}: record format ${s.foreign.version}, this version reads format ${FORMAT_VERSION}`);
      if (!s.newest) throw new StayupError('STATE_CORRUPT', `${file}: no whole record (${s.skipped.join('; ')})`);
      return parseMirrorRecord(s.newest.text, `${file} slot ${s.newest.slot}`);
    },
    save(record) {
      if (!scanned) scan();
      const seq = (newest?.seq ?? 0) + 1;
      const slot = newest ? 1 - newest.slot : 0;
      const bytes = encodeSlot(seq, record);
      let fd: number;
      try {
        fd = openSync(file, fsc.O_RDWR);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw io('open', e);
        create(record, seq);
        return;
      }
      try {
        let off = 0;
        while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off, slot * SLOT_BYTES + off);
        fdatasyncSync(fd);
      } catch (e) {
        throw io('write', e);
      } finally {
        closeSync(fd);
      }
      newest = { slot, seq };
    },
  };
}
