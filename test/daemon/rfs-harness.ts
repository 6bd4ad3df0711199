// Two stayup nodes in one test process, for the replication's operator tools: a real daemon (API, routes,
// module manager) per node, listening on loopback; mirror engines over the in-memory heartbeat network
// (real frames and keys); each node's real replication runtime (RfsRuntime) over a real TLS link between
// 127.0.0.1 (node1) and 127.0.0.2 (node2). No FUSE: the module scripts are not run, so nothing is
// mounted and the runtimes read and write the data directories directly. The CLI reaches a node with
// STAYUP_VAR and STAYUP_PORT (cliEnv).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Rfs } from '../../src/config/userconfig/types.ts';
import { generateClusterKey } from '../../src/crypto/cluster-key.ts';
import { buildApp } from '../../src/daemon/app.ts';
import { createDaemonContext, type DaemonContext } from '../../src/daemon/context.ts';
import type { EngineOpener } from '../../src/daemon/module-manager.ts';
import { buildMirrorSetup } from '../../src/engine/mirror-config.ts';
import { MirrorEngine, noReplication } from '../../src/engine/mirror-engine.ts';
import { engineLog, openRfs } from '../../src/engine/mirror-runtime.ts';
import { fileMirrorRecordStore } from '../../src/engine/mirror-store.ts';
import { MemoryHeartbeatNetwork } from '../../src/heartbeat/memory.ts';
import { generateModuleKey, readModuleKey } from '../../src/heartbeat/module-key.ts';
import { loadRfsNative } from '../../src/replication/native-binding.ts';
import { RfsRuntime } from '../../src/replication/rfs-runtime.ts';
import type { VersionRange } from '../../src/replication/protocol.ts';
import { writeFileAtomic } from '../../src/util/atomic-file.ts';
import { nodePaths } from '../../src/util/paths.ts';
import { goodPackage } from '../packages/helpers.ts';

export const NODES = [
  { name: 'node1', addr: '127.0.0.1' },
  { name: 'node2', addr: '127.0.0.2' },
] as const;

export const CLUSTER_XML = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="127.0.0.1"/>
      <node name="node2" addr="127.0.0.2"/>
    </lan>
  </lans>
</cluster>
`;

export function rfsUserconfig(dataDir: string, rfsAttrs = '', replicatedInner = ''): string {
  return `<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone">
  <heart pulse="100ms" timeout="1000ms"><heartbeat name="default"/></heart>
  <rfs ${rfsAttrs}>
    <replicated dir="${dataDir}" mode="read_only">${replicatedInner}</replicated>
  </rfs>
  <user/>
