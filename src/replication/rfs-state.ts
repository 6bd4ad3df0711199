// The replication's own record on each node (`modvar/<m>/rfs/state.json`, 0600, written atomically):
// which sync point this node's data matches, when it was last in sync, and whether its last role ended
// cleanly. The mirror machine's record (mirror.state) keeps "up to date"; this one keeps what a
// reintegration needs to copy only what changed.

import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-file.ts';

export interface RfsRecord {
  /** The sync point (id of the last completed reintegration) this node's data matches, if any. */
  syncId: string | null;
  /** When this node was last known to be in sync with its peer (ms since the epoch). */
  lastSyncMs: number | null;
  /** The last role ended cleanly: everything acknowledged is on disk, the journal is complete. */
  clean: boolean;
  /** The role this node had last. */
  role: 'prim' | 'second' | null;
  /**
   * Primary only: since when (ms since the epoch) it has written without its peer following, or null while
   * the peer is a faithful copy. A node becoming secondary with this set has divergent writes to keep
   * aside (keep-aside.ts) before its reintegration.
   */
  unsyncedSinceMs: number | null;
}

export const EMPTY_RECORD: RfsRecord = { syncId: null, lastSyncMs: null, clean: false, role: null, unsyncedSinceMs: null };

export class RfsRecordStore {
  private current: RfsRecord;

  constructor(private readonly file: string) {
    this.current = this.read();
  }

  get(): RfsRecord {
    return this.current;
  }

  /** Writes the record durably before returning (persist before acting). */
  update(patch: Partial<RfsRecord>): RfsRecord {
    const next = { ...this.current, ...patch };
    writeFileAtomic(this.file, `${JSON.stringify(next)}\n`, 0o600);
    this.current = next;
    return next;
  }

  private read(): RfsRecord {
    if (!existsSync(this.file)) return { ...EMPTY_RECORD };
    try {
      const r = JSON.parse(readFileSync(this.file, 'utf8')) as Partial<RfsRecord>;
      return {
        syncId: typeof r.syncId === 'string' ? r.syncId : null,
        lastSyncMs: typeof r.lastSyncMs === 'number' ? r.lastSyncMs : null,
        clean: r.clean === true,
        role: r.role === 'prim' || r.role === 'second' ? r.role : null,
        unsyncedSinceMs: typeof r.unsyncedSinceMs === 'number' ? r.unsyncedSinceMs : null,
      };
    } catch {
      // A damaged record proves nothing: the next reintegration compares everything.
      return { ...EMPTY_RECORD };
    }
  }
}
