// The secondary's end of the replication stream: receives the primary's frames, acknowledges them, and has
// them applied, in order, to the real data underneath its (read-only) mount by a FrameApplier: on the apply
// worker's thread (apply-worker.ts, the default) or inline on this thread.
//
// Acknowledgement (<rfs async>): "second" acknowledges frames as soon as they are received, before they are
// applied (with the worker, this thread stays free to do so while the disk is busy); "none" only after they
// are applied, an fsync frame after the data reached the disk. Either way an `applied` count follows the
// applying, so the primary knows what a crash of this daemon could lose (it marks those paths if the link
// breaks). A frame that cannot be applied while this
// node claims to be a faithful copy makes it unfaithful: it answers `fail`, forgets its sync point and
// reports "not up to date" (the next reintegration repairs it).
//
// Order and durability: every frame received is applied, in the order received, across connections too
// (one applier). A syncBegin is reported (events.syncBegan) when it is received, before anything after it is
// applied. closeFds() returns only once everything received is applied and its results delivered: a node
// that stops being the secondary (a takeover above all) never has the old stream still writing underneath.

import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { StayupError } from '../errors/stayup-error.ts';
import type { FrameLink } from './link.ts';
import { BatchApplier, FrameApplier, frameBytes, type ApplyResult, type TargetRoot } from './frame-applier.ts';
import { versionError } from './handshake.ts';
import type { PeerFs } from './peer-fs.ts';
import { answerVersion, APPLIED_SINCE_VERSION, reviveBuffers, SUPPORTED_VERSIONS, type Frame, type VersionRange } from './protocol.ts';

export { blockSum, readFully, SUM_BYTES, type TargetRoot } from './frame-applier.ts';

/** The link is not read while this much received data waits to be applied (the primary then waits). */
const BACKLOG_PAUSE_BYTES = 64 * 1024 * 1024;
const BACKLOG_RESUME_BYTES = 16 * 1024 * 1024;
/** With async="second", the applied count goes on its own this long after it moved on, if no ack took it. */
const APPLIED_DELAY_MS = 20;
/** closeFds() stops waiting for the apply worker after this long (a disk that hangs): said in the log. */
const DRAIN_TIMEOUT_MS = 120_000;

export interface TargetEvents {
  /** The reintegration `syncId` ended: this node is a faithful copy as of lastSyncMs (persist, then report). */
  synced(syncId: string, lastSyncMs: number): void;
  /** While in sync, time moves on. */
  mark(lastSyncMs: number): void;
  /** A reintegration began: this node is not a faithful copy until it ends. */
  syncBegan(syncId: string, scope: string): void;
  /** A frame could not be applied: this node is no longer a faithful copy. */
  diverged(reason: string): void;
  log(level: 'I' | 'E', message: string): void;
  /** A primary was welcomed: the link speaks `version` (protocol.ts). */
  greeted?(version: number): void;
  /** A primary's hello was refused: no common protocol version (REPLICATION_VERSION; logged once here). */
  refused?(error: StayupError): void;
}

/** The apply worker and the two ways back from it: its results port, and a flag for waiting synchronously. */
interface ApplyWorker {
  worker: Worker;
  results: MessagePort;
  flag: Int32Array;
  seq: number;
}

export class ReplicationTarget {
  private link: FrameLink | null = null;
  /** Numbers the links: results of an earlier link's frames do not act on the current one. */
  private gen = 0;
  private received = 0n;
  private batch: Frame[] = [];
  /** Batches acknowledged and not yet handed to the applier (it comes after the acknowledgement has left). */
  private toApply: Array<{ gen: number; frames: Frame[] }> = [];
  private handOverQueued = false;
  private diverged = false;
  private backlog = 0;
  private paused: FrameLink | null = null;
  private worker: ApplyWorker | null = null;
  private readonly inline: BatchApplier | null;
  /** closeFds() was called: frames still arriving on the link (it closes asynchronously) are not applied. */
  private ended = false;
  /** The current link carries the replication stream (it began with syncBegin), not only questions. */
  private streaming = false;
  /** Frames of the current link applied, and the count last told the primary (see sendApplied). */
  private appliedCount = 0n;
  private appliedSent = 0n;
  private appliedTimer: NodeJS.Timeout | null = null;
  /** The protocol version the current link speaks (0 before its hello). */
  private version = 0;
  /** The last refusal logged: the primary retries every second, the same refusal is logged once. */
  private lastRefusal: string | null = null;

