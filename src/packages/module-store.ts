// The modules installed on a node: `<modulesDir>/<name>/{conf,bin,…,module.json}`.
//
// Installing reads and checks the package (zip-reader), validates conf/userconfig.xml with the injected
// validator, extracts into a private staging directory beside the target and fsyncs it, all before
// touching any module; then, under the modules lock, claims the name and an id, writes module.json into
// the staging directory and renames it into place. A reinstall moves the old copy aside, moves the new one
// in and only then removes the old copy. Any failure leaves the modules directory as it was.
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { NodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { fsyncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { DEFAULT_ZIP_LIMITS, openZip, type ZipEntryInfo, type ZipLimits } from './zip-reader.ts';
import { packDirectory } from './zip-writer.ts';
import { privateName, withModulesLock } from './module-lock.ts';

export const MODULE_NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;
export const MIN_MODULE_ID = 1;
export const MAX_MODULE_ID = 32;
/** Path of the configuration inside a package and inside an installed module. */
export const USERCONFIG_PATH = 'conf/userconfig.xml';
/** Per-node metadata file of an installed module; never packaged. */
export const MODULE_META_FILE = 'module.json';

/** Throws the validation error; may be async. `file` names the config in diagnostics. */
export type ConfigValidator = (userconfigText: string, file: string) => void | Promise<void>;

export interface ModuleInfo {
  name: string;
  id: number;
  /** ISO 8601 time of the install. */
  installedAt: string;
  /** sha256 (hex) of the package bytes the module was installed from. */
  packageSha256: string;
  packageBytes: number;
}

export interface ModuleIdEntry {
  name: string;
  id: number;
}

export interface ModulePorts {
  /** Mirror heartbeat, UDP 8888 + (id-1). */
  heartbeatUdp: number;
  /** Replication, TCP 5600 + (id-1)*4 (four consecutive ports reserved per module). */
  replicationTcp: number;
  /** Farm membership, UDP 4803 + (id-1)*3. */
  farmUdp: number;
}

export interface InstallOptions {
  paths: NodePaths;
  name: string;
  /** Package bytes, or the path of a `.safe` / `.zip` file. */
  pkg: Buffer | string;
  /** Forces the module id (`-M`); refused if another module uses it. */
  id?: number;
  /** Replaces an installed module of the same name (`-r`); it keeps its id unless `id` is given. */
  reinstall?: boolean;
  validateConfig: ConfigValidator;
  /** How messages name the package; default: the file's base name, or `<name>.safe` for a buffer. */
  label?: string;
  limits?: Partial<ZipLimits>;
}

export function checkModuleName(name: string): void {
  if (typeof name !== 'string' || !MODULE_NAME_RE.test(name)) {
    throw new StayupError('MODULE_NAME_INVALID', `module name ${JSON.stringify(String(name).slice(0, 64))} is invalid: use 1-32 letters, digits, _ or -`, {
      details: { module: String(name).slice(0, 64) },
    });
  }
}

export function checkModuleId(id: number): void {
  if (!Number.isInteger(id) || id < MIN_MODULE_ID || id > MAX_MODULE_ID) {
    throw new StayupError('BAD_ARGUMENT', `module id ${String(id)} is out of range: use ${MIN_MODULE_ID}-${MAX_MODULE_ID}`, {
      details: { id },
    });
  }
}

export function moduleDir(paths: NodePaths, name: string): string {
  checkModuleName(name);
  return join(paths.modulesDir, name);
}

export function userConfigPath(paths: NodePaths, name: string): string {
  return join(moduleDir(paths, name), ...USERCONFIG_PATH.split('/'));
}

/** §7.2: the ports a module uses, derived from its id. */
export function modulePorts(id: number): ModulePorts {
  checkModuleId(id);
  return {
    heartbeatUdp: 8888 + id - 1,
    replicationTcp: 5600 + (id - 1) * 4,
    farmUdp: 4803 + (id - 1) * 3,
  };
}

function notInstalled(name: string): StayupError {
  return new StayupError('MODULE_NOT_FOUND', `module "${name}" is not installed`, { details: { module: name } });
}

function ioError(message: string, cause: unknown): StayupError {
  return new StayupError('IO', `${message}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
}

/** Whether `name` is an installed module (a real directory holding module.json). */
function isInstalled(paths: NodePaths, name: string): boolean {
  const dir = join(paths.modulesDir, name);
  try {
    return lstatSync(dir).isDirectory() && existsSync(join(dir, MODULE_META_FILE));
  } catch {
    return false;
  }
}

/** Names of the installed modules, sorted. */
export function listModules(paths: NodePaths): string[] {
  let names: string[];
  try {
    names = readdirSync(paths.modulesDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(`cannot list ${paths.modulesDir}`, e);
  }
  return names.filter((n) => MODULE_NAME_RE.test(n) && isInstalled(paths, n)).sort();
}

/** The metadata of an installed module. */
export function readModuleInfo(paths: NodePaths, name: string): ModuleInfo {
  checkModuleName(name);
  if (!isInstalled(paths, name)) throw notInstalled(name);
  const file = join(paths.modulesDir, name, MODULE_META_FILE);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw ioError(`module "${name}": cannot read ${file}`, e);
  }
  const o = v as Partial<ModuleInfo>;
  if (
    !o ||
    typeof o !== 'object' ||
    o.name !== name ||
    !Number.isInteger(o.id) ||
    (o.id as number) < MIN_MODULE_ID ||
    (o.id as number) > MAX_MODULE_ID ||
    typeof o.installedAt !== 'string' ||
    typeof o.packageSha256 !== 'string' ||
    typeof o.packageBytes !== 'number'
  ) {
    throw new StayupError('IO', `module "${name}": ${file} is corrupt`, { details: { module: name, file } });
  }
  return { name, id: o.id as number, installedAt: o.installedAt, packageSha256: o.packageSha256, packageBytes: o.packageBytes };
}

/** Installed modules with their ids, sorted by name. */
export function listModuleIds(paths: NodePaths): ModuleIdEntry[] {
  return listModules(paths).map((name) => ({ name, id: readModuleInfo(paths, name).id }));
}

/** The editable userconfig.xml of an installed module. */
export function readInstalledUserConfig(paths: NodePaths, name: string): string {
  checkModuleName(name);
  if (!isInstalled(paths, name)) throw notInstalled(name);
  const file = userConfigPath(paths, name);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new StayupError('CONFIG_FILE_UNREADABLE', `module "${name}": cannot read ${file}: ${(e as Error).message}`, {
      cause: e,
      details: { module: name, file },
    });
  }
}

function loadPackage(pkg: Buffer | string, label: string, limits: ZipLimits): Buffer {
  if (Buffer.isBuffer(pkg)) {
    if (pkg.length > limits.maxPackageBytes) {
      throw new StayupError('PACKAGE_TOO_LARGE', `module package ${label}: ${pkg.length} bytes, over the cap of ${limits.maxPackageBytes} bytes`);
    }
    return pkg;
  }
  try {
    const st = statSync(pkg);
    if (!st.isFile()) throw new StayupError('PACKAGE_INVALID', `module package ${label}: ${pkg} is not a regular file`);
    if (st.size > limits.maxPackageBytes) {
      throw new StayupError('PACKAGE_TOO_LARGE', `module package ${label}: ${st.size} bytes, over the cap of ${limits.maxPackageBytes} bytes`);
    }
    const data = readFileSync(pkg);
    if (data.length > limits.maxPackageBytes) {
      throw new StayupError('PACKAGE_TOO_LARGE', `module package ${label}: over the cap of ${limits.maxPackageBytes} bytes`);
    }
    return data;
  } catch (e) {
    if (e instanceof StayupError) throw e;
    throw new StayupError('PACKAGE_INVALID', `module package ${label}: cannot be read: ${(e as Error).message}`, { cause: e });
  }
}

/** bin/ holds the scripts: always executable. Elsewhere the package's exec bits decide. */
function moduleFileMode(e: ZipEntryInfo): number {
  if (e.name.startsWith('bin/')) return 0o755;
  return e.mode !== undefined && (e.mode & 0o111) !== 0 ? 0o755 : 0o644;
}

function decodeUtf8(data: Buffer, label: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new StayupError('PACKAGE_INVALID', `module package ${label}: ${USERCONFIG_PATH} is not valid UTF-8`, {
      details: { package: label, entry: USERCONFIG_PATH },
    });
  }
}

/** Lowest id in 1..32 not in `used`. */
function lowestFreeId(used: Set<number>): number | undefined {
  for (let id = MIN_MODULE_ID; id <= MAX_MODULE_ID; id++) if (!used.has(id)) return id;
  return undefined;
}

/** Checks a forced id against the other installed modules (call again under the lock). */
function checkIdFree(others: ModuleIdEntry[], id: number): void {
  const holder = others.find((m) => m.id === id);
  if (holder) {
    throw new StayupError('MODULE_ID_TAKEN', `module id ${id} is already used by module "${holder.name}"`, {
      details: { id, module: holder.name },
    });
  }
}

function existsCheck(paths: NodePaths, name: string, reinstall: boolean): boolean {
  const present = existsSync(join(paths.modulesDir, name)) || isSymlink(join(paths.modulesDir, name));
  if (present && !reinstall) {
    const what = isInstalled(paths, name) ? 'is already installed' : 'already exists in the modules directory (not installed by stayup)';
    throw new StayupError('MODULE_EXISTS', `module "${name}" ${what}; use reinstall to replace it`, { details: { module: name } });
  }
  return present;
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Installs (or with `reinstall`, replaces) a module from a package. Resolves to the module's metadata.
 * Errors: MODULE_NAME_INVALID, BAD_ARGUMENT (id out of range), PACKAGE_* (bad package),
 * PACKAGE_MISSING_CONFIG, the validator's own error, MODULE_EXISTS, MODULE_ID_TAKEN, MODULE_ID_EXHAUSTED,
 * CONFLICT (lock timeout), IO. On any error nothing in the modules directory has changed.
 */
export async function installModule(o: InstallOptions): Promise<ModuleInfo> {
  const { paths, name } = o;
  const reinstall = o.reinstall === true;
  checkModuleName(name);
  if (o.id !== undefined) checkModuleId(o.id);
  const limits: ZipLimits = { ...DEFAULT_ZIP_LIMITS, ...o.limits };
  const label = o.label ?? (typeof o.pkg === 'string' ? basename(o.pkg) : `${name}.safe`);

  // Cheap checks first, so an obvious refusal costs nothing; all are made again under the lock.
  existsCheck(paths, name, reinstall);
  if (o.id !== undefined) checkIdFree(listModuleIds(paths).filter((m) => m.name !== name), o.id);

  const bytes = loadPackage(o.pkg, label, limits);
  const packageSha256 = createHash('sha256').update(bytes).digest('hex');
  const zip = await openZip(bytes, { label, limits });
  let staging: string | undefined;
  try {
    const conf = zip.entry(USERCONFIG_PATH);
    if (!conf || conf.kind !== 'file') {
      throw new StayupError('PACKAGE_MISSING_CONFIG', `module package ${label}: ${USERCONFIG_PATH} is missing`, {
        details: { package: label },
      });
    }
    const text = decodeUtf8(await zip.readFile(USERCONFIG_PATH), label);
    await o.validateConfig(text, `${label}/${USERCONFIG_PATH}`);

    try {
      mkdirSync(paths.modulesDir, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw ioError(`cannot create ${paths.modulesDir}`, e);
    }
    staging = join(paths.modulesDir, privateName('tmp', name));
    await zip.extractTo(staging, { fileMode: moduleFileMode });
  } catch (e) {
    if (staging) rmSync(staging, { recursive: true, force: true });
    throw e;
  } finally {
    zip.close();
  }

  const stagingDir = staging;
  try {
    return withModulesLock(paths.modulesDir, () => commit(paths, name, stagingDir, reinstall, o.id, packageSha256, bytes.length));
  } finally {
    // After a successful commit the staging directory has become the module; otherwise drop it.
    rmSync(stagingDir, { recursive: true, force: true });
  }
}

/** The critical section of an install: synchronous, under the modules lock. */
function commit(
  paths: NodePaths,
  name: string,
  staging: string,
  reinstall: boolean,
  forcedId: number | undefined,
  packageSha256: string,
  packageBytes: number,
): ModuleInfo {
  const present = existsCheck(paths, name, reinstall);
  const current = present && isInstalled(paths, name) ? readModuleInfo(paths, name) : undefined;
  const others = listModuleIds(paths).filter((m) => m.name !== name);
  const used = new Set(others.map((m) => m.id));
  let id: number;
  if (forcedId !== undefined) {
    checkIdFree(others, forcedId);
    id = forcedId;
  } else if (current && !used.has(current.id)) {
    id = current.id;
  } else {
    const free = lowestFreeId(used);
    if (free === undefined) {
      throw new StayupError('MODULE_ID_EXHAUSTED', `no free module id is left: all ${MAX_MODULE_ID} ids are in use`, {
        details: { max: MAX_MODULE_ID },
      });
    }
    id = free;
  }
  const info: ModuleInfo = { name, id, installedAt: new Date().toISOString(), packageSha256, packageBytes };
  const dir = join(paths.modulesDir, name);
  try {
    writeFileAtomic(join(staging, MODULE_META_FILE), `${JSON.stringify(info, null, 2)}\n`, 0o644);
    if (present) {
      const old = join(paths.modulesDir, privateName('old', name));
      renameSync(dir, old);
      try {
        renameSync(staging, dir);
      } catch (e) {
        renameSync(old, dir);
        throw e;
      }
      fsyncDir(paths.modulesDir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(staging, dir);
      fsyncDir(paths.modulesDir);
    }
  } catch (e) {
    throw ioError(`cannot install module "${name}"`, e);
  }
  return info;
}

/** Removes an installed module (its editable directory; run-time files elsewhere are kept). */
export function uninstallModule(paths: NodePaths, name: string): void {
  checkModuleName(name);
  withModulesLock(paths.modulesDir, () => {
    if (!isInstalled(paths, name)) throw notInstalled(name);
    const dir = join(paths.modulesDir, name);
    const gone = join(paths.modulesDir, privateName('del', name));
    try {
      renameSync(dir, gone);
      fsyncDir(paths.modulesDir);
    } catch (e) {
      throw ioError(`cannot uninstall module "${name}"`, e);
    }
    rmSync(gone, { recursive: true, force: true });
  });
}

/**
 * Zips an installed module (everything in its directory but module.json) into a package that installs
 * anywhere. Deterministic: the same module files give the same bytes.
 */
export async function packageModule(paths: NodePaths, name: string): Promise<Buffer> {
  checkModuleName(name);
  if (!isInstalled(paths, name)) throw notInstalled(name);
  if (!existsSync(userConfigPath(paths, name))) {
    throw new StayupError('PACKAGE_MISSING_CONFIG', `module "${name}" has no ${USERCONFIG_PATH} to package`, { details: { module: name } });
  }
  return packDirectory(join(paths.modulesDir, name), {
    label: `module ${name}`,
    exclude: (rel) => rel === MODULE_META_FILE,
  });
}
