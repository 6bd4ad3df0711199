// The file operations the replication needs on the real data underneath the FUSE mount, relative to a
// root directory descriptor and confined beneath it (a frame can never reach a file outside the replicated
// directory, even through a symlink inside it). Implemented by the native addon (src/replication/fuse/).

export interface StatNs {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number | bigint;
  rdev: number;
  mtimeNs: bigint;
}

export interface PeerFs {
  openAt(root: number, rel: string, flags: number, mode: number): number;
  mkdirAt(root: number, rel: string, mode: number): void;
  mknodAt(root: number, rel: string, mode: number, rdev: number): void;
  symlinkAt(target: string, root: number, rel: string): void;
  linkAt(root: number, oldRel: string, newRel: string): void;
  unlinkAt(root: number, rel: string, isDir: boolean): void;
  renameAt(root: number, oldRel: string, newRel: string, flags: number): void;
  chownAt(root: number, rel: string, uid: number, gid: number): void;
  chmodAt(root: number, rel: string, mode: number): void;
  utimensAt(root: number, rel: string, atimeNs: bigint | null, mtimeNs: bigint | null): void;
  truncateAt(root: number, rel: string, size: number): void;
  setxattrAt(root: number, rel: string, name: string, value: Buffer, flags: number): void;
  removexattrAt(root: number, rel: string, name: string): void;
  lstatAt(root: number, rel: string): StatNs;
  readdirAt(root: number, rel: string): Array<{ name: string; type: string }>;
  readlinkAt(root: number, rel: string): string;
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  futimens(fd: number, atimeNs: bigint | null, mtimeNs: bigint | null): void;
  fchown(fd: number, uid: number, gid: number): void;
  fchmod(fd: number, mode: number): void;
  fsync(fd: number, datasync: boolean): void;
  pwrite(fd: number, data: Buffer, offset: number): number;
}

/** errno name of an error thrown by PeerFs or node:fs. */
export function errCode(e: unknown): string {
  return (e as { code?: string }).code ?? 'EIO';
}
