// Typed loader of the FUSE interception addon (native/stayup_fuse.c -> build/Release/stayup_fuse.node).
// The addon does the file system work in C; this file only gives it TypeScript types and a friendlier
// mount object. The contract (which operations become events, their order, when the application's call
// returns) is in src/replication/README.md.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { addonFile } from '../../util/native-addons.ts';

export { ensureNativeBuilt, nativeBuildStale } from '../../util/native-addons.ts';
export const addonPath = addonFile('stayup_fuse');

// ---------------------------------------------------------------------------------------------------
// Events (JS thread, in the order the real file system applied them)

/** Open flags carried by open/create events: access mode, O_TRUNC, O_SYNC/O_DSYNC (never O_APPEND/O_CREAT). */
export type OpenFlags = number;

interface Pending {
  /** Pass to `FuseMount.reply()`; the application's call returns only then. */
  job: number;
}

export interface OpenOp extends Pending {
  op: 'open';
  handle: number;
  /** null: the file has no name any more (opened through /proc/<pid>/fd of an unlinked file). */
  path: string | null;
  flags: OpenFlags;
  /** Present when O_TRUNC truncated the file: its mtime after the truncation. */
  mtimeNs?: bigint;
}
export interface CreateOp extends Pending {
  op: 'create';
  handle: number;
  path: string;
  flags: OpenFlags;
  /** Permission bits (07777) the file got. */
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}
export interface WriteOp extends Pending {
  op: 'write';
  handle: number;
  offset: number;
  /** The written bytes; the Buffer belongs to JavaScript (C made its one copy). */
  data: Buffer;
  mtimeNs: bigint;
}
export interface ReleaseOp {
  op: 'release';
  /** Nothing waits: C already answered the kernel. */
  job: 0;
  handle: number;
}
export interface MknodOp extends Pending {
  op: 'mknod';
  path: string;
  /** File type and permission bits. */
  mode: number;
  rdev: number;
  uid: number;
  gid: number;
}
export interface MkdirOp extends Pending {
  op: 'mkdir';
  path: string;
  /** Permission bits (07777), including a set-group-ID bit inherited from the parent. */
  mode: number;
  uid: number;
  gid: number;
}
export interface SymlinkOp extends Pending {
  op: 'symlink';
  path: string;
  target: string;
  uid: number;
  gid: number;
}
export interface LinkOp extends Pending {
  op: 'link';
  /** An existing name of the file. */
  path: string;
  newPath: string;
}
export interface UnlinkOp extends Pending {
  op: 'unlink' | 'rmdir';
  path: string;
}
export interface RenameOp extends Pending {
  op: 'rename';
  path: string;
  newPath: string;
  /** 0, 1 (RENAME_NOREPLACE) or 2 (RENAME_EXCHANGE). */
  flags: number;
}
interface SetattrFields extends Pending {
  op: 'setattr';
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** "now" resolved to the time the file got. */
  atimeNs?: bigint;
  /** Also present after a size change: the mtime the truncation gave the file. */
  mtimeNs?: bigint;
}
/** By handle (ftruncate, or a file without a name that has a handle open) or by path (null: no name). */
export type SetattrOp = SetattrFields & ({ handle: number; path?: never } | { path: string | null; handle?: never });
export interface FallocateOp extends Pending {
  op: 'fallocate';
  handle: number;
  mode: number;
  offset: number;
  length: number;
  mtimeNs: bigint;
}
export interface SetxattrOp extends Pending {
  op: 'setxattr';
  path: string | null;
  name: string;
  value: Buffer;
  /** 0, XATTR_CREATE (1) or XATTR_REPLACE (2). */
  flags: number;
}
export interface RemovexattrOp extends Pending {
  op: 'removexattr';
  path: string | null;
  name: string;
}
/**
 * The local fsync runs at the same time (the call returns when it and reply() are both done). `handle`
 * null: fsync on a read-only handle, the file is named by `path`.
 */
export type FsyncOp = Pending & { op: 'fsync'; datasync: boolean } & (
    | { handle: number; path?: never }
    | { handle: null; path: string | null }
  );
export interface FsyncdirOp extends Pending {
  op: 'fsyncdir';
  path: string | null;
  datasync: boolean;
}

