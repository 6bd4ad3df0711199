import { join } from 'node:path';
import type { NodePaths } from '../util/paths.ts';
import { ModuleLog } from '../logs/module-log.ts';

/** The log of a module on this node, under the daemon's own state directory. */
export function moduleLog(paths: NodePaths, module: string): ModuleLog {
  return new ModuleLog(module, { dir: join(paths.moduleVarDir(module), 'log') });
}
