// Test helpers for module packages: a raw zip writer that builds the hostile packages yazl refuses to
// write (zip-slip names, symlink and device modes, lying headers), temp node directories, a validator.
import { mkdtempSync, readdirSync, lstatSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync, crc32 } from 'node:zlib';
import assert from 'node:assert/strict';
import { nodePaths, type NodePaths } from '../../src/util/paths.ts';
import { StayupError } from '../../src/errors/stayup-error.ts';
import type { ErrorCode } from '../../src/errors/codes.ts';

export interface RawEntry {
  /** Entry name, written as is (a Buffer for raw bytes). */
  name: string | Buffer;
  data?: Buffer | string;
  /** 0 = stored, 8 = deflated (default 8 for files with data, 0 otherwise). */
  method?: number;
  /** Full Unix st_mode (type and permission bits), stored in the high 16 bits of the external attributes. */
  mode?: number;
  /** Overrides for lying headers (central directory and local header alike). */
  declaredSize?: number;
  declaredCompressedSize?: number;
  crc?: number;
  flags?: number;
  /** Compressed bytes written as they are (instead of compressing `data`). */
  body?: Buffer;
  /** Overrides the local header offset written in the central directory (overlapping entries). */
  offsetOverride?: number;
}

/** Builds a zip file byte by byte, trusting whatever the caller asks for. */
export function rawZip(entries: RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.isBuffer(e.name) ? e.name : Buffer.from(e.name, 'utf8');
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    const method = e.method ?? (data.length > 0 ? 8 : 0);
    const body = e.body ?? (method === 8 ? deflateRawSync(data) : data);
    const crc = e.crc ?? crc32(data);
    const size = e.declaredSize ?? data.length;
    const csize = e.declaredCompressedSize ?? body.length;
    const flags = (e.flags ?? 0) | 0x800; // UTF-8 names
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(csize, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc >>> 0, 16);
    central.writeUInt32LE(csize, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(0, 30);
    central.writeUInt16LE(0, 32);
    central.writeUInt16LE(0, 34);
    central.writeUInt16LE(0, 36);
    central.writeUInt32LE(((e.mode ?? 0) << 16) >>> 0, 38);
    central.writeUInt32LE(e.offsetOverride ?? offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0, 4);
  eocd.writeUInt16LE(0, 6);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  eocd.writeUInt16LE(0, 20);
  return Buffer.concat([...locals, cd, eocd]);
}

export const USERCONFIG = `<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <user/>
</service>
</safe>
`;

/** A well-formed module package: conf/userconfig.xml plus bin scripts (modes as a Unix zip would have). */
export function goodPackage(extra: RawEntry[] = [], userconfig = USERCONFIG): Buffer {
  return rawZip([
    { name: 'conf/', mode: 0o40755 },
    { name: 'conf/userconfig.xml', data: userconfig, mode: 0o100644 },
    { name: 'bin/', mode: 0o40755 },
    { name: 'bin/start_prim', data: '#!/bin/sh\necho start\n', mode: 0o100755 },
    // No exec bit in the package: bin/ scripts must be made executable anyway.
    { name: 'bin/stop_prim', data: '#!/bin/sh\necho stop\n', mode: 0o100644 },
    ...extra,
  ]);
}

/** A small validator standing in for the userconfig parser: needs a <service mode="…">. */
export function testValidator(text: string, file: string): void {
  if (!/<service\s+mode="(mirror|farm|light)"/.test(text)) {
    throw new StayupError('CONFIG_INVALID', `${file}:1:1: <service mode="mirror|farm|light"> is required`);
  }
}

/** A fresh node state directory; removed after the test. */
export function tempNode(t: { after: (fn: () => void) => void }): { dir: string; paths: NodePaths } {
  const dir = mkdtempSync(join(tmpdir(), 'stayup-pkg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, paths: nodePaths({ STAYUP_VAR: dir }) };
}

/** Every path under `dir` (dot entries included) with its type and mode, for "nothing changed" checks. */
export function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const st = lstatSync(join(d, n));
      out.push(`${rel}${n} ${st.mode.toString(8)} ${st.isFile() ? st.size : ''}`);
      if (st.isDirectory()) walk(join(d, n), `${rel}${n}/`);
    }
  };
  walk(dir, '');
  return out;
}

/** Asserts that `p` rejects (or `fn` throws) a StayupError with exactly this code and message. */
export async function rejectsWith(p: Promise<unknown> | (() => unknown), code: ErrorCode, message: string | RegExp): Promise<StayupError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof StayupError, `expected a StayupError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.equal(caught.code, code, `code of: ${caught.message}`);
  if (typeof message === 'string') assert.equal(caught.message, message);
  else assert.match(caught.message, message);
  return caught;
}
