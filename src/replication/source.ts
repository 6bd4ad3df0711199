// The primary's end of the replication: turns the mount's mutation events into frames, holds each
// application call until the peer has acknowledged it, keeps the DirtySet (journal) while the peer is
// away, and reintegrates a returning peer while the application keeps writing.
//
// Why this is consistent. Every frame is built on the JavaScript thread, in the order the mount applied
// the operations, and resync data is read from the real files at the moment its frame is queued. So on
// the peer, for every object, the stream is: an older state (its own copy, or resync data read at time t)
// followed by every operation applied after t. The exceptions are handled by "coverage": an operation on
// an object the peer does not have yet (it is still in the DirtySet, or an ancestor directory is being
// compared) is not sent; it is marked instead, and the reintegration sends the object later, as it is then.
// A file whose checksums are awaited drops its data operations: the comparison reads the file after them.
//
// Data safety: an application call returns only when (a) the peer acknowledged its frame, or (b) the peer
// is not being replicated to, in which case the change is in the journal first. When the link breaks,
// the paths of unacknowledged frames go into the journal before their calls are released.

import { randomUUID } from 'node:crypto';
import { closeSync, constants as C, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { changedAtNs } from './change-time.ts';
import type { FrameLink } from './link.ts';
import type { Journal } from './journal.ts';
import { FINE_BYTES, type DirtyEntry } from './dirty-set.ts';
import { packXattrs, unpackEntries, type Frame, type FrameOf } from './protocol.ts';
import { errCode, type PeerFs } from './peer-fs.ts';
import { parentOf, replPath, splitReplPath, type ReplicationFilter } from './paths.ts';
import { readFully, SUM_BYTES, blockSum } from './target.ts';
import { zeroSum } from './frame-applier.ts';
import type { LiveOp } from './live-op.ts';
import { DataMap, PUNCH_HOLE_MODE, type DataRangesFs } from './sparse.ts';

export interface SourceDir {
  /** `/proc/self/fd/<rootFd>`: the real data under the mount. */
  underPath: string;
  /** The mount's root descriptor: with `SourceOptions.nativeFs`, extended attributes are read beneath it. */
  rootFd?: number;
  filter: ReplicationFilter;
  reply(job: number, errno: number): void;
}

/** What a connecting secondary says about itself (the welcome frame's state). */
export interface TargetState {
  /** What its mirror machine asked for. */
  sync: 'incremental' | 'full' | 'none';
  /** The sync point its data matches, if it knows one. */
  syncId: string | null;
  /** Its last stop was clean (everything it acknowledged is on its disk). */
  clean: boolean;
  lastSyncMs: number | null;
  /** Files it changed itself since its last sync point (a former primary that crashed). */
  hints: string[];
  hintsOverflow: boolean;
}

export interface SourceEvents {
  log(level: 'I' | 'E', message: string): void;
  /** The peer is a faithful copy from now on (syncEnd queued). */
  inSync(syncId: string, stats: ResyncStats): void;
  /** The link ended (reason), the peer is no longer replicated to. */
  lost(reason: string): void;
}

export interface ResyncStats {
  scope: string;
  bytesSent: number;
  filesCopied: number;
  durationMs: number;
}

export interface SourceOptions {
  dirs: readonly SourceDir[];
  journal: Journal;
  /** Checksum block for comparing files (and resync write size): 1 MiB. */
  blockBytes: number;
  /** Parallel reintegration requests (<rfs nbrei>). */
  nbrei: number;
  /** Reintegration bandwidth cap in bytes/s (<rfs reiallowedbw>), or 0. */
  reiBytesPerS: number;
  /** Grace before the last sync point for an unclean reintegration (files modified after it are compared). */
  uncleanGraceMs: number;
  /** Our own last sync time (for the unclean cutoff). */
  lastSyncMs: () => number | null;
  /**
   * The peer acknowledges frames on receipt (`<rfs async="second">`). Its acknowledgement then says it has
   * the bytes, not that they are on its disk, so an fsync proves what the earlier writes proved already: an
   * fsync returns once every frame before its own is acknowledged (usually at once), with no round trip of
   * its own. The fsync frame still goes, and the secondary flushes in its time.
   */
  acksOnReceipt?: boolean;
  /**
   * The native helpers. A reintegration reads extended attributes beneath a directory's rootFd with them
   * (and sends each compared object's set, `xattrs`, protocol v4, where the link speaks it), and where a
   * file holds data (sparse.ts): its holes are neither read nor sent. Without them, no extended attributes
   * go and every file is read whole.
   */
  nativeFs?: Pick<PeerFs, 'listxattrAt' | 'getxattrAt'> & DataRangesFs;
  nowMs: () => number;
  events: SourceEvents;
}

type Pending = { count: bigint; dir: number; job: number };
type Sent = { count: bigint; paths: string[] };
/**
 * What the reintegration is bringing over right now: a directory whose listing is awaited, or a file being
 * compared. A file comparison covers `ranges` (byte ranges, end exclusive, Infinity for "to the end") in
 * increasing order, and everything below `cursor` has been read: a data change inside what is still to be
 * read needs no frame (the comparison will read it), one elsewhere is journaled again.
 */
type InProgress = { kind: 'list'; deep: boolean } | { kind: 'sum'; ranges: Array<[number, number]>; cursor: number };
/** The peer's answers for one window: the checksums of each of its ranges. */
type PeerSums = { sums: Buffer[] };

/** Resync writes: up to this many consecutive differing bytes in one frame. */
const WRITE_CHUNK_BYTES = 1024 * 1024;
/**
 * Changed MiB (or journaled zones) are compared in blocks of this size: what crosses the network is the
 * changed blocks, not the marks' granularity.
 */
export const ZONE_SUM_BLOCK_BYTES = 64 * 1024;
/**
 * One checksum request covers at most this much of a file: its answer stays small, and the primary hashes it
 * in about 10 ms, a pause of its event loop (live frames wait meanwhile) that a whole big file would make long.
 */
export const SUM_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * ... and spans at most this much of it, holes included: the peer reads what it holds there (data where the
 * primary has a hole: a few hundred ms of its apply worker at worst), and its answer stays small (16 KiB
 * with 1 MiB blocks).
 */
export const SUM_WINDOW_SPAN_BYTES = 1024 * 1024 * 1024;

export class ReplicationSource {
  private link: FrameLink | null = null;
  private sentCount = 0n;
  private ackedCount = 0n;
  /** Frames the peer has applied: the paths of later ones are kept (sentPaths) until it has. */
  private appliedCount = 0n;
  /** The peer says what it applied (`applied` frames, protocol v2 on): see attach(). */
  private peerReportsApplied = true;
  /** The link speaks protocol v4: a reintegration sends `xattrs` frames (see sendXattrs). */
  private peerTakesXattrs = false;
  /** Files a directory listing showed the peer lacks, until their comparison (sent whole, see onList). */
  private peerLacks = new Set<string>();
  /**
   * Without `applied` frames and with acknowledgements on receipt: the paths of every frame acknowledged on
   * this link (a set: its memory follows the objects touched, not the writes). Nothing proves them applied.
   */
  private ackedUnproven = new Set<string>();
  private pending: Pending[] = [];
  private pendingHead = 0;
  private sentPaths: Sent[] = [];
  /** Handle -> replication path (null once unlinked) and whether it writes synchronously. */
  private readonly handles = new Map<string, { path: string | null; sync: boolean }>();
  /** Objects being reintegrated: waiting for the peer's listing or checksums. */
  private readonly inProgress = new Map<string, InProgress>();
  private readonly waiting = new Map<number, (f: Frame) => void>();
  private nextId = 1;
  private resyncing: { scope: string; started: number; bytes: number; files: number; cutoffNs: bigint | null; fullCompare: boolean; syncId: string } | null = null;
  private wake: (() => void) | null = null;
  private bwTokens = 0;
  private bwAt = 0;
  private congested = false;

  constructor(private readonly o: SourceOptions) {}

  get connected(): boolean {
    return this.link !== null;
  }

  get inSync(): boolean {
    return this.link !== null && this.resyncing === null;
  }

  status(): { connected: boolean; resyncing: boolean; dirty: number; unacked: number } {
    return { connected: this.link !== null, resyncing: this.resyncing !== null, dirty: this.o.journal.dirty.size, unacked: this.pending.length - this.pendingHead };
  }

  // ------------------------------------------------------------------------------------------ live ops

  /** A mutation the mount applied locally (dir = index of the replicated directory). */
  onOp(dir: number, ev: LiveOp): void {
    const d = this.o.dirs[dir]!;
    const P = (rel: string | null): string | null => (rel === null || !d.filter.replicates(rel) ? null : replPath(dir, rel));
    const hkey = (h: number): string => `${dir}:${h}`;
    const frames: Frame[] = [];
    const touched: string[] = [];
    const j = this.o.journal;
    const live = (p: string): boolean => this.link !== null && !this.covered(p);
    switch (ev.op) {
      case 'open':
      case 'create': {
        const p = P(ev.path);
        this.handles.set(hkey(ev.handle), { path: p, sync: (ev.flags & (C.O_SYNC | C.O_DSYNC)) !== 0 });
        if (p === null) break;
        if (ev.op === 'create') {
          if (live(p)) frames.push({ type: 'create', path: p, flags: ev.flags, mode: ev.mode, uid: ev.uid, gid: ev.gid, mtimeNs: ev.mtimeNs });
          else this.markNew(p);
        } else if ((ev.flags & C.O_TRUNC) !== 0) {
          if (live(p)) frames.push(setattr(p, { size: 0n, mtimeNs: ev.mtimeNs ?? null }));
          else this.markData(p, 0, 0);
        }
        break;
      }
      case 'release':
        this.handles.delete(hkey(ev.handle));
        break;
      case 'write': {
        const h = this.handles.get(hkey(ev.handle));
        const p = h?.path ?? null;
        if (p === null) break;
        if (live(p)) frames.push({ type: 'write', path: p, offset: BigInt(ev.offset), mtimeNs: ev.mtimeNs, sync: h!.sync ? 1 : 0, data: ev.data });
        else this.markData(p, ev.offset, ev.data.length);
        break;
      }
      case 'fallocate': {
        const p = this.handles.get(hkey(ev.handle))?.path ?? null;
        if (p === null) break;
        if (live(p)) frames.push({ type: 'fallocate', path: p, mode: ev.mode, offset: BigInt(ev.offset), length: BigInt(ev.length), mtimeNs: ev.mtimeNs });
        else this.markData(p, ev.offset, ev.length);
        break;
      }
      case 'fsync': {
        const p = this.handles.get(hkey(ev.handle))?.path ?? null;
        if (p !== null && live(p)) frames.push({ type: 'fsync', path: p, datasync: ev.datasync ? 1 : 0 });
        break;
      }
      case 'fsyncdir': {
        const p = P(ev.path);
        if (p !== null && live(p)) frames.push({ type: 'fsync', path: p, datasync: ev.datasync ? 1 : 0 });
        break;
      }
      case 'setattr': {
        const p = ev.handle !== undefined && ev.handle !== null ? (this.handles.get(hkey(ev.handle))?.path ?? null) : P(ev.path ?? null);
        if (p === null) break;
        if (live(p)) {
          frames.push(setattr(p, { mode: ev.mode ?? null, uid: ev.uid ?? null, gid: ev.gid ?? null, size: ev.size !== undefined && ev.size !== null ? BigInt(ev.size) : null, atimeNs: ev.atimeNs ?? null, mtimeNs: ev.mtimeNs ?? null }));
        } else if (ev.size !== undefined && ev.size !== null) this.markData(p, Number(ev.size), 0);
        else this.markMeta(p);
        break;
      }
      case 'setxattr':
      case 'removexattr': {
        const p = P(ev.path);
        if (p === null) break;
        if (live(p)) frames.push(ev.op === 'setxattr' ? { type: 'setxattr', path: p, name: ev.name, flags: ev.flags, value: ev.value } : { type: 'removexattr', path: p, name: ev.name });
        else this.markMeta(p);
        break;
      }
      case 'mknod':
      case 'mkdir':
      case 'symlink': {
        const p = P(ev.path);
        if (p === null) break;
        if (!live(p)) {
          this.markNew(p);
          // A directory made while the peer is away: what is later put in it is compared too.
          if (ev.op === 'mkdir') j.markList(p, true);
        } else if (ev.op === 'mknod') frames.push({ type: 'mknod', path: p, mode: ev.mode, rdev: ev.rdev, uid: ev.uid, gid: ev.gid });
        else if (ev.op === 'mkdir') frames.push({ type: 'mkdir', path: p, mode: ev.mode, uid: ev.uid, gid: ev.gid });
        else frames.push({ type: 'symlink', path: p, target: ev.target, uid: ev.uid, gid: ev.gid });
        break;
      }
      case 'link': {
        const a = P(ev.path);
        const b = P(ev.newPath);
        if (b === null) break;
        if (a !== null && live(a) && live(b)) frames.push({ type: 'link', path: a, newPath: b });
        else this.markNew(b);
        break;
      }
      case 'unlink':
      case 'rmdir': {
        const p = P(ev.path);
        for (const h of this.handles.values()) if (h.path === p) h.path = null;
        if (p === null) break;
        if (live(p)) frames.push({ type: ev.op, path: p });
        else j.removed(p);
        break;
      }
      case 'rename': {
        const a = P(ev.path);
        const b = P(ev.newPath);
        this.renameHandles(a, b, ev.flags === 2);
        if (a === null && b === null) break;
        if (a !== null && b !== null && live(a) && live(b)) frames.push({ type: 'rename', path: a, newPath: b, flags: ev.flags });
        else if (a !== null && b !== null) j.renamed(a, b, ev.flags === 2);
        else if (a !== null) {
          // Renamed out of what is replicated: on the peer it is gone.
          if (live(a)) frames.push({ type: 'rmtree', path: a });
          else j.removed(a);
        } else j.markList(b!, true);
        break;
      }
    }
    for (const f of frames) {
      if ('path' in f) touched.push(f.path);
      if ('newPath' in f) touched.push(f.newPath);
    }
    this.finish(dir, ev.job, frames, touched, (ev.op === 'fsync' || ev.op === 'fsyncdir') && this.o.acksOnReceipt === true);
  }

  /**
   * Sends the frames of one operation; its call returns when the last one is acknowledged, or, for a
   * barrier (an fsync with acknowledgements on receipt), when every frame before them is.
   */
  private finish(dir: number, job: number, frames: Frame[], paths: string[], barrier = false): void {
    if (frames.length === 0 || this.link === null) {
      if (job) this.o.dirs[dir]!.reply(job, 0);
      return;
    }
    const before = this.sentCount;
    for (const f of frames) this.send(f);
    this.sentPaths.push({ count: this.sentCount, paths });
    if (!job) return;
    const count = barrier ? before : this.sentCount;
    // Pending counts stay in order: every earlier one is at most `before`.
    if (count <= this.ackedCount) this.o.dirs[dir]!.reply(job, 0);
    else this.pending.push({ count, dir, job });
  }

  private send(f: Frame): void {
    this.sentCount++;
    if (!this.link!.send(f)) this.congested = true;
  }

  /** Reintegration waits here when the link has more than its high-water mark queued; live frames never wait. */
  private async drain(link: FrameLink): Promise<void> {
    await link.drained();
    this.congested = false;
  }

  private covered(p: string): boolean {
    if (this.o.journal.dirty.covers(p)) return true;
    if (this.inProgress.size === 0) return false;
    const own = this.inProgress.get(p);
    if (own) return true;
    for (let q = parentOf(p); q !== null; q = parentOf(q)) if (this.inProgress.get(q)?.kind === 'list') return true;
    return false;
  }

  /** A data change to a path the peer does not have in its current form. */
  private markData(p: string, offset: number, length: number): void {
    // The file is being compared and this change lies in what the comparison has still to read.
    const ip = this.inProgress.get(p);
    if (ip?.kind === 'sum' && stillToRead(ip, offset, Math.max(length, 1))) return;
    this.o.journal.markZones(p, offset, length);
  }

  private markMeta(p: string): void {
    if (this.inProgress.get(p)?.kind === 'sum') return;
    this.o.journal.markAll(p);
  }

  private markNew(p: string): void {
    this.o.journal.markAll(p);
    const parent = parentOf(p);
    if (parent !== null) this.o.journal.markList(parent);
    this.kick();
  }

  private renameHandles(a: string | null, b: string | null, exchange: boolean): void {
    for (const h of this.handles.values()) {
      if (h.path === null) continue;
      if (a !== null && (h.path === a || h.path.startsWith(`${a}/`))) h.path = b === null ? null : b + h.path.slice(a.length);
      else if (exchange && b !== null && (h.path === b || h.path.startsWith(`${b}/`))) h.path = a === null ? null : a + h.path.slice(b.length);
    }
  }

  // ------------------------------------------------------------------------------------------ the link

  /**
   * A secondary connected (after the hello/welcome exchange). Starts its reintegration.
   *
   * `peerReportsApplied: false` (a link that speaks protocol v1, before `applied` frames): with
   * acknowledgements after applying (async="none") an acknowledgement proves the frame applied, as v1 did.
   * With acknowledgements on receipt (async="second") nothing ever proves it: the paths of every frame
   * acknowledged on this link stay kept and are all marked for comparison if the link breaks (a secondary
   * whose daemon dies loses what it had received and not applied). This keeps async="second" available
   * during a rolling upgrade, at the cost of a larger comparison after a break.
   */
  attach(link: FrameLink, target: TargetState, o: { peerReportsApplied?: boolean; peerTakesXattrs?: boolean } = {}): void {
    if (this.link) throw new Error('ReplicationSource: already attached');
    this.link = link;
    this.peerTakesXattrs = o.peerTakesXattrs ?? false;
    this.peerLacks.clear();
    this.sentCount = 0n;
    this.ackedCount = 0n;
    this.appliedCount = 0n;
    this.peerReportsApplied = o.peerReportsApplied ?? true;
    this.ackedUnproven = new Set();
    link.onFrame((f) => this.onFrame(f));
    link.onClose((e) => this.detach(e ? e.message : 'the link closed'));
    this.startResync(target);
  }

  /** Drops the link: unacknowledged changes go to the journal, then their calls are released. */
  detach(reason: string): void {
    const link = this.link;
    if (!link) return;
    this.link = null;
    const j = this.o.journal;
    // The peer may or may not have applied these (acknowledged on receipt is not applied: a secondary whose
    // daemon dies loses what it had not applied yet): compare each object (and, for a directory, its entries).
    for (const s of this.sentPaths) if (s.count > this.appliedCount) for (const p of s.paths) j.markList(p, true);
    for (const p of this.ackedUnproven) j.markList(p, true);
    this.ackedUnproven = new Set();
    for (const [p, ip] of this.inProgress) ip.kind === 'list' ? j.markList(p, ip.deep) : j.markAll(p);
    this.inProgress.clear();
    this.sentPaths = [];
    for (const w of this.waiting.values()) w({ type: 'fail', count: 0n, error: 'link closed' });
    this.waiting.clear();
    this.resyncing = null;
    this.releaseAll();
    link.close();
    this.kick();
    this.o.events.lost(reason);
  }

  /** Every held call returns (the changes are in the journal or acknowledged). */
  private releaseAll(): void {
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const p = this.pending[i]!;
      this.o.dirs[p.dir]!.reply(p.job, 0);
    }
    this.pending = [];
    this.pendingHead = 0;
  }

  /** The oldest call waiting for the peer, and since when it is sent (for locktimeout). */
  oldestUnacked(): bigint | null {
    return this.pendingHead < this.pending.length ? this.pending[this.pendingHead]!.count : null;
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case 'ack': {
        if (f.count > this.sentCount || f.count < this.ackedCount) {
          this.detach(`the peer acknowledged frame ${f.count}, ${this.sentCount} were sent`);
          return;
        }
        this.ackedCount = f.count;
        while (this.pendingHead < this.pending.length && this.pending[this.pendingHead]!.count <= f.count) {
          const p = this.pending[this.pendingHead++]!;
          this.o.dirs[p.dir]!.reply(p.job, 0);
        }
        if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
          this.pending = this.pending.slice(this.pendingHead);
          this.pendingHead = 0;
        }
        if (!this.peerReportsApplied) {
          // v1 (see attach): after applying, the acknowledgement is the applied count; on receipt, the paths
          // move to the set that stays until the link ends.
          const acked = this.forgetApplied(f.count);
          if (this.o.acksOnReceipt === true) for (const s of acked) for (const p of s.paths) this.ackedUnproven.add(p);
        }
        return;
      }
      case 'applied': {
        if (f.count > this.sentCount || f.count < this.appliedCount) {
          this.detach(`the peer applied frame ${f.count}, ${this.sentCount} were sent`);
          return;
        }
        this.forgetApplied(f.count);
        return;
      }
      case 'list':
      case 'sum': {
        const w = this.waiting.get(f.id);
        if (!w) {
          this.detach(`reply ${f.type} ${f.id} to no request`);
          return;
        }
        this.waiting.delete(f.id);
        w(f);
        return;
      }
      case 'fail':
        this.o.events.log('E', `replication: the secondary could not apply ${f.error}; it will be reintegrated`);
        this.detach(`the secondary failed: ${f.error}`);
        return;
      default:
        this.detach(`unexpected frame ${f.type} from the secondary`);
    }
  }

  /** Frames up to `count` are applied on the peer: their paths need no comparison any more (returned). */
  private forgetApplied(count: bigint): Sent[] {
    this.appliedCount = count;
    let k = 0;
    while (k < this.sentPaths.length && this.sentPaths[k]!.count <= count) k++;
    return k ? this.sentPaths.splice(0, k) : [];
  }

  /** Periodic: the last sync time moves on while the peer is a faithful copy. */
  mark(nowMs: number): void {
    if (this.inSync) {
      this.send({ type: 'syncMark', lastSyncMs: BigInt(Math.round(nowMs)) });
      this.sentPaths.push({ count: this.sentCount, paths: [] });
    }
  }

  // ------------------------------------------------------------------------------------------ resync

  private startResync(t: TargetState): void {
    const j = this.o.journal;
    const dirs = this.o.dirs.map((_, i) => replPath(i, ''));
    let scope: string;
    let cutoffNs: bigint | null = null;
    let fullCompare = false;
    if (t.sync === 'none') {
      scope = 'none (swap nosync)';
      j.dirty.clear();
    } else if (t.sync === 'full') {
      scope = 'full';
      fullCompare = true;
      j.dirty.clear();
      for (const d of dirs) j.markList(d, true);
    } else if (t.syncId !== null && t.syncId === j.syncId && j.syncId !== null && t.clean) {
      scope = `incremental (${j.dirty.size} changed paths)`;
    } else {
      // No common sync point, or the secondary did not stop cleanly: what it acknowledged on receipt
      // (async="second") may never have reached its disk, and the journal does not list that. As the
      // reference does after a crash or a power loss, everything modified since the last sync point
      // (minus the grace) is compared, on top of the journal.
      const last = Math.min(t.lastSyncMs ?? 0, this.o.lastSyncMs() ?? 0);
      cutoffNs = BigInt(Math.max(0, last - this.o.uncleanGraceMs)) * 1_000_000n;
      const since = `changed since ${new Date(last - this.o.uncleanGraceMs).toISOString()}`;
      const sameSyncPoint = t.syncId !== null && t.syncId === j.syncId;
      scope = last > 0 ? (sameSyncPoint ? `${since} (the secondary did not stop cleanly; journal: ${j.dirty.size} changed paths)` : since) : 'full (no common sync point)';
      if (last === 0) fullCompare = true;
      for (const d of dirs) j.markList(d, true);
    }
    if (t.hintsOverflow) for (const d of dirs) j.markList(d, true);
    for (const h of t.hints) j.markAll(h);
    const syncId = randomUUID();
    this.resyncing = { scope, started: this.o.nowMs(), bytes: 0, files: 0, cutoffNs, fullCompare, syncId };
    this.send({ type: 'syncBegin', syncId, scope });
    this.o.events.log('I', `Reintegration of the secondary: ${scope}`);
    void this.runResync(this.link!).catch((e: Error) => this.detach(`reintegration failed: ${e.message}`));
  }

  private kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async runResync(link: FrameLink): Promise<void> {
    const j = this.o.journal;
    const outstanding = new Set<Promise<void>>();
    let turns = 0;
    while (this.link === link) {
      // Let the mount's events in now and then: a big reintegration must not stall the application.
      if (++turns % 256 === 0) await new Promise((r) => setImmediate(r));
      const next = outstanding.size < this.o.nbrei ? j.dirty.takeNext() : undefined;
      if (next && (this.inProgress.has(next[0]) || this.ancestorListing(next[0])) && outstanding.size > 0) {
        // Marked again while it is being brought over: once that ends (two at once would race). Or under a
        // directory whose listing is awaited: that directory may not exist on the peer before the answer
        // (its creation is sent then), so nothing under it can be sent yet.
        j.dirty.set(next[0], next[1]);
        await Promise.race(outstanding);
        continue;
      }
      if (next) {
        const task = this.syncOne(link, next[0], next[1], next[1].deep || next[1].list, next[1].deep);
        if (task) {
          const t: Promise<void> = task.finally(() => outstanding.delete(t));
          outstanding.add(t);
        }
        if (this.congested) await this.drain(link);
        continue;
      }
      if (outstanding.size > 0) {
        await Promise.race(outstanding);
        continue;
      }
      if (this.resyncing && j.dirty.size === 0 && this.inProgress.size === 0) {
        const r = this.resyncing;
        this.resyncing = null;
        const now = Math.round(Date.now());
        this.send({ type: 'syncEnd', syncId: r.syncId, lastSyncMs: BigInt(now) });
        this.sentPaths.push({ count: this.sentCount, paths: [] });
        j.reset(r.syncId, now);
        this.o.events.inSync(r.syncId, { scope: r.scope, bytesSent: r.bytes, filesCopied: r.files, durationMs: this.o.nowMs() - r.started });
      }
      // Idle: in sync, or waiting for marks made by live operations on objects still to send.
      await new Promise<void>((resolve) => (this.wake = resolve));
      if (this.link === link && !this.resyncing && j.dirty.size > 0) {
        // A live operation needed an object the peer lacks (e.g. renamed in from an excluded path).
        this.resyncing = { scope: 'catch-up', started: this.o.nowMs(), bytes: 0, files: 0, cutoffNs: null, fullCompare: false, syncId: randomUUID() };
      }
    }
  }

  /** Whether a directory above `p` is being listed (its answer, and its creation on the peer, are awaited). */
  private ancestorListing(p: string): boolean {
    for (let a = parentOf(p); a !== null; a = parentOf(a)) if (this.inProgress.get(a)?.kind === 'list') return true;
    return false;
  }

  /** Brings one path up to date on the peer. Returns a promise when it waits for the peer. */
  private syncOne(link: FrameLink, p: string, marks: Pick<DirtyEntry, 'zones' | 'fine'>, list: boolean, deep: boolean): Promise<void> | null {
    const peerLacks = this.peerLacks.delete(p);
    const st = this.lstat(p);
    if (!st) {
      this.send({ type: 'rmtree', path: p });
      return null;
    }
    if (st.isDirectory()) {
      if (!list) {
        // Attributes only.
        this.send({ type: 'dirMeta', path: p, mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs });
        this.sendXattrs(p);
        return null;
      }
      return this.request(link, p, 'list', deep, (id) => ({ type: 'listReq', id, path: p }), (f) => this.onList(p, f as FrameOf<'list'>, deep));
    }
    if (st.isSymbolicLink() || !st.isFile()) {
      this.send({ type: 'rmtree', path: p });
      const meta = { uid: Number(st.uid), gid: Number(st.gid) };
      if (st.isSymbolicLink()) this.send({ type: 'symlink', path: p, target: this.readlink(p), ...meta });
      else this.send({ type: 'mknod', path: p, mode: Number(st.mode), rdev: Number(st.rdev), ...meta });
      // Made anew on the peer, so with no extended attributes: its set (trusted.*, security.* such as an
      // SELinux label; the kernel keeps user.* for files and directories) follows.
      this.sendXattrs(p);
      return null;
    }
    // The journal knows which MiB (or zones) changed, the peer has the rest: their blocks are compared.
    // Otherwise the whole file is.
    if (peerLacks) return this.compareFile(link, p, null, this.o.blockBytes, true);
    if (marks.fine) return this.compareFile(link, p, zoneRanges(marks.fine, FINE_BYTES), ZONE_SUM_BLOCK_BYTES);
    if (marks.zones) return this.compareFile(link, p, zoneRanges(marks.zones, this.o.journal.dirty.zoneBytes), ZONE_SUM_BLOCK_BYTES);
    return this.compareFile(link, p, null, this.o.blockBytes);
  }

  private request(link: FrameLink, p: string, kind: 'list', deep: boolean, make: (id: number) => Frame, then: (f: Frame) => Promise<void> | void): Promise<void> {
    const id = this.nextId++;
    this.inProgress.set(p, { kind, deep });
    this.send(make(id));
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, (f) => {
        if (this.link !== link || f.type === 'fail') return resolve();
        this.inProgress.delete(p);
        Promise.resolve()
          .then(() => then(f))
          .then(resolve, reject);
      });
    });
  }

  private onList(p: string, f: FrameOf<'list'>, deep: boolean): void {
    const j = this.o.journal;
    const st = this.lstat(p);
    if (!st || !st.isDirectory()) {
      j.markAll(p);
      return;
    }
    const meta = { mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid) };
    if (!f.exists) {
      this.send({ type: 'dirMeta', path: p, ...meta, mtimeNs: st.mtimeNs });
      this.sendXattrs(p);
    }
    const theirs = new Map(f.exists ? unpackEntries(f.entries).map((e) => [e.name, e.type] as const) : []);
    const { dirIndex, rel } = splitReplPath(p);
    const filter = this.o.dirs[dirIndex]!.filter;
    const ours = new Map<string, string>();
    for (const e of this.readdir(p)) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (filter.replicates(childRel)) ours.set(e.name, e.type);
    }
    for (const [name] of theirs) {
      // What is not replicated stays as the peer has it.
      if (!ours.has(name) && filter.replicates(rel === '' ? name : `${rel}/${name}`)) this.send({ type: 'rmtree', path: `${p}/${name}` });
    }
    const r = this.resyncing;
    for (const [name, type] of ours) {
      const child = `${p}/${name}`;
      const same = theirs.get(name) === type;
      if (type === 'dir') {
        if (!same || deep) j.markList(child, deep || !same);
        continue;
      }
      if (!same) {
        if (theirs.has(name)) this.send({ type: 'rmtree', path: child });
        // The listing says the peer has no such file (or has just been told to remove what it had): its
        // comparison sends it whole without asking for checksums first (one round trip per file less: a
        // first sync of a million small files was bound by those round trips).
        if (type === 'file') this.peerLacks.add(child);
        j.markAll(child);
      } else if (deep && type === 'file') {
        // Unclean reintegration: only files changed since the cutoff are compared (data or metadata: see
        // change-time.ts).
        if (r && !r.fullCompare && r.cutoffNs !== null) {
          const cst = this.lstat(child);
          if (cst && changedAtNs(cst) <= r.cutoffNs) continue;
        }
        j.markAll(child);
      } else if (deep) j.markAll(child);
    }
    if (f.exists) {
      this.send({ type: 'dirMeta', path: p, ...meta, mtimeNs: st.mtimeNs });
      this.sendXattrs(p);
    }
  }

  /** Sends a request and resolves with its answer (a `fail` frame when the link went away meanwhile). */
  private ask(link: FrameLink, make: (id: number) => Frame): Promise<Frame> {
    const id = this.nextId++;
    this.send(make(id));
    return new Promise<Frame>((resolve) => this.waiting.set(id, (f) => resolve(this.link === link ? f : { type: 'fail', count: 0n, error: 'link closed' })));
  }

  /**
   * Brings a file over by comparison: block checksums of `ranges` (null: the whole file), window by window,
   * then the blocks that differ, read now (see the header), then its attributes. A peer without the file
   * (or with something else under its name) gets all of it, with no checksums asked.
   */
  private async compareFile(link: FrameLink, p: string, ranges: Array<[number, number]> | null, blockBytes: number, peerLacks = false): Promise<void> {
    const under = this.under(p);
    let fd: number;
    try {
      fd = openSync(under, C.O_RDONLY | C.O_NOFOLLOW);
    } catch {
      this.o.journal.markAll(p);
      return;
    }
    const job: InProgress & { kind: 'sum' } = { kind: 'sum', ranges: ranges ?? [[0, Infinity]], cursor: 0 };
    this.inProgress.set(p, job);
    const buf = Buffer.allocUnsafe(WRITE_CHUNK_BYTES);
    try {
      // Nothing but this stream writes on the secondary: what its listing lacked, it still lacks.
      let peerHas = !peerLacks;
      let first = true;
      for (;;) {
        const size = fstatSync(fd).size;
        const holes = this.o.nativeFs;
        const win = nextWindow(job, size, blockBytes, holes && ((from, limit, budget) => DataMap.of(holes, fd, from, limit).span(from, limit, budget)));
        let peer: PeerSums | null = null;
        if (peerHas) {
          // One request per range of the window, all at once (one round trip); the first answer also says
          // whether the peer has a regular file there at all.
          const asked = (win ?? [[0, 0]]).map(([start, end]) => this.ask(link, (id) => ({ type: 'rangeSumReq', id, path: p, blockSize: blockBytes, offset: BigInt(start), length: BigInt(end - start) })));
          const answers = await Promise.all(asked);
          if (this.link !== link || answers.some((a) => a.type !== 'sum')) return;
          const f = answers[0] as FrameOf<'sum'>;
          if (first && (!f.exists || f.kind !== 0)) {
            if (f.exists) this.send({ type: 'rmtree', path: p });
            peerHas = false;
            job.ranges = [[0, Infinity]];
            job.cursor = 0;
          } else peer = { sums: answers.map((a) => (a as FrameOf<'sum'>).sums) };
        }
        if (first) {
          first = false;
          if (this.resyncing) this.resyncing.files++;
          // Creates the file (or gives it its size) before any block is written to it.
          this.sendFileMeta(p, fd);
          if (!peerHas) continue;
        }
        if (!win) break;
        await this.sendDiffering(link, p, fd, buf, win, blockBytes, peer, job);
        if (this.link !== link) return;
      }
      // Size, owner, mode and modification time as the comparison leaves the file, then its extended
      // attributes (after the owner: a chown clears security.capability).
      this.sendFileMeta(p, fd);
      this.sendXattrs(p);
    } finally {
      closeSync(fd);
      if (this.inProgress.get(p) === job) this.inProgress.delete(p);
    }
  }

  /**
   * The object's extended attributes as they are now, as the set the peer must hold (`xattrs`): what changed
   * while the peer was away, removals included. Only over protocol v4 and with a reader (the mount's root);
   * a file system without extended attributes sends an empty set, which the peer takes as "none".
   */
  private sendXattrs(p: string): void {
    const xfs = this.o.nativeFs;
    const { dirIndex, rel } = splitReplPath(p);
    const rootFd = this.o.dirs[dirIndex]?.rootFd;
    if (!this.peerTakesXattrs || !xfs || rootFd === undefined) return;
    const entries: Array<{ name: string; value: Buffer }> = [];
    try {
      for (const name of xfs.listxattrAt(rootFd, rel)) {
        try {
          entries.push({ name, value: xfs.getxattrAt(rootFd, rel, name) });
        } catch (e) {
          if (errCode(e) !== 'ENODATA') throw e; // removed between the two calls: its removal is replicated live
        }
      }
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT') return; // gone meanwhile: its removal is replicated live
      if (code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') {
        // Not retried (a reintegration must end): said, and left as it is on the peer.
        this.o.events.log('E', `Reintegration: cannot read the extended attributes of ${p} (${code}); the secondary keeps its own`);
        return;
      }
    }
    this.send({ type: 'xattrs', path: p, entries: packXattrs(entries) });
  }

  private sendFileMeta(p: string, fd: number): void {
    const st = fstatSync(fd, { bigint: true });
    this.send({ type: 'fileMeta', path: p, mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid), size: st.size, mtimeNs: st.mtimeNs });
  }

  /**
   * Reads the blocks of one window (ranges in increasing order) and sends those the peer lacks (`peer` null:
   * all of them) in runs of up to WRITE_CHUNK_BYTES; `job.cursor` follows what has been read. A block wholly
   * inside a hole of this file is not read: the peer gets nothing for it when it has zeros there (or no file
   * before this comparison: fileMeta gave it the size, as a hole), else a punched hole (`fallocate`).
   */
  private async sendDiffering(link: FrameLink, p: string, fd: number, buf: Buffer, win: ReadonlyArray<readonly [number, number]>, blockBytes: number, peer: PeerSums | null, job: { cursor: number }): Promise<void> {
    let runStart = -1;
    let runLen = 0;
    let punchStart = -1;
    let punchLen = 0;
    // Where this file holds data, and its size, taken together and again after every wait (see sparse.ts).
    let map: DataMap | null = null;
    let size = 0;
    const flushPunch = (): void => {
      if (punchLen === 0) return;
      const mtimeNs = fstatSync(fd, { bigint: true }).mtimeNs;
      this.send({ type: 'fallocate', path: p, mode: PUNCH_HOLE_MODE, offset: BigInt(punchStart), length: BigInt(punchLen), mtimeNs });
      this.sentPaths.push({ count: this.sentCount, paths: [p] });
      punchStart = -1;
      punchLen = 0;
    };
    // The run of differing data read so far (a punch run stays open across it: the two never overlap).
    const flushRun = async (): Promise<void> => {
      if (runLen === 0) return;
      const at = runStart;
      let len = runLen;
      runStart = -1;
      runLen = 0;
      map = null;
      if (this.o.reiBytesPerS) {
        await this.throttle(len);
        if (this.link !== link) return;
        // Read again after waiting: what is sent is the file as it is now (see the header).
        len = readFully(fd, buf, len, at);
        if (len === 0) return;
      }
      const mtimeNs = fstatSync(fd, { bigint: true }).mtimeNs;
      this.send({ type: 'write', path: p, offset: BigInt(at), mtimeNs, sync: 0, data: Buffer.from(buf.subarray(0, len)) });
      this.sentPaths.push({ count: this.sentCount, paths: [p] });
      if (this.resyncing) this.resyncing.bytes += len;
      if (this.congested) await this.drain(link);
    };
    const flush = async (): Promise<void> => {
      flushPunch();
      await flushRun();
    };
    for (const [r, [start, end]] of win.entries()) {
      // The peer's checksums of this range: one per block that starts before its file's end.
      const sums = peer?.sums[r];
      for (let at = start; at < end; at += blockBytes) {
        if (this.link !== link) return;
        // A run is one write at consecutive offsets: it ends with its buffer, or at a gap between ranges.
        if (runLen + blockBytes > buf.length || (runLen > 0 && runStart + runLen !== at)) await flush();
        const want = Math.min(blockBytes, end - at);
        const k = (at - start) / blockBytes;
        const theirs = sums !== undefined && (k + 1) * SUM_BYTES <= sums.length ? sums.subarray(k * SUM_BYTES, (k + 1) * SUM_BYTES) : null;
        if (!map) {
          size = fstatSync(fd).size;
          map = DataMap.of(this.o.nativeFs, fd, at, end);
        }
        const holeLen = Math.min(want, size - at);
        if (holeLen > 0 && map.isHole(at, holeLen)) {
          job.cursor = at + blockBytes;
          await flushRun(); // takes the map again if it waited: this block's fate is settled, the cursor past it
          if (peer !== null && !(theirs && theirs.equals(zeroSum(holeLen)))) {
            if (punchLen > 0 && punchStart + punchLen !== at) flushPunch();
            if (punchLen === 0) punchStart = at;
            punchLen += holeLen;
          }
          if (holeLen < blockBytes) break;
          continue;
        }
        const n = readFully(fd, buf.subarray(runLen), want, at);
        job.cursor = at + blockBytes;
        if (n === 0) break;
        const same = theirs !== null && blockSum(buf.subarray(runLen, runLen + n)).equals(theirs);
        if (same) {
          await flush();
          continue;
        }
        flushPunch();
        if (runLen === 0) runStart = at;
        runLen += n;
        if (n < blockBytes) break;
      }
      job.cursor = Math.max(job.cursor, end);
    }
    await flush();
  }

  private async throttle(bytes: number): Promise<void> {
    const rate = this.o.reiBytesPerS;
    if (!rate) return;
    const now = this.o.nowMs();
    this.bwTokens = Math.min(rate, this.bwTokens + ((now - this.bwAt) * rate) / 1000);
    this.bwAt = now;
    this.bwTokens -= bytes;
    if (this.bwTokens < 0) await new Promise((r) => setTimeout(r, (-this.bwTokens / rate) * 1000));
  }

  private under(p: string): string {
    const { dirIndex, rel } = splitReplPath(p);
    const base = this.o.dirs[dirIndex]!.underPath;
    // `/proc/self/fd/N` itself is a (magic) symlink: the root is reached through it.
    return rel === '' ? `${base}/.` : `${base}/${rel}`;
  }

  private lstat(p: string): BigIntStats | null {
    try {
      return lstatSync(this.under(p), { bigint: true });
    } catch {
      return null;
    }
  }

  private readdir(p: string): Array<{ name: string; type: string }> {
    try {
      return readdirSync(this.under(p), { withFileTypes: true }).map((e) => ({
        name: e.name,
        type: e.isDirectory() ? 'dir' : e.isFile() ? 'file' : e.isSymbolicLink() ? 'symlink' : 'other',
      }));
    } catch {
      return [];
    }
  }

  private readlink(p: string): string {
    return readlinkSync(this.under(p), 'utf8');
  }

  /**
   * Read-only figures for the runtime's stall watchdog and status: frames sent and acknowledged on the
   * current link, the frame of the oldest application call still held, and the reintegration under way
   * (startedMs on the nowMs() clock).
   */
  progress(): {
    sentFrames: bigint;
    ackedFrames: bigint;
    oldestHeldFrame: bigint | null;
    heldCalls: number;
    resync: { scope: string; startedMs: number; files: number; bytesSent: number } | null;
  } {
    const r = this.resyncing;
    return {
      sentFrames: this.sentCount,
      ackedFrames: this.ackedCount,
      oldestHeldFrame: this.oldestUnacked(),
      heldCalls: this.pending.length - this.pendingHead,
      resync: r ? { scope: r.scope, startedMs: r.started, files: r.files, bytesSent: r.bytes } : null,
    };
  }
}

