import type { NodePaths } from '../util/paths.ts';
import { ClusterStore } from './cluster-store.ts';
import { UserStore } from './auth/user-store.ts';
import { SessionStore } from './auth/sessions.ts';
import { ReplayGuard } from '../crypto/seal.ts';
import { ModuleManager, type EngineOpener } from './module-manager.ts';
import { version as stayupVersion } from '../version.ts';
import type { Principal, Role } from './auth/roles.ts';

/** Everything the daemon's routes need, built once in main.ts (and by tests with temp dirs). */
export interface DaemonContext {
  paths: NodePaths;
  cluster: ClusterStore;
  users: UserStore;
  sessions: SessionStore;
  replay: ReplayGuard;
  modules: ModuleManager;
  /** Bearer token the local CLI (root) reads from paths.localTokenFile. */
  localToken: string;
  version: string;
  nowMs: () => number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
  /** OpenAPI fields our generator (openapi.ts) reads from route schemas. */
  interface FastifySchema {
    summary?: string;
    hide?: boolean;
  }
  interface FastifyContextConfig {
    /** Least role a route needs; absent = public (health check, login). */
    role?: Role;
    /** Audit-log name of the command; defaults to method + route. */
    command?: string;
  }
}


/** The real context over a state directory; tests use the same with a temporary one. */
export function createDaemonContext(paths: NodePaths, opts: { localToken: string; nowMs?: () => number; openEngine?: EngineOpener }): DaemonContext {
  const cluster = new ClusterStore(paths);
  return {
    paths,
    cluster,
    users: new UserStore(paths.webDir),
    sessions: new SessionStore(),
    replay: new ReplayGuard(),
    modules: new ModuleManager(paths, cluster, opts.openEngine),
    localToken: opts.localToken,
    version: stayupVersion,
    nowMs: opts.nowMs ?? (() => Date.now()),
  };
}