  constructor(
    private readonly o: {
      fs: PeerFs;
      roots: readonly TargetRoot[];
      async: 'second' | 'none';
      node: string;
      events: TargetEvents;
      /** 'worker' (default): frames are applied on the apply worker's thread; 'inline': on this one. */
      applyIn?: 'worker' | 'inline';
      /** The protocol versions this node speaks (tests make an older node with it). */
      versions?: VersionRange;
    },
  ) {
    this.inline = o.applyIn === 'inline' ? new BatchApplier(new FrameApplier({ fs: o.fs, roots: o.roots, async: o.async }), (r) => this.onResult(r)) : null;
  }

  /** Serves one connection from the primary; `state` is what the welcome tells it (sync wanted, sync point). */
  attach(link: FrameLink, state: Record<string, unknown>): void {
    this.flush();
    this.ended = false;
    this.link = link;
    const gen = ++this.gen;
    this.received = 0n;
    this.diverged = false;
    this.streaming = false;
    this.appliedCount = 0n;
    this.appliedSent = 0n;
    this.version = 0;
    let greeted = false;
    link.onFrame((f) => {
      if (this.gen !== gen || this.ended) return;
      if (!greeted) {
        if (f.type !== 'hello') {
          this.o.events.log('E', `replication: the peer's first frame is ${f.type}, expected hello`);
          link.close();
          return;
        }
        this.greet(link, f, state);
        greeted = this.version > 0;
        return;
      }
      this.received++;
      // Persisted before anything after it is applied.
      if (f.type === 'syncBegin') {
        this.streaming = true;
        this.o.events.syncBegan(f.syncId, f.scope);
      }
      this.batch.push(f);
      // Everything that arrived in this chunk is acknowledged (async="second") and handed over together.
      if (this.batch.length === 1) queueMicrotask(() => this.flush());
    });
    link.onClose(() => {
      if (this.link !== link) return;
      this.flush();
      this.handOver();
      this.link = null;
      if (this.inline) this.inline.closeFds();
      else this.worker?.worker.postMessage({ t: 'closeFds' });
    });
  }

  /**
   * Answers a hello with the version both ends speak (protocol.ts), or, when the primary's highest is below
   * this node's lowest, with this node's lowest (the primary then knows there is none), and closes the link.
   * The welcome's state says this node's range too, for the primary's error message.
   */
  private greet(link: FrameLink, hello: Extract<Frame, { type: 'hello' }>, state: Record<string, unknown>): void {
    const own = this.o.versions ?? SUPPORTED_VERSIONS;
    const { version, common } = answerVersion(hello.version, own);
    link.send({ type: 'welcome', version, node: this.o.node, state: JSON.stringify({ ...state, versions: own }) });
    if (common) {
      this.version = version;
      this.lastRefusal = null;
      this.o.events.greeted?.(version);
      return;
    }
    const e = versionError({ self: this.o.node, own, peer: hello.node, peerVersions: null, peerVersion: hello.version });
    if (this.lastRefusal !== e.message) this.o.events.log('E', e.message);
    this.lastRefusal = e.message;
    this.o.events.refused?.(e);
    link.close();
  }

  /**
   * Applies everything received, closes every cached descriptor and ends the apply worker; returns when that
   * is done (end of the secondary role).
   */
  closeFds(): void {
    this.flush();
    this.handOver();
    this.ended = true;
    if (this.inline) {
      this.inline.closeFds();
      return;
    }
    const w = this.worker;
    if (!w) return;
    w.worker.postMessage({ t: 'closeFds' });
    this.drainWorker(w);
    this.stopWorker(w);
  }

  private flush(): void {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.toApply.push({ gen: this.gen, frames: batch });
    if (this.o.async === 'none') {
      this.handOver();
      return;
    }
    this.link!.send({ type: 'ack', count: this.received });
    this.sendApplied();
    // The acknowledgement leaves at the next tick (the link uncorks then): copying the frames to the worker
    // (or applying them here) waits until after it, it would delay it by as long.
    if (!this.handOverQueued) {
      this.handOverQueued = true;
      setImmediate(() => this.handOver());
    }
  }

  /**
   * Tells the primary how many frames are applied, if that moved on: it keeps the paths of what was
   * acknowledged but not applied until then (to mark them if the link breaks first).
   */
  private sendApplied(): void {
    if (this.appliedTimer) clearTimeout(this.appliedTimer);
    this.appliedTimer = null;
    // A v1 primary knows no `applied` frame (it would drop the link): it keeps every path acknowledged on
    // receipt instead (source.ts).
    if (!this.streaming || !this.link || this.diverged || this.appliedCount <= this.appliedSent || this.version < APPLIED_SINCE_VERSION) return;
    this.appliedSent = this.appliedCount;
    this.link.send({ type: 'applied', count: this.appliedCount });
  }