export type FuseOp =
  | OpenOp
  | CreateOp
  | WriteOp
  | ReleaseOp
  | MknodOp
  | MkdirOp
  | SymlinkOp
  | LinkOp
  | UnlinkOp
  | RenameOp
  | SetattrOp
  | FallocateOp
  | SetxattrOp
  | RemovexattrOp
  | FsyncOp
  | FsyncdirOp;

// ---------------------------------------------------------------------------------------------------
// The mount

export interface FuseMountOptions {
  /** The directory to replicate; FUSE is mounted over it (absolute; symlinks are resolved). */
  path: string;
  /** Module name: the mount shows as `stayup:<name>` type fuse.stayup. Letters, digits, `_ - .`, 1-64. */
  name: string;
  /** Start read-only (the secondary): every mutation gets EROFS. See FuseMount.setReadOnly. */
  readOnly?: boolean;
  /**
   * How long the kernel caches attributes while the mount is writable (default 1000). A read-only mount
   * caches nothing (its tree may change underneath), and turning read-only drops what was cached.
   */
  attrTimeoutMs?: number;
  /** How long the kernel caches names while writable, negative ones included (default 1000). */
  entryTimeoutMs?: number;
  /**
   * Extended attributes through the mount (default true). With them the kernel asks for
   * security.capability before every write() (one more round trip, answered in C; libfuse 3.14 cannot
   * negotiate the flag that would let the kernel cache the answer). false: xattr calls fail with
   * EOPNOTSUPP and writes are that round trip faster.
   */
  xattrs?: boolean;
  /**
   * Whether every mutation waits for `reply()` (default true). false: mutations that change no file data
   * (create, mknod, mkdir, symlink, link, unlink, rmdir, rename, chmod/chown/utimens, xattr changes, an
   * open without O_TRUNC) are answered by C once applied and queued; their events carry `job: 0`. Writes,
   * truncations, fallocate and fsync still wait.
   */
  holdMetadata?: boolean;
  /** libfuse worker threads (default 4). */
  threads?: number;
  /** libfuse's request trace on stderr. */
  debug?: boolean;
  /** Every applied mutation, in order. Call `reply(op.job, errno)` for each one with `job !== 0`. */
  onOp: (op: FuseOp) => void;
  /** The session ended by itself (unmounted from outside, connection aborted); the mount is closed. */
  onExit?: (reason: string) => void;
}

export interface FuseMountStats {
  events: number;
  writes: number;
  writeBytes: number;
  /** Inodes the kernel currently knows (each holds an O_PATH descriptor). */
  inodes: number;
  pendingJobs: number;
  mounted: boolean;
  readOnly: boolean;
}

export interface FuseMount {
  /** The canonical mount point. */
  readonly path: string;
  /** O_PATH descriptor of the real directory under the mount; closed by unmount(). */
  readonly rootFd: number;
  /** `/proc/self/fd/<rootFd>`: the real directory, reachable while the mount covers it. */
  readonly underPath: string;
  /**
   * Answers a pending operation: 0 = success (C sends the byte count, the entry or the open handle it
   * prepared), otherwise a positive errno the application gets (the local change stays applied).
   * Returns false when the job is no longer pending (the mount was closed meanwhile).
   */
  reply(job: number, errno: number): boolean;
  /**
   * The read-only switch. C answers EROFS to every mutation from now on (files already open for writing
   * included), and the mount point gets the kernel's read-only flag. Returns 0, or the errno with which
   * the kernel refused its flag (EBUSY while a file is open for writing; the C switch holds all the same).
   */
  setReadOnly(readOnly: boolean): number;
  /** Stops the session, unmounts lazily, answers pending jobs with EIO. Idempotent. */
  unmount(): void;
  stats(): FuseMountStats;
}

// ---------------------------------------------------------------------------------------------------
// Peer-side helpers (synchronous; resolution confined beneath the root fd)

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface LstatResult {
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  dev: number;
  rdev: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  atimeNs: bigint;
}

