// From cluster.xml and <heart> to what the transport and the loss detector need.
import type { ClusterConfig } from '../config/cluster.ts';
import type { Heart } from '../config/userconfig/types.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { modulePorts } from '../packages/module-store.ts';
import type { UdpLan } from './transport.ts';
import type { LossDetectorLan } from './loss-detector.ts';

/** The UDP port of a module's heartbeats: <heart port>, else 8888 + id - 1. */
export function heartbeatPort(heart: Pick<Heart, 'port'>, moduleId: number): number {
  return heart.port ?? modulePorts(moduleId).heartbeatUdp;
}

/**
 * One UdpLan per <heartbeat>: bind this node's address on the lan (laddr if set, for NAT), send to the
 * peer's address on it, same port on both sides. CONFIG_INVALID if a lan or a node is missing.
 */
export function heartbeatUdpLans(cluster: ClusterConfig, heart: Heart, opts: { node: string; peer: string; moduleId: number }): UdpLan[] {
  const port = heartbeatPort(heart, opts.moduleId);
  return heart.heartbeats.map((hb) => {
    const lan = cluster.lans.find((l) => l.name === hb.name);
    if (!lan) throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: cluster.xml has no lan "${hb.name}"`);
    const me = lan.nodes.find((n) => n.name === opts.node);
    const peer = lan.nodes.find((n) => n.name === opts.peer);
    if (!me) throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: this node "${opts.node}" is not on lan "${hb.name}" of cluster.xml`);
    if (!peer) throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: the peer "${opts.peer}" is not on lan "${hb.name}" of cluster.xml`);
    return { lan: hb.name, bindAddr: me.laddr ?? me.addr, port, peerAddr: peer.addr, peerPort: port };
  });
}

/** The loss detector's lans: each heartbeat's own timeout. */
export function lossDetectorLans(heart: Heart): LossDetectorLan[] {
  return heart.heartbeats.map((hb) => ({ lan: hb.name, timeoutMs: hb.timeoutMs }));
}
