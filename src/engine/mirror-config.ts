// From userconfig.xml and cluster.xml to what a mirror node's machine and its shell need.
import type { ClusterConfig } from '../config/cluster.ts';
import type { UserConfig } from '../config/userconfig/types.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { heartbeatUdpLans } from '../heartbeat/config.ts';
import type { UdpLan } from '../heartbeat/transport.ts';
import type { MirrorConfig } from '../mirror/types.ts';

export interface MirrorSetup {
  config: MirrorConfig;
  /** One UDP endpoint per <heartbeat>. */
  lans: UdpLan[];
}

/**
 * The two nodes of a mirror module are the nodes of its heartbeat lans in cluster.xml: every heartbeat
 * lan must hold this node and the same one other node (CONFIG_INVALID otherwise, naming the lan).
 */
export function mirrorPeer(cluster: ClusterConfig, uc: UserConfig, self: string): string {
  const heart = uc.service.heart;
  if (!heart || heart.heartbeats.length === 0) throw new StayupError('CONFIG_INVALID', 'a mirror module needs <heart> with at least one <heartbeat>');
  let peer: string | undefined;
  for (const hb of heart.heartbeats) {
    const lan = cluster.lans.find((l) => l.name === hb.name);
    if (!lan) throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: cluster.xml has no lan "${hb.name}"`);
    const names = lan.nodes.map((n) => n.name);
    if (!names.includes(self)) throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: this node "${self}" is not on lan "${hb.name}" of cluster.xml`);
    const others = names.filter((n) => n !== self);
    if (others.length !== 1) {
      throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: a mirror runs on 2 nodes, lan "${hb.name}" of cluster.xml has ${names.length} (${names.join(', ')})`);
    }
    if (peer !== undefined && peer !== others[0]) {
      throw new StayupError('CONFIG_INVALID', `<heartbeat name="${hb.name}">: its other node is ${others[0]}, the other heartbeats' is ${peer}`);
    }
    peer = others[0];
  }
  return peer!;
}

export function buildMirrorSetup(cluster: ClusterConfig, uc: UserConfig, opts: { self: string; moduleId: number }): MirrorSetup {
  const svc = uc.service;
  if (svc.mode !== 'mirror') throw new StayupError('MODULE_NOT_MIRROR', `the module is a ${svc.mode} module, not a mirror`);
  const peer = mirrorPeer(cluster, uc, opts.self);
  const heart = svc.heart!;
  const nodes = [opts.self, peer];
  if (svc.defaultPrim !== 'alone' && svc.defaultPrim !== 'lastprim' && !nodes.includes(svc.defaultPrim)) {
    throw new StayupError('CONFIG_INVALID', `<service defaultprim="${svc.defaultPrim}">: not a node of this mirror (${nodes.join(', ')}), nor alone or lastprim`);
  }
  const config: MirrorConfig = {
    self: opts.self,
    peer,
    failover: svc.failover,
    defaultPrim: svc.defaultPrim,
    maxLoop: svc.maxLoop,
    loopIntervalMs: svc.loopIntervalMs,
    heartbeats: heart.heartbeats.map((h) => ({ lan: h.name, pulseMs: h.pulseMs, timeoutMs: h.timeoutMs })),
    vip: svc.vip ? { tcpreset: svc.vip.tcpreset } : null,
    replicatedData: svc.rfs !== undefined && svc.rfs.replicated.length > 0,
    syncDeltaMs: svc.rfs?.syncdeltaMs ?? 0,
  };
  for (const h of config.heartbeats) {
    if (!(h.pulseMs > 0 && h.timeoutMs > h.pulseMs)) {
      throw new StayupError('CONFIG_INVALID', `<heartbeat name="${h.lan}">: the timeout (${h.timeoutMs} ms) must be longer than the pulse (${h.pulseMs} ms)`);
    }
  }
  return { config, lans: heartbeatUdpLans(cluster, heart, { node: opts.self, peer, moduleId: opts.moduleId }) };
}
