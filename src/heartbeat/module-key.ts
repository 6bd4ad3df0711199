// The module key: 32 random bytes shared by the two nodes of a mirror module, from which the heartbeat
// frame keys are derived. Stored like the cluster key (base64, one line) in
// <modulesDir>/<module>/conf/modulekey.dat, mode 0600, written atomically.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeKey, encodeKey, generateClusterKey, keyId } from '../crypto/cluster-key.ts';
import { StayupError, isStayupError } from '../errors/stayup-error.ts';
import { moduleDir } from '../packages/module-store.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { NodePaths } from '../util/paths.ts';

export const MODULE_KEY_FILE = 'modulekey.dat';

/** A new module key (same form as a cluster key: 32 random bytes). */
export function generateModuleKey(): Buffer {
  return generateClusterKey();
}

/** Public fingerprint, for "the two nodes' module keys differ" diagnostics. */
export function moduleKeyId(key: Uint8Array): string {
  return keyId(key);
}

/** The file form: base64 and a newline. */
export function encodeModuleKey(key: Uint8Array): string {
  if (key.length !== 32) throw new StayupError('MODULE_KEY_INVALID', `a module key is 32 bytes, not ${key.length}`);
  return encodeKey(key);
}

export function decodeModuleKey(text: string, where: string): Buffer {
  try {
    return decodeKey(text, where);
  } catch (e) {
    if (isStayupError(e)) throw new StayupError('MODULE_KEY_INVALID', `${where}: a module key is 32 bytes in base64`, { cause: e });
    throw e;
  }
}

export function moduleKeyPath(paths: NodePaths, module: string): string {
  return join(moduleDir(paths, module), 'conf', MODULE_KEY_FILE);
}

/** Writes the key of an installed module (MODULE_NOT_FOUND if its directory does not exist). Returns the path. */
export function writeModuleKey(paths: NodePaths, module: string, key: Uint8Array): string {
  const dir = moduleDir(paths, module);
  if (!existsSync(dir)) throw new StayupError('MODULE_NOT_FOUND', `module "${module}" is not installed`, { details: { module } });
  const file = moduleKeyPath(paths, module);
  try {
    writeFileAtomic(file, encodeModuleKey(key), 0o600);
  } catch (e) {
    if (isStayupError(e)) throw e;
    throw new StayupError('IO', `cannot write ${file}: ${(e as Error).message}`, { cause: e });
  }
  return file;
}

/**
 * The module's key, or undefined when it has none. A file that group or others may read is refused
 * (MODULE_KEY_INVALID), as ssh refuses a readable private key: the key may have leaked.
 */
export function readModuleKey(paths: NodePaths, module: string): Buffer | undefined {
  const file = moduleKeyPath(paths, module);
  let text: string;
  try {
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0) {
      throw new StayupError('MODULE_KEY_INVALID', `${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it, or generate a new module key`);
    }
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (isStayupError(e)) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StayupError('IO', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  return decodeModuleKey(text, file);
}
