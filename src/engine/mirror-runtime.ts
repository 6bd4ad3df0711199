// Builds a mirror module's engine over the real world: UDP heartbeats on the lans of cluster.xml, the
// VipManager, the module's scripts, the state record on disk and the module log.
import { join } from 'node:path';
import type { ClusterConfig } from '../config/cluster.ts';
import type { UserConfig } from '../config/userconfig/types.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { HeartbeatTransport } from '../heartbeat/transport.ts';
import { readModuleKey } from '../heartbeat/module-key.ts';
import type { ModuleLog } from '../logs/module-log.ts';
import { buildScriptEnv } from '../scripts/environment.ts';
import { runTransitionScripts } from '../scripts/runner.ts';
import { installDir, type NodePaths } from '../util/paths.ts';
import { VipManager } from '../vip/manager.ts';
import { kernelVipOps } from '../vip/kernel-ops.ts';
import { buildMirrorSetup } from './mirror-config.ts';
import { MirrorEngine, noReplication, type EngineLog, type ScriptPort } from './mirror-engine.ts';
import { fileMirrorRecordStore } from './mirror-store.ts';
import { bindErrd } from './errd-binding.ts';
import { bindVipCheckers } from './vip-checkers.ts';
import type { UdpLan } from '../heartbeat/transport.ts';
import { RfsRuntime } from '../replication/rfs-runtime.ts';
import { loadRfsNative } from '../replication/native-binding.ts';
import { modulePorts } from '../packages/module-store.ts';

/** How often the generated intf.* and ip.* checkers run. */
export const VIP_CHECK_INTERVAL_MS = 1000;

/** The environment of the module's scripts (and errd handlers). */
export function moduleScriptEnv(o: { module: string; paths: NodePaths; config: UserConfig }): Record<string, string> {
  const moduleDir = join(o.paths.modulesDir, o.module);
  return buildScriptEnv({
    module: o.module,
    safeDir: join(installDir, 'safe'),
    userBinDir: join(moduleDir, 'bin'),
    userConfDir: join(moduleDir, 'conf'),
    varDir: o.paths.varDir,
    userVarDir: o.paths.moduleVarDir(o.module),
    vars: o.config.service.user?.vars ?? [],
  });
}

/** The scripts of an installed module, with the environment and limits of its <user>. */
export function moduleScriptPort(o: { module: string; paths: NodePaths; config: UserConfig; log: ModuleLog }): ScriptPort {
  const binDir = join(o.paths.modulesDir, o.module, 'bin');
  const user = o.config.service.user;
  const env = moduleScriptEnv(o);
  const nice = user?.nicestoptimeoutMs ?? 300_000;
  const force = user?.forcestoptimeoutMs ?? 300_000;
  return {
    async run(batch, signal) {
      const r = await runTransitionScripts(
        {
          module: o.module,
          binDir,
          env,
          userlogDir: o.paths.moduleVarDir(o.module),
          userlogMaxBytes: user?.logging === 'none' ? 0 : (user?.userlogSizeKb ?? 2048) * 1024,
          signal,
          current: batch.current,
          next: batch.next,
          action: batch.action,
          // The reference gives start scripts no limit of their own: the graceful stop's is the bound.
          scriptTimeoutMs: nice,
          niceStopTimeoutMs: nice,
          forceStopTimeoutMs: force,
          log: o.log,
        },
        batch.calls,
      );
      return { ok: r.ok, ...(r.failedStep ? { failedScript: r.failedStep.call.script } : {}) };
    },
  };
}

export function engineLog(log: ModuleLog): EngineLog {
  return (level, source, message, fields) => {
    try {
      log.append(level, source, message, fields);
    } catch (e) {
      process.stderr.write(`stayupd: ${(e as Error).message}\n`);
    }
  };
}

/**
 * Opens the module's heartbeat sockets and builds its engine (STOP). Errors: CONFIG_INVALID (cluster.xml
 * and userconfig.xml disagree), MODULE_KEY_INVALID (no or bad module key), HEARTBEAT_BIND_FAILED,
 * REPLICATION_UNAVAILABLE (<rfs> needs the replication layer).
 */
