// The primary's change journal: the DirtySet written to disk as it grows, so that a primary that stops
// cleanly while its peer is away (or restarts) still knows exactly which zones the peer is missing.
//
// File `modvar/<m>/rfs/journal.jsonl`: a header line {"syncId", "startedMs"} naming the sync point the
// marks are relative to, then one record per new mark. Appends are not fsynced one by one (that would tax
// every write of a primary running alone); the file is fsynced on a clean stop, and `rfs/state.json`
// says whether the last stop was clean. After an unclean stop the journal is not trusted and the
// reintegration falls back to comparing what changed since the last sync point (see source.ts).

import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { DirtySet } from './dirty-set.ts';

type Rec =
  | { o: 'z'; p: string; z: number }
  | { o: 'a'; p: string }
  | { o: 'l'; p: string; d: boolean }
  | { o: 'x'; p: string }
  | { o: 'r'; f: string; t: string; x: boolean };

/**
 * Records are written once per turn of the event loop, or when this many bytes wait: a first reintegration
 * marks every file of the tree once (a million records, a thousand per directory listed in one turn), and
 * one write() each was a million system calls on the daemon's thread. A turn's records still reach the
 * page cache before the next turn, as they did one by one (the keep-aside of a node killed while alone
 * reads them back).
 */
const APPEND_BATCH_BYTES = 64 * 1024;

/** Zones one operation may mark (32 GiB in 8 MiB zones); past that its file is marked whole. */
export const ZONES_PER_OPERATION_MAX = 4096;

export class Journal {
  readonly dirty: DirtySet;
  private fd: number | null = null;
  /** Records not written yet (see APPEND_BATCH_BYTES). */
  private pending: string[] = [];
  private pendingBytes = 0;
  private writeScheduled = false;
  syncId: string | null = null;

  constructor(private readonly file: string, zoneBytes: number) {
    this.dirty = new DirtySet(zoneBytes);
  }

  /** Loads the journal of a clean stop. Returns false (and an empty set) when there is none or it is damaged. */
  load(): boolean {
    this.dirty.clear();
    this.syncId = null;
    if (!existsSync(this.file)) return false;
    const lines = readFileSync(this.file, 'utf8').split('\n');
    try {
      const head = JSON.parse(lines[0]!) as { syncId?: unknown };
      if (typeof head.syncId !== 'string') return false;
      for (const line of lines.slice(1)) {
        if (!line) continue;
        this.replay(JSON.parse(line) as Rec);
      }
      this.syncId = head.syncId;
      return true;
    } catch {
      this.dirty.clear();
      return false;
    }
  }

  /** Starts a new journal relative to sync point `syncId`, keeping the marks already in memory. */
  reset(syncId: string | null, nowMs: number): void {
    this.closeFile();
    this.syncId = syncId;
    this.fd = openSync(this.file, 'w', 0o600);
    this.append({ syncId, startedMs: nowMs });
    for (const [p, e] of this.dirty.all()) {
      if (e.list) this.append({ o: 'l', p, d: e.deep });
      else if (e.zones === null) this.append({ o: 'a', p });
      else for (const z of e.zones) this.append({ o: 'z', p, z });
    }
  }

  markZones(p: string, offset: number, length: number): void {
    const before = this.dirty.get(p)?.zones;
    if (before === null) return;
    // Only the zones of this write are looked at: a copy of the file's whole set per write cost a big file
    // (1 TiB: 131,072 zones of 8 MiB) that much work on every write of a primary running alone.
    const first = Math.floor(offset / this.dirty.zoneBytes);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.dirty.zoneBytes);
    if (last - first + 1 > ZONES_PER_OPERATION_MAX) {
      // One operation over a huge range (a fallocate, a hole punched across a disk image): the whole file is
      // compared, which reads only its data (sparse.ts), rather than journaling a mark per zone.
      this.markAll(p);
      return;
    }
    const fresh: number[] = [];
    for (let z = first; z <= last; z++) if (!before?.has(z)) fresh.push(z);
    this.dirty.markZones(p, offset, length);
    for (const z of fresh) this.append({ o: 'z', p, z });
  }

  markAll(p: string): void {
    if (this.dirty.get(p)?.zones === null) return;
    this.dirty.markAll(p);
    this.append({ o: 'a', p });
  }

  markList(p: string, deep = false): void {
    const e = this.dirty.get(p);
    if (e?.list && (e.deep || !deep)) return;
    this.dirty.markList(p, deep);
    this.append({ o: 'l', p, d: deep });
  }

  removed(p: string): void {
    this.dirty.removed(p);
    this.append({ o: 'x', p });
  }

  renamed(from: string, to: string, exchange: boolean): void {
    this.dirty.renamed(from, to, exchange);
    this.append({ o: 'r', f: from, t: to, x: exchange });
  }

  /** Makes the journal durable (clean stop). */
  flush(): void {
    this.writePending();
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    this.closeFile();
  }

  private replay(r: Rec): void {
    switch (r.o) {
      case 'z': this.dirty.markZones(r.p, r.z * this.dirty.zoneBytes, 1, false); break;
      case 'a': this.dirty.markAll(r.p); break;
      case 'l': this.dirty.markList(r.p, r.d); break;
      case 'x': this.dirty.removed(r.p); break;
      case 'r': this.dirty.renamed(r.f, r.t, r.x); break;
      default: throw new Error('bad journal record');
    }
  }

  private append(rec: unknown): void {
    if (this.fd === null) return;
    const line = `${JSON.stringify(rec)}\n`;
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= APPEND_BATCH_BYTES) this.writePending();
    else if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(() => this.writePending());
    }
  }

  private writePending(): void {
    this.writeScheduled = false;
    if (this.fd !== null && this.pending.length > 0) writeSync(this.fd, this.pending.join(''));
    this.pending = [];
    this.pendingBytes = 0;
  }

  private closeFile(): void {
    this.writePending();
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
