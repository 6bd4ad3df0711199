// rfsverify / rfsdiff: a dry run of the full reintegration's comparison that reports instead of sending.
//
// The full reintegration (source.ts, scope "full") lists every replicated directory on the secondary
// (listReq, answered by ReplicationTarget), compares the entries with its own, and compares every file by
// 1 MiB block checksums, window by window (rangeSumReq): a missing or different block is sent, an entry the primary lacks is
// removed, and every object's attributes are set. This module walks the same way with the same requests,
// answered by the same ReplicationTarget code, and reports per path what the reintegration would change
// and how many bytes it would send. The attributes come from one more request, statReq, which only the
// verify link answers (answerVerifyLink): a reintegration sets them without asking.
//
// The two sides are ReplicaSide objects: the local data (LocalReplica, read underneath the mount) or the
// peer's (RemoteReplica, over the verify link). `source` is the node whose data a resync copies (the
// primary), `copy` the other; rfsverify runs on the secondary (copy local), rfsdiff on the primary
// (source local).
//
// What is compared: entries of every directory (after <notreplicated>, as the reintegration filters them),
// types; for files size, content blocks, mode, owner and modification time; for directories mode and owner
// (not their mtime: creating an entry sets it on each node at its own time); the extended attributes of
// every object (with a peer that speaks protocol v4: xattrsReq); symlink targets and owners; the mode and
// owner of other objects. Files written during the comparison may show as different.