/** Errors thrown by the helpers: `code` 'ENOENT', `errno` 2 (positive), `syscall` the helper, `path` rel. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

interface NativeMount {
  handle: unknown;
  rootFd: number;
  underPath: string;
  path: string;
}

export interface PeerHelpers {
  /** O_PATH|O_DIRECTORY descriptor of a replicated root. */
  openRoot(path: string): number;
  /** openat2 beneath root. With O_CREAT, a file it creates gets exactly `mode` (no umask). */
  openAt(root: number, rel: string, flags: number, mode: number): number;
  /** Exactly `mode` (07777, set-group-ID included), whatever the umask. */
  mkdirAt(root: number, rel: string, mode: number): void;
  mknodAt(root: number, rel: string, mode: number, rdev: number): void;
  symlinkAt(target: string, root: number, rel: string): void;
  linkAt(root: number, oldRel: string, newRel: string): void;
  unlinkAt(root: number, rel: string, isDir: boolean): void;
  renameAt(root: number, oldRel: string, newRel: string, flags: number): void;
  /** No follow. -1 leaves an id unchanged. */
  chownAt(root: number, rel: string, uid: number, gid: number): void;
  /** A symlink is left alone (Linux symlinks have no mode). */
  chmodAt(root: number, rel: string, mode: number): void;
  /** No follow; null leaves that time unchanged. */
  utimensAt(root: number, rel: string, atimeNs: bigint | number | null, mtimeNs: bigint | number | null): void;
  truncateAt(root: number, rel: string, size: number): void;
  setxattrAt(root: number, rel: string, name: string, value: Buffer, flags: number): void;
  removexattrAt(root: number, rel: string, name: string): void;
  getxattrAt(root: number, rel: string, name: string): Buffer;
  listxattrAt(root: number, rel: string): string[];
  lstatAt(root: number, rel: string): LstatResult;
  readdirAt(root: number, rel: string): { name: string; type: EntryType }[];
  readlinkAt(root: number, rel: string): string;
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  futimens(fd: number, atimeNs: bigint | number | null, mtimeNs: bigint | number | null): void;
  fchown(fd: number, uid: number, gid: number): void;
  fchmod(fd: number, mode: number): void;
  fsync(fd: number, datasync: boolean): void;
  /** Writes the whole buffer (loops over short writes); returns its length. */
  pwrite(fd: number, buffer: Buffer, offset: number): number;
  /**
   * Where the file holds data in [offset, offset + length) (SEEK_DATA/SEEK_HOLE): `[scannedTo, start0, end0,
   * start1, end1, ...]`. Everything in [offset, scannedTo) outside the pairs is a hole; past scannedTo (at
   * most 4096 pairs per call) nothing is said. A file system without SEEK_DATA reports all data.
   */
  dataRanges(fd: number, offset: number, length: number): number[];
}

interface Addon extends PeerHelpers {
  mount(options: FuseMountOptions): NativeMount;
  reply(handle: unknown, job: number, errno: number): boolean;
  setReadOnly(handle: unknown, readOnly: boolean): number;
  unmount(handle: unknown): void;
  stats(handle: unknown): FuseMountStats;
}

/** The whole addon as callers see it: the peer-side helpers and mount(). */
export interface NativeAddon extends PeerHelpers {
  mount(options: FuseMountOptions): FuseMount;
}

/** RENAME_* flags of renameat2(2). */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

let addon: Addon | undefined;

function load(): Addon {
  if (addon) return addon;
  if (!existsSync(addonPath)) {
    throw new Error(`the FUSE addon is not built (${addonPath} is missing): run \`npm run build:native\``);
  }
  addon = createRequire(import.meta.url)(addonPath) as Addon;
  return addon;
}

/** The peer-side helpers (loads the addon on first use). */
export function peer(): PeerHelpers {
  return load();
}

/** Mounts FUSE over options.path. Needs root, /dev/fuse and fusermount3. */
export function mount(options: FuseMountOptions): FuseMount {
  const a = load();
  const m = a.mount(options);
  const handle = m.handle;
  return {
    path: m.path,
    rootFd: m.rootFd,
    underPath: m.underPath,
    reply: (job, errno) => a.reply(handle, job, errno),
    setReadOnly: (readOnly) => a.setReadOnly(handle, readOnly),
    unmount: () => a.unmount(handle),
    stats: () => a.stats(handle),
  };
}

/** Loads the addon (throws naming `npm run build:native` when it is not built). */
export function loadNative(): NativeAddon {
  const a = load();
  return Object.assign(Object.create(a) as PeerHelpers, { mount }) as NativeAddon;
}

