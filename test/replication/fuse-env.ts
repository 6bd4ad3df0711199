// Why the FUSE-mounting tests cannot run on this machine, or false. The application side of those tests
// is python3 (syscalls as the C API has them), run as another process.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export function fuseSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (FUSE mounts with allow_other)';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse on this machine';
  if (spawnSync('fusermount3', ['-V']).status !== 0) return 'fusermount3 missing (apt-get install fuse3)';
  if (spawnSync('python3', ['-V']).status !== 0) return 'python3 missing';
  return false;
}
