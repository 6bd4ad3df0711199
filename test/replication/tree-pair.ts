// Two plain directory trees on this machine as a primary's and a secondary's data, without mounts: a full
// reintegration from one to the other (a ReplicationSource and a ReplicationTarget over the in-memory link
// twin), and rfsverify/rfsdiff's comparison of the two (this node's tree read directly, the peer's through a
// verify link answered by answerVerifyLink).

import assert from 'node:assert/strict';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { greet, greetPeer } from '../../src/replication/handshake.ts';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import type { ReplicationFilter } from '../../src/replication/paths.ts';
import { PROTOCOL_VERSION } from '../../src/replication/protocol.ts';
import type { RfsNative } from '../../src/replication/rfs-runtime.ts';
import { ReplicationSource, type ResyncStats } from '../../src/replication/source.ts';
import { ReplicationTarget } from '../../src/replication/target.ts';
import { answerVerifyLink, COMPARE_BLOCK_BYTES, compareReplicas, LocalReplica, RemoteReplica, type ComparisonResult } from '../../src/replication/verify.ts';

/** Why these helpers cannot run here (the native peer helpers, root for chown), or false. */
export function treePairSkip(): string | false {
  if (process.platform !== 'linux') return 'the peer helpers need Linux';
  if (process.getuid?.() !== 0) return 'chown needs root';
  const n = nativeAvailable();
  return n === true ? false : n;
}

/**
 * A full reintegration of `source` into `copy` (as after a split brain or `fullsync`), to its end: the
 * secondary applied `syncEnd`. `work` is a scratch directory (the journal). Fails on any lost link.
 */
export async function fullReintegration(o: { native: RfsNative; source: string; copy: string; filter: ReplicationFilter; work: string; timeoutMs?: number }): Promise<{ stats: ResyncStats; ms: number }> {
  const journal = new Journal(join(o.work, 'journal.jsonl'), 8 * 1024 * 1024);
  let stats: ResyncStats | null = null;
  let applied = false;
  const lost: string[] = [];
  const rootA = o.native.openRoot(o.source);
  const source = new ReplicationSource({
    dirs: [{ underPath: o.source, rootFd: rootA, filter: o.filter, reply: () => {} }],
    nativeFs: o.native.fs,
    journal,
    blockBytes: COMPARE_BLOCK_BYTES,
    nbrei: 4,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => null,
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: (_id, s) => (stats = s), lost: (why) => lost.push(why) },
  });
  const rootB = o.native.openRoot(o.copy);
  const target = new ReplicationTarget({
    fs: o.native.fs,
    roots: [{ rootFd: rootB }],
    async: 'none',
    node: 'n2',
    // The secondary applied the reintegration's end: everything before it is on the copy.
    events: { synced: () => (applied = true), mark: () => {}, syncBegan: () => {}, diverged: (why) => lost.push(why), log: () => {} },
  });
  const [s, t] = memoryLinkPair();
  target.attach(t, {});
  await greetPeer(s, { module: 'm', node: 'n1', session: '1' }, { peer: 'n2', timeoutMs: 5000 });
  const t0 = performance.now();
  source.attach(s, { sync: 'full', syncId: null, clean: true, lastSyncMs: null, hints: [], hintsOverflow: false }, { peerTakesXattrs: true });
  while (!(stats && applied) && !lost.length && performance.now() - t0 < (o.timeoutMs ?? 60_000)) await new Promise((r) => setTimeout(r, 5));
  const ms = performance.now() - t0;
  source.detach('test done');
  target.closeFds();
  closeSync(rootB);
  closeSync(rootA);
  journal.close();
  assert.deepEqual(lost.filter((l) => l !== 'test done'), []);
  assert.ok(stats && applied, 'the reintegration did not end');
  return { stats, ms };
}

/**
 * rfsverify/rfsdiff's comparison: the tree `local` read on this node, `remote` answered over a verify link.
 * `source` says which of the two a reintegration copies (local: rfsdiff on n1; remote: rfsverify on n2).
 */
export async function compareTrees(o: {
  native: RfsNative;
  source: 'local' | 'remote';
  local: string;
  remote: string;
  dirs: Array<{ dir: string; filter: ReplicationFilter }>;
  windowBytes: number;
  log?: (level: 'I' | 'E', message: string) => void;
}): Promise<ComparisonResult> {
  const [mine, theirs] = memoryLinkPair();
  const rootFd = o.native.openRoot(o.remote);
  const remoteNode = o.source === 'local' ? 'n2' : 'n1';
  const localNode = o.source === 'local' ? 'n1' : 'n2';
  answerVerifyLink(theirs, { fs: o.native.fs, roots: [{ rootFd }], node: remoteNode, welcome: { node: remoteNode }, log: o.log ?? (() => {}), onEnd: () => closeSync(rootFd) });
  const localRoot = o.native.openRoot(o.local);
  try {
    const { state: welcome, version } = await greet(mine, { module: 'm', node: localNode, session: 'verify' }, { peer: remoteNode, timeoutMs: 5000 });
    assert.equal(welcome['node'], remoteNode);
    assert.equal(version, PROTOCOL_VERSION);
    const remote = new RemoteReplica(remoteNode, mine, 30_000, o.windowBytes, true);
    const local = new LocalReplica(localNode, [o.local], { fs: o.native.fs, rootFds: [localRoot] }, o.native.fs);
    return await compareReplicas({ source: o.source === 'local' ? local : remote, copy: o.source === 'local' ? remote : local, dirs: o.dirs });
  } finally {
    mine.close();
    closeSync(localRoot);
  }
}
