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

import { randomUUID } from 'node:crypto';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { StayupError } from '../errors/stayup-error.ts';
import { StripeReassembler, type FrameLink } from './link.ts';
import { BatchApplier, FrameApplier, frameBytes, type ApplyResult, type TargetRoot } from './frame-applier.ts';
import { versionError } from './handshake.ts';
import type { PeerFs } from './peer-fs.ts';
import { answerVersion, APPLIED_SINCE_VERSION, MAX_STRIPES, ownedBodyMemory, reviveBuffers, STRIPES_SINCE_VERSION, SUPPORTED_VERSIONS, type Frame, type VersionRange } from './protocol.ts';

export { blockSum, readFully, SUM_BYTES, type TargetRoot } from './frame-applier.ts';

/** Write frames at least this large hand their data to the apply worker without a copy. */
const TRANSFER_MIN_BYTES = 64 * 1024;
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
  /** A primary was welcomed on `link` (connection 0 of its stream), which speaks `version` (protocol.ts). */
  greeted?(version: number, link: FrameLink): void;
  /** A primary's hello was refused: no common protocol version (REPLICATION_VERSION; logged once here). */
  refused?(error: StayupError): void;
}

/** One stream from the primary: its session id (the welcome's), its connections, and their reassembler once known. */
interface StreamSession {
  id: string;
  gen: number;
  version: number;
  links: Array<FrameLink | undefined>;
  stripes: StripeReassembler | null;
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
  /** The stream's connections are not read (the applier's backlog): the session they belong to. */
  private paused: StreamSession | null = null;
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
  /** The current stream: its connections (0 the one that said hello) and, once known, their reassembler. */
  private session: StreamSession | null = null;
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

  /**
   * Serves one connection from the primary; `state` is what a welcome tells it (sync wanted, sync point).
   * Its first frame says what it is: a `hello` opens a new stream (the previous one's connections close),
   * a `join` (protocol v3) adds a connection to the current stream (<rfs nbremconn>).
   */
  attach(link: FrameLink, state: Record<string, unknown>): void {
    let handler: ((f: Frame) => void) | null = null;
    link.onFrame((f) => {
      if (handler) handler(f);
      else if (f.type === 'join') handler = this.join(link, f);
      else handler = this.begin(link, f, state);
    });
  }

  /** A new stream on `link` (connection 0): returns what handles its later frames. */
  private begin(link: FrameLink, f: Frame, state: Record<string, unknown>): (f: Frame) => void {
    const ignore = (): void => {};
    if (f.type !== 'hello') {
      this.o.events.log('E', `replication: the peer's first frame is ${f.type}, expected hello`);
      link.close();
      return ignore;
    }
    const id = randomUUID();
    const version = this.greet(link, f, state, id);
    if (version === 0) return ignore;
    this.flush();
    const previous = this.session;
    this.ended = false;
    this.link = link;
    const gen = ++this.gen;
    this.received = 0n;
    this.diverged = false;
    this.streaming = false;
    this.appliedCount = 0n;
    this.appliedSent = 0n;
    this.version = version;
    const session: StreamSession = { id, gen, version, links: [link], stripes: null };
    this.session = session;
    for (const l of previous?.links ?? []) l?.close();
    link.onClose(() => {
      // Losing any connection of the stream ends all of it, as a lost single connection does.
      for (const l of session.links) l?.close();
      if (this.link !== link) return;
      this.flush();
      this.handOver();
      this.link = null;
      this.session = null;
      if (this.inline) this.inline.closeFds();
      else this.worker?.worker.postMessage({ t: 'closeFds' });
    });
    this.o.events.greeted?.(version, link);
    // Before v3 one connection carries the stream. From v3, a first frame `stripes` says over how many.
    let first = true;
    return (fr) => {
      if (this.session !== session || this.ended) return;
      if (first) {
        first = false;
        if (fr.type === 'stripes' && version >= STRIPES_SINCE_VERSION) {
          this.setStripes(session, fr.count);
          return;
        }
        this.setStripes(session, 1);
      }
      session.stripes?.push(0, fr);
    };
  }

  /**
   * The stream of `session` is spread over `count` connections (said by `stripes` on connection 0, and by
   * each join: whichever comes first); a count out of range or different from the first one ends it.
   */
  private setStripes(session: StreamSession, count: number): void {
    if (session.stripes?.count === count) return;
    if (session.stripes || count < 1 || count > MAX_STRIPES) {
      this.o.events.log('E', `replication: the primary spreads its stream over ${count} connection${count === 1 ? '' : 's'}${session.stripes ? `, after ${session.stripes.count}` : ` (1..${MAX_STRIPES})`}: the link is closed`);
      session.links[0]?.close();
      return;
    }
    const gen = session.gen;
    session.stripes = new StripeReassembler(count, (f) => this.onStreamFrame(gen, f));
    session.links.forEach((l, i) => l && session.stripes!.add(i, l));
  }

