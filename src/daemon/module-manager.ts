import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { NodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { parseUserConfig, printEffectiveUserConfig, type UserConfig } from '../config/userconfig/index.ts';
import { installModule, uninstallModule, listModuleIds, packageModule, modulePorts } from '../packages/module-store.ts';
import type { ClusterStore } from './cluster-store.ts';
import { generateModuleKey, moduleKeyId, readModuleKey, writeModuleKey } from '../heartbeat/module-key.ts';
import type { MirrorEngine, MirrorStatus } from '../engine/mirror-engine.ts';
import { openMirrorEngine } from '../engine/mirror-runtime.ts';
import type { MirrorCommandName } from '../mirror/types.ts';
import { checkToCheck } from '../replication/rfs-runtime.ts';
import type { CompareMode, ReplicaComparison } from '../replication/verify.ts';
import { moduleLog } from './module-logs.ts';

export type ModuleStateName = 'STOP' | 'WAIT' | 'ALONE' | 'PRIM' | 'SECOND' | 'UP';
export type Qualifier = 'NotReady' | 'Transient' | 'Ready';

export interface ModuleStatus {
  module: string;
  id: number;
  mode: string;
  state: ModuleStateName;
  qualifier: Qualifier;
  /** Why a module is where it is (WAIT reasons, the rule that fired), for operators. */
  reason: string;
  /** Mirror modules whose engine runs: the engine's view (peer, lans, persisted record). */
  mirror?: MirrorStatus;
}

/** Opens a mirror module's engine: openMirrorEngine in the daemon; tests give engines over in-memory twins. */
export type EngineOpener = (o: Parameters<typeof openMirrorEngine>[0]) => Promise<MirrorEngine>;

/** Commands that start a stopped module (and mount its replicated directories). */
const STARTS: ReadonlySet<MirrorCommandName> = new Set(['start', 'prim', 'second', 'primforce']);

/** Exit codes of `state -lq`, as in the reference. */
export const stateExitCodes: Record<ModuleStateName, number> = { STOP: 0, WAIT: 1, ALONE: 2, UP: 2, PRIM: 3, SECOND: 4 };

/**
 * The modules installed on this node and their run state. Installing, checking and packaging go to the
 * package store; run state lives here, in memory, fed by the module engines (mirror, farm) as they come.
 */
export class ModuleManager {
  /** Engines of the modules started since the daemon started (or since their last reinstall). */
  private readonly engines = new Map<string, MirrorEngine>();
  private readonly opening = new Map<string, Promise<MirrorEngine>>();

  constructor(
    private readonly paths: NodePaths,
    private readonly cluster: ClusterStore,
    private readonly openEngine: EngineOpener = openMirrorEngine,
  ) {}

  private validator(moduleName: string) {
    return (text: string, file: string): void => {
      parseUserConfig(text, { file, cluster: this.cluster.load()?.config, env: process.env, moduleName });
    };
  }

  list(): { name: string; id: number; mode: string }[] {
    return listModuleIds(this.paths).map((m) => ({ name: m.name, id: m.id, mode: this.modeOf(m.name) }));
  }

  private idOf(name: string): number {
    const m = listModuleIds(this.paths).find((x) => x.name === name);
    if (!m) throw new StayupError('MODULE_NOT_FOUND', `module "${name}" is not installed on this node`);
    return m.id;
  }

  userConfigFile(name: string): string {
    return join(this.paths.modulesDir, name, 'conf', 'userconfig.xml');
  }

  config(name: string): UserConfig {
    this.idOf(name);
    const file = this.userConfigFile(name);
    return parseUserConfig(readFileSync(file, 'utf8'), { file, cluster: this.cluster.load()?.config, env: process.env, moduleName: name });
  }

  private modeOf(name: string): string {
    try {
      return this.config(name).service.mode;
    } catch {
      return 'invalid';
    }
  }

  /**
   * Installs or reinstalls a module. Its module key (heartbeat authentication) is `moduleKey` when given
   * (the CLI sends one key to every node of an install), else the one it had (reinstall), else a new one.
   */
  async install(name: string, pkg: Buffer, opts: { id?: number; reinstall?: boolean; moduleKey?: Buffer }): Promise<{ name: string; id: number; moduleKeyId: string }> {
    if (this.isRunning(name)) throw new StayupError('MODULE_RUNNING', `module "${name}" is running: stop it before reinstalling`);
    let kept: Buffer | undefined;
    try {
      kept = opts.reinstall ? readModuleKey(this.paths, name) : undefined;
    } catch {
      kept = undefined; // a damaged or exposed key is replaced
    }
    await this.dropEngine(name);
    const r = await installModule({ paths: this.paths, name, pkg, id: opts.id, reinstall: opts.reinstall, validateConfig: this.validator(name), label: `${name}.safe` });
    const key = opts.moduleKey ?? kept ?? generateModuleKey();
    writeModuleKey(this.paths, name, key);
    return { name, id: r.id, moduleKeyId: moduleKeyId(key) };
  }

  async uninstall(name: string): Promise<void> {
    this.idOf(name);
    if (this.isRunning(name)) throw new StayupError('MODULE_RUNNING', `module "${name}" is running: stop it before uninstalling`);
    await this.dropEngine(name);
    uninstallModule(this.paths, name);
  }

  /** Replaces the module key (stopped modules only; the next start uses it). */
  async setModuleKey(name: string, key: Buffer): Promise<{ moduleKeyId: string }> {
    this.idOf(name);
    if (this.isRunning(name)) throw new StayupError('MODULE_RUNNING', `module "${name}" is running: stop it before changing its key`);
    await this.dropEngine(name);
    writeModuleKey(this.paths, name, key);
    return { moduleKeyId: moduleKeyId(key) };
  }

  moduleKeyId(name: string): string | null {
    this.idOf(name);
    const k = readModuleKey(this.paths, name);
    return k ? moduleKeyId(k) : null;
  }

  // ------------------------------------------------------------------------------------ engines

  /** The module's engine, opened on first use (opens its heartbeat sockets). */
  async engine(name: string): Promise<MirrorEngine> {
    const have = this.engines.get(name);
    if (have) return have;
    const pending = this.opening.get(name);
    if (pending) return pending;
    const p = (async () => {
      const id = this.idOf(name);
      const cfg = this.config(name);
      if (cfg.service.mode !== 'mirror') {
        throw new StayupError('MODULE_NOT_MIRROR', `module "${name}" is a ${cfg.service.mode} module: this version runs mirror modules only`);
      }
      const view = this.cluster.require();
      if (!view.localNode) throw new StayupError('CLUSTER_NOT_CONFIGURED', 'none of the addresses of cluster.xml is an address of this node');
      const e = await this.openEngine({ module: name, moduleId: id, paths: this.paths, cluster: view.config, self: view.localNode, config: cfg, log: moduleLog(this.paths, name) });
      this.engines.set(name, e);
      return e;
    })();
    this.opening.set(name, p);
    try {
      return await p;
    } finally {
      this.opening.delete(name);
    }
  }

  /** Sends a command to the module's engine; a refusal becomes the machine's error code. */
  async command(name: string, command: MirrorCommandName, opts: { identity?: string; nosync?: boolean; fullsync?: boolean } = {}): Promise<{ message: string }> {
    if (STARTS.has(command) && !this.isRunning(name)) {
      // Refused here, before anything is mounted or started: the operator sees why at once. (Only while
      // stopped: the directories are then plain directories, never this daemon's FUSE mounts.)
      const rfs = this.config(name).service.rfs;
      if (rfs) checkToCheck(rfs);
    }
    const e = await this.engine(name);
    const r = await e.command(command, opts);
    if (!r.ok) throw new StayupError(r.code ?? 'CONFLICT', `${name}: ${command}: ${r.message}`);
    return { message: r.message };
  }

  /**
   * rfsverify (`verify`, on the secondary) or rfsdiff (`diff`, on the primary): compares this node's
   * replicated data with the peer's. RFS_NOT_REPLICATED without <rfs>, RFS_WRONG_ROLE on the wrong node.
   */
  async compareReplicas(name: string, mode: CompareMode): Promise<ReplicaComparison> {
    const cfg = this.config(name);
    if (!cfg.service.rfs) throw new StayupError('RFS_NOT_REPLICATED', `module "${name}" replicates no directory (its userconfig.xml has no <rfs>)`);
    const st = this.status(name);
    const want: readonly ModuleStateName[] = mode === 'verify' ? ['SECOND'] : ['ALONE', 'PRIM'];
    const compare = this.engines.get(name)?.replication.compareReplicas;
    if (!want.includes(st.state) || !compare) {
      const where = st.mirror ? ` (run it on ${st.mirror.peer}: "stayup -H ${st.mirror.peer} rfs${mode} -m ${name}")` : '';
      throw new StayupError(
        'RFS_WRONG_ROLE',
        mode === 'verify' ? `rfsverify runs on the secondary; module ${name} is ${st.state} on this node${where}` : `rfsdiff runs on the primary (ALONE or PRIM); module ${name} is ${st.state} on this node${where}`,
      );
    }
    return compare.call(this.engines.get(name)!.replication, mode);
  }

  /** Resolves when the module is stable (not Transient) in one of `states`, or throws WAIT_TIMEOUT. */
  async waitState(name: string, states: readonly ModuleStateName[], timeoutMs: number): Promise<ModuleStatus> {
    this.idOf(name);
    const match = (st: ModuleStateName, q: Qualifier): boolean => states.includes(st) && q !== 'Transient';
    const now = this.status(name);
    if (match(now.state, now.qualifier)) return now;
    const e = this.engines.get(name);
    if (!e) throw new StayupError('WAIT_TIMEOUT', `${name}: STOP (never started), waiting for ${states.join(' or ')}`);
    const r = await e.waitFor((s) => match(s.state, s.qualifier), timeoutMs);
    const after = this.status(name);
    if (!r) throw new StayupError('WAIT_TIMEOUT', `${name}: still ${after.state} (${after.qualifier}) after ${timeoutMs} ms, waiting for ${states.join(' or ')}`);
    return after;
  }

  private async dropEngine(name: string): Promise<void> {
    const e = this.engines.get(name) ?? (await this.opening.get(name)?.catch(() => undefined));
    this.engines.delete(name);
    await e?.close();
  }

  /** Daemon shutdown: closes every engine (modules still running keep their resources; see main.ts). */
  async closeAll(): Promise<void> {
    for (const name of [...this.engines.keys()]) await this.dropEngine(name);
  }

  /** Modules with <service boot="on">: started when the daemon starts, after boot_delay. */
  bootModules(): Array<{ name: string; delayMs: number }> {
    const out: Array<{ name: string; delayMs: number }> = [];
    for (const m of this.list()) {
      try {
        const svc = this.config(m.name).service;
        if (svc.mode === 'mirror' && svc.boot === 'on') out.push({ name: m.name, delayMs: svc.bootDelayMs });
      } catch {
        // An invalid module is reported by confcheck, not started.
      }
    }
    return out;
  }

  async package(name: string): Promise<Buffer> {
    this.idOf(name);
    return packageModule(this.paths, name);
  }

  ports(name: string): ReturnType<typeof modulePorts> {
    return modulePorts(this.idOf(name));
  }

  confcheck(name: string): { ok: true; mode: string } {
    return { ok: true, mode: this.config(name).service.mode };
  }

  confinfo(name: string, effective: boolean): { module: string; id: number; configuredAt: string; signature: string; effective?: string } {
    const id = this.idOf(name);
    const file = this.userConfigFile(name);
    const text = readFileSync(file, 'utf8');
    return {
      module: name,
      id,
      configuredAt: statSync(file).mtime.toISOString(),
      signature: createHash('sha256').update(text).digest('hex'),
      ...(effective ? { effective: printEffectiveUserConfig(this.config(name)) } : {}),
    };
  }

  status(name: string): ModuleStatus {
    const id = this.idOf(name);
    const e = this.engines.get(name);
    if (!e) return { module: name, id, mode: this.modeOf(name), state: 'STOP', qualifier: 'NotReady', reason: 'stopped' };
    const m = e.status();
    return { module: name, id, mode: 'mirror', state: m.state, qualifier: m.qualifier, reason: m.reason, mirror: m };
  }

  statuses(): ModuleStatus[] {
    return this.list().map((m) => this.status(m.name));
  }

  clusterState(): { module: string; mode: string; id: number; configuredAt: string | null; signature: string | null }[] {
    return this.list().map((m) => {
      const file = this.userConfigFile(m.name);
      const text = existsSync(file) ? readFileSync(file, 'utf8') : null;
      return {
        module: m.name,
        mode: m.mode,
        id: m.id,
        configuredAt: text === null ? null : statSync(file).mtime.toISOString(),
        signature: text === null ? null : createHash('sha256').update(text).digest('hex'),
      };
    });
  }

  isRunning(name: string): boolean {
    const e = this.engines.get(name);
    if (!e) return false;
    const s = e.status();
    return s.faulted === null && (s.state !== 'STOP' || s.busy);
  }

  anyRunning(): boolean {
    return [...this.engines.keys()].some((n) => this.isRunning(n));
  }

  /** The health-check rule: PRIM(Ready) or ALONE(Ready), virtual IP up. No I/O: called per probe. */
  isReady(name: string): boolean {
    return this.engines.get(name)?.ready ?? false;
  }

  /** A new cluster.xml may remove a lan a module uses: such modules show up as invalid in confcheck. */
  clusterChanged(): void {}
}
