// Applies the primary's stream to the real data underneath the secondary's (read-only) mount, frame by
// frame, in order, under the root descriptors of the replicated directories: the file operations, the
// reintegration's writes and attributes, and the answers to its questions (a directory's entries, block
// checksums). It runs in the apply worker (apply-worker.ts), or inline on the JS thread (target.ts).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants as C, readSync, fstatSync, ftruncateSync, fdatasyncSync } from 'node:fs';
import { errCode, type PeerFs, type StatNs } from './peer-fs.ts';
import { packEntries, unpackXattrs, type EntryType, type Frame } from './protocol.ts';
import { replPathProblem, splitReplPath } from './paths.ts';
import { DataMap, PUNCH_HOLE_MODE } from './sparse.ts';

/** Block checksums: the first 16 bytes of SHA-256 (SHA-NI makes it ~1.4 GiB/s here). */
export const SUM_BYTES = 16;
export function blockSum(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, SUM_BYTES);
}

const zeroSums = new Map<number, Buffer>();

/** The checksum of `length` zero bytes: a block wholly inside a hole (sparse.ts). */
export function zeroSum(length: number): Buffer {
  let sum = zeroSums.get(length);
  if (!sum) {
    sum = blockSum(Buffer.alloc(length));
    zeroSums.set(length, sum);
  }
  return sum;
}

/**
 * The checksum of the block [at, at + length) of a file of `size` bytes (shorter at its end, of nothing past
 * it): read and hashed, or the sum of zeros where `map` says it is a hole.
 */
export function blockSumAt(fd: number, buf: Buffer, at: number, length: number, size: number, map: DataMap): Buffer {
  const n = Math.min(length, size - at);
  if (n > 0 && map.isHole(at, n)) return zeroSum(n);
  return blockSum(buf.subarray(0, n > 0 ? readFully(fd, buf, n, at) : 0));
}

/** Descriptors kept open for writes: most applications write few files at a time. */
const FD_CACHE_MAX = 128;

export interface TargetRoot {
  rootFd: number;
}

/** Where applying a frame sends what it produces. */
export interface ApplyOutput {
  /** An answer to the primary (list, sum). */
  send(f: Frame): void;
  /** syncEnd: everything before it is applied and durable. */
  synced(syncId: string, lastSyncMs: number): void;
  /** syncMark: while in sync, time moves on. */
  mark(lastSyncMs: number): void;
}

/**
 * Makes a replicated directory's whole file system durable (syncfs(2), through coreutils' `sync -f`: the
 * peer helpers have no syncfs). A reintegration writes far more files than the descriptor cache holds (a
 * first one, a million): those it closed on the way were never fsynced.
 */
export function syncFileSystemOf(rootFd: number): void {
  // The daemon's descriptor, by its pid: `/proc/self` would be the child's, which may not inherit it.
  execFileSync('sync', ['-f', `/proc/${process.pid}/fd/${rootFd}`], { stdio: 'ignore' });
}

export class FrameApplier {
  private readonly fds = new Map<string, number>();

  constructor(
    private readonly o: {
      fs: PeerFs;
      roots: readonly TargetRoot[];
      async: 'second' | 'none';
      /** syncEnd's durability (tests observe it); default syncFileSystemOf. */
      syncRoot?: (rootFd: number) => void;
    },
  ) {}

