import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { NodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { parseUserConfig, printEffectiveUserConfig, type UserConfig } from '../config/userconfig/index.ts';
import { installModule, uninstallModule, listModuleIds, packageModule, modulePorts } from '../packages/module-store.ts';
import type { ClusterStore } from './cluster-store.ts';

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
}

/** Exit codes of `state -lq`, as in the reference. */
export const stateExitCodes: Record<ModuleStateName, number> = { STOP: 0, WAIT: 1, ALONE: 2, UP: 2, PRIM: 3, SECOND: 4 };

/**
 * The modules installed on this node and their run state. Installing, checking and packaging go to the
 * package store; run state lives here, in memory, fed by the module engines (mirror, farm) as they come.
 */
export class ModuleManager {
  private readonly runtime = new Map<string, { state: ModuleStateName; qualifier: Qualifier; reason: string }>();

  constructor(
    private readonly paths: NodePaths,
    private readonly cluster: ClusterStore,
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

  async install(name: string, pkg: Buffer, opts: { id?: number; reinstall?: boolean }): Promise<{ name: string; id: number }> {
    if (this.isRunning(name)) throw new StayupError('MODULE_RUNNING', `module "${name}" is running: stop it before reinstalling`);
    const r = await installModule({ paths: this.paths, name, pkg, id: opts.id, reinstall: opts.reinstall, validateConfig: this.validator(name), label: `${name}.safe` });
    this.runtime.set(name, { state: 'STOP', qualifier: 'NotReady', reason: 'installed' });
    return { name, id: r.id };
  }

  uninstall(name: string): void {
    this.idOf(name);
    if (this.isRunning(name)) throw new StayupError('MODULE_RUNNING', `module "${name}" is running: stop it before uninstalling`);
    uninstallModule(this.paths, name);
    this.runtime.delete(name);
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
    const rt = this.runtime.get(name) ?? { state: 'STOP' as const, qualifier: 'NotReady' as const, reason: 'stopped' };
    return { module: name, id, mode: this.modeOf(name), ...rt };
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
    const s = this.runtime.get(name)?.state;
    return s !== undefined && s !== 'STOP';
  }

  anyRunning(): boolean {
    return [...this.runtime.keys()].some((n) => this.isRunning(n));
  }

  /** The health-check rule: PRIM(Ready), ALONE(Ready) or UP(Ready). No I/O: called per probe. */
  isReady(name: string): boolean {
    const rt = this.runtime.get(name);
    return rt !== undefined && rt.qualifier === 'Ready' && (rt.state === 'PRIM' || rt.state === 'ALONE' || rt.state === 'UP');
  }

  /** A new cluster.xml may remove a lan a module uses: such modules show up as invalid in confcheck. */
  clusterChanged(): void {}
}
