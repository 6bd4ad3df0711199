// The replication link: an ordered, authenticated and encrypted frame stream between the two nodes of a
// module. TLS 1.3 with an external pre-shared key derived from the module key (no certificate: the module
// key is what both nodes share), cipher TLS_AES_128_GCM_SHA256 (OpenSSL's TLS 1.3 PSK path needs a
// SHA-256 suite), (EC)DHE key exchange for forward secrecy. The PSK identity names the module and the
// sending node; the listener accepts only its peer's identity.
//
// FrameLink is the seam the replication code uses; memoryLinkPair() is its in-process twin (same framing,
// no socket), for tests and the simulator.

import { hkdfSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import tls from 'node:tls';
import { decodeFrame, encodeFrame, FrameReader, type Frame } from './protocol.ts';
import { frameBytes } from './frame-applier.ts';

export interface FrameLink {
  /** Queues a frame; false when more than the high-water mark is buffered (wait for drained()). */
  send(frame: Frame): boolean;
  drained(): Promise<void>;
  onFrame(fn: (f: Frame) => void): void;
  /** Called once, when the link ends for any reason (error null on a clean end). */
  onClose(fn: (error: Error | null) => void): void;
  close(): void;
  /** Stops reading (the receiver cannot keep up); resume() reads again. Optional: an in-memory twin has none. */
  pause?(): void;
  resume?(): void;
  readonly remote: string;
}

const CIPHER = 'TLS_AES_128_GCM_SHA256';
/** Frames queued beyond this make send() return false (the writer waits before queueing more). */
const HIGH_WATER_BYTES = 32 * 1024 * 1024;

export function replicationPsk(moduleKey: Uint8Array, module: string): Buffer {
  return Buffer.from(hkdfSync('sha256', moduleKey, Buffer.from(module, 'utf8'), 'stayup replication psk v1', 32));
}

export function pskIdentity(module: string, node: string): string {
  return `stayup:${module}:${node}`;
}

/**
 * What every FrameLink here shares: listeners of frames and of the end, and the end said once (finish()),
 * with its error (null: a clean end).
 */
abstract class LinkEvents {
  protected readonly events = new EventEmitter();
  protected closed = false;

  onFrame(fn: (f: Frame) => void): void {
    this.events.on('frame', fn);
  }

  onClose(fn: (error: Error | null) => void): void {
    if (this.closed) queueMicrotask(() => fn(null));
    else this.events.once('closed', fn);
  }

  /** Ends the link once: `release` frees what it holds, then the listeners hear it. */
  protected end(error: Error | null, release: () => void): void {
    if (this.closed) return;
    this.closed = true;
    release();
    this.events.emit('closed', error);
  }
}

class SocketLink extends LinkEvents implements FrameLink {
  private readonly reader = new FrameReader();
  private corked = false;

  constructor(private readonly socket: tls.TLSSocket, readonly remote: string) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk, (body) => this.events.emit('frame', decodeFrame(body)));
      } catch (e) {
        this.finish(e as Error);
      }
    });
    socket.on('error', (e) => this.finish(e));
    socket.on('close', () => this.finish(null));
    socket.on('end', () => socket.end());
  }

  send(frame: Frame): boolean {
    if (this.closed) return false;
    // Frames queued in one turn of the event loop leave in as few TLS records and TCP segments as possible.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    let ok = true;
    for (const b of encodeFrame(frame)) ok = this.socket.write(b);
    return ok && this.socket.writableLength < HIGH_WATER_BYTES;
  }

  drained(): Promise<void> {
    // Only a socket whose write said "wait" emits 'drain': one that has some bytes queued below its own
    // high-water mark never would (a StripedLink asks every connection, not only the congested one).
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.events.off('closed', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.events.on('closed', done);
    });
  }

  close(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  private finish(error: Error | null): void {
    this.end(error, () => this.socket.destroy());
  }
}

