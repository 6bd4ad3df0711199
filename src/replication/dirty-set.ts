// What the peer is missing: per path, either some zones of a file, the whole object, or a directory whose
// entries must be compared ("list") possibly with everything under it ("deep"). The primary keeps it while
// the peer is away or being reintegrated; the reintegration drains it. Paths are replication paths
// (`<dir index>/<relative path>`, see paths.ts), so one set serves every replicated directory of a module.
//
// Renames move marks with the name (the peer, when it later receives the same rename, holds the old
// content under the new name) and deletions are recorded as a listing of the parent, so a reintegration
// removes on the peer what the primary no longer has.
//
// Zones (ruzone_blocksize, 8 MiB by default) are what the journal persists: one mark per zone, however many
// writes, so it stays small (128 per GiB changed). In memory, changes are also kept per 1 MiB ("fine"
// marks), within a budget for the whole set: the reintegration then compares (reads and hashes) only the
// MiB that changed rather than whole zones. A file whose fine marks would pass the budget, or that was
// loaded from the journal, has none: its zones are compared.

import { parentOf } from './paths.ts';

/** The granularity of the in-memory fine marks. */
export const FINE_BYTES = 1024 * 1024;
/** Fine marks kept in the whole set at most (about 40 bytes each: 10 MiB of memory, 256 GiB of changes). */
export const FINE_BUDGET = 262_144;

/** Deepest entries takeNext looks at before it falls back to the shallowest one. */
const DEEP_TRIES = 8;

export interface DirtyEntry {
  /** Zone numbers (offset / zoneBytes) of a file, or null: the whole object. */
  zones: Set<number> | null;
  /** The same changes per FINE_BYTES (offset / FINE_BYTES), or null: not known finer than `zones`. */
  fine: Set<number> | null;
  /** Compare this directory's entries with the peer's. */
  list: boolean;
  /** ... and treat everything under it as dirty (full or unclean scopes, a directory renamed while away). */
  deep: boolean;
}

export class DirtySet {
  private readonly entries = new Map<string, DirtyEntry>();
  /** Paths by depth (number of '/'), so takeNext is cheap with a million entries. */
  private readonly byDepth: Array<Set<string>> = [];
  /** Fine marks held by all entries. */
  private fineCount = 0;
  /**
   * Per directory path, how many entries lie strictly below it. A removal or a rename must find the marks
   * under the name: with this, one of a file (no entry below) costs its depth, not a walk of every entry
   * (a million during a first reintegration, once per unlink of the application).
   */
  private readonly below = new Map<string, number>();

  constructor(
    readonly zoneBytes: number,
    private readonly fineBudget = FINE_BUDGET,
  ) {
    if (!(zoneBytes > 0)) throw new Error(`DirtySet: zoneBytes ${zoneBytes}`);
  }

  get size(): number {
    return this.entries.size;
  }

  has(path: string): boolean {
    return this.entries.has(path);
  }

  get(path: string): DirtyEntry | undefined {
    return this.entries.get(path);
  }

  /** Is `path` (or a directory above it) waiting to be brought up to date? */
  covers(path: string): boolean {
    if (this.entries.has(path)) return true;
    for (let p = parentOf(path); p !== null; p = parentOf(p)) {
      if (this.entries.get(p)?.deep) return true;
    }
    return false;
  }

  /**
   * Bytes [offset, offset+length) of a file changed. `fine` false: only the zones are known (a journal
   * replayed), so the file loses its fine marks.
   */
  markZones(path: string, offset: number, length: number, fine = true): void {
    let e = this.entries.get(path);
    if (e && e.zones === null) return;
    if (!e) {
      e = { zones: new Set(), fine: fine ? new Set() : null, list: false, deep: false };
      this.put(path, e);
    }
    const end = offset + Math.max(length, 1) - 1;
    for (let z = Math.floor(offset / this.zoneBytes); z <= Math.floor(end / this.zoneBytes); z++) e.zones!.add(z);
    if (!fine) this.dropFine(e);
    if (e.fine === null) return;
    const first = Math.floor(offset / FINE_BYTES);
    const last = Math.floor(end / FINE_BYTES);
    if (this.fineCount + (last - first + 1) > this.fineBudget) {
      this.dropFine(e);
      return;
    }
    for (let f = first; f <= last; f++) {
      if (e.fine.has(f)) continue;
      e.fine.add(f);
      this.fineCount++;
    }
  }

  /** The whole object changed (created, attributes, a file of unknown content). */
  markAll(path: string): void {
    const e = this.entries.get(path);
    if (e) {
      e.zones = null;
      this.dropFine(e);
    } else this.put(path, { zones: null, fine: null, list: false, deep: false });
  }

  /** A directory's entries changed (something created, removed or renamed in it). */
  markList(path: string, deep = false): void {
    const e = this.entries.get(path);
    if (e) {
      e.zones = null;
      this.dropFine(e);
      e.list = true;
      e.deep ||= deep;
    } else this.put(path, { zones: null, fine: null, list: true, deep });
  }