import { closeSync, constants as C, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { StayupError } from '../errors/stayup-error.ts';
import { protocolError } from './handshake.ts';
import type { FrameLink } from './link.ts';
import { ENTRY_TYPES, packXattrs, unpackEntries, unpackXattrs, type EntryType, type Frame, type FrameOf } from './protocol.ts';
import { replPath, replPathProblem, splitReplPath, type ReplicationFilter } from './paths.ts';
import { errCode, type PeerFs } from './peer-fs.ts';
import { ReplicationTarget, SUM_BYTES, type TargetRoot } from './target.ts';
import { blockSumAt } from './frame-applier.ts';
import { DataMap, type DataRangesFs } from './sparse.ts';

/** The reintegration's block (checksums and resync writes): the comparison uses the same. */
export const COMPARE_BLOCK_BYTES = 1024 * 1024;
/**
 * A file's checksums are asked window by window (rangeSumReq, as the reintegration does): each answer stays
 * small and each request short (the peer hashes 256 MiB, well within reitimeout), whatever the file's size.
 */
export const COMPARE_WINDOW_BYTES = 256 * COMPARE_BLOCK_BYTES;
/** Requests of one comparison in flight at once (the reintegration's nbrei plays this part). */
export const COMPARE_PARALLEL = 16;
/** Differences listed in one report; beyond, they are counted only. */
export const COMPARE_LISTED_MAX = 10_000;

export interface ObjectAttrs {
  type: EntryType;
  /** Permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  /** A symlink's target, '' for anything else. */
  target: string;
}

/** One node's replicated data, as the comparison reads it. Paths are replication paths (paths.ts). */
export interface ReplicaSide {
  readonly node: string;
  /** A directory's entries, or null when `p` is not a directory (any more). */
  list(p: string): Promise<Map<string, EntryType> | null>;
  stat(p: string): Promise<ObjectAttrs | null>;
  /** A regular file's size and block checksums, or null when `p` is not a regular file (any more). */
  sums(p: string): Promise<{ size: number; sums: Buffer } | null>;
  /**
   * An object's extended attributes by name, or null when it is gone. Absent when this side cannot say (a
   * peer before protocol v4): extended attributes are then not compared.
   */
  xattrs?(p: string): Promise<Map<string, Buffer> | null>;
}

export interface ReplicaDifference {
  /** The absolute path (the configured replicated directory and the object's path in it). */
  path: string;
  reasons: string[];
  /** What a reintegration would send for it (data bytes; attributes are not counted). */
  bytes: number;
}

export interface ComparisonResult {
  /** The node whose data a reintegration copies, and the other. */
  source: string;
  copy: string;
  /** Sorted by path; at most COMPARE_LISTED_MAX. */
  differences: ReplicaDifference[];
  /** Every differing path, listed or not. */
  differing: number;
  truncated: boolean;
  /** Objects of the source compared (or found missing on the copy). */
  compared: { files: number; directories: number; other: number };
  /** Data bytes a reintegration would send. */
  bytesToSend: number;
}

export type CompareMode = 'verify' | 'diff';

/** What rfsverify / rfsdiff answer: the comparison, and how long a reintegration of the difference takes. */
export interface ReplicaComparison extends ComparisonResult {
  module: string;
  mode: CompareMode;
  /** The rate a reintegration is expected to run at, and where that figure comes from; null: unknown. */
  rate: { bytesPerS: number; from: 'last reintegration' | 'reiallowedbw' } | null;
  /** bytesToSend at that rate. */
  estimatedMs: number | null;
  /** How long the comparison took. */
  durationMs: number;
}

export interface CompareDir {
  /** The configured replicated directory (for the paths of the report). */
  dir: string;
  filter: ReplicationFilter;
}

// ------------------------------------------------------------------------------------------ comparison

/** Compares the copy with the source: what a full reintegration would change, path by path. */
export async function compareReplicas(o: {
  source: ReplicaSide;
  copy: ReplicaSide;
  dirs: readonly CompareDir[];
  parallel?: number;
  listedMax?: number;
}): Promise<ComparisonResult> {
  const { source, copy } = o;
  const listedMax = o.listedMax ?? COMPARE_LISTED_MAX;
  const found: ReplicaDifference[] = [];
  const compared = { files: 0, directories: 0, other: 0 };
  let differing = 0;
  let bytesToSend = 0;
  const pool = new TaskPool(o.parallel ?? COMPARE_PARALLEL);

  const absolute = (p: string): string => {
    const { dirIndex, rel } = splitReplPath(p);
    const dir = o.dirs[dirIndex]!.dir;
    return rel === '' ? dir : `${dir.replace(/\/$/, '')}/${rel}`;
  };
  const report = (p: string, reasons: string[], bytes: number): void => {
    differing++;
    bytesToSend += bytes;
    if (found.length < listedMax) found.push({ path: absolute(p), reasons, bytes });
  };
  const count = (type: EntryType): void => {
    if (type === 'file') compared.files++;
    else if (type === 'dir') compared.directories++;
    else compared.other++;
  };
  const on = (node: string): string => `on ${node}`;
  const both = (what: string, a: string, b: string): string => `${what}: ${a} ${on(source.node)}, ${b} ${on(copy.node)}`;

  /** Everything under a source object the copy lacks: objects and data bytes a reintegration sends. */
  const subtree = async (p: string, type: EntryType): Promise<{ files: number; bytes: number }> => {
    count(type);
    if (type === 'file') {
      const a = await source.stat(p);
      return { files: 1, bytes: a?.type === 'file' ? a.size : 0 };
    }
    if (type !== 'dir') return { files: 0, bytes: 0 };
    const entries = await source.list(p);
    let files = 0;
    let bytes = 0;
    for (const [name, t] of entries ?? []) {
      const child = `${p}/${name}`;
      if (!replicated(child)) continue;
      const s = await subtree(child, t);
      files += s.files;
      bytes += s.bytes;
    }
    return { files, bytes };
  };
  const replicated = (p: string): boolean => {
    const { dirIndex, rel } = splitReplPath(p);
    return o.dirs[dirIndex]!.filter.replicates(rel);
  };

  const missing = async (p: string, type: EntryType, reason: string): Promise<void> => {
    const s = await subtree(p, type);
    report(p, [type === 'dir' ? `${reason} (${s.files} files, ${s.bytes} bytes under it)` : reason], s.bytes);
  };

  const compareAttrs = (a: ObjectAttrs, b: ObjectAttrs, reasons: string[], withMtime: boolean): void => {
    if (a.type !== 'symlink' && a.mode !== b.mode) reasons.push(both('mode', octal(a.mode), octal(b.mode)));
    if (a.uid !== b.uid || a.gid !== b.gid) reasons.push(both('owner', `${a.uid}:${a.gid}`, `${b.uid}:${b.gid}`));
    if (withMtime && a.mtimeNs !== b.mtimeNs) reasons.push(both('mtime', isoNs(a.mtimeNs), isoNs(b.mtimeNs)));
  };

  /** An object both sides list with the same type. */
  const compareObject = async (p: string, type: EntryType): Promise<void> => {
    // A file's checksums are asked with its attributes: one round trip to the peer per file, not two (a
    // million files). They are not used when the attributes say it is no longer a file on both sides.
    const sumsOf = (side: ReplicaSide): Promise<{ size: number; sums: Buffer } | null> | null => (type === 'file' ? side.sums(p) : null);
    // Extended attributes as a reintegration brings them over: of every object (a symlink or a device node
    // holds only trusted.* and security.* ones: the kernel keeps user.* for files and directories).
    const withXattrs = source.xattrs !== undefined && copy.xattrs !== undefined;
    const xattrsOf = (side: ReplicaSide): Promise<Map<string, Buffer> | null> | null => (withXattrs ? side.xattrs!(p) : null);
    const [a, b, sa, sb, xa, xb] = await Promise.all([source.stat(p), copy.stat(p), sumsOf(source), sumsOf(copy), xattrsOf(source), xattrsOf(copy)]);
    if (!a) {
      // Gone from the source meanwhile: a reintegration would remove it from the copy.
      if (b) report(p, [`removed ${on(source.node)} during the comparison, still ${on(copy.node)}`], 0);
      return;
    }
    if (!b) return missing(p, a.type, `missing ${on(copy.node)}`);
    if (a.type !== b.type) {
      await missing(p, a.type, both('type', typeName(a.type), typeName(b.type)));
      return;
    }
    const reasons: string[] = [];
    let bytes = 0;
    if (type === 'file') {
      count('file');
      if (a.size !== b.size) reasons.push(both('size', String(a.size), String(b.size)));
      if (sa && sb) {
        const blocks = Math.ceil(sa.size / COMPARE_BLOCK_BYTES);
        const theirs = sb.sums.length / SUM_BYTES;
        let differ = 0;
        for (let i = 0; i < blocks; i++) {
          const same = i < theirs && sa.sums.subarray(i * SUM_BYTES, (i + 1) * SUM_BYTES).equals(sb.sums.subarray(i * SUM_BYTES, (i + 1) * SUM_BYTES));
          if (same) continue;
          differ++;
          bytes += Math.min(COMPARE_BLOCK_BYTES, sa.size - i * COMPARE_BLOCK_BYTES);
        }
        if (differ > 0) reasons.push(`content: ${differ} of ${blocks} blocks differ`);
      } else reasons.push(`changed during the comparison (${!sa ? source.node : copy.node} no longer has a regular file)`);
      compareAttrs(a, b, reasons, true);
    } else if (type === 'dir') {
      count('dir');
      compareAttrs(a, b, reasons, false);
      pool.run(() => compareDir(p));
    } else {
      count(type);
      if (type === 'symlink' && a.target !== b.target) reasons.push(both('symlink target', JSON.stringify(a.target), JSON.stringify(b.target)));
      compareAttrs(a, b, reasons, false);
    }
    if (xa && xb) {
      const same = (n: string): boolean => xa.has(n) && xb.has(n) && xa.get(n)!.equals(xb.get(n)!);
      const names = [...new Set([...xa.keys(), ...xb.keys()])].filter((n) => !same(n)).sort();
      if (names.length > 0) reasons.push(`extended attributes: ${names.map((n) => `${n} (${xa.has(n) ? (xb.has(n) ? 'differs' : `missing ${on(copy.node)}`) : `only ${on(copy.node)}`})`).join(', ')}`);
    }
    if (reasons.length > 0) report(p, reasons, bytes);
  };

  const compareDir = async (p: string): Promise<void> => {
    const [ours, theirs] = await Promise.all([source.list(p), copy.list(p)]);
    if (!ours) return; // no longer a directory on the source: its parent's next comparison would see it
    if (!theirs) {
      report(p, [`changed during the comparison (${copy.node} no longer has a directory)`], 0);
      return;
    }
    for (const [name, type] of ours) {
      const child = `${p}/${name}`;
      if (!replicated(child)) continue;
      const other = theirs.get(name);
      if (other === undefined) pool.run(() => missing(child, type, `missing ${on(copy.node)}`));
      else if (other !== type) pool.run(() => missing(child, type, both('type', typeName(type), typeName(other))));
      else pool.run(() => compareObject(child, type));
    }
    for (const [name] of theirs) {
      const child = `${p}/${name}`;
      if (!ours.has(name) && replicated(child)) report(child, [`only ${on(copy.node)}: a reintegration removes it`], 0);
    }
  };

  o.dirs.forEach((_, i) => pool.run(() => compareObject(replPath(i, ''), 'dir')));
  await pool.done();
  found.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return { source: source.node, copy: copy.node, differences: found, differing, truncated: differing > found.length, compared, bytesToSend };
}

/**
 * Runs at most `limit` tasks at once; done() settles when every task (and the tasks they added) ended.
 * The newest task waiting runs first: a directory's entries are compared before the next directory is
 * listed, so what waits stays about one listing per level (a few thousand tasks), where oldest-first
 * listed every directory of a million-file tree before comparing any file and held a task per file.
 */
export class TaskPool {
  private readonly queue: Array<() => Promise<void>> = [];
  private running = 0;
  /** The most tasks that waited at once (tests check the bound). */
  peakQueued = 0;
  private failure: unknown = null;
  private settle: { resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(private readonly limit: number) {}

  run(task: () => Promise<void>): void {
    this.queue.push(task);
    this.peakQueued = Math.max(this.peakQueued, this.queue.length);
    this.pump();
  }

  done(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      this.check();
    });
  }

  private pump(): void {
    while (this.failure === null && this.running < this.limit && this.queue.length > 0) {
      const task = this.queue.pop()!;
      this.running++;
      task().then(
        () => this.ended(),
        (e: unknown) => {
          this.failure ??= e;
          this.ended();
        },
      );
    }
  }

  private ended(): void {
    this.running--;
    this.pump();
    this.check();
  }

  private check(): void {
    if (!this.settle || this.running > 0) return;
    if (this.failure !== null) this.settle.reject(this.failure);
    else if (this.queue.length === 0) this.settle.resolve();
  }
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

function typeName(t: EntryType): string {
  return t === 'dir' ? 'directory' : t === 'other' ? 'special file' : t;
}

/** A time in nanoseconds as ISO 8601 with its nanoseconds (two mtimes may differ below the millisecond). */
export function isoNs(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return new Date(Number(s) * 1000).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`);
}

// ------------------------------------------------------------------------------------------ local side

/** This node's data, read underneath its mounts (never through FUSE: the daemon serves the mount). */
export class LocalReplica implements ReplicaSide {
  /**
   * `underPaths[i]`: the real directory of replicated directory i (`/proc/self/fd/<rootFd>`). With `xattrFs`
   * and the root descriptors, extended attributes are read too (Node has no call for them).
   */
  constructor(
    readonly node: string,
    private readonly underPaths: readonly string[],
    private readonly xattrRoots?: { fs: Pick<PeerFs, 'listxattrAt' | 'getxattrAt'>; rootFds: readonly number[] },
    /** Where files hold data (the native helpers): holes are not read. Without it, files are read whole. */
    private readonly dataFs?: DataRangesFs,
  ) {
    if (!xattrRoots) this.xattrs = undefined;
  }

  xattrs?: (p: string) => Promise<Map<string, Buffer> | null> = async (p) => {
    const { dirIndex, rel } = splitReplPath(p);
    return readXattrs(this.xattrRoots!.fs, this.xattrRoots!.rootFds[dirIndex]!, rel);
  };

  async list(p: string): Promise<Map<string, EntryType> | null> {
    try {
      return new Map(readdirSync(this.under(p), { withFileTypes: true }).map((e) => [e.name, e.isDirectory() ? 'dir' : e.isFile() ? 'file' : e.isSymbolicLink() ? 'symlink' : 'other'] as const));
    } catch (e) {
      if (gone(e)) return null;
      throw e;
    }
  }

  async stat(p: string): Promise<ObjectAttrs | null> {
    let st: BigIntStats;
    try {
      st = lstatSync(this.under(p), { bigint: true });
    } catch (e) {
      if (gone(e)) return null;
      throw e;
    }
    const type: EntryType = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
    let target = '';
    if (type === 'symlink') {
      try {
        target = readlinkSync(this.under(p), 'utf8');
      } catch (e) {
        if (gone(e)) return null;
        throw e;
      }
    }
    return { type, mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), mtimeNs: st.mtimeNs, target };
  }

  async sums(p: string): Promise<{ size: number; sums: Buffer } | null> {
    let fd: number;
    try {
      fd = openSync(this.under(p), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (e) {
      if (gone(e) || errCode(e) === 'ELOOP') return null;
      throw e;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return null;
      const size = st.size;
      const blocks = Math.ceil(size / COMPARE_BLOCK_BYTES);
      const out = Buffer.allocUnsafe(blocks * SUM_BYTES);
      const buf = Buffer.allocUnsafe(Math.min(COMPARE_BLOCK_BYTES, Math.max(size, 1)));
      // Blocks wholly inside holes are not read (sparse.ts); the map is taken per window of the file.
      let map: DataMap | null = null;
      let mapEnd = 0;
      let work = 0;
      for (let b = 0; b < blocks; b++) {
        const at = b * COMPARE_BLOCK_BYTES;
        if (!map || at >= mapEnd) {
          mapEnd = Math.min(size, at + COMPARE_WINDOW_BYTES);
          map = DataMap.of(this.dataFs, fd, at, mapEnd);
        }
        blockSumAt(fd, buf, at, COMPARE_BLOCK_BYTES, size, map).copy(out, b * SUM_BYTES);
        // A big file must not hold the daemon's thread (heartbeats, the mount) for long at a time: a pause
        // every 8 blocks read (or 1024 skipped).
        work += map.isHole(at, Math.min(COMPARE_BLOCK_BYTES, size - at)) ? 1 / 128 : 1;
        if (work >= 8) {
          work = 0;
          await yieldToLoop();
        }
      }
      return { size, sums: out };
    } finally {
      closeSync(fd);
    }
  }

  private under(p: string): string {
    const { dirIndex, rel } = splitReplPath(p);
    const base = this.underPaths[dirIndex]!;
    // `/proc/self/fd/N` itself is a (magic) symlink: the root is reached through it.
    return rel === '' ? `${base}/.` : `${base}/${rel}`;
  }
}

function gone(e: unknown): boolean {
  const c = errCode(e);
  return c === 'ENOENT' || c === 'ENOTDIR';
}

// ------------------------------------------------------------------------------------------ remote side

/** The peer's data, through its verify link (after the welcome). Every request waits `requestTimeoutMs` at most. */
export class RemoteReplica implements ReplicaSide {
  private nextId = 1;
  private readonly waiting = new Map<number, { type: Frame['type']; resolve: (f: Frame) => void; timer: NodeJS.Timeout }>();
  private failure: StayupError | null = null;

  constructor(
    readonly node: string,
    private readonly link: FrameLink,
    private readonly requestTimeoutMs: number,
    /** A multiple of COMPARE_BLOCK_BYTES. */
    private readonly windowBytes = COMPARE_WINDOW_BYTES,
    /** The link speaks protocol v4: the peer answers xattrsReq. */
    answersXattrs = false,
  ) {
    if (!answersXattrs) this.xattrs = undefined;
    link.onFrame((f) => this.onFrame(f));
    link.onClose((e) => this.fail(new StayupError('REPLICATION_PEER_UNREACHABLE', `${node} (${link.remote}): the verify link closed during the comparison${e ? `: ${e.message}` : ''}`)));
  }

  async list(p: string): Promise<Map<string, EntryType> | null> {
    const f = (await this.request((id) => ({ type: 'listReq', id, path: p }), 'list')) as FrameOf<'list'>;
    if (!f.exists) return null;
    try {
      return new Map(unpackEntries(f.entries).map((e) => [e.name, e.type] as const));
    } catch (e) {
      throw this.fail(protocolError(this.node, `sent a malformed listing of ${p}: ${(e as Error).message}`));
    }
  }

  async stat(p: string): Promise<ObjectAttrs | null> {
    const f = (await this.request((id) => ({ type: 'statReq', id, path: p }), 'stat')) as FrameOf<'stat'>;
    if (!f.exists) return null;
    const type = ENTRY_TYPES[f.kind];
    if (!type) throw this.fail(protocolError(this.node, `sent object kind ${f.kind} for ${p}`));
    return { type, mode: f.mode & 0o7777, uid: f.uid, gid: f.gid, size: Number(f.size), mtimeNs: f.mtimeNs, target: f.target };
  }

  async sums(p: string): Promise<{ size: number; sums: Buffer } | null> {
    const parts: Buffer[] = [];
    let size = 0;
    for (let offset = 0; offset === 0 || offset < size; offset += this.windowBytes) {
      const f = (await this.request(
        (id) => ({ type: 'rangeSumReq', id, path: p, blockSize: COMPARE_BLOCK_BYTES, offset: BigInt(offset), length: BigInt(this.windowBytes) }),
        'sum',
      )) as FrameOf<'sum'>;
      if (!f.exists || f.kind !== 0) return null;
      // The size of the first answer is the file's; a file that changes meanwhile differs anyway.
      if (offset === 0) size = Number(f.size);
      const inWindow = Math.max(0, Math.min(this.windowBytes, Number(f.size) - offset));
      if (f.sums.length !== Math.ceil(inWindow / COMPARE_BLOCK_BYTES) * SUM_BYTES) {
        throw this.fail(protocolError(this.node, `sent ${f.sums.length} checksum bytes for ${inWindow} bytes of ${p} at ${offset}`));
      }
      parts.push(f.sums);
    }
    const sums = Buffer.concat(parts).subarray(0, Math.ceil(size / COMPARE_BLOCK_BYTES) * SUM_BYTES);
    return { size, sums };
  }

  xattrs?: (p: string) => Promise<Map<string, Buffer> | null> = async (p) => {
    const f = (await this.request((id) => ({ type: 'xattrsReq', id, path: p }), 'xattrList')) as FrameOf<'xattrList'>;
    if (!f.exists) return null;
    try {
      return new Map(unpackXattrs(f.entries).map((x) => [x.name, x.value] as const));
    } catch (e) {
      throw this.fail(protocolError(this.node, `sent malformed extended attributes of ${p}: ${(e as Error).message}`));
    }
  };

  close(): void {
    this.link.close();
  }

  private request(make: (id: number) => Frame, answer: Frame['type']): Promise<Frame> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new StayupError('REPLICATION_PEER_UNREACHABLE', `${this.node} did not answer a comparison request within ${Math.round(this.requestTimeoutMs / 1000)} s (reitimeout)`));
      }, this.requestTimeoutMs);
      this.waiting.set(id, {
        type: answer,
        resolve: (f) => (f.type === 'fail' ? reject(this.failure) : resolve(f)),
        timer,
      });
      // A failure settles every waiting request through its resolve (with a `fail` frame).
      this.link.send(make(id));
    });
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case 'ack':
      case 'welcome':
        return; // the target acknowledges what it received; the welcome was the handshake's
      case 'list':
      case 'sum':
      case 'stat':
      case 'xattrList': {
        const w = this.waiting.get(f.id);
        if (!w || w.type !== f.type) {
          this.fail(protocolError(this.node, `answered ${f.type} ${f.id} to no such request`));
          return;
        }
        this.waiting.delete(f.id);
        clearTimeout(w.timer);
        w.resolve(f);
        return;
      }
      case 'fail':
        this.fail(new StayupError('REPLICATION_PEER_UNREACHABLE', `${this.node} could not answer: ${f.error}`));
        return;
      default:
        this.fail(protocolError(this.node, `sent ${f.type} on the verify link`));
    }
  }

  /** Ends the comparison: every waiting request fails with `e` (the first failure wins). */
  private fail(e: StayupError): StayupError {
    this.failure ??= e;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.resolve({ type: 'fail', count: 0n, error: this.failure.message });
    }
    this.waiting.clear();
    this.link.close();
    return this.failure;
  }
}

// ------------------------------------------------------------------------------------------ the answering side

/**
 * Answers one verify link with this node's data: listReq and (range)sumReq by a ReplicationTarget (the
 * reintegration's own answers), statReq here. Only those and the hello pass: any other frame (a file
 * operation above all) closes the link unapplied, so a verify link can never change data. When the link
 * ends, the target finishes what it was answering, then `onEnd` runs (the roots may be closed then).
 */
export function answerVerifyLink(
  link: FrameLink,
  o: {
    fs: PeerFs;
    roots: readonly TargetRoot[];
    node: string;
    /** What the welcome tells the comparing node. */
    welcome: Record<string, unknown>;
    log: (level: 'I' | 'E', message: string) => void;
    onEnd?: () => void;
  },
): void {
  const notHere = (): never => {
    throw Object.assign(new Error('not on a verify link'), { code: 'EPROTO' });
  };
  const target = new ReplicationTarget({
    fs: o.fs,
    roots: o.roots,
    async: 'second',
    node: o.node,
    // Only reintegration frames can reach these, and the guard below lets none through.
    events: { synced: notHere, mark: notHere, syncBegan: notHere, diverged: (why) => o.log('E', `verify link from ${link.remote}: ${why}`), log: o.log },
  });
  let greeted = false;
  const guarded: FrameLink = {
    remote: link.remote,
    send: (f) => link.send(f),
    drained: () => link.drained(),
    onClose: (fn) => link.onClose(fn),
    close: () => link.close(),
    onFrame: (fn) =>
      link.onFrame((f) => {
        if (f.type === 'hello' || (greeted && (f.type === 'listReq' || f.type === 'sumReq' || f.type === 'rangeSumReq'))) {
          greeted = true;
          fn(f);
        } else if (greeted && f.type === 'statReq') {
          link.send(statAnswer(o.fs, o.roots, f));
        } else if (greeted && f.type === 'xattrsReq') {
          link.send(xattrsAnswer(o.fs, o.roots, f));
        } else {
          o.log('E', `verify link from ${link.remote}: frame ${f.type} refused (it only answers listings, checksums, attributes and extended attributes)`);
          link.close();
        }
      }),
  };
  target.attach(guarded, o.welcome);
  link.onClose(() => {
    target.closeFds();
    o.onEnd?.();
  });
}

/** An object's extended attributes beneath a root, or null when it is gone; none where the file system has none. */
function readXattrs(fs: Pick<PeerFs, 'listxattrAt' | 'getxattrAt'>, rootFd: number, rel: string): Map<string, Buffer> | null {
  const out = new Map<string, Buffer>();
  let names: string[];
  try {
    names = fs.listxattrAt(rootFd, rel);
  } catch (e) {
    if (gone(e)) return null;
    if (errCode(e) === 'ENOTSUP' || errCode(e) === 'EOPNOTSUPP') return out;
    throw e;
  }
  for (const name of names) {
    try {
      out.set(name, fs.getxattrAt(rootFd, rel, name));
    } catch (e) {
      if (gone(e)) return null;
      if (errCode(e) !== 'ENODATA') throw e; // removed between the two calls
    }
  }
  return out;
}

function xattrsAnswer(fs: PeerFs, roots: readonly TargetRoot[], f: FrameOf<'xattrsReq'>): Frame {
  const problem = replPathProblem(f.path, roots.length);
  if (problem) return { type: 'fail', count: 0n, error: `xattrsReq path "${f.path}": ${problem}` };
  const { dirIndex, rel } = splitReplPath(f.path);
  try {
    const x = readXattrs(fs, roots[dirIndex]!.rootFd, rel);
    if (!x) return { type: 'xattrList', id: f.id, exists: 0, entries: Buffer.alloc(0) };
    return { type: 'xattrList', id: f.id, exists: 1, entries: packXattrs([...x].map(([name, value]) => ({ name, value }))) };
  } catch (e) {
    return { type: 'fail', count: 0n, error: `xattrs ${f.path}: ${errCode(e)} ${(e as Error).message}` };
  }
}

function statAnswer(fs: PeerFs, roots: readonly TargetRoot[], f: FrameOf<'statReq'>): Frame {
  const none: Frame = { type: 'stat', id: f.id, exists: 0, kind: 0, mode: 0, uid: 0, gid: 0, size: 0n, mtimeNs: 0n, target: '' };
  const problem = replPathProblem(f.path, roots.length);
  if (problem) return { type: 'fail', count: 0n, error: `statReq path "${f.path}": ${problem}` };
  const { dirIndex, rel } = splitReplPath(f.path);
  const root = roots[dirIndex]!.rootFd;
  try {
    const st = fs.lstatAt(root, rel);
    const type: EntryType = st.type === 'file' || st.type === 'dir' || st.type === 'symlink' ? st.type : 'other';
    return {
      type: 'stat',
      id: f.id,
      exists: 1,
      kind: ENTRY_TYPES.indexOf(type),
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: BigInt(st.size),
      mtimeNs: st.mtimeNs,
      target: type === 'symlink' ? fs.readlinkAt(root, rel) : '',
    };
  } catch (e) {
    if (gone(e)) return none;
    return { type: 'fail', count: 0n, error: `stat ${f.path}: ${errCode(e)} ${(e as Error).message}` };
  }
}