  /** Hands the acknowledged batches to the applier, in order. */
  private handOver(): void {
    this.handOverQueued = false;
    const items = this.toApply;
    this.toApply = [];
    for (const { gen, frames } of items) {
      if (this.inline) {
        this.inline.apply(gen, frames);
        continue;
      }
      for (const f of frames) this.backlog += frameBytes(f);
      this.startWorker().worker.postMessage({ t: 'frames', gen, frames });
    }
    const link = this.link;
    if (link?.pause && this.backlog > BACKLOG_PAUSE_BYTES && !this.paused) {
      link.pause();
      this.paused = link;
    }
  }

  private onResult(r: ApplyResult): void {
    const link = r.gen === this.gen ? this.link : null;
    switch (r.t) {
      case 'applied':
        if (!this.inline) this.backlog -= r.bytes;
        if (this.paused && this.backlog < BACKLOG_RESUME_BYTES) {
          this.paused.resume?.();
          this.paused = null;
        }
        if (!link || this.diverged) return;
        this.appliedCount = r.count;
        if (this.o.async === 'none') {
          link.send({ type: 'ack', count: r.count });
          this.sendApplied();
        } else if (this.streaming && !this.appliedTimer) {
          // With async="second" it rides with the next acknowledgement, or goes on its own shortly: a frame
          // of its own per batch would wake the primary once more per write.
          this.appliedTimer = setTimeout(() => this.sendApplied(), APPLIED_DELAY_MS);
          this.appliedTimer.unref();
        }
        return;
      case 'send':
        link?.send(reviveBuffers(r.frame));
        return;
      // An earlier link's sync point or time is not this node's any more: a newer link may be reintegrating it.
      case 'synced':
        if (r.gen !== this.gen) return;
        this.diverged = false;
        this.o.events.synced(r.syncId, r.lastSyncMs);
        return;
      case 'mark':
        if (r.gen === this.gen) this.o.events.mark(r.lastSyncMs);
        return;
      case 'fail':
        if (r.gen !== this.gen) return;
        if (!this.diverged) {
          this.diverged = true;
          this.o.events.diverged(r.reason);
        }
        if (link) {
          link.send({ type: 'fail', count: r.count, error: r.reason });
          link.close();
        }
        return;
      case 'idle':
        // The link ended and nothing came since: the worker goes (the next link starts another).
        if (r.gen === this.gen && !this.link && this.worker) this.stopWorker(this.worker);
        return;
    }
  }

  private startWorker(): ApplyWorker {
    if (this.worker) return this.worker;
    const { port1, port2 } = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(new URL('./apply-worker.mjs', import.meta.url), {
      workerData: { roots: this.o.roots.map((r) => ({ rootFd: r.rootFd })), async: this.o.async, results: port2, flag: flag.buffer },
      transferList: [port2],
    });
    const w: ApplyWorker = { worker, results: port1, flag, seq: 0 };
    port1.on('message', (r: ApplyResult) => this.onResult(r));
    worker.on('error', (e) => {
      // What it had not applied is lost: the node is not a faithful copy any more.
      this.o.events.log('E', `replication: the apply worker failed: ${e.message}`);
      this.stopWorker(w);
      this.onResult({ t: 'fail', gen: this.gen, count: this.received, reason: `the apply worker failed: ${e.message}` });
    });
    // Neither keeps the daemon (or a test) alive; closeFds() waits for the work itself.
    worker.unref();
    port1.unref();
    this.worker = w;
    return w;
  }

  /** Waits (blocking this thread) until the worker has done everything handed to it, and takes its results. */
  private drainWorker(w: ApplyWorker): void {
    const seq = ++w.seq;
    w.worker.postMessage({ t: 'sync', seq });
    const until = Date.now() + DRAIN_TIMEOUT_MS;
    while (Atomics.load(w.flag, 0) !== seq) {
      const left = until - Date.now();
      if (left <= 0) {
        this.o.events.log('E', `replication: the apply worker did not finish within ${DRAIN_TIMEOUT_MS} ms`);
        break;
      }
      Atomics.wait(w.flag, 0, Atomics.load(w.flag, 0), left);
    }
    for (let m = receiveMessageOnPort(w.results); m; m = receiveMessageOnPort(w.results)) this.onResult(m.message as ApplyResult);
  }

  private stopWorker(w: ApplyWorker): void {
    if (this.worker !== w) return;
    this.worker = null;
    w.results.close();
    void w.worker.terminate();
  }
}
