// One mirror module's replication on one node: the FUSE mounts of its <replicated> directories, the role
// the mirror machine gives it (prim: source, second: target, off), the link to the peer, and the record.
//
// When things happen (the engine calls these in its effect order):
//   beforeScripts(batch)  the first batch of a start mounts every replicated directory (read-only to
//                         applications); a batch that runs start_prim makes them writable first, so the
//                         application never writes past the interception.
//   afterScripts(batch)   after stop_prim they are read-only again; a batch that ends in STOP unmounts.
//   setRole(role, sync)   prim: journal on, connect to the peer and reintegrate it; second: listen for the
//                         primary and apply its stream; off: stop following, record a clean end.
//
// The record (rfs-state.ts) is written before the role acts: `clean: false` while a role runs, so a crash
// is known at the next start and the reintegration then compares instead of trusting the journal.

import { mkdirSync, readdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:tls';
import type { Rfs } from '../config/userconfig/types.ts';
import type { ReplicationRole, ReplicationSync } from '../mirror/types.ts';
import type { ReplicationPort, ReplicationReport, RunScriptsEffect } from '../engine/mirror-engine.ts';
import { Journal } from './journal.ts';
import { connectLink, listenLinks, type FrameLink } from './link.ts';
import { ReplicationFilter, replPath } from './paths.ts';
import type { PeerFs } from './peer-fs.ts';
import { PROTOCOL_VERSION } from './protocol.ts';
import { RfsRecordStore } from './rfs-state.ts';
import { ReplicationSource, type ResyncStats, type TargetState } from './source.ts';
import { ReplicationTarget } from './target.ts';
import type { LiveOp } from './live-op.ts';

export interface RfsMount {
  rootFd: number;
  underPath: string;
  reply(job: number, errno: number): void;
  setReadOnly(readOnly: boolean): void;
  unmount(): Promise<void>;
}

export interface RfsNative {
  fs: PeerFs;
  mount(o: { mountPoint: string; fsName: string; onOp: (ev: LiveOp) => void; onExit: (why: string) => void }): RfsMount;
  openRoot(path: string): number;
}

export type RfsLog = (level: 'I' | 'E', message: string, fields?: Record<string, unknown>) => void;

/** Grace before the last sync point for an unclean reintegration (the reference's "typically 1 h"). */
export const UNCLEAN_GRACE_MS = 60 * 60 * 1000;
/** How often the last sync time moves on while in sync. */
export const SYNC_MARK_INTERVAL_MS = 10_000;
/** A target that crashed lists at most this many files it changed; beyond, the reintegration compares all. */
const MAX_HINTS = 100_000;
const CONNECT_RETRY_MS = 1000;

export interface RfsRuntimeOptions {
  module: string;
  self: string;
  peer: string;
  rfs: Rfs;
  /** This node's and the peer's address on the replication lan, and the port (5600 + (id-1)*4). */
  localAddr: string;
  peerAddr: string;
  port: number;
  moduleKey: Uint8Array;
  stateDir: string;
  native: RfsNative;
  log: RfsLog;
}

export class RfsRuntime implements ReplicationPort {
  private readonly record: RfsRecordStore;
  private readonly journal: Journal;
  private mounts: RfsMount[] | null = null;
  private readOnly = true;
  private role: ReplicationRole = 'off';
  private source: ReplicationSource | null = null;
  private target: ReplicationTarget | null = null;
  private server: Server | null = null;
  private targetLink: FrameLink | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private markTimer: NodeJS.Timeout | null = null;
  private report: ((r: ReplicationReport) => void) | null = null;
  private lastResync: (ResyncStats & { endedMs: number }) | null = null;
  private roleEpoch = 0;

  constructor(private readonly o: RfsRuntimeOptions) {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    this.record = new RfsRecordStore(join(o.stateDir, 'state.json'));
    this.journal = new Journal(join(o.stateDir, 'journal.jsonl'), o.rfs.ruzoneBlocksize);
  }

  status(): Record<string, unknown> {
    const r = this.record.get();
    return {
      role: this.role,
      mounted: this.mounts !== null,
      readOnly: this.readOnly,
      syncId: r.syncId,
      lastSyncMs: r.lastSyncMs,
      peerConnected: this.source?.connected ?? this.targetLink !== null,
      ...(this.source ? { source: this.source.status() } : {}),
      ...(this.lastResync ? { resync: this.lastResync } : {}),
    };
  }

  // ------------------------------------------------------------------------------------- interception

  async beforeScripts(batch: RunScriptsEffect): Promise<void> {
    if (batch.next === 'STOP') return;
    if (!this.mounts) this.mountAll();
    if (batch.calls.some((c) => c.script === 'start_prim')) {
      // The source exists before the application can write: its first write is replicated or journaled.
      this.ensureSource();
      this.setReadOnly(false);
    }
  }

  async afterScripts(batch: RunScriptsEffect): Promise<void> {
    if (batch.calls.some((c) => c.script === 'stop_prim')) this.setReadOnly(true);
    if (batch.next === 'STOP') await this.unmountAll();
  }

  private mountAll(): void {
    const mounts: RfsMount[] = [];
    try {
      this.o.rfs.replicated.forEach((r, i) => {
        for (const t of r.toCheck) {
          try {
            lstatSync(join(r.dir, t.path));
          } catch {
            throw new Error(`<tocheck path="${t.path}">: ${join(r.dir, t.path)} does not exist (is the filesystem of ${r.dir} mounted?)`);
          }
        }
        const m = this.o.native.mount({
          mountPoint: r.dir,
          fsName: this.o.module,
          onOp: (ev) => this.onOp(i, ev),
          onExit: (why) => this.o.log('E', `replicated directory ${r.dir}: the interception ended (${why})`),
        });
        m.setReadOnly(true);
        mounts.push(m);
      });
    } catch (e) {
      for (const m of mounts) void m.unmount();
      throw e;
    }
    this.mounts = mounts;
    this.readOnly = true;
    this.o.log('I', `Replicated directories mounted: ${this.o.rfs.replicated.map((r) => r.dir).join(', ')}`);
  }

  private setReadOnly(ro: boolean): void {
    if (!this.mounts || this.readOnly === ro) return;
    // Without mode="read_only" the reference leaves the secondary's directories writable; stayup keeps
    // them read-only on any non-primary node all the same: a write there would be lost at the next
    // reintegration, and an error says so at once.
    for (const m of this.mounts) m.setReadOnly(ro);
    this.readOnly = ro;
  }

  private async unmountAll(): Promise<void> {
    const mounts = this.mounts;
    if (!mounts) return;
    this.mounts = null;
    for (const m of mounts) await m.unmount();
    this.o.log('I', 'Replicated directories unmounted');
  }

  private onOp(dir: number, ev: LiveOp): void {
    const m = this.mounts?.[dir];
    if (!m) return;
    if (this.source) {
      this.source.onOp(dir, ev);
      return;
    }
    // Only a writable mount produces events, and it is writable only with a source; a release of a
    // handle opened before the source ended is all that can arrive here.
    if (ev.job) m.reply(ev.job, 0);
  }

  // ------------------------------------------------------------------------------------------- roles

  setRole(role: ReplicationRole, sync: ReplicationSync, report: (r: ReplicationReport) => void): void {
    this.report = report;
    const epoch = ++this.roleEpoch;
    this.role = role;
    if (role !== 'prim') this.stopSource();
    if (role !== 'second') this.stopTarget();
    if (role === 'prim') this.ensureSource();
    else if (role === 'second') void this.startTarget(sync, epoch);
  }

  private ensureSource(): void {
    if (this.source) return;
    this.stopTarget();
    const r = this.record.get();
    const loaded = r.clean && r.role === 'prim' && this.journal.load() && this.journal.syncId === r.syncId;
    // A clean secondary's data is the sync point itself; anything else is unknown (compare later).
    if (!loaded) this.journal.reset(r.clean || r.role === 'second' ? r.syncId : null, Date.now());
    this.record.update({ role: 'prim', clean: false, syncId: this.journal.syncId });
    const mounts = this.mounts ?? [];
    this.source = new ReplicationSource({
      dirs: this.o.rfs.replicated.map((rep, i) => ({
        underPath: mounts[i]?.underPath ?? rep.dir,
        filter: new ReplicationFilter(rep.notReplicated),
        reply: (job, errno) => mounts[i]?.reply(job, errno),
      })),
      journal: this.journal,
      blockBytes: 1024 * 1024,
      nbrei: Math.max(1, this.o.rfs.nbrei),
      reiBytesPerS: (this.o.rfs.reiallowedbwKbps ?? 0) * 1024,
      uncleanGraceMs: UNCLEAN_GRACE_MS,
      lastSyncMs: () => this.record.get().lastSyncMs,
      nowMs: () => performance.now(),
      events: {
        log: (level, message) => this.o.log(level, message),
        inSync: (syncId, stats) => {
          this.record.update({ syncId, lastSyncMs: Date.now() });
          this.lastResync = { ...stats, endedMs: Date.now() };
          this.o.log('I', `Reintegration ended (${stats.scope}): ${stats.filesCopied} files, ${stats.bytesSent} bytes sent in ${Math.round(stats.durationMs)} ms`, { ...stats });
        },
        lost: (reason) => {
          this.o.log('E', `Replication to ${this.o.peer} interrupted: ${reason}; changes are recorded for its reintegration`);
          this.scheduleConnect();
        },
      },
    });
    this.markTimer = setInterval(() => {
      if (this.source?.inSync) {
        const now = Date.now();
        this.source.mark(now);
        this.record.update({ lastSyncMs: now });
      }
    }, SYNC_MARK_INTERVAL_MS);
    this.markTimer.unref();
    this.connect();
  }

  private scheduleConnect(): void {
    if (!this.source || this.connectTimer) return;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      this.connect();
    }, CONNECT_RETRY_MS);
    this.connectTimer.unref();
  }

  private connect(): void {
    const source = this.source;
    if (!source || source.connected) return;
    connectLink({ host: this.o.peerAddr, port: this.o.port, localAddress: this.o.localAddr, moduleKey: this.o.moduleKey, module: this.o.module, node: this.o.self, timeoutMs: 3000 })
      .then((link) => {
        if (this.source !== source) return link.close();
        link.send({ type: 'hello', version: PROTOCOL_VERSION, module: this.o.module, node: this.o.self, session: String(this.roleEpoch) });
        let done = false;
        link.onFrame((f) => {
          if (done) return;
          done = true;
          if (f.type !== 'welcome' || f.version !== PROTOCOL_VERSION) {
            this.o.log('E', `replication: the secondary answered ${f.type}, expected welcome v${PROTOCOL_VERSION}`);
            link.close();
            return;
          }
          let state: TargetState;
          try {
            state = parseTargetState(f.state);
          } catch (e) {
            this.o.log('E', `replication: the secondary's welcome is malformed: ${(e as Error).message}`);
            link.close();
            return;
          }
          this.o.log('I', `Replication link to ${this.o.peer} established`);
          source.attach(link, state);
        });
        link.onClose(() => {
          if (!done) this.scheduleConnect();
        });
      })
      .catch(() => this.scheduleConnect());
  }

  private stopSource(): void {
    const s = this.source;
    this.source = null;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.markTimer) clearInterval(this.markTimer);
    this.connectTimer = null;
    this.markTimer = null;
    if (s) {
      const inSync = s.inSync;
      s.detach('primary role ended');
      this.journal.flush();
      this.record.update({ clean: true, syncId: this.journal.syncId, ...(inSync ? { lastSyncMs: Date.now() } : {}) });
    }
  }

  private async startTarget(sync: ReplicationSync, epoch: number): Promise<void> {
    const rec = this.record.get();
    const hints = rec.clean ? [] : this.strayFiles(rec.lastSyncMs);
    const state: TargetState = {
      sync,
      syncId: rec.syncId,
      clean: rec.clean,
      lastSyncMs: rec.lastSyncMs,
      hints: hints.slice(0, MAX_HINTS),
      hintsOverflow: hints.length > MAX_HINTS,
    };
    this.record.update({ role: 'second', clean: false });
    const roots = this.o.rfs.replicated.map((r, i) => ({ rootFd: this.mounts?.[i]?.rootFd ?? this.o.native.openRoot(r.dir) }));
    this.target = new ReplicationTarget({
      fs: this.o.native.fs,
      roots,
      async: this.o.rfs.async,
      node: this.o.self,
      events: {
        syncBegan: (syncId, scope) => {
          this.record.update({ syncId: null });
          this.o.log('I', `Reintegration from ${this.o.peer} began: ${scope} (${syncId})`);
          this.report?.({ uptodate: false, reintegrationInterrupted: false, lastSyncMs: this.record.get().lastSyncMs });
        },
        synced: (syncId, lastSyncMs) => {
          this.record.update({ syncId, lastSyncMs });
          this.o.log('I', 'Reintegration ended: this node is a faithful copy');
          this.report?.({ uptodate: true, reintegrationInterrupted: false, lastSyncMs });
        },
        mark: (lastSyncMs) => {
          if (lastSyncMs <= 0) return;
          this.record.update({ lastSyncMs });
          this.report?.({ uptodate: true, reintegrationInterrupted: false, lastSyncMs });
        },
        diverged: (reason) => {
          this.record.update({ syncId: null });
          this.o.log('E', `Replication: this secondary is no longer a faithful copy: ${reason}`);
          this.report?.({ uptodate: false, reintegrationInterrupted: false, lastSyncMs: this.record.get().lastSyncMs });
        },
        log: (level, message) => this.o.log(level, message),
      },
    });
    // After the first connection the state is what this node has now (the record moves on).
    const currentState = (): Record<string, unknown> => {
      const r = this.record.get();
      // "none" (swap nosync) holds only while this node still has a sync point.
      return { ...state, syncId: r.syncId, lastSyncMs: r.lastSyncMs, sync: r.syncId === null && state.sync === 'none' ? 'incremental' : state.sync };
    };
    try {
      this.server = await listenLinks({
        host: this.o.localAddr,
        port: this.o.port,
        moduleKey: this.o.moduleKey,
        module: this.o.module,
        peerNode: this.o.peer,
        onLink: (link) => {
          if (this.role !== 'second' || this.roleEpoch !== epoch || !this.target) return link.close();
          this.targetLink?.close();
          this.targetLink = link;
          this.target.attach(link, currentState());
          link.onClose(() => {
            if (this.targetLink === link) this.targetLink = null;
          });
        },
        onReject: (why) => this.o.log('E', `replication: connection refused: ${why}`),
      });
      if (this.role !== 'second' || this.roleEpoch !== epoch) this.server.close();
    } catch (e) {
      this.o.log('E', `replication: cannot listen on ${this.o.localAddr}:${this.o.port}: ${(e as Error).message}`);
    }
  }

  private stopTarget(): void {
    if (!this.target && !this.server) return;
    this.server?.close();
    this.server = null;
    this.targetLink?.close();
    this.targetLink = null;
    this.target?.closeFds();
    this.target = null;
    this.record.update({ clean: true });
  }

  /** Files this node changed after its last sync point (minus the grace): what a crash may have left here. */
  private strayFiles(lastSyncMs: number | null): string[] {
    const cutoffMs = (lastSyncMs ?? 0) - UNCLEAN_GRACE_MS;
    const out: string[] = [];
    this.o.rfs.replicated.forEach((r, i) => {
      const walk = (abs: string, rel: string): void => {
        if (out.length > MAX_HINTS) return;
        let entries;
        try {
          entries = readdirSync(abs, { withFileTypes: true });
        } catch {
          return;
        }
        for (const e of entries) {
          const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
          if (e.isDirectory()) walk(join(abs, e.name), childRel);
          else {
            try {
              if (lstatSync(join(abs, e.name)).mtimeMs > cutoffMs) out.push(replPath(i, childRel));
            } catch {
              // gone meanwhile
            }
          }
        }
      };
      walk(this.mounts?.[i]?.underPath ?? r.dir, '');
    });
    return out;
  }

  async close(): Promise<void> {
    this.setRole('off', 'none', () => {});
    await this.unmountAll();
    this.journal.close();
  }
}

function parseTargetState(text: string): TargetState {
  const v = JSON.parse(text) as Record<string, unknown>;
  const sync = v['sync'];
  if (sync !== 'incremental' && sync !== 'full' && sync !== 'none') throw new Error(`sync "${String(sync)}"`);
  const hints = Array.isArray(v['hints']) ? v['hints'].filter((h): h is string => typeof h === 'string') : [];
  return {
    sync,
    syncId: typeof v['syncId'] === 'string' ? v['syncId'] : null,
    clean: v['clean'] === true,
    lastSyncMs: typeof v['lastSyncMs'] === 'number' ? v['lastSyncMs'] : null,
    hints,
    hintsOverflow: v['hintsOverflow'] === true,
  };
}
