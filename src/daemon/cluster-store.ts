import { existsSync, readFileSync, rmSync } from 'node:fs';
import { networkInterfaces, hostname } from 'node:os';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { NodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { decodeKey, encodeKey, keyId } from '../crypto/cluster-key.ts';
import { parseClusterConfig, clusterSignature, clusterNodes, type ClusterConfig } from '../config/cluster.ts';

/** What `cluster confinfo` shows for a node: when its config was applied and its fingerprint. */
export interface ClusterMeta {
  configuredAt: string;
  signature: string;
  keyId: string;
  locked: boolean;
}

export interface ClusterView {
  config: ClusterConfig;
  xml: string;
  meta: ClusterMeta;
  /** This node's name in cluster.xml, if one of its addresses is ours. */
  localNode: string | undefined;
}

/**
 * The cluster configuration of one node: cluster.xml, the cluster key and their metadata, each replaced
 * atomically. The key is written before the XML, and the metadata last, so a crash leaves either the old
 * or the new configuration in force (a new key with the old XML is harmless: both come from one push).
 */
export class ClusterStore {
  private cached: ClusterView | undefined;
  private previousKey: Buffer | undefined;

  constructor(private readonly paths: NodePaths) {}

  load(): ClusterView | undefined {
    if (this.cached) return this.cached;
    if (!existsSync(this.paths.clusterXml) || !existsSync(this.paths.clusterMeta)) return undefined;
    const xml = readFileSync(this.paths.clusterXml, 'utf8');
    const config = parseClusterConfig(xml, this.paths.clusterXml);
    const meta = JSON.parse(readFileSync(this.paths.clusterMeta, 'utf8')) as ClusterMeta;
    this.cached = { config, xml, meta, localNode: findLocalNode(config) };
    return this.cached;
  }

  require(): ClusterView {
    const v = this.load();
    if (!v) throw new StayupError('CLUSTER_NOT_CONFIGURED', 'this node has no cluster configuration: run "stayup cluster config cluster.xml"');
    return v;
  }

  key(): Buffer | undefined {
    return existsSync(this.paths.clusterKey) ? decodeKey(readFileSync(this.paths.clusterKey, 'utf8'), this.paths.clusterKey) : undefined;
  }

  /** Keys this node accepts sealed requests under: the current one, and the one it replaced (for a re-key push). */
  acceptedKeys(): Buffer[] {
    const k = this.key();
    return [k, this.previousKey].filter((x): x is Buffer => x !== undefined);
  }

  apply(xml: string, key: Buffer, opts: { lock?: boolean; unlock?: boolean; now: Date }): ClusterMeta {
    const current = this.load();
    if (current?.meta.locked && !opts.unlock) {
      throw new StayupError('CLUSTER_LOCKED', 'the cluster configuration is locked: apply with "unlock" to change it');
    }
    const config = parseClusterConfig(xml, 'cluster.xml');
    const old = this.key();
    if (old && !old.equals(key)) this.previousKey = old;
    writeFileAtomic(this.paths.clusterKey, encodeKey(key), 0o600);
    writeFileAtomic(this.paths.clusterXml, xml, 0o644);
    const meta: ClusterMeta = {
      configuredAt: opts.now.toISOString(),
      signature: clusterSignature(xml),
      keyId: keyId(key),
      locked: opts.lock ? true : opts.unlock ? false : (current?.meta.locked ?? false),
    };
    writeFileAtomic(this.paths.clusterMeta, JSON.stringify(meta, null, 2) + '\n', 0o644);
    this.cached = { config, xml, meta, localNode: findLocalNode(config) };
    return meta;
  }

  deconfig(): void {
    for (const f of [this.paths.clusterMeta, this.paths.clusterXml, this.paths.clusterKey]) rmSync(f, { force: true });
    this.cached = undefined;
  }
}

/** A node is "us" when one of its addresses is configured on a local interface; else by hostname. */
export function findLocalNode(config: ClusterConfig): string | undefined {
  const local = new Set<string>();
  for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) local.add(a.address);
  for (const lan of config.lans) {
    for (const n of lan.nodes) if (local.has(n.addr)) return n.name;
  }
  const host = hostname();
  return clusterNodes(config).find((n) => n.name === host || n.addr === host)?.name;
}
