import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { StayupError } from '../../errors/stayup-error.ts';
import { generateClusterKey, encodeKey, readKeyFile, keyId } from '../../crypto/cluster-key.ts';
import { parseClusterConfig, clusterNodes } from '../../config/cluster.ts';
import { nodePaths } from '../../util/paths.ts';
import { runOnTargets, table, errorText, exitCodeOf, hostsOf } from '../run.ts';
import { resolveTargets } from '../targets.ts';
import type { ClusterMeta } from '../../daemon/cluster-store.ts';

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new StayupError('CONFIG_FILE_UNREADABLE', `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}


async function local(fn: () => Promise<string> | string): Promise<number> {
  try {
    const out = await fn();
    if (out) process.stdout.write(out.endsWith('\n') ? out : out + '\n');
    return 0;
  } catch (e) {
    process.stderr.write(`stayup: ${errorText(e)}\n`);
    return exitCodeOf(e);
  }
}

/** Applies cluster.xml plus one key on every target; the key is made here once, so all nodes share it. */
export async function pushClusterConfig(hosts: string | undefined, xml: string, key: Buffer, flags: { lock?: boolean; unlock?: boolean }): Promise<number> {
  return runOnTargets({ hosts, clusterXml: xml }, async (c) => {
    const meta = await c.call<ClusterMeta & { node: string | null }>('PUT', '/api/v1/cluster/config', { xml, key: encodeKey(key).trim(), ...flags });
    return `cluster configured on ${meta.node ?? '(node not in cluster.xml)'}: signature ${meta.signature.slice(0, 16)}, key ${meta.keyId}${meta.locked ? ', locked' : ''}`;
  });
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('cluster configuration (cluster.xml and the cluster key)');

  cluster
    .command('confcheck')
    .argument('<file>', 'cluster.xml to check')
    .description('validate a cluster.xml without applying it')
    .action(async (file: string) => {
      process.exitCode = await local(() => {
        const cfg = parseClusterConfig(readText(file), file);
        const nodes = clusterNodes(cfg);
        return `${file}: OK, ${cfg.lans.length} lan(s), ${nodes.length} node(s): ${nodes.map((n) => `${n.name} ${n.addr}`).join(', ')}`;
      });
    });

  cluster
    .command('config')
    .argument('<file>', 'cluster.xml')
    .argument('[lock]', '"lock" to forbid later changes, "unlock" to allow them')
    .option('--keep-key', 'keep this node\'s current cluster key instead of generating a new one')
    .description('apply cluster.xml with a new cluster key (on every -H node: the same key)')
    .action(async (file: string, lock: string | undefined, opts: { keepKey?: boolean }, cmd: Command) => {
      if (lock !== undefined && lock !== 'lock' && lock !== 'unlock') {
        process.stderr.write(`stayup: cluster config: expected "lock" or "unlock", got "${lock}"\n`);
        process.exitCode = 2;
        return;
      }
      let xml: string;
      let key: Buffer | undefined;
      try {
        xml = readText(file);
        parseClusterConfig(xml, file);
        key = opts.keepKey ? readKeyFile(nodePaths().clusterKey) : generateClusterKey();
        if (!key) throw new StayupError('CLUSTER_NOT_CONFIGURED', '--keep-key: this node has no cluster key yet');
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      process.exitCode = await pushClusterConfig(hostsOf(cmd), xml, key, { lock: lock === 'lock', unlock: lock === 'unlock' });
    });

  cluster
    .command('confinfo')
    .description('date and signature of the cluster configuration (use -H "*" to compare nodes)')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const i = await c.call<{ node: string | null; configured: boolean } & Partial<ClusterMeta>>('GET', '/api/v1/cluster/confinfo');
        if (!i.configured) return 'not configured';
        return table(['node', 'date', 'signature', 'key', 'lock'], [[i.node ?? '-', i.configuredAt!, i.signature!, i.keyId!, i.locked ? 1 : 0]]);
      });
    });

  cluster
    .command('state')
    .description('modules of each node: mode, id, configuration date and signature')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const s = await c.call<{ node: string | null; modules: { module: string; mode: string; id: number; configuredAt: string | null; signature: string | null }[] }>('GET', '/api/v1/cluster/state');
        if (s.modules.length === 0) return `${s.node ?? 'this node'}: no module installed`;
        return table(['node', 'module', 'mode', 'id', 'date', 'signature'], s.modules.map((m) => [s.node ?? '-', m.module, m.mode, m.id, m.configuredAt ?? '-', (m.signature ?? '-').slice(0, 16)]));
      });
    });

  cluster
    .command('deconfig')
    .description('remove the cluster configuration and key')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        await c.call('DELETE', '/api/v1/cluster/config');
        return 'cluster configuration removed';
      });
    });

  cluster
    .command('genkey')
    .description('replace the cluster key on every node of cluster.xml at once (sealed with the current key)')
    .action(async () => {
      const paths = nodePaths();
      let xml: string;
      try {
        xml = readText(paths.clusterXml);
        if (!readKeyFile(paths.clusterKey)) throw new StayupError('CLUSTER_NOT_CONFIGURED', 'this node has no cluster key: use "cluster config"');
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      const key = generateClusterKey();
      // Remote nodes first, this node last: until then our old key still opens the others.
      const all = resolveTargets(paths, { hosts: '*' });
      const me = all.find((t) => t.name === localName(paths.clusterXml));
      const others = all.filter((t) => t !== me).map((t) => t.name);
      let code = others.length ? await pushClusterConfig(others.join(','), xml, key, {}) : 0;
      if (code === 0 && me) code = await pushClusterConfig(me.name, xml, key, {});
      if (code === 0) process.stdout.write(`new cluster key ${keyId(key)} in force on every node\n`);
      process.exitCode = code;
    });
}

/** This node's name: the node of cluster.xml whose name is our hostname (lab and real servers alike). */
function localName(clusterXml: string): string | undefined {
  const cfg = parseClusterConfig(readText(clusterXml), clusterXml);
  const me = hostname();
  return clusterNodes(cfg).find((n) => n.name === me || n.name === me.split('.')[0])?.name;
}

/** -G: push this node's cluster.xml and key to the -H nodes (default: all of cluster.xml). */
export async function pushLocalCluster(hosts: string | undefined): Promise<number> {
  const paths = nodePaths();
  try {
    const xml = readText(paths.clusterXml);
    const key = readKeyFile(paths.clusterKey);
    if (!key) throw new StayupError('CLUSTER_NOT_CONFIGURED', 'this node has no cluster key');
    return await pushClusterConfig(hosts ?? '*', xml, key, {});
  } catch (e) {
    process.stderr.write(`stayup: ${errorText(e)}\n`);
    return exitCodeOf(e);
  }
}