  /** One frame of the stream, in the primary's order. */
  private onStreamFrame(gen: number, f: Frame): void {
    if (this.gen !== gen || this.ended) return;
    if (f.type === 'hello' || f.type === 'stripes' || f.type === 'join') {
      this.o.events.log('E', `replication: frame ${f.type} inside the stream: the link is closed`);
      this.link?.close();
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
  }

  /**
   * One more connection of the current stream (protocol v3). It must name the session the welcome gave and
   * a free place in it; otherwise it is refused (REPLICATION_JOIN_REFUSED, said to the primary in a `fail`
   * frame on that connection) and the current stream goes on.
   */
  private join(link: FrameLink, f: Extract<Frame, { type: 'join' }>): (f: Frame) => void {
    const s = this.session;
    const problem =
      !s || s.id !== f.session
        ? `it joins stream session "${f.session}", and ${s ? `the current one is another` : 'no stream is open'} (a stream of an earlier connection?)`
        : s.version < STRIPES_SINCE_VERSION
          ? `the stream speaks protocol v${s.version}, one connection`
          : f.index < 1 || f.index >= f.count
            ? `connection ${f.index} of ${f.count} (1..${f.count - 1} join connection 0)`
            : s.links[f.index]
              ? `connection ${f.index} has joined already`
              : null;
    if (problem) {
      const e = new StayupError('REPLICATION_JOIN_REFUSED', `replication: connection from ${link.remote} refused: ${problem}`);
      this.o.events.log('E', e.message);
      link.send({ type: 'fail', count: 0n, error: e.message });
      link.close();
      return () => {};
    }
    const session = s!;
    session.links[f.index] = link;
    link.onClose(() => session.links[0]?.close());
    this.setStripes(session, f.count);
    session.stripes?.add(f.index, link);
    return (fr) => {
      if (this.session === session && !this.ended) session.stripes?.push(f.index, fr);
    };
  }

  /** Connections carrying the current stream (0 without one). */
  get connections(): number {
    return this.session ? (this.session.stripes?.connections ?? 1) : 0;
  }

  /**
   * Answers a hello with the version both ends speak (protocol.ts), or, when the primary's highest is below
   * this node's lowest, with this node's lowest (the primary then knows there is none), closes the link and
   * returns 0. The welcome's state says this node's range too, for the primary's error message, and, from
   * v3, the stream's session id (what the primary's other connections join).
   */
  private greet(link: FrameLink, hello: Extract<Frame, { type: 'hello' }>, state: Record<string, unknown>, sessionId: string): number {
    const own = this.o.versions ?? SUPPORTED_VERSIONS;
    const { version, common } = answerVersion(hello.version, own);
    const session = common && version >= STRIPES_SINCE_VERSION ? { session: sessionId } : {};
    link.send({ type: 'welcome', version, node: this.o.node, state: JSON.stringify({ ...state, versions: own, ...session }) });
    if (common) {
      this.lastRefusal = null;
      return version;
    }
    const e = versionError({ self: this.o.node, own, peer: hello.node, peerVersions: null, peerVersion: hello.version });
    if (this.lastRefusal !== e.message) this.o.events.log('E', e.message);
    this.lastRefusal = e.message;
    this.o.events.refused?.(e);
    link.close();
    return 0;
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
      // The data of large writes moves to the worker instead of being copied (the link no longer needs
      // it: the frame was acknowledged or is only to be applied). A copy of 1 MiB per write costs this
      // thread more than the decryption did.
      const transfer: ArrayBuffer[] = [];
      for (const f of frames) {
        this.backlog += frameBytes(f);
        const mem = f.type === 'write' && f.data.byteLength >= TRANSFER_MIN_BYTES ? ownedBodyMemory(f.data) : null;
        if (mem && !transfer.includes(mem)) transfer.push(mem);
      }
      this.startWorker().worker.postMessage({ t: 'frames', gen, frames }, transfer);
    }
    const stripes = this.session?.stripes;
    if (stripes && this.backlog > BACKLOG_PAUSE_BYTES && !this.paused) {
      stripes.hold(true);
      this.paused = this.session;
    }
  }

  private onResult(r: ApplyResult): void {
    const link = r.gen === this.gen ? this.link : null;
    switch (r.t) {
      case 'applied':
        if (!this.inline) this.backlog -= r.bytes;
        if (this.paused && this.backlog < BACKLOG_RESUME_BYTES) {
          this.paused.stripes?.hold(false);
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
