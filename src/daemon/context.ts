import type { NodePaths } from '../util/paths.ts';
import type { ClusterStore } from './cluster-store.ts';
import type { UserStore } from './auth/user-store.ts';
import type { SessionStore } from './auth/sessions.ts';
import type { ReplayGuard } from '../crypto/seal.ts';
import type { ModuleManager } from './module-manager.ts';
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
  interface FastifyContextConfig {
    /** Least role a route needs; absent = public (health check, login). */
    role?: Role;
    /** Audit-log name of the command; defaults to method + route. */
    command?: string;
  }
}
