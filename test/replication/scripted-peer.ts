// A primary's ReplicationSource over one plain directory, attached through an in-memory link to a
// secondary the test scripts frame by frame (what it acknowledges, and when).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair, type FrameLink } from '../../src/replication/link.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { Frame } from '../../src/replication/protocol.ts';
import { ReplicationSource } from '../../src/replication/source.ts';

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

/** `onFrame` is the secondary's script, called with each frame and the count received so far. */
export function scriptedPair(dir: string, onFrame: (f: Frame, received: bigint, peer: FrameLink) => void, opts: { acksOnReceipt?: boolean; peerReportsApplied?: boolean } = {}): ScriptedPair {
  mkdirSync(dir, { recursive: true });
  const journal = new Journal(join(dir, 'journal.jsonl'), 1 << 20);
  journal.reset('s0', Date.now());
  const replied = new Set<number>();
  const source = new ReplicationSource({
    dirs: [{ underPath: dir, filter: new ReplicationFilter([]), reply: (job) => replied.add(job) }],
    journal,
    blockBytes: 1 << 20,
    nbrei: 1,
    reiBytesPerS: 0,
    uncleanGraceMs: 0,
    lastSyncMs: () => Date.now(),
    ...(opts.acksOnReceipt !== undefined ? { acksOnReceipt: opts.acksOnReceipt } : {}),
    nowMs: () => performance.now(),
    events: { log: () => {}, inSync: () => {}, lost: () => {} },
  });
  const [s, t] = memoryLinkPair();
  let received = 0n;
  const got: Frame[] = [];
  t.onFrame((f) => {
    got.push(f);
    received++;
    onFrame(f, received, t);
  });
  source.attach(s, { sync: 'incremental', syncId: 's0', clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false }, opts.peerReportsApplied === undefined ? {} : { peerReportsApplied: opts.peerReportsApplied });
  return { source, journal, peer: t, got, replied };
}

export async function until(cond: () => boolean, what = 'a condition'): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 2000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
