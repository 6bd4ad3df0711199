import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { StayupError } from '../errors/stayup-error.ts';
import { readKeyFile } from '../crypto/cluster-key.ts';
import { parseClusterConfig, clusterNodes, type ClusterConfig } from '../config/cluster.ts';
import type { NodePaths } from '../util/paths.ts';
import { LocalClient, SealedClient, defaultApiPort, type Credential, type NodeClient } from './client.ts';

export interface TargetOptions {
  /** The -H value: "*", or a comma-separated list of node names or addresses. */
  hosts?: string;
  /** Cluster to resolve names from, when not this node's (e.g. the file of `cluster config FILE`). */
  clusterXml?: string;
}

function loadCluster(paths: NodePaths, xml?: string): ClusterConfig | undefined {
  if (xml !== undefined) return parseClusterConfig(xml, 'cluster.xml');
  if (!existsSync(paths.clusterXml)) return undefined;
  return parseClusterConfig(readFileSync(paths.clusterXml, 'utf8'), paths.clusterXml);
}

/**
 * How the CLI proves itself to remote nodes: an admin password when given (STAYUP_PASSWORD, to bootstrap
 * nodes that have no cluster key yet), else this node's cluster key.
 */
export function remoteCredential(paths: NodePaths, env: NodeJS.ProcessEnv = process.env): Credential {
  if (env.STAYUP_PASSWORD) return { kind: 'password', user: env.STAYUP_USER ?? 'admin', password: env.STAYUP_PASSWORD };
  const key = readKeyFile(paths.clusterKey);
  if (!key) {
    throw new StayupError('CLUSTER_NOT_CONFIGURED', 'no cluster key on this node: configure the cluster first, or set STAYUP_PASSWORD to reach nodes with an admin password');
  }
  return { kind: 'cluster', key };
}

function withPort(addr: string): string {
  if (isIP(addr) === 6) return `[${addr}]:${defaultApiPort}`;
  return addr.includes(':') ? addr : `${addr}:${defaultApiPort}`;
}

/** The nodes a command runs on: this node alone without -H, else the -H list through sealed requests. */
export function resolveTargets(paths: NodePaths, opts: TargetOptions): NodeClient[] {
  if (!opts.hosts) return [new LocalClient(paths.localTokenFile)];
  const cluster = loadCluster(paths, opts.clusterXml);
  const known = cluster ? clusterNodes(cluster) : [];
  const credential = remoteCredential(paths);
  const wanted = opts.hosts.trim() === '*' ? known.map((n) => n.name) : opts.hosts.split(',').map((h) => h.trim()).filter(Boolean);
  if (opts.hosts.trim() === '*' && !cluster) throw new StayupError('CLUSTER_NOT_CONFIGURED', '-H "*" needs a cluster configuration on this node');
  if (wanted.length === 0) throw new StayupError('BAD_ARGUMENT', '-H: no node given');
  return wanted.map((h) => {
    const n = known.find((k) => k.name === h);
    if (n) return new SealedClient(n.name, withPort(n.addr), credential);
    const bare = h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (isIP(bare) || /^[A-Za-z0-9.-]+(:\d+)?$/.test(h)) {
      const byAddr = known.find((k) => k.addr === bare);
      if (!cluster || byAddr || isIP(bare)) return new SealedClient(byAddr?.name ?? h, withPort(h), credential);
    }
    throw new StayupError('BAD_ARGUMENT', `-H: "${h}" is not a node of cluster.xml (${known.map((k) => k.name).join(', ') || 'none'})`);
  });
}