export async function openMirrorEngine(o: {
  module: string;
  moduleId: number;
  paths: NodePaths;
  cluster: ClusterConfig;
  self: string;
  config: UserConfig;
  log: ModuleLog;
}): Promise<MirrorEngine> {
  const setup = buildMirrorSetup(o.cluster, o.config, { self: o.self, moduleId: o.moduleId });
  const key = readModuleKey(o.paths, o.module);
  if (!key) throw new StayupError('MODULE_KEY_INVALID', `module ${o.module} has no module key: run "stayup -H '*' module genkey -m ${o.module}"`);
  const log = engineLog(o.log);
  const rfs = setup.config.replicatedData ? openRfs(o, setup.lans, setup.config.peer, key, log) : null;
  const channel = await HeartbeatTransport.open({ lans: setup.lans, moduleId: o.moduleId, moduleKey: key, node: o.self, peer: setup.config.peer });
  const svcVip = o.config.service.vip;
  const fastVip = svcVip ? kernelVipOps() : null;
  const vip = svcVip
    ? new VipManager(svcVip, {
        localAddressView: true,
        ...(fastVip ? { fastOps: fastVip } : {}),
        onEvent: (e) => {
          if (e.type === 'warning') log('E', 'vip', e.error.message);
          else if (e.type === 'added' || e.type === 'removed') log('I', 'vip', `virtual IP ${e.ip} ${e.type} on ${e.iface}`);
          else if (e.type === 'tcpreset' && e.reset > 0) log('I', 'vip', `${e.reset} connection(s) from ${e.ip} reset`);
        },
      })
    : null;
  const engine: MirrorEngine = new MirrorEngine({
    module: o.module,
    config: setup.config,
    channel,
    // up() is idempotent: on addresses already present it only announces them again.
    vip: vip ? { up: () => vip.up(), down: () => vip.down(), announce: () => vip.up() } : null,
    scripts: rfs ? interceptedScripts(moduleScriptPort(o), rfs, log) : moduleScriptPort(o),
    replication: rfs ?? noReplication(),
    store: fileMirrorRecordStore(o.paths, o.module),
    log,
  });
  if (rfs) engine.onClose(() => void rfs.close());
  const errd = o.config.service.errd;
  if (errd && errd.procs.length > 0) {
    const binding = bindErrd({
      module: o.module,
      errd,
      engine,
      log,
      binDir: join(o.paths.modulesDir, o.module, 'bin'),
      env: moduleScriptEnv(o),
      userlogDir: o.paths.moduleVarDir(o.module),
      handlerTimeoutMs: o.config.service.user?.nicestoptimeoutMs ?? 300_000,
    });
    engine.onClose(binding.stop);
  }
  if (fastVip && vip) {
    // Open the packet socket of the VIP's interface now: the first gratuitous ARP of a takeover is then quick.
    void vip
      .status()
      .then((st) => Promise.all([...new Set(st.map((x) => x.interface).filter((i): i is string => !!i))].map((i) => fastVip.warm(i))))
      .catch((e: Error) => log('I', 'vip', `gratuitous ARP socket not prepared: ${e.message}`));
  }
  if (vip) engine.onClose(bindVipCheckers({ engine, checkers: () => vip.checkers(), log, intervalMs: VIP_CHECK_INTERVAL_MS }));
  engine.start();
  return engine;
}

/**
 * The replication of a module with <rfs>: its stream runs on the lan of <flow>, else the heartbeat with
 * ident="flow", else the first heartbeat (the reference's rule), between the two nodes' addresses there,
 * on the module's replication port (tests that run two nodes on loopback give their own).
 */
export function openRfs(
  o: { module: string; moduleId: number; paths: NodePaths; self: string; config: UserConfig },
  lans: UdpLan[],
  peer: string,
  key: Uint8Array,
  log: EngineLog,
  port = modulePorts(o.moduleId).replicationTcp,
): RfsRuntime {
  const svc = o.config.service;
  const rfs = svc.rfs!;
  const heart = svc.heart!;
  const flowName = rfs.flow?.name ?? heart.heartbeats.find((h) => h.ident === 'flow')?.name ?? heart.heartbeats[0]!.name;
  const lan = lans.find((l) => l.lan === flowName) ?? lans[0]!;
  return new RfsRuntime({
    module: o.module,
    self: o.self,
    peer,
    rfs,
    localAddr: lan.bindAddr,
    peerAddr: lan.peerAddr,
    port,
    moduleKey: key,
    stateDir: join(o.paths.moduleVarDir(o.module), 'rfs'),
    native: loadRfsNative(),
    log: (level, message, fields) => log(level, 'rfs', message, fields),
  });
}

/** Module scripts with the interception around them (mount before the first start, writable for start_prim). */
function interceptedScripts(base: ScriptPort, rfs: RfsRuntime, log: EngineLog): ScriptPort {
  return {
    async run(batch, signal) {
      try {
        await rfs.beforeScripts(batch);
      } catch (e) {
        log('E', 'rfs', `replicated directories: ${(e as Error).message}`);
        return { ok: false, failedScript: 'rfs' };
      }
      const r = await base.run(batch, signal);
      try {
        await rfs.afterScripts(batch);
      } catch (e) {
        log('E', 'rfs', `replicated directories: ${(e as Error).message}`);
      }
      return r;
    },
  };
}
