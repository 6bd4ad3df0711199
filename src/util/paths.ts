import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout or install directory of stayup (holds bin/, src/, modules/). */
export const installDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Where a node keeps its state. Everything lives under one directory (default /var/lib/stayup, or
 * $STAYUP_VAR), so a lab server's private mount view of that path makes it a separate machine.
 */
export interface NodePaths {
  varDir: string;
  clusterDir: string;
  clusterXml: string;
  clusterKey: string;
  clusterMeta: string;
  /** Installed modules: modulesDir/<name>/{conf,bin}. */
  modulesDir: string;
  /** Per-module working files: logs, script logs, state. */
  moduleVarDir: (module: string) => string;
  storeDir: string;
  webDir: string;
  /** Root-only token the local CLI uses to talk to its own daemon. */
  localTokenFile: string;
  auditLog: string;
  /** Shipped module templates (mirror, farm, demo). */
  templatesDir: string;
}

export function nodePaths(env: NodeJS.ProcessEnv = process.env): NodePaths {
  const varDir = resolve(env.STAYUP_VAR ?? '/var/lib/stayup');
  const clusterDir = join(varDir, 'cluster');
  return {
    varDir,
    clusterDir,
    clusterXml: join(clusterDir, 'cluster.xml'),
    clusterKey: join(clusterDir, 'cluster.key'),
    clusterMeta: join(clusterDir, 'cluster.json'),
    modulesDir: join(varDir, 'modules'),
    moduleVarDir: (module: string) => join(varDir, 'modvar', module),
    storeDir: join(varDir, 'store'),
    webDir: join(varDir, 'web'),
    localTokenFile: join(varDir, 'private', 'local.token'),
    auditLog: join(varDir, 'log', 'commands.jsonl'),
    templatesDir: join(installDir, 'modules'),
  };
}
