// The replication runtime's view of the native addon (src/replication/fuse/): mounts with the module's
// options, the read-only switch, the peer-side file helpers, and the clean-up of a mount left behind by a
// daemon that died (its path answers ENOTCONN until unmounted; a restart must not leave it so).

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { StayupError } from '../errors/stayup-error.ts';
import type { PeerFs } from './peer-fs.ts';
import type { LiveOp } from './live-op.ts';
import type { RfsMount, RfsNative } from './rfs-runtime.ts';
import { mount as fuseMount, peer, type PeerHelpers } from './fuse/native.ts';

/**
 * The kernel's attribute and name cache on the mount, while it is writable (the primary: only the mount
 * changes the tree). A read-only mount (the secondary, whose tree the stream changes underneath) caches
 * nothing, and turning read-only drops what was cached (native/stayup_fuse.c).
 */
const CACHE_TIMEOUT_MS = 1000;

let cached: PeerHelpers | null = null;

function addon(): PeerHelpers {
  if (!cached) {
    try {
      cached = peer();
    } catch (e) {
      throw new StayupError('REPLICATION_UNAVAILABLE', `the replication's native part cannot be loaded: ${(e as Error).message}`, { cause: e });
    }
  }
  return cached;
}

/** true, or why replication cannot run here (for tests that need it). */
export function nativeAvailable(): true | string {
  try {
    addon();
    return true;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A FUSE mount of ours at `dir` whose daemon is gone: unmount it lazily so the path works again. */
export function clearStaleMount(dir: string): boolean {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.split(' ');
      const sep = f.indexOf('-');
      return f[4] === dir && sep > 0 && (f[sep + 1] ?? '').startsWith('fuse') && (f[sep + 2] ?? '').startsWith('stayup');
    });
  if (!mounted) return false;
  const r = spawnSync('umount', ['-l', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new StayupError('IO', `cannot unmount the stale replication mount at ${dir}: ${r.stderr.trim()}`);
  return true;
}

export function loadRfsNative(): RfsNative {
  const n = addon();
  return {
    fs: n as unknown as PeerFs,
    openRoot: (path) => n.openRoot(path),
    mount(o): RfsMount {
      clearStaleMount(o.mountPoint);
      const m = fuseMount({
        path: o.mountPoint,
        name: o.fsName,
        readOnly: true,
        attrTimeoutMs: CACHE_TIMEOUT_MS,
        entryTimeoutMs: CACHE_TIMEOUT_MS,
        // Name and attribute changes return once applied and queued, in order; data changes and fsync
        // wait for the peer (src/replication/README.md, "When the application's call returns").
        holdMetadata: false,
        onOp: (ev) => o.onOp(ev as unknown as LiveOp),
        onExit: (reason) => o.onExit(reason),
      });
      return {
        rootFd: m.rootFd,
        underPath: m.underPath,
        reply: (job, errno) => void m.reply(job, errno),
        // The C switch holds even when the kernel refuses its own read-only flag (a file open for writing).
        setReadOnly: (ro) => void m.setReadOnly(ro),
        unmount: async () => m.unmount(),
      };
    },
  };
}
