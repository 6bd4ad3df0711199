// A primary's ReplicationSource over one plain directory, attached through an in-memory link to a
// secondary the test scripts frame by frame (what it acknowledges, and when); and a real secondary's
// target over a plain directory, for tests that script the primary.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair, type FrameLink } from '../../src/replication/link.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { StayupError } from '../../src/errors/stayup-error.ts';
import { loadRfsNative } from '../../src/replication/native-binding.ts';
import type { Frame, VersionRange } from '../../src/replication/protocol.ts';
import { ReplicationSource, type TargetState } from '../../src/replication/source.ts';
import { ReplicationTarget } from '../../src/replication/target.ts';

export interface ScriptedPair {
  source: ReplicationSource;
  journal: Journal;
  /** The secondary's end of the link. */
  peer: FrameLink;
  /** Every frame the secondary received, in order. */
  got: Frame[];
  /** The jobs the source answered. */
  replied: Set<number>;
}

/**
 * A primary's source over `dir` (with its journal there, excluded from what is replicated), at sync point
 * s0, not attached; `lost` collects why its links ended.
 */
export function testSource(dir: string, opts: { acksOnReceipt?: boolean } = {}): { source: ReplicationSource; journal: Journal; replied: Set<number>; lost: string[] } {
  mkdirSync(dir, { recursive: true });
  const journal = new Journal(join(dir, 'journal.jsonl'), 1 << 20);
  journal.reset('s0', Date.now());
  const replied = new Set<number>();
  const lost: string[] = [];
  const source = new ReplicationSource({
    dirs: [{ underPath: dir, filter: new ReplicationFilter([{ path: 'journal.jsonl' }]), reply: (job) => replied.add(job) }],
    journal,
    blockBytes: 1 << 20,
    nbrei: 1,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => Date.now(),
    ...(opts.acksOnReceipt !== undefined ? { acksOnReceipt: opts.acksOnReceipt } : {}),
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: () => {}, lost: (why) => lost.push(why) },
  });
  return { source, journal, replied, lost };
}

/** What a secondary at the source's sync point says (clean, nothing to compare). */
export const IN_SYNC_TARGET: TargetState = { sync: 'incremental', syncId: 's0', clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false };

/** `onFrame` is the secondary's script, called with each frame and the count received so far. */
export function scriptedPair(dir: string, onFrame: (f: Frame, received: bigint, peer: FrameLink) => void, opts: { acksOnReceipt?: boolean; peerReportsApplied?: boolean } = {}): ScriptedPair {
  const { source, journal, replied } = testSource(dir, opts);
  const [s, t] = memoryLinkPair();
  let received = 0n;
  const got: Frame[] = [];
  t.onFrame((f) => {
    got.push(f);
    received++;
    onFrame(f, received, t);
  });
  source.attach(s, IN_SYNC_TARGET, opts.peerReportsApplied === undefined ? {} : { peerReportsApplied: opts.peerReportsApplied });
  return { source, journal, peer: t, got, replied };
}

/**
 * A real secondary's target over `dir` (frames applied on this thread), with its events collected: log lines
 * ("E message"), the versions it greeted with, its links, its refusals.
 */
export function inlineTarget(dir: string, o: { versions?: VersionRange } = {}) {
  mkdirSync(dir, { recursive: true });
  const nat = loadRfsNative();
  const logs: string[] = [];
  const greeted: Array<{ version: number; link: FrameLink }> = [];
  const refusals: StayupError[] = [];
  const target = new ReplicationTarget({
    fs: nat.fs,
    roots: [{ rootFd: nat.openRoot(dir) }],
    async: 'second',
    node: 'n2',
    applyIn: 'inline',
    ...(o.versions ? { versions: o.versions } : {}),
    events: {
      synced: () => {},
      mark: () => {},
      syncBegan: () => {},
      diverged: (r) => logs.push(`diverged ${r}`),
      log: (level, message) => logs.push(`${level} ${message}`),
      greeted: (version, link) => greeted.push({ version, link }),
      refused: (e) => refusals.push(e),
    },
  });
  return { target, logs, greeted, refusals };
}

export async function until(cond: () => boolean, what = 'a condition', timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