  /** Closes every cached descriptor. */
  closeFds(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  private where(p: string): { root: number; rel: string } {
    const problem = replPathProblem(p, this.o.roots.length);
    if (problem) throw Object.assign(new Error(`path "${p}": ${problem}`), { code: 'EINVAL' });
    const { dirIndex, rel } = splitReplPath(p);
    return { root: this.o.roots[dirIndex]!.rootFd, rel };
  }

  private fdFor(p: string): number {
    let fd = this.fds.get(p);
    if (fd !== undefined) {
      // LRU: most recently used last.
      this.fds.delete(p);
      this.fds.set(p, fd);
      return fd;
    }
    const { root, rel } = this.where(p);
    fd = this.o.fs.openAt(root, rel, C.O_WRONLY | C.O_NOFOLLOW, 0);
    this.remember(p, fd);
    return fd;
  }

  private remember(p: string, fd: number): void {
    const old = this.fds.get(p);
    if (old !== undefined && old !== fd) closeSync(old);
    this.fds.delete(p);
    this.fds.set(p, fd);
    if (this.fds.size > FD_CACHE_MAX) {
      const [oldest, ofd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldest);
      closeSync(ofd);
    }
  }

  /** A path and everything under it changed name or went away: its cached descriptors are stale. */
  private forget(p: string): void {
    for (const [k, fd] of this.fds) {
      if (k === p || k.startsWith(`${p}/`)) {
        closeSync(fd);
        this.fds.delete(k);
      }
    }
  }

  /** Applies one frame of the primary's stream (throws when it cannot). */
  apply(f: Frame, out: ApplyOutput): void {
    const fs = this.o.fs;
    switch (f.type) {
      case 'create': {
        const { root, rel } = this.where(f.path);
        this.forget(f.path);
        const fd = fs.openAt(root, rel, C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW | (f.flags & C.O_TRUNC), f.mode & 0o7777);
        this.remember(f.path, fd);
        // Each attribute change is a journal transaction of its own, and this runs between the primary's
        // fsyncs on a busy disk: only what differs is changed (a new file already has the mode asked for).
        const st = fstatSync(fd);
        const chown = st.uid !== f.uid || st.gid !== f.gid;
        if (chown) fs.fchown(fd, f.uid, f.gid);
        // chown clears set-ID bits
        if (chown || (st.mode & 0o7777) !== (f.mode & 0o7777)) fs.fchmod(fd, f.mode & 0o7777);
        fs.futimens(fd, null, f.mtimeNs);
        return;
      }
      case 'write': {
        const fd = this.fdFor(f.path);
        fs.pwrite(fd, f.data, Number(f.offset));
        fs.futimens(fd, null, f.mtimeNs);
        if (f.sync && this.o.async === 'none') fdatasyncSync(fd);
        return;
      }
      case 'mknod': {
        const { root, rel } = this.where(f.path);
        fs.mknodAt(root, rel, f.mode, f.rdev);
        fs.chownAt(root, rel, f.uid, f.gid);
        fs.chmodAt(root, rel, f.mode & 0o7777);
        return;
      }
      case 'mkdir': {
        const { root, rel } = this.where(f.path);
        try {
          fs.mkdirAt(root, rel, f.mode & 0o7777);
        } catch (e) {
          if (errCode(e) !== 'EEXIST' || fs.lstatAt(root, rel).type !== 'dir') throw e;
        }
        fs.chownAt(root, rel, f.uid, f.gid);
        fs.chmodAt(root, rel, f.mode & 0o7777);
        return;
      }
      case 'symlink': {
        const { root, rel } = this.where(f.path);
        fs.symlinkAt(f.target, root, rel);
        fs.chownAt(root, rel, f.uid, f.gid);
        return;
      }
      case 'link': {
        const a = this.where(f.path);
        const b = this.where(f.newPath);
        if (a.root !== b.root) throw Object.assign(new Error('link across replicated directories'), { code: 'EXDEV' });
        fs.linkAt(a.root, a.rel, b.rel);
        return;
      }
      case 'unlink':
      case 'rmdir': {
        const { root, rel } = this.where(f.path);
        this.forget(f.path);
        try {
          fs.unlinkAt(root, rel, f.type === 'rmdir');
        } catch (e) {
          if (errCode(e) !== 'ENOENT') throw e;
        }
        return;
      }
      case 'rename': {
        const a = this.where(f.path);
        const b = this.where(f.newPath);
        if (a.root !== b.root) throw Object.assign(new Error('rename across replicated directories'), { code: 'EXDEV' });
        this.forget(f.path);
        this.forget(f.newPath);
        fs.renameAt(a.root, a.rel, b.rel, f.flags);
        return;
      }
      case 'setattr': {
        const { root, rel } = this.where(f.path);
        if (f.size !== null) {
          const fd = this.fds.get(f.path);
          if (fd !== undefined) ftruncateSync(fd, Number(f.size));
          else fs.truncateAt(root, rel, Number(f.size));
        }
        if (f.uid !== null || f.gid !== null) fs.chownAt(root, rel, f.uid ?? -1, f.gid ?? -1);
        if (f.mode !== null) fs.chmodAt(root, rel, f.mode & 0o7777);
        if (f.atimeNs !== null || f.mtimeNs !== null) fs.utimensAt(root, rel, f.atimeNs, f.mtimeNs);
        return;
      }
      case 'fallocate': {
        const fd = this.fdFor(f.path);
        try {
          fs.fallocate(fd, f.mode, Number(f.offset), Number(f.length));
        } catch (e) {
          // A reintegration punches the holes of a sparse file; a file system that cannot gets zeros.
          if (f.mode !== PUNCH_HOLE_MODE || (errCode(e) !== 'EOPNOTSUPP' && errCode(e) !== 'ENOTSUP')) throw e;
          writeZeros(fs, fd, Number(f.offset), Number(f.length));
        }
        fs.futimens(fd, null, f.mtimeNs);
        return;
      }
      case 'setxattr': {
        const { root, rel } = this.where(f.path);
        fs.setxattrAt(root, rel, f.name, f.value, f.flags);
        return;
      }
      case 'removexattr': {
        const { root, rel } = this.where(f.path);
        fs.removexattrAt(root, rel, f.name);
        return;
      }
      case 'fsync': {
        if (this.o.async !== 'none') return;
        const { root, rel } = this.where(f.path);
        if (fs.lstatAt(root, rel).type === 'dir') {
          const fd = fs.openAt(root, rel, C.O_RDONLY | C.O_DIRECTORY, 0);
          try {
            fs.fsync(fd, !!f.datasync);
          } finally {
            closeSync(fd);
          }
        } else fs.fsync(this.fdFor(f.path), !!f.datasync);
        return;
      }
      case 'syncBegin':
        // The receiving side recorded it before handing this frame over (persist before acting).
        return;
      case 'listReq': {
        const { root, rel } = this.where(f.path);
        let entries: Array<{ name: string; type: EntryType }>;
        try {
          if (fs.lstatAt(root, rel).type !== 'dir') throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
          entries = fs.readdirAt(root, rel).map((e) => ({ name: e.name, type: entryType(e.type) }));
        } catch (e) {
          if (errCode(e) !== 'ENOENT' && errCode(e) !== 'ENOTDIR') throw e;
          out.send({ type: 'list', id: f.id, exists: 0, entries: Buffer.alloc(0) });
          return;
        }
        out.send({ type: 'list', id: f.id, exists: 1, entries: packEntries(entries) });
        return;
      }
      case 'sumReq': {
        out.send(this.sums(f.id, f.path, f.blockSize, 0, Infinity));
        return;
      }
      case 'rangeSumReq': {
        if (f.offset < 0n || f.length < 0n || (f.blockSize > 0 && f.offset % BigInt(f.blockSize) !== 0n)) {
          throw Object.assign(new Error(`rangeSumReq ${f.path}: range ${f.offset}+${f.length} is not block-aligned (${f.blockSize})`), { code: 'EINVAL' });
        }
        out.send(this.sums(f.id, f.path, f.blockSize, Number(f.offset), Number(f.length)));
        return;
      }
      case 'rmtree': {
        this.forget(f.path);
        const { root, rel } = this.where(f.path);
        this.rmtree(root, rel);
        return;
      }
      case 'fileMeta': {
        const { root, rel } = this.where(f.path);
        this.holdsType(f.path, root, rel, 'file');
        const fd = this.fds.get(f.path) ?? fs.openAt(root, rel, C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW, f.mode & 0o7777);
        this.remember(f.path, fd);
        ftruncateSync(fd, Number(f.size));
        fs.fchown(fd, f.uid, f.gid);
        fs.fchmod(fd, f.mode & 0o7777);
        fs.futimens(fd, null, f.mtimeNs);
        return;
      }
      case 'dirMeta': {
        const { root, rel } = this.where(f.path);
        if (!this.holdsType(f.path, root, rel, 'dir')) fs.mkdirAt(root, rel, f.mode & 0o7777);
        fs.chownAt(root, rel, f.uid, f.gid);
        fs.chmodAt(root, rel, f.mode & 0o7777);
        fs.utimensAt(root, rel, null, f.mtimeNs);
        return;
      }
      case 'xattrs': {
        // The set the primary holds: names it lacks go, the others get its values (unchanged ones are left:
        // a write would change the ctime for nothing). A file system without extended attributes on this
        // side is fine when the set is empty.
        const { root, rel } = this.where(f.path);
        const wanted = unpackXattrs(f.entries);
        let have: string[];
        try {
          have = fs.listxattrAt(root, rel);
        } catch (e) {
          if (wanted.length === 0 && (errCode(e) === 'ENOTSUP' || errCode(e) === 'EOPNOTSUPP')) return;
          throw e;
        }
        const names = new Set(wanted.map((x) => x.name));
        for (const name of have) if (!names.has(name)) fs.removexattrAt(root, rel, name);
        for (const x of wanted) {
          let current: Buffer | null = null;
          if (have.includes(x.name)) {
            try {
              current = fs.getxattrAt(root, rel, x.name);
            } catch (e) {
              if (errCode(e) !== 'ENODATA') throw e;
            }
          }
          if (!current || !current.equals(x.value)) fs.setxattrAt(root, rel, x.name, x.value, 0);
        }
        return;
      }
      case 'syncEnd': {
        // Everything before this frame is applied; make it durable before claiming to be a faithful copy:
        // every file written since the last sync point, not only those whose descriptors are still cached.
        for (const fd of this.fds.values()) fs.fsync(fd, true);
        for (const r of this.o.roots) (this.o.syncRoot ?? syncFileSystemOf)(r.rootFd);
        out.synced(f.syncId, Number(f.lastSyncMs));
        return;
      }
      case 'syncMark':
        out.mark(Number(f.lastSyncMs));
        return;
      default:
        throw Object.assign(new Error(`unexpected frame ${f.type} from the primary`), { code: 'EPROTO' });
    }
  }

  /** Checksums of the blocks of [offset, offset+length) that start before the end of the file. */
  private sums(id: number, p: string, blockSize: number, offset: number, length: number): Frame {
    const fs = this.o.fs;
    const { root, rel } = this.where(p);
    let st;
    try {
      st = fs.lstatAt(root, rel);
    } catch (e) {
      if (errCode(e) !== 'ENOENT' && errCode(e) !== 'ENOTDIR') throw e;
      return { type: 'sum', id, exists: 0, kind: 0, size: 0n, sums: Buffer.alloc(0) };
    }
    const typeCode = ['file', 'dir', 'symlink', 'other'].indexOf(st.type);
    if (st.type !== 'file' || blockSize <= 0) return sumFrame(id, 1, typeCode, st.size, Buffer.alloc(0));
    const end = Math.min(st.size, offset + length);
    const blocks = end > offset ? Math.ceil((end - offset) / blockSize) : 0;
    const out = Buffer.allocUnsafe(blocks * SUM_BYTES);
    if (blocks === 0) return sumFrame(id, 1, typeCode, st.size, out);
    const fd = fs.openAt(root, rel, C.O_RDONLY | C.O_NOFOLLOW, 0);
    try {
      const buf = Buffer.allocUnsafe(Math.min(blockSize, end - offset));
      // Blocks wholly inside holes are not read (sparse.ts): a sparse file of several TB answers fast.
      const map = DataMap.of(fs, fd, offset, end);
      for (let b = 0; b < blocks; b++) {
        const at = offset + b * blockSize;
        blockSumAt(fd, buf, at, Math.min(blockSize, end - at), end, map).copy(out, b * SUM_BYTES);
      }
      return sumFrame(id, 1, typeCode, st.size, out);
    } finally {
      closeSync(fd);
    }
  }

  /** Is an object of `type` at rel? Anything else there (a directory where a file goes...) is removed. */
  private holdsType(path: string, root: number, rel: string, type: 'file' | 'dir'): boolean {
    const st = this.lstatOrAbsent(root, rel);
    if (st && st.type !== type) {
      this.forget(path);
      this.rmtree(root, rel);
      return false;
    }
    return st !== undefined;
  }

  /** The object's attributes, or undefined when it does not exist. */
  private lstatOrAbsent(root: number, rel: string): StatNs | undefined {
    try {
      return this.o.fs.lstatAt(root, rel);
    } catch (e) {
      if (errCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  private rmtree(root: number, rel: string): void {
    const fs = this.o.fs;
    const st = this.lstatOrAbsent(root, rel);
    if (!st) return;
    if (st.type === 'dir') {
      for (const e of fs.readdirAt(root, rel)) this.rmtree(root, rel === '' ? e.name : `${rel}/${e.name}`);
      if (rel !== '') fs.unlinkAt(root, rel, true);
    } else fs.unlinkAt(root, rel, false);
  }
}


function sumFrame(id: number, exists: number, kind: number, size: number, sums: Buffer): Frame {
  return { type: 'sum', id, exists, kind, size: BigInt(size), sums };
}

function entryType(t: string): EntryType {
  return t === 'file' || t === 'dir' || t === 'symlink' ? t : 'other';
}

/** Zeros over [offset, offset + length) of a file, within its size (a hole punched by hand). */
function writeZeros(fs: PeerFs, fd: number, offset: number, length: number): void {
  const end = Math.min(offset + length, fstatSync(fd).size);
  const zeros = Buffer.alloc(Math.min(1024 * 1024, Math.max(0, end - offset)));
  for (let at = offset; at < end; at += zeros.length) fs.pwrite(fd, zeros.subarray(0, Math.min(zeros.length, end - at)), at);
}

export function readFully(fd: number, buf: Buffer, length: number, position: number): number {
  let n = 0;
  while (n < length) {
    const k = readSync(fd, buf, n, length - n, position + n);
    if (k === 0) break;
    n += k;
  }
  return n;
}

/** What applying a batch of the stream produces, in order (the apply worker posts these). */
export type ApplyResult =
  | { t: 'applied'; gen: number; count: bigint; bytes: number }
  | { t: 'send'; gen: number; frame: Frame }
  | { t: 'synced'; gen: number; syncId: string; lastSyncMs: number }
  | { t: 'mark'; gen: number; lastSyncMs: number }
  | { t: 'fail'; gen: number; count: bigint; reason: string }
  | { t: 'idle'; gen: number };

/** What a frame weighs while it waits to be applied (payloads, plus a little for the rest). */
export function frameBytes(f: Frame): number {
  return 64 + ('data' in f ? f.data.length : 0) + ('value' in f ? f.value.length : 0) + ('entries' in f ? f.entries.length : 0);
}

/**
 * Applies the stream batch by batch. `gen` numbers the link the frames came on: frames are counted per
 * link (what `ack` and `fail` count), and after a frame of a link fails, the rest of that link's frames
 * are not applied.
 */
export class BatchApplier {
  private gen = -1;
  private applied = 0n;
  private failed = false;

  constructor(
    private readonly applier: FrameApplier,
    private readonly emit: (r: ApplyResult) => void,
  ) {}

  apply(gen: number, frames: readonly Frame[]): void {
    if (gen !== this.gen) {
      this.gen = gen;
      this.applied = 0n;
      this.failed = false;
    }
    let bytes = 0;
    const out: ApplyOutput = {
      send: (frame) => this.emit({ t: 'send', gen, frame }),
      synced: (syncId, lastSyncMs) => this.emit({ t: 'synced', gen, syncId, lastSyncMs }),
      mark: (lastSyncMs) => this.emit({ t: 'mark', gen, lastSyncMs }),
    };
    for (const f of frames) {
      bytes += frameBytes(f);
      if (this.failed) continue;
      this.applied++;
      try {
        this.applier.apply(f, out);
      } catch (e) {
        this.failed = true;
        const err = e as Error;
        this.emit({ t: 'fail', gen, count: this.applied, reason: `frame ${this.applied} (${f.type}${'path' in f ? ` ${f.path}` : ''}): ${errCode(err)} ${err.message}` });
      }
    }
    this.emit({ t: 'applied', gen, count: this.applied, bytes });
  }

  /** The link ended: the cached descriptors go. */
  closeFds(): void {
    this.applier.closeFds();
    this.emit({ t: 'idle', gen: this.gen });
  }
}
