// HeartbeatTransport: the UDP heartbeat channel. One socket per heartbeat lan, bound to this node's
// address on that lan, sending to the peer's address on that lan. A datagram from anywhere is only
// counted until it authenticates; nothing a peer (or anybody) sends can throw out of the socket handler.
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { StayupError } from '../errors/stayup-error.ts';
import { HeartbeatEndpoint, type ChannelOptions, type HeartbeatChannel, type HeartbeatEvents, type LanCounters } from './channel.ts';

export interface UdpLan {
  lan: string;
  /** This node's address on the lan (cluster.xml laddr, else addr). */
  bindAddr: string;
  /** Local UDP port (heartbeatUdp of the module, or <heart port>). */
  port: number;
  /** The peer's address on the lan (cluster.xml addr). */
  peerAddr: string;
  peerPort: number;
}

export interface HeartbeatTransportOptions extends ChannelOptions {
  lans: UdpLan[];
}

interface OpenLan {
  spec: UdpLan;
  socket: Socket;
  /** Resolved peer address. */
  peerAddr: string;
  local: { address: string; port: number };
}

async function resolveAddr(addr: string): Promise<{ address: string; family: 4 | 6 }> {
  const v = isIP(addr);
  if (v === 4 || v === 6) return { address: addr, family: v };
  const r = await lookup(addr);
  return { address: r.address, family: r.family === 6 ? 6 : 4 };
}

async function openLan(spec: UdpLan): Promise<OpenLan> {
  const fail = (what: string, e: unknown): never => {
    const code = (e as NodeJS.ErrnoException)?.code;
    const hint =
      code === 'EADDRNOTAVAIL'
        ? ` (${spec.bindAddr} is not an address of this node: check cluster.xml)`
        : code === 'EADDRINUSE'
          ? ' (another process, or another module with the same port, holds it)'
          : '';
    throw new StayupError('HEARTBEAT_BIND_FAILED', `heartbeat lan "${spec.lan}": ${what}: ${(e as Error)?.message ?? String(e)}${hint}`, {
      cause: e,
      details: { lan: spec.lan, bindAddr: spec.bindAddr, port: spec.port },
    });
  };
  let bind: { address: string; family: 4 | 6 };
  let peer: { address: string; family: 4 | 6 };
  try {
    bind = await resolveAddr(spec.bindAddr);
  } catch (e) {
    return fail(`cannot resolve ${spec.bindAddr}`, e);
  }
  try {
    peer = await resolveAddr(spec.peerAddr);
  } catch (e) {
    return fail(`cannot resolve the peer address ${spec.peerAddr}`, e);
  }
  if (bind.family !== peer.family) {
    fail('address families differ', new Error(`this node ${bind.address} is IPv${bind.family}, the peer ${peer.address} is IPv${peer.family}`));
  }
  const socket = createSocket({ type: bind.family === 6 ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((res, rej) => {
      socket.once('error', rej);
      socket.bind({ address: bind.address, port: spec.port, exclusive: true }, () => {
        socket.off('error', rej);
        res();
      });
    });
  } catch (e) {
    socket.close();
    return fail(`cannot bind udp ${bind.address}:${spec.port}`, e);
  }
  const a = socket.address();
  return { spec, socket, peerAddr: peer.address, local: { address: a.address, port: a.port } };
}

export class HeartbeatTransport extends EventEmitter<HeartbeatEvents> implements HeartbeatChannel {
  readonly #core: HeartbeatEndpoint;
  readonly #lans: Map<string, OpenLan>;
  #closed = false;

  /** Opens every lan's socket; if one fails, closes the others and throws HEARTBEAT_BIND_FAILED. */
  static async open(opts: HeartbeatTransportOptions): Promise<HeartbeatTransport> {
    const core = new HeartbeatEndpoint(opts, opts.lans.map((l) => l.lan));
    const opened: OpenLan[] = [];
    try {
      for (const spec of opts.lans) opened.push(await openLan(spec));
    } catch (e) {
      await Promise.all(opened.map((o) => new Promise<void>((res) => o.socket.close(() => res()))));
      throw e;
    }
    return new HeartbeatTransport(core, opened);
  }

  private constructor(core: HeartbeatEndpoint, lans: OpenLan[]) {
    super();
    this.#core = core;
    this.#lans = new Map(lans.map((l) => [l.spec.lan, l]));
    for (const l of lans) {
      const lan = l.spec.lan;
      l.socket.on('message', (msg, rinfo) => {
        const r = this.#core.receive(lan, msg, `${rinfo.address}:${rinfo.port}`);
        if (r.ok) this.emit('frame', r.event);
        else this.emit('rejected', r.event);
      });
      l.socket.on('error', (e) => {
        this.emit('warning', { lan, message: `socket error: ${e.message}` });
      });
    }
  }

  get node(): string {
    return this.#core.node;
  }
  get peer(): string {
    return this.#core.peer;
  }
  get lans(): readonly string[] {
    return this.#core.lans;
  }
  get bootId(): string {
    return this.#core.bootId;
  }

  /** Where each lan's socket is bound. */
  localAddresses(): Record<string, { address: string; port: number }> {
    return Object.fromEntries([...this.#lans].map(([lan, l]) => [lan, { ...l.local }]));
  }

  send(payload: Uint8Array): void {
    for (const lan of this.#core.lans) this.sendOn(lan, payload);
  }

  sendOn(lan: string, payload: Uint8Array): void {
    const frame = this.#core.build(lan, payload);
    if (this.#closed) return;
    const l = this.#lans.get(lan)!;
    try {
      l.socket.send(frame, l.spec.peerPort, l.peerAddr, (err) => {
        this.#core.sent(lan, !err);
        if (err) this.emit('warning', { lan, message: `send to ${l.peerAddr}:${l.spec.peerPort}: ${err.message}` });
      });
    } catch (e) {
      this.#core.sent(lan, false);
      this.emit('warning', { lan, message: `send to ${l.peerAddr}:${l.spec.peerPort}: ${(e as Error).message}` });
    }
  }

  counters(): Record<string, LanCounters> {
    return this.#core.counters();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#lans.values()].map((l) => new Promise<void>((res) => l.socket.close(() => res()))));
  }
}