function setattr(path: string, a: Partial<Omit<FrameOf<'setattr'>, 'type' | 'path'>>): Frame {
  return { type: 'setattr', path, mode: a.mode ?? null, uid: a.uid ?? null, gid: a.gid ?? null, size: a.size ?? null, atimeNs: a.atimeNs ?? null, mtimeNs: a.mtimeNs ?? null };
}

/** Byte ranges of a file's journaled zones, merged, in increasing order. */
export function zoneRanges(zones: ReadonlySet<number>, zoneBytes: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const z of [...zones].sort((a, b) => a - b)) {
    const last = out[out.length - 1];
    if (last && last[1] === z * zoneBytes) last[1] = (z + 1) * zoneBytes;
    else out.push([z * zoneBytes, (z + 1) * zoneBytes]);
  }
  return out;
}

/** Is [offset, offset+length) inside what a file comparison has still to read? */
export function stillToRead(job: { ranges: ReadonlyArray<readonly [number, number]>; cursor: number }, offset: number, length: number): boolean {
  if (offset < job.cursor) return false;
  let from = offset;
  const end = offset + length;
  for (const [a, b] of job.ranges) {
    if (b <= from) continue;
    if (a > from) return false;
    from = b;
    if (from >= end) return true;
  }
  return false;
}