</service>
</safe>
`;
}

export interface TestNode {
  name: string;
  dir: string;
  data: string;
  ctx: DaemonContext;
  app: FastifyInstance;
  port: number;
  token: string;
}

/** Runs a command on a node's API as the local root (as the CLI does without -H). */
export async function api<T = Record<string, unknown>>(n: TestNode, method: 'GET' | 'POST', url: string, payload?: object): Promise<{ status: number; body: T }> {
  const r = await n.app.inject({ method, url, headers: { authorization: `Bearer ${n.token}` }, ...(payload ? { payload } : {}) });
  return { status: r.statusCode, body: r.json() as T };
}

/** The environment that points the CLI at this node's daemon. */
export function cliEnv(n: TestNode): NodeJS.ProcessEnv {
  return { ...process.env, STAYUP_VAR: n.dir, STAYUP_PORT: String(n.port) };
}

/** Two consecutive free TCP ports on `host` (a replication port and the verify port after it). */
export async function freePorts(host: string): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, host, () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (port >= 65535) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer()
        .once('error', () => resolve(false))
        .listen(port + 1, host, () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** An <rfs> as the parser gives it, with the reference's defaults. */
export function rfsConfig(dir: string, over: Partial<Rfs> = {}): Rfs {
  return {
    acl: false,
    async: 'second',
    locktimeoutMs: 100_000,
    sendtimeoutMs: 30_000,
    nbrei: 2,
    reipacketsize: 8 * 1024 * 1024,
    ruzoneBlocksize: 8 * 1024 * 1024,
    namespacepolicy: '4',
    reitimeoutMs: 150_000,
    reicommit: 0,
    reidetail: false,
    nbremconn: 1,
    checktimeMs: 220_000,
    checkintvMs: 120_000,
    scripts: false,
    syncdeltaMs: 0,
    replicated: [{ dir, toCheck: [], notReplicated: [] }],
    ...over,
  } as Rfs;
}

/** One node's RfsRuntime alone on loopback (node1 127.0.0.1 by default, its peer at the other address), logging into `logs`. */
export function loopbackRuntime(o: { rfs: Rfs; port: number; stateDir: string; logs: string[]; moduleKey?: Uint8Array; self?: 'n1' | 'n2'; protocolVersions?: VersionRange }): RfsRuntime {
  const second = o.self === 'n2';
  return new RfsRuntime({
    module: 'm',
    self: second ? 'n2' : 'n1',
    peer: second ? 'n1' : 'n2',
    rfs: o.rfs,
    localAddr: second ? '127.0.0.2' : '127.0.0.1',
    peerAddr: second ? '127.0.0.1' : '127.0.0.2',
    port: o.port,
    moduleKey: o.moduleKey ?? Buffer.alloc(32, 1),
    stateDir: o.stateDir,
    native: loadRfsNative(),
    log: (level, message) => o.logs.push(`${level} ${message}`),
    ...(o.protocolVersions ? { protocolVersions: o.protocolVersions } : {}),
  });
}

/**
 * Engines over the in-memory heartbeat network, with the node's real RfsRuntime on `replicationPort`
 * (its verify port is the next one). `self` is given: both test nodes share this machine's addresses.
 */
function twinOpener(net: MemoryHeartbeatNetwork, self: string, replicationPort: number): EngineOpener {
  return async (o) => {
    const setup = buildMirrorSetup(o.cluster, o.config, { self, moduleId: o.moduleId });
    const key = readModuleKey(o.paths, o.module)!;
    const log = engineLog(o.log);
    const rfs = o.config.service.rfs ? openRfs({ ...o, self }, setup.lans, setup.config.peer, key, log, replicationPort) : null;
    const channel = net.transport({ moduleId: o.moduleId, moduleKey: key, node: self, peer: setup.config.peer, lans: setup.lans.map((l) => l.lan) });
    const engine = new MirrorEngine({
      module: o.module,
      config: setup.config,
      channel,
      vip: null,
      scripts: { run: async () => ({ ok: true }) },
      replication: rfs ?? noReplication(),
      store: fileMirrorRecordStore(o.paths, o.module),
      log,
    });
    if (rfs) engine.onClose(() => void rfs.close());
    engine.start();
    return engine;
  };
}

/**
 * Two nodes with module `module` installed (same id, same module key), each replicating its own data
 * directory (`userconfig(data)` gives each node's userconfig.xml).
 */
export async function twoNodes(o: {
  module: string;
  moduleId: number;
  userconfig: (data: string) => string;
}): Promise<{ nodes: [TestNode, TestNode]; net: MemoryHeartbeatNetwork; close: () => Promise<void> }> {
  const base = mkdtempSync(join(tmpdir(), 'stayup-rfs-tools-'));
  const net = new MemoryHeartbeatNetwork();
  const replicationPort = await freePorts('127.0.0.1');
  const clusterKey = generateClusterKey();
  const moduleKey = generateModuleKey();
  const nodes: TestNode[] = [];
  for (const n of NODES) {
    const dir = join(base, n.name);
    const data = join(base, `${n.name}-data`);
    mkdirSync(data, { recursive: true });
    const paths = nodePaths({ STAYUP_VAR: dir });
    const token = `token-${n.name}`;
    const ctx = createDaemonContext(paths, { localToken: token, openEngine: twinOpener(net, n.name, replicationPort) });
    writeFileAtomic(paths.localTokenFile, `${token}\n`, 0o600);
    ctx.cluster.apply(CLUSTER_XML, clusterKey, { now: new Date() });
    await ctx.modules.install(o.module, goodPackage([], o.userconfig(data)), { id: o.moduleId, moduleKey });
    const app = await buildApp(ctx);
    await app.listen({ port: 0, host: '127.0.0.1' });
    nodes.push({ name: n.name, dir, data, ctx, app, port: (app.server.address() as AddressInfo).port, token });
  }
  return {
    nodes: nodes as [TestNode, TestNode],
    net,
    close: async () => {
      for (const n of nodes) {
        await n.ctx.modules.command(o.module, 'stop').catch(() => {});
      }
      for (const n of nodes) {
        await n.ctx.modules.closeAll();
        await n.app.close();
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