  /** An object was removed: forget its marks (and those under it); its parent's listing will remove it. */
  removed(path: string): void {
    this.deleteTree(path);
    const parent = parentOf(path);
    if (parent !== null) this.markList(parent);
  }

  /** `from` was renamed to `to` (flags: RENAME_EXCHANGE swaps both). Marks move with the names. */
  renamed(from: string, to: string, exchange: boolean): void {
    const moved = this.takeTree(from);
    const back = exchange ? this.takeTree(to) : (this.deleteTree(to), []);
    for (const [p, e] of moved) this.put(to + p.slice(from.length), e);
    for (const [p, e] of back) this.put(from + p.slice(to.length), e);
    // The peer has no object under the new name (or an older one): all of it, and for a directory
    // everything below, unless the peer receives this very rename later (live), which the caller handles.
    this.markList(to, true);
    if (exchange) this.markList(from, true);
    for (const p of [parentOf(from), parentOf(to)]) if (p !== null) this.markList(p);
  }

  /**
   * Takes the next entry to bring over: the deepest one whose ancestors hold no entry (their objects are on
   * the peer or on their way), else the shallowest. Parents still go before their children; and a
   * directory's listing is followed by its files before the next directory is listed, so a first
   * reintegration of a million files holds about one listing's worth of entries per level, where
   * shallowest-first listed every directory first and held an entry for every file of the tree.
   */
  takeNext(): [string, DirtyEntry] | undefined {
    let best = this.deepestFree();
    if (best === undefined) {
      for (const bucket of this.byDepth) {
        if (bucket?.size) {
          best = bucket.values().next().value as string;
          break;
        }
      }
    }
    if (best === undefined) return undefined;
    const e = this.entries.get(best)!;
    this.drop(best);
    return [best, e];
  }

  /**
   * The first few paths of the deepest non-empty depth whose ancestors hold no entry, or undefined. Only a
   * few are tried: a deep entry under a directory still marked (a file created in a new directory) waits for
   * the shallow pass, so a takeNext stays cheap.
   */
  private deepestFree(): string | undefined {
    for (let d = this.byDepth.length - 1; d >= 0; d--) {
      const bucket = this.byDepth[d];
      if (!bucket?.size) continue;
      let tries = 0;
      for (const p of bucket) {
        if (!this.hasMarkedAncestor(p)) return p;
        if (++tries >= DEEP_TRIES) break;
      }
      return undefined;
    }
    return undefined;
  }

  private hasMarkedAncestor(p: string): boolean {
    for (let a = parentOf(p); a !== null; a = parentOf(a)) if (this.entries.has(a)) return true;
    return false;
  }

  /** Every entry (for persisting). */
  *all(): IterableIterator<[string, DirtyEntry]> {
    yield* this.entries;
  }

  set(path: string, e: DirtyEntry): void {
    this.put(path, e);
  }

  clear(): void {
    this.entries.clear();
    this.byDepth.length = 0;
    this.below.clear();
    this.fineCount = 0;
  }

  /** Fine marks held now (for tests and status). */
  get fineMarks(): number {
    return this.fineCount;
  }

  private dropFine(e: DirtyEntry): void {
    if (e.fine) this.fineCount -= e.fine.size;
    e.fine = null;
  }

  private put(path: string, e: DirtyEntry): void {
    const old = this.entries.get(path);
    if (old) this.dropFine(old);
    else for (let a = parentOf(path); a !== null; a = parentOf(a)) this.below.set(a, (this.below.get(a) ?? 0) + 1);
    this.entries.set(path, e);
    this.fineCount += e.fine?.size ?? 0;
    const d = depth(path);
    (this.byDepth[d] ??= new Set()).add(path);
  }

  private drop(path: string): void {
    const e = this.entries.get(path);
    if (!e) return;
    this.fineCount -= e.fine?.size ?? 0;
    this.entries.delete(path);
    this.byDepth[depth(path)]?.delete(path);
    for (let a = parentOf(path); a !== null; a = parentOf(a)) {
      const n = (this.below.get(a) ?? 0) - 1;
      if (n > 0) this.below.set(a, n);
      else this.below.delete(a);
    }
  }

  private takeTree(root: string): Array<[string, DirtyEntry]> {
    const out: Array<[string, DirtyEntry]> = [];
    const own = this.entries.get(root);
    if (own) out.push([root, own]);
    // Only a directory with marks below it needs the walk of every entry (rare: renamed or removed while
    // its contents wait to be brought over).
    if (this.below.has(root)) for (const [p, e] of this.entries) if (p.startsWith(`${root}/`)) out.push([p, e]);
    for (const [p] of out) this.drop(p);
    return out;
  }

  private deleteTree(root: string): void {
    this.takeTree(root);
  }
}

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}
