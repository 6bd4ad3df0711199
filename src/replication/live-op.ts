// The mount's mutation events as the replication consumes them (the contract of src/replication/README.md).
// Every event was applied to the real directory before it is handed over, in the order of application.
// `job` is what reply() answers (0: nothing waits). Paths are relative to the replicated directory.

interface Base {
  job: number;
}

export type LiveOp = Base &
  (
    | { op: 'open'; handle: number; path: string | null; flags: number; mtimeNs?: bigint | null }
    | { op: 'create'; handle: number; path: string | null; flags: number; mode: number; uid: number; gid: number; mtimeNs: bigint }
    | { op: 'write'; handle: number; offset: number; data: Buffer; mtimeNs: bigint }
    | { op: 'release'; handle: number }
    | { op: 'mknod'; path: string | null; mode: number; rdev: number; uid: number; gid: number }
    | { op: 'mkdir'; path: string | null; mode: number; uid: number; gid: number }
    | { op: 'symlink'; path: string | null; target: string; uid: number; gid: number }
    | { op: 'link'; path: string | null; newPath: string | null }
    | { op: 'unlink' | 'rmdir'; path: string | null }
    | { op: 'rename'; path: string | null; newPath: string | null; flags: number }
    | {
        op: 'setattr';
        path?: string | null;
        handle?: number | null;
        mode?: number | null;
        uid?: number | null;
        gid?: number | null;
        size?: number | bigint | null;
        atimeNs?: bigint | null;
        mtimeNs?: bigint | null;
      }
    | { op: 'fallocate'; handle: number; mode: number; offset: number; length: number; mtimeNs: bigint }
    | { op: 'setxattr'; path: string | null; name: string; value: Buffer; flags: number }
    | { op: 'removexattr'; path: string | null; name: string }
    | { op: 'fsync'; handle: number; datasync: boolean }
    | { op: 'fsyncdir'; path: string | null; datasync: boolean }
  );