/**
 * The next window of a file comparison from `job.cursor`: block-aligned parts of `job.ranges`, in order,
 * that start before the end of the file (`size`); null when nothing is left to read. A window costs
 * SUM_WINDOW_BYTES at most: each byte 1 without `spanOf`; with it (a file's data map, sparse.ts), holes cost
 * HOLE_WEIGHT, so a window spans at most SUM_WINDOW_SPAN_BYTES of holes (one request per GiB of a sparse
 * file, not per 16 MiB).
 */
export function nextWindow(
  job: { ranges: ReadonlyArray<readonly [number, number]>; cursor: number },
  size: number,
  blockBytes: number,
  spanOf?: (from: number, limit: number, budget: number) => { end: number; cost: number },
): Array<[number, number]> | null {
  const out: Array<[number, number]> = [];
  let budget = SUM_WINDOW_BYTES;
  const fileEnd = Math.ceil(size / blockBytes) * blockBytes;
  for (const [a, b] of job.ranges) {
    if (b <= job.cursor) continue;
    const start = Math.floor(Math.max(a, job.cursor) / blockBytes) * blockBytes;
    if (start >= size || budget <= 0) break;
    const prev = out[out.length - 1];
    const from = prev && prev[1] > start ? prev[1] : start;
    let end: number;
    let cost: number;
    if (spanOf) {
      const limit = Math.min(b, fileEnd, from + SUM_WINDOW_SPAN_BYTES);
      if (limit <= from) continue;
      const s = spanOf(from, limit, budget);
      // Whole blocks, at least one: the window always moves on.
      end = Math.min(limit, Math.max(from + blockBytes, Math.ceil(s.end / blockBytes) * blockBytes));
      cost = Math.max(s.cost, 1);
    } else {
      end = Math.min(b, from + budget, fileEnd);
      cost = end - from;
    }
    if (end <= from) continue;
    if (prev && prev[1] === from) prev[1] = end;
    else out.push([from, end]);
    budget -= cost;
  }
  return out.length ? out : null;
}