/** Connects to the peer's replication listener (the primary does this). */
export function connectLink(o: {
  host: string;
  port: number;
  localAddress?: string;
  moduleKey: Uint8Array;
  module: string;
  node: string;
  timeoutMs: number;
}): Promise<FrameLink> {
  const psk = replicationPsk(o.moduleKey, o.module);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: o.host,
      port: o.port,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      minVersion: 'TLSv1.3',
      ciphers: CIPHER,
      // No certificate: the PSK authenticates both ends.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk, identity: pskIdentity(o.module, o.node) }),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`replication link to ${o.host}:${o.port}: no TLS handshake within ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new SocketLink(socket, `${o.host}:${o.port}`));
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`replication link to ${o.host}:${o.port}: ${e.message}`));
    });
  });
}

/** Listens for the peer's replication link (the secondary does this). */
export function listenLinks(o: {
  host: string;
  port: number;
  moduleKey: Uint8Array;
  module: string;
  peerNode: string;
  onLink: (link: FrameLink) => void;
  onReject: (why: string) => void;
}): Promise<tls.Server> {
  const psk = replicationPsk(o.moduleKey, o.module);
  const expected = pskIdentity(o.module, o.peerNode);
  const server = tls.createServer(
    {
      minVersion: 'TLSv1.3',
      ciphers: CIPHER,
      pskCallback: (_socket, identity) => {
        if (identity === expected) return psk;
        o.onReject(`identity "${identity}" is not the peer's (${expected})`);
        return null;
      },
    },
    (socket) => o.onLink(new SocketLink(socket, `${socket.remoteAddress}:${socket.remotePort}`)),
  );
  server.on('tlsClientError', (e) => o.onReject(`TLS handshake refused: ${e.message} (another module key?)`));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Two connected in-process links: frames are encoded, split and decoded as on a socket. */
export function memoryLinkPair(): [FrameLink, FrameLink] {
  const make = (name: string): MemoryLink => new MemoryLink(name);
  const a = make('memory-a');
  const b = make('memory-b');
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class MemoryLink extends LinkEvents implements FrameLink {
  peer: MemoryLink | null = null;
  private readonly reader = new FrameReader();

  constructor(readonly remote: string) {
    super();
  }

  send(frame: Frame): boolean {
    if (this.closed) return false;
    const bufs = encodeFrame(frame).map((b) => Buffer.from(b));
    const peer = this.peer!;
    setImmediate(() => {
      for (const b of bufs) peer.receive(b);
    });
    return true;
  }

  drained(): Promise<void> {
    return new Promise((r) => setImmediate(r));
  }

  receive(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.reader.push(chunk, (body) => this.events.emit('frame', decodeFrame(body)));
    } catch (e) {
      this.finish(e as Error);
    }
  }

  close(): void {
    setImmediate(() => {
      this.finish(null);
      this.peer?.finish(null);
    });
  }

  finish(error: Error | null): void {
    this.end(error, () => {});
  }
}

// ------------------------------------------------------------------------------- several connections

/**
 * The primary's end of a stream spread over several connections (<rfs nbremconn>, protocol v3): on a long
 * fat network one TCP connection's window limits throughput, N connections have N windows. Frame k goes on
 * connection k mod N, so no frame needs a header of its own: the secondary reads frame k from connection
 * k mod N (StripeReassembler). Answers (acknowledgements, listings, checksums) come on connection 0. Losing
 * any connection ends the whole link, as a lost single connection does.
 */
export class StripedLink extends LinkEvents implements FrameLink {
  private sent = 0;

  constructor(private readonly links: readonly FrameLink[]) {
    super();
    links.forEach((l, i) => {
      l.onFrame((f) => {
        if (i === 0) this.events.emit('frame', f);
        // The secondary answers on another connection only to refuse its join: its reason ends the link.
        else this.finish(new Error(f.type === 'fail' ? `the secondary refused connection ${i}: ${f.error}` : `frame ${f.type} on connection ${i}, where the secondary sends nothing`));
      });
      l.onClose((e) => this.finish(i === 0 ? e : new Error(`connection ${i} of ${links.length} ended${e ? `: ${e.message}` : ''}`)));
    });
  }

  get remote(): string {
    return `${this.links[0]!.remote} (${this.links.length} connections)`;
  }

  send(frame: Frame): boolean {
    if (this.closed) return false;
    return this.links[this.sent++ % this.links.length]!.send(frame);
  }

  async drained(): Promise<void> {
    await Promise.all(this.links.map((l) => l.drained()));
  }

  close(): void {
    this.finish(null);
  }

  private finish(error: Error | null): void {
    this.end(error, () => {
      for (const l of this.links) l.close();
    });
  }
}

/**
 * Frames waiting on one connection (it is ahead of the others) beyond this pause it; below half, it reads
 * again. The stream's connections share 64 MiB (at least 2 MiB each): memory does not grow with nbremconn.
 */
export function stripeQueueBytes(count: number): number {
  return Math.max(2 * 1024 * 1024, Math.floor((64 * 1024 * 1024) / count));
}

/**
 * The secondary's end of a stream spread over `count` connections: frames arrive on each connection in
 * order and leave through `deliver` in the primary's order, frame k from connection k mod count. A
 * connection that is ahead waits; past `maxQueuedBytes` waiting it is paused. The connection the next frame
 * is awaited on is never paused by this (nothing waits on it), so the stream cannot stall itself. hold()
 * pauses them all (the applier's backlog).
 */
export class StripeReassembler {
  private readonly queues: Array<{ frames: Frame[]; head: number; bytes: number; full: boolean; link: FrameLink | null; paused: boolean }>;
  private next = 0;
  private held = false;

  constructor(
    readonly count: number,
    private readonly deliver: (f: Frame) => void,
    private readonly maxQueuedBytes = stripeQueueBytes(count),
  ) {
    this.queues = Array.from({ length: count }, () => ({ frames: [], head: 0, bytes: 0, full: false, link: null, paused: false }));
  }

  /** Connection `index` carries part of the stream from now on (pause/resume act on it). */
  add(index: number, link: FrameLink): void {
    this.queues[index]!.link = link;
    this.settle(index);
  }

  has(index: number): boolean {
    return this.queues[index]!.link !== null;
  }

  get connections(): number {
    return this.queues.filter((q) => q.link !== null).length;
  }

  push(index: number, f: Frame): void {
    const q = this.queues[index]!;
    if (index === this.next && q.head === q.frames.length) {
      this.advance(f);
    } else {
      q.frames.push(f);
      q.bytes += frameBytes(f);
      if (q.bytes > this.maxQueuedBytes && !q.full) {
        q.full = true;
        this.settle(index);
      }
    }
    this.drain();
  }

  /** Stops (true) or resumes (false) reading every connection. */
  hold(on: boolean): void {
    this.held = on;
    for (let i = 0; i < this.count; i++) this.settle(i);
  }

  private drain(): void {
    for (;;) {
      const i = this.next;
      const q = this.queues[i]!;
      if (q.head === q.frames.length) return;
      const f = q.frames[q.head]!;
      q.frames[q.head++] = undefined as unknown as Frame;
      if (q.head === q.frames.length) {
        q.frames = [];
        q.head = 0;
      }
      q.bytes -= frameBytes(f);
      if (q.full && q.bytes < this.maxQueuedBytes / 2) {
        q.full = false;
        this.settle(i);
      }
      this.advance(f);
    }
  }

  private advance(f: Frame): void {
    this.next = (this.next + 1) % this.count;
    this.deliver(f);
  }

  /** A connection reads while nothing holds it: neither hold() nor its own queue. */
  private settle(index: number): void {
    const q = this.queues[index]!;
    const pause = this.held || q.full;
    if (!q.link || pause === q.paused) return;
    q.paused = pause;
    if (pause) q.link.pause?.();
    else q.link.resume?.();
  }
}
