// The file operations the replication needs on the real data underneath the FUSE mount, relative to a
// root directory descriptor and confined beneath it (a frame can never reach a file outside the replicated
// directory, even through a symlink inside it). The native addon's peer helpers are that interface.

export type { PeerHelpers as PeerFs, LstatResult as StatNs } from './fuse/native.ts';

/** errno name of an error thrown by the peer helpers or node:fs. */
export function errCode(e: unknown): string {
  return (e as { code?: string }).code ?? 'EIO';
}
