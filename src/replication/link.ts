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

class SocketLink implements FrameLink {
  private readonly reader = new FrameReader();
  private readonly events = new EventEmitter();
  private closed = false;
  private corked = false;

  constructor(private readonly socket: tls.TLSSocket, readonly remote: string) {
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
    if (this.closed || this.socket.writableLength === 0) return Promise.resolve();
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

  onFrame(fn: (f: Frame) => void): void {
    this.events.on('frame', fn);
  }

  onClose(fn: (error: Error | null) => void): void {
    if (this.closed) queueMicrotask(() => fn(null));
    else this.events.once('closed', fn);
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
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.events.emit('closed', error);
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

class MemoryLink implements FrameLink {
  peer: MemoryLink | null = null;
  private readonly reader = new FrameReader();
  private readonly events = new EventEmitter();
  private closed = false;

  constructor(readonly remote: string) {}

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

  onFrame(fn: (f: Frame) => void): void {
    this.events.on('frame', fn);
  }

  onClose(fn: (error: Error | null) => void): void {
    if (this.closed) queueMicrotask(() => fn(null));
    else this.events.once('closed', fn);
  }

  close(): void {
    setImmediate(() => {
      this.finish(null);
      this.peer?.finish(null);
    });
  }

  finish(error: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.events.emit('closed', error);
  }
}
