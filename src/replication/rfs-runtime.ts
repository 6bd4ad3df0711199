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
//
// As primary, a watchdog (stall-watchdog.ts) drops a peer that stops acknowledging with its connection
// still open (sendtimeout, locktimeout): the held application calls return, what the peer did not
// acknowledge goes to the journal, and the mirror machine hears that the peer is no longer replicated to
// (a primary whose secondary could take over goes ALONE). rfsverify and rfsdiff (verify.ts) compare the
// two nodes' data over a second link, on the module's second replication port, which every node answers
// as long as its module engine is open.

import { closeSync, constants as C, mkdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:tls';
import type { Rfs } from '../config/userconfig/types.ts';
import type { ReplicationRole, ReplicationSync } from '../mirror/types.ts';
import type { ReplicationPort, ReplicationReport, ReplicationStatus, RunScriptsEffect } from '../engine/mirror-engine.ts';
import { addFilesChangedSince } from './change-time.ts';
import { isStayupError, StayupError } from '../errors/stayup-error.ts';
import { greet, protocolError } from './handshake.ts';
import { Journal } from './journal.ts';
import { keepAside, stampOf } from './keep-aside.ts';
import { connectLink, listenLinks, StripedLink, type FrameLink } from './link.ts';
import { ReplicationFilter } from './paths.ts';
import type { PeerFs } from './peer-fs.ts';
import { RfsRecordStore } from './rfs-state.ts';
import { ReplicationSource, type ResyncStats, type TargetState } from './source.ts';
import { StallWatchdog } from './stall-watchdog.ts';
import { ReplicationTarget } from './target.ts';
import type { LiveOp } from './live-op.ts';
import { APPLIED_SINCE_VERSION, MAX_STRIPES, PRE_NEGOTIATION_VERSION, STRIPES_SINCE_VERSION, SUPPORTED_VERSIONS, XATTRS_SINCE_VERSION, type VersionRange } from './protocol.ts';
import { answerVerifyLink, compareReplicas, COMPARE_BLOCK_BYTES, COMPARE_WINDOW_BYTES, LocalReplica, RemoteReplica, type CompareMode, type ReplicaComparison } from './verify.ts';

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
/** The reference refuses an automatic reintegration when the two last-sync dates are further apart. */
export const SYNC_DATE_SKEW_LIMIT_MS = 90_000;
/** Listening again on the replication port (a new secondary episode) while the old listener lets it go. */
const LISTEN_RETRY_MS = 100;
const LISTEN_ATTEMPTS = 50;
/** A welcome must come this soon after the hello (the TLS handshake already succeeded). */
const WELCOME_TIMEOUT_MS = 10_000;
/** The verify link (rfsverify, rfsdiff) listens on the second of the module's four replication ports. */
export const VERIFY_PORT_OFFSET = 1;
/** A reintegration shorter than this tells too little about the rate to estimate another's duration. */
const RATE_MIN_BYTES = 1024 * 1024;

/** The verify link's name in its PSK and identity: a verify client can never open a replication link. */
export function verifyLinkName(module: string): string {
  return `${module}/verify`;
}

/**
 * Refuses to start over a replicated directory whose <tocheck> paths are missing (its filesystem is not
 * mounted: starting would replicate an empty directory over the peer's data). Call it only while the
 * directories are not this daemon's FUSE mounts (a synchronous lstat there would wait on this thread).
 */
export function checkToCheck(rfs: Rfs): void {
  for (const r of rfs.replicated) {
    for (const t of r.toCheck) {
      const abs = join(r.dir, t.path);
      try {
        lstatSync(abs);
      } catch (e) {
        throw new StayupError(
          'RFS_TOCHECK_MISSING',
          `<replicated dir="${r.dir}"> <tocheck path="${t.path}">: ${abs} does not exist (${(e as NodeJS.ErrnoException).code ?? 'error'}): is the filesystem of ${r.dir} mounted? Nothing was mounted or started`,
        );
      }
    }
  }
}

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
  /** The replication protocol versions this node speaks (default: all this code speaks); tests make an older node. */
  protocolVersions?: VersionRange;
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
  /** The last reintegration long enough to tell the rate (rfsdiff's estimate). */
  private lastMeasured: { bytesSent: number; durationMs: number } | null = null;
  private roleEpoch = 0;
  private readonly watchdog: StallWatchdog;
  private watchTimer: NodeJS.Timeout | null = null;
  private lastStall: { atMs: number; reason: string } | null = null;
  /** Secondary: the reintegration being received (performance.now() clock). */
  private receiving: { scope: string; sinceMs: number } | null = null;
  /**
   * Why the last handshake was refused (status linkError), until a link is set up: logged when it first
   * happens and when it changes, not at every retry (the primary retries every second).
   */
  private linkError: { code: string; message: string; sinceMs: number } | null = null;
  /** The protocol version of the link up now (either role), null without one. */
  private linkVersion: number | null = null;
  /**
   * Primary: the highest version the next hello names, when the peer looks like a node from before version
   * negotiation (PRE_NEGOTIATION_VERSION); null: this node's own highest. Forgotten when a link ends, so an
   * upgraded peer is offered everything again.
   */
  private helloCap: number | null = null;
  /** Primary: the connections of the stream attached last (nbremconn when the peer speaks it, else 1). */
  private streamConnections = 0;
  private verifyServer: Server | null = null;
  private comparing = false;
  private closed = false;

  private get versions(): VersionRange {
    return this.o.protocolVersions ?? SUPPORTED_VERSIONS;
  }

  constructor(private readonly o: RfsRuntimeOptions) {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
    this.record = new RfsRecordStore(join(o.stateDir, 'state.json'));
    this.journal = new Journal(join(o.stateDir, 'journal.jsonl'), o.rfs.ruzoneBlocksize);
    this.watchdog = new StallWatchdog({ sendTimeoutMs: o.rfs.sendtimeoutMs, lockTimeoutMs: o.rfs.locktimeoutMs });
    void this.listenVerify();
  }

  status(): ReplicationStatus {
    const r = this.record.get();
    const p = this.source?.progress();
    const now = performance.now();
    let reintegration: ReplicationStatus['reintegration'] = null;
    if (p?.resync) {
      const elapsedMs = Math.max(0, now - p.resync.startedMs);
      reintegration = {
        direction: 'sending',
        scope: p.resync.scope,
        elapsedMs: Math.round(elapsedMs),
        files: p.resync.files,
        bytesSent: p.resync.bytesSent,
        bytesPerS: elapsedMs > 0 ? Math.round((p.resync.bytesSent * 1000) / elapsedMs) : null,
      };
    } else if (this.receiving) {
      reintegration = { direction: 'receiving', scope: this.receiving.scope, elapsedMs: Math.round(now - this.receiving.sinceMs), files: null, bytesSent: null, bytesPerS: null };
    }
    return {
      role: this.role,
      mounted: this.mounts !== null,
      readOnly: this.readOnly,
      linkUp: this.source ? this.source.connected : this.targetLink !== null,
      pendingAcks: p?.heldCalls ?? 0,
      journalPaths: this.source ? this.journal.dirty.size : 0,
      reintegration,
      lastReintegration: this.lastResync,
      syncId: r.syncId,
      lastSyncMs: r.lastSyncMs,
      clean: r.clean,
      lastStall: this.lastStall,
      protocolVersion: this.linkVersion,
      linkConnections: this.source ? (this.source.connected ? this.streamConnections : 0) : (this.target?.connections ?? 0),
      linkError: this.linkError,
    };
  }

  lastSyncMs(): number | null {
    return this.record.get().lastSyncMs;
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
    // Every <tocheck> of every directory before the first mount: a refusal leaves nothing mounted.
    checkToCheck(this.o.rfs);
    const mounts: RfsMount[] = [];
    try {
      this.o.rfs.replicated.forEach((r, i) => {
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
    // A new secondary episode starts over too: a new target, listener and link (a new reintegration).
    if (role !== 'second' || this.target || this.server) this.stopTarget();
    if (role === 'prim') this.ensureSource();
    else if (role === 'second') void this.startTarget(sync, epoch);
  }

  private ensureSource(): void {
    if (this.source) return;
    this.stopTarget();
    this.helloCap = null;
    const r = this.record.get();
    const loaded = r.clean && r.role === 'prim' && this.journal.load() && this.journal.syncId === r.syncId;
    // A clean secondary's data is the sync point itself; anything else is unknown (compare later).
    if (!loaded) this.journal.reset(r.clean || r.role === 'second' ? r.syncId : null, Date.now());
    // Until the peer has followed every write of this role, this node holds writes the peer lacks.
    this.record.update({ role: 'prim', clean: false, syncId: this.journal.syncId, unsyncedSinceMs: r.unsyncedSinceMs ?? Date.now() });
    const mounts = this.mounts ?? [];
    this.source = new ReplicationSource({
      dirs: this.o.rfs.replicated.map((rep, i) => ({
        underPath: mounts[i]?.underPath ?? rep.dir,
        ...(mounts[i] ? { rootFd: mounts[i]!.rootFd } : {}),
        filter: new ReplicationFilter(rep.notReplicated),
        reply: (job, errno) => mounts[i]?.reply(job, errno),
      })),
      journal: this.journal,
      blockBytes: COMPARE_BLOCK_BYTES,
      nbrei: Math.max(1, this.o.rfs.nbrei),
      reiBytesPerS: (this.o.rfs.reiallowedbwKbps ?? 0) * 1024,
      uncleanGraceMs: UNCLEAN_GRACE_MS,
      lastSyncMs: () => this.record.get().lastSyncMs,
      acksOnReceipt: this.o.rfs.async === 'second',
      nativeFs: this.o.native.fs,
      nowMs: () => performance.now(),
      events: {
        log: (level, message) => this.o.log(level, message),
        inSync: (syncId, stats) => {
          this.record.update({ syncId, lastSyncMs: Date.now(), unsyncedSinceMs: null });
          this.lastResync = { ...stats, endedMs: Date.now() };
          if (stats.bytesSent >= RATE_MIN_BYTES && stats.durationMs > 0) this.lastMeasured = { bytesSent: stats.bytesSent, durationMs: stats.durationMs };
          this.o.log('I', `Reintegration ended (${stats.scope}): ${stats.filesCopied} files, ${stats.bytesSent} bytes sent in ${Math.round(stats.durationMs)} ms`, { ...stats });
        },
        lost: (reason) => {
          this.linkVersion = null;
          this.helloCap = null;
          if (this.record.get().unsyncedSinceMs === null) this.record.update({ unsyncedSinceMs: Date.now() });
          this.o.log('E', `Replication to ${this.o.peer} interrupted: ${reason}; changes are recorded for its reintegration`);
          this.scheduleConnect();
          // The peer no longer has every write: the machine must not let it take over as it is.
          if (this.role === 'prim') this.report?.({ uptodate: true, reintegrationInterrupted: false, lastSyncMs: this.record.get().lastSyncMs, peerLost: true });
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
    // Checked ten times per limit, at most once per second.
    const watchMs = Math.max(100, Math.min(1000, Math.min(this.o.rfs.sendtimeoutMs, this.o.rfs.locktimeoutMs) / 10));
    this.watchTimer = setInterval(() => this.watch(), watchMs);
    this.watchTimer.unref();
    this.connect();
  }

  /** The stall watchdog's periodic check (see the header). */
  private watch(): void {
    const s = this.source;
    if (!s || !s.connected) return this.watchdog.reset();
    const why = this.watchdog.check(s.progress(), performance.now());
    if (!why) return;
    this.watchdog.reset();
    this.lastStall = { atMs: Date.now(), reason: why };
    this.o.log('E', `Replication to ${this.o.peer} stalled: ${why}; the primary goes on without it`);
    s.detach(`stalled: ${why}`);
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
    this.connectPeer(this.o.port, this.o.module)
      .then(async (link) => {
        if (this.source !== source) return link.close();
        let state: TargetState;
        let version: number;
        let session: string | null;
        try {
          const versions = this.helloCap === null ? this.versions : { min: this.versions.min, max: Math.min(this.versions.max, this.helloCap) };
          ({ state, version, session } = await greetSecondary(link, { module: this.o.module, node: this.o.self, session: String(this.roleEpoch) }, this.o.peer, { versions }));
        } catch (e) {
          // Nothing was attached: the journal, the record and the held calls are as they were.
          link.close();
          if (this.mayBePreNegotiation(e)) {
            this.helloCap = PRE_NEGOTIATION_VERSION;
            this.o.log('I', `${this.o.peer} closed the link on a hello of v${this.versions.max} without a welcome: a node from before version negotiation takes only v${PRE_NEGOTIATION_VERSION}, the next hello says v${PRE_NEGOTIATION_VERSION}`);
            this.scheduleConnect();
            return;
          }
          const message = (e as Error).message;
          this.refused(isStayupError(e) ? e.code : 'REPLICATION_PROTOCOL', message, `${message}; retrying every ${CONNECT_RETRY_MS / 1000} s`);
          this.scheduleConnect();
          return;
        }
        if (this.source !== source || source.connected) return link.close();
        const skew = syncDateSkew(state, this.record.get().lastSyncMs, this.o.peer);
        if (skew) {
          // The reference refuses to reintegrate on its own here: the journal and the "changed since"
          // dates describe different histories. `second fullsync` on the peer compares everything.
          link.close();
          this.refused('REPLICATION_SYNC_DATES', skew, `${skew}; run \`stayup second fullsync -m ${this.o.module}\` on ${this.o.peer} (after stopping it) to compare and copy everything`);
          this.scheduleConnect();
          return;
        }
        let stream: FrameLink;
        try {
          stream = await this.spread(link, version, session);
        } catch (e) {
          link.close();
          const message = (e as Error).message;
          this.refused(isStayupError(e) ? e.code : 'REPLICATION_PEER_UNREACHABLE', message, `${message}; retrying every ${CONNECT_RETRY_MS / 1000} s`);
          this.scheduleConnect();
          return;
        }
        if (this.source !== source || source.connected) return stream.close();
        this.linkError = null;
        this.linkVersion = version;
        this.streamConnections = stream instanceof StripedLink ? this.o.rfs.nbremconn : 1;
        const asked = this.o.rfs.nbremconn;
        const connections = asked > 1 && this.streamConnections === 1 ? `, 1 connection: nbremconn ${asked} needs protocol v${STRIPES_SINCE_VERSION}` : this.streamConnections > 1 ? `, ${this.streamConnections} connections` : '';
        this.o.log('I', `Replication link to ${this.o.peer} established (protocol v${version}${connections})`);
        this.watchdog.reset();
        source.attach(stream, state, { peerReportsApplied: version >= APPLIED_SINCE_VERSION, peerTakesXattrs: version >= XATTRS_SINCE_VERSION });
      })
      .catch(() => this.scheduleConnect());
  }

  /** A peer closed the link on this node's first hello above v2 without a welcome (see helloCap). */
  private mayBePreNegotiation(e: unknown): boolean {
    const v = this.versions;
    return isStayupError(e) && e.details?.['closedBeforeWelcome'] === true && this.helloCap === null && v.max > PRE_NEGOTIATION_VERSION && v.min <= PRE_NEGOTIATION_VERSION;
  }

  private connectPeer(port: number, module: string): Promise<FrameLink> {
    return connectLink({ host: this.o.peerAddr, port, localAddress: this.o.localAddr, moduleKey: this.o.moduleKey, module, node: this.o.self, timeoutMs: 3000 });
  }

  /**
   * The stream's connections (<rfs nbremconn>, protocol v3): the greeted one, told how many there are
   * (`stripes`), and nbremconn-1 more that join the session its welcome named. A peer that speaks no v3 gets
   * one connection. If one of them cannot be opened, none is used (the caller retries).
   */
  private async spread(link: FrameLink, version: number, session: string | null): Promise<FrameLink> {
    const count = version >= STRIPES_SINCE_VERSION ? Math.min(this.o.rfs.nbremconn, MAX_STRIPES) : 1;
    if (count <= 1) return link;
    if (session === null) throw protocolError(this.o.peer, `welcome state field "session" is not a string (protocol v${version} names the stream's session, which nbremconn's other connections join)`);
    link.send({ type: 'stripes', count });
    const opened = await Promise.allSettled(
      Array.from({ length: count - 1 }, async (_, i) => {
        const extra = await this.connectPeer(this.o.port, this.o.module);
        extra.send({ type: 'join', session, index: i + 1, count });
        return extra;
      }),
    );
    const extras = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const l of extras) l.close();
      throw new StayupError('REPLICATION_PEER_UNREACHABLE', `replication: ${count - 1 - extras.length} of the ${count - 1} extra connections to ${this.o.peer} (nbremconn ${count}) failed: ${(failed.reason as Error).message}`);
    }
    return new StripedLink([link, ...extras]);
  }

  /** A refused handshake: shown in the status; logged (`logLine`) only when it differs from the last one. */
  private refused(code: string, message: string, logLine: string): void {
    if (this.linkError?.message === message) return;
    this.linkError = { code, message, sinceMs: Date.now() };
    this.o.log('E', logLine);
  }

  private stopSource(): void {
    const s = this.source;
    this.source = null;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.markTimer) clearInterval(this.markTimer);
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.connectTimer = null;
    this.markTimer = null;
    this.watchTimer = null;
    if (s) {
      const inSync = s.inSync;
      s.detach('primary role ended');
      this.journal.flush();
      this.record.update({ clean: true, syncId: this.journal.syncId, ...(inSync ? { lastSyncMs: Date.now() } : {}) });
    }
  }

  private async startTarget(sync: ReplicationSync, epoch: number): Promise<void> {
    let rec = this.record.get();
    let divergent: string[] = [];
    if (rec.role === 'prim' && rec.unsyncedSinceMs !== null) {
      // This node wrote as primary without its peer (a split brain's loser, or overridden by prim,
      // primforce or syncdelta on the other side): those files are kept before they are overwritten, and
      // the reintegration is told to bring the primary's version of each, whatever its scope.
      divergent = await this.keepDivergent(rec.unsyncedSinceMs);
      if (this.role !== 'second' || this.roleEpoch !== epoch) return;
      rec = this.record.update({ unsyncedSinceMs: null });
    }
    const stray = rec.clean ? [] : await this.strayFiles(rec.lastSyncMs);
    if (this.role !== 'second' || this.roleEpoch !== epoch) return;
    const hints = [...new Set([...stray, ...divergent])];
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
      versions: this.versions,
      events: {
        greeted: (version, link) => {
          this.linkError = null;
          this.linkVersion = version;
          this.targetLink = link;
          link.onClose(() => {
            if (this.targetLink !== link) return;
            this.targetLink = null;
            this.linkVersion = null;
            this.receiving = null;
          });
        },
        // Logged by the target (once per change); shown in the status until a primary is welcomed.
        refused: (e) => {
          if (this.linkError?.message !== e.message) this.linkError = { code: e.code, message: e.message, sinceMs: Date.now() };
        },
        syncBegan: (syncId, scope) => {
          this.record.update({ syncId: null });
          this.receiving = { scope, sinceMs: performance.now() };
          this.o.log('I', `Reintegration from ${this.o.peer} began: ${scope} (${syncId})`);
          this.report?.({ uptodate: false, reintegrationInterrupted: false, lastSyncMs: this.record.get().lastSyncMs });
        },
        synced: (syncId, lastSyncMs) => {
          this.record.update({ syncId, lastSyncMs });
          this.receiving = null;
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
          this.receiving = null;
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
    const current = (): boolean => this.role === 'second' && this.roleEpoch === epoch;
    for (let attempt = 1; current(); attempt++) {
      try {
        const server = await listenLinks({
          host: this.o.localAddr,
          port: this.o.port,
          moduleKey: this.o.moduleKey,
          module: this.o.module,
          peerNode: this.o.peer,
          // A hello opens a new stream, a join adds a connection to it (the target tells which: greeted).
          onLink: (link) => {
            if (!current() || !this.target) return link.close();
            this.target.attach(link, currentState());
          },
          onReject: (why) => this.o.log('E', `replication: connection refused: ${why}`),
        });
        if (current()) this.server = server;
        else server.close();
        return;
      } catch (e) {
        // The listener of the previous secondary episode releases the port asynchronously.
        if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < LISTEN_ATTEMPTS) {
          await new Promise((r) => setTimeout(r, LISTEN_RETRY_MS));
          continue;
        }
        this.o.log('E', `replication: cannot listen on ${this.o.localAddr}:${this.o.port}: ${(e as Error).message}`);
        return;
      }
    }
  }

  private stopTarget(): void {
    this.receiving = null;
    if (!this.target && !this.server) return;
    this.server?.close();
    this.server = null;
    this.targetLink?.close();
    this.targetLink = null;
    this.linkVersion = null;
    this.target?.closeFds();
    this.target = null;
    this.record.update({ clean: true });
  }

  /** Copies aside what this node wrote without its peer since `sinceMs`; returns those replication paths. */
  private async keepDivergent(sinceMs: number): Promise<string[]> {
    const journalPaths: string[] = [];
    if (this.journal.load()) for (const [p, e] of this.journal.dirty.all()) if (!e.list) journalPaths.push(p);
    this.journal.dirty.clear();
    const r = await keepAside({
      dirs: this.o.rfs.replicated.map((rep, i) => ({ dir: rep.dir, underPath: this.mounts?.[i]?.underPath ?? rep.dir })),
      journalPaths,
      changedSinceMs: sinceMs,
      stamp: stampOf(sinceMs),
    });
    const since = new Date(sinceMs).toISOString();
    if (r.paths.length > 0) {
      this.o.log('E', `Divergent data: ${r.paths.length} files this server wrote without ${this.o.peer} since ${since} were kept in ${r.folders.join(', ')} (${r.bytes} bytes copied) before its reintegration replaces them`, { files: r.paths.length, bytes: r.bytes, folders: r.folders });
    } else if (r.notKept.length === 0) {
      this.o.log('I', `No file written without ${this.o.peer} since ${since} is left to keep aside`);
    }
    if (r.notKept.length > 0) {
      const first = r.notKept.slice(0, 5).map((n) => `${n.path} (${n.reason})`).join(', ');
      this.o.log('E', `Divergent data: ${r.notKept.length} files written without ${this.o.peer} since ${since} could NOT be kept aside and will be replaced by its version: ${first}${r.notKept.length > 5 ? ', ...' : ''}`);
    }
    return [...r.paths, ...r.notKept.map((n) => n.path)];
  }

  /**
   * Files this node changed after its last sync point (minus the grace): what a crash may have left here.
   * At most MAX_HINTS + 1 (more say "compare everything").
   */
  private async strayFiles(lastSyncMs: number | null): Promise<string[]> {
    const cutoffMs = (lastSyncMs ?? 0) - UNCLEAN_GRACE_MS;
    const out = new Set<string>();
    for (const [i, r] of this.o.rfs.replicated.entries()) await addFilesChangedSince(this.mounts?.[i]?.underPath ?? r.dir, i, cutoffMs, out, MAX_HINTS + 1);
    return [...out];
  }


  // ------------------------------------------------------------------------------- rfsverify, rfsdiff

  /** Answers the peer's comparisons (verify.ts) while the engine is open, whatever the role. */
  private async listenVerify(): Promise<void> {
    const port = this.o.port + VERIFY_PORT_OFFSET;
    try {
      const server = await listenLinks({
        host: this.o.localAddr,
        port,
        moduleKey: this.o.moduleKey,
        module: verifyLinkName(this.o.module),
        peerNode: this.o.peer,
        onLink: (link) => this.answerVerify(link),
        onReject: (why) => this.o.log('E', `verify link: connection refused: ${why}`),
      });
      if (this.closed) server.close();
      else this.verifyServer = server;
    } catch (e) {
      this.o.log('E', `rfsverify/rfsdiff: cannot listen on ${this.o.localAddr}:${port} (${(e as Error).message}): ${this.o.peer} cannot compare its data with this node's`);
    }
  }

  private answerVerify(link: FrameLink): void {
    let fds: number[];
    try {
      fds = this.openRoots();
    } catch (e) {
      this.o.log('E', `verify link from ${link.remote}: ${(e as Error).message}`);
      return link.close();
    }
    answerVerifyLink(link, {
      fs: this.o.native.fs,
      roots: fds.map((rootFd) => ({ rootFd })),
      node: this.o.self,
      welcome: { node: this.o.self, role: this.role, lastReintegration: this.lastMeasured },
      log: (level, message) => this.o.log(level, message),
      onEnd: () => fds.forEach((fd) => closeSync(fd)),
    });
  }

  /**
   * A descriptor of each replicated directory's real data, this session's own: the mount's root reopened
   * (it stays valid if the mount goes meanwhile), or the plain directory while nothing is mounted.
   */
  private openRoots(): number[] {
    const fds: number[] = [];
    try {
      this.o.rfs.replicated.forEach((r, i) => {
        const m = this.mounts?.[i];
        fds.push(m ? this.o.native.fs.openAt(m.rootFd, '', C.O_RDONLY | C.O_DIRECTORY, 0) : this.o.native.openRoot(r.dir));
      });
    } catch (e) {
      fds.forEach((fd) => closeSync(fd));
      throw new StayupError('IO', `cannot open the replicated directories: ${(e as Error).message}`);
    }
    return fds;
  }

  /**
   * rfsverify (on the secondary: what differs from the primary) or rfsdiff (on the primary: what a
   * reintegration of the secondary would send, and how long it would take): the full comparison against the
   * peer's answers, reported.
   */
  async compareReplicas(mode: CompareMode): Promise<ReplicaComparison> {
    const want: ReplicationRole = mode === 'verify' ? 'second' : 'prim';
    if (this.role !== want) {
      throw new StayupError(
        'RFS_WRONG_ROLE',
        mode === 'verify'
          ? `rfsverify runs on the secondary, and this node's replication role is ${this.role}: run it on ${this.o.peer} ("stayup -H ${this.o.peer} rfsverify -m ${this.o.module}")`
          : `rfsdiff runs on the primary (ALONE or PRIM), and this node's replication role is ${this.role}: run it on ${this.o.peer} ("stayup -H ${this.o.peer} rfsdiff -m ${this.o.module}")`,
      );
    }
    if (this.comparing) throw new StayupError('RFS_BUSY', `module ${this.o.module}: a comparison of the replicas is already running`);
    this.comparing = true;
    const startedMs = performance.now();
    const port = this.o.port + VERIFY_PORT_OFFSET;
    let fds: number[] = [];
    let link: FrameLink | null = null;
    try {
      fds = this.openRoots();
      try {
        link = await this.connectPeer(port, verifyLinkName(this.o.module));
      } catch (e) {
        throw new StayupError(
          'REPLICATION_PEER_UNREACHABLE',
          `${this.o.peer} cannot be reached for the comparison (${(e as Error).message}): is module ${this.o.module} started on ${this.o.peer}?`,
        );
      }
      const { state: welcome, version } = await greet(link, { module: this.o.module, node: this.o.self, session: 'verify' }, { peer: this.o.peer, timeoutMs: WELCOME_TIMEOUT_MS, versions: this.versions });
      // Extended attributes are compared with a peer that answers them (v4), as a reintegration brings them.
      const xattrs = version >= XATTRS_SINCE_VERSION;
      const remote = new RemoteReplica(this.o.peer, link, this.o.rfs.reitimeoutMs, COMPARE_WINDOW_BYTES, xattrs);
      const local = new LocalReplica(this.o.self, fds.map((fd) => `/proc/self/fd/${fd}`), xattrs ? { fs: this.o.native.fs, rootFds: fds } : undefined, this.o.native.fs);
      const result = await compareReplicas({
        source: mode === 'diff' ? local : remote,
        copy: mode === 'diff' ? remote : local,
        dirs: this.o.rfs.replicated.map((r) => ({ dir: r.dir, filter: new ReplicationFilter(r.notReplicated) })),
      });
      // The source's last reintegration says how fast one goes; rfsverify learns it from the welcome.
      const measured = mode === 'diff' ? this.lastMeasured : measuredIn(welcome);
      const rate = resyncRate(measured, (this.o.rfs.reiallowedbwKbps ?? 0) * 1024);
      return {
        module: this.o.module,
        mode,
        ...result,
        rate,
        estimatedMs: rate ? Math.round((result.bytesToSend * 1000) / rate.bytesPerS) : null,
        durationMs: Math.round(performance.now() - startedMs),
      };
    } finally {
      link?.close();
      fds.forEach((fd) => closeSync(fd));
      this.comparing = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.verifyServer?.close();
    this.verifyServer = null;
    this.setRole('off', 'none', () => {});
    await this.unmountAll();
    this.journal.close();
  }
}

/**
 * The primary's side of the replication link's handshake: the secondary's welcome state, checked field by
 * field. REPLICATION_PROTOCOL when it is malformed (nothing is attached then).
 */
export async function greetSecondary(
  link: FrameLink,
  hello: { module: string; node: string; session: string },
  peer: string,
  o: { timeoutMs?: number; versions?: VersionRange } = {},
): Promise<{ state: TargetState; version: number; session: string | null }> {
  const g = await greet(link, hello, { peer, timeoutMs: o.timeoutMs ?? WELCOME_TIMEOUT_MS, versions: o.versions ?? SUPPORTED_VERSIONS });
  // From v3 the welcome names the stream's session, which more connections can join (nbremconn).
  const session = g.state['session'];
  return { state: parseTargetState(g.state, peer), version: g.version, session: typeof session === 'string' ? session : null };
}

function parseTargetState(v: Record<string, unknown>, peer: string): TargetState {
  const bad = (field: string, what: string): StayupError => protocolError(peer, `welcome state field "${field}" ${what}`);
  const sync = v['sync'];
  if (sync !== 'incremental' && sync !== 'full' && sync !== 'none') throw bad('sync', `is ${JSON.stringify(sync) ?? 'missing'}, expected "incremental", "full" or "none"`);
  const syncId = v['syncId'] ?? null;
  if (syncId !== null && typeof syncId !== 'string') throw bad('syncId', 'is not a string or null');
  const lastSyncMs = v['lastSyncMs'] ?? null;
  if (lastSyncMs !== null && (typeof lastSyncMs !== 'number' || !Number.isFinite(lastSyncMs))) throw bad('lastSyncMs', 'is not a number or null');
  const hints = v['hints'] ?? [];
  if (!Array.isArray(hints) || hints.some((h) => typeof h !== 'string')) throw bad('hints', 'is not a list of paths');
  if (hints.length > MAX_HINTS) throw bad('hints', `lists ${hints.length} paths, more than ${MAX_HINTS}`);
  return {
    sync,
    syncId,
    clean: v['clean'] === true,
    lastSyncMs,
    hints: hints as string[],
    hintsOverflow: v['hintsOverflow'] === true,
  };
}

/** The last reintegration the peer sent, from its verify welcome (absent or malformed: unknown). */
function measuredIn(welcome: Record<string, unknown>): { bytesSent: number; durationMs: number } | null {
  const m = welcome['lastReintegration'] as { bytesSent?: unknown; durationMs?: unknown } | null | undefined;
  if (!m || typeof m.bytesSent !== 'number' || typeof m.durationMs !== 'number') return null;
  return { bytesSent: m.bytesSent, durationMs: m.durationMs };
}

/** The reintegration rate to expect: the measured one, capped by reiallowedbw when set. */
function resyncRate(measured: { bytesSent: number; durationMs: number } | null, capBytesPerS: number): ReplicaComparison['rate'] {
  const m = measured && measured.bytesSent >= RATE_MIN_BYTES && measured.durationMs > 0 ? (measured.bytesSent * 1000) / measured.durationMs : null;
  if (m !== null && (!capBytesPerS || m <= capBytesPerS)) return { bytesPerS: Math.round(m), from: 'last reintegration' };
  if (capBytesPerS) return { bytesPerS: capBytesPerS, from: 'reiallowedbw' };
  return null;
}

/**
 * Why an incremental reintegration must not start on its own (the two nodes' last-sync dates are more than
 * SYNC_DATE_SKEW_LIMIT_MS apart: they do not describe the same history, or a clock jumped), or null.
 * Full and nosync reintegrations are not concerned: they do not rely on the dates.
 */
export function syncDateSkew(target: Pick<TargetState, 'sync' | 'lastSyncMs'>, ownLastSyncMs: number | null, peer: string): string | null {
  if (target.sync !== 'incremental' || target.lastSyncMs === null || ownLastSyncMs === null) return null;
  const deltaMs = Math.abs(target.lastSyncMs - ownLastSyncMs);
  if (deltaMs <= SYNC_DATE_SKEW_LIMIT_MS) return null;
  return `abnormal delta between the dates of the last synchronization: ${peer} ${new Date(target.lastSyncMs).toISOString()}, this server ${new Date(ownLastSyncMs).toISOString()} (${Math.round(deltaMs / 1000)} s apart, more than ${SYNC_DATE_SKEW_LIMIT_MS / 1000} s): no automatic reintegration`;
}
