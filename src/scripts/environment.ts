// The environment a module script runs with (reference §2.15): the SafeKit-compatible SAFE* variables,
// their STAYUP_* twins, one variable per <var name value/> of the module's <user> section, and a PATH on
// which `safekit` (stayup's CLI) is found. Only an allowlist of the daemon's own environment passes through,
// so secrets and daemon-internal settings never leak into user scripts.
import { dirname, join } from 'node:path';
import { userInfo } from 'node:os';
import { installDir as defaultInstallDir, nodePaths } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';

/** Variables of the daemon's environment that scripts inherit unchanged (when set). */
export const PASSTHROUGH_VARS: readonly string[] = ['LANG', 'TZ'];

/** The system directories every script PATH ends with. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Names stayup sets itself; a <var> may not override them. */
export const RESERVED_VARS: readonly string[] = [
  'SAFE',
  'SAFEMODULE',
  'SAFEBIN',
  'SAFEUSERBIN',
  'SAFEUSERCONF',
  'SAFEVAR',
  'SAFEUSERVAR',
  'STAYUP_HOME',
  'STAYUP_MODULE',
  'STAYUP_BIN',
  'STAYUP_USERBIN',
  'STAYUP_USERCONF',
  'STAYUP_VAR',
  'STAYUP_USERVAR',
];

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One `<var name value/>` of the module's `<user>` section. */
export interface ScriptVar {
  name: string;
  value: string;
}

export interface ScriptEnvOptions {
  /** Module name (SAFEMODULE). */
  module: string;
  /** A directory holding an executable `safekit` that runs stayup's CLI (SAFE). Put first on PATH. */
  safeDir: string;
  /** The module's installed bin directory, where its scripts live (SAFEUSERBIN). */
  userBinDir: string;
  /** The module's installed conf directory (SAFEUSERCONF). */
  userConfDir: string;
  /** The node's state directory (SAFEVAR, STAYUP_VAR). Default: nodePaths(parentEnv).varDir. */
  varDir?: string;
  /** The module's working directory (SAFEUSERVAR). Default: nodePaths(parentEnv).moduleVarDir(module). */
  userVarDir?: string;
  /** stayup's own executables (SAFEBIN): `stayup`, `stayupd`. Default: <installDir>/bin. */
  binDir?: string;
  /** stayup's install directory (STAYUP_HOME). Default: the checkout this file belongs to. */
  installDir?: string;
  /** `<var>` entries, in configuration order (a later duplicate wins), or a name → value map. */
  vars?: readonly ScriptVar[] | Readonly<Record<string, string>>;
  /** The daemon environment to take the allowlisted variables from. Default: process.env. */
  parentEnv?: NodeJS.ProcessEnv;
}

function checkValue(name: string, value: string): void {
  if (value.includes('\0')) {
    throw new StayupError('CONFIG_INVALID', `script variable ${name}: the value holds a NUL byte`);
  }
}

/** Joins PATH entries, dropping empty and repeated ones (the first occurrence wins). */
function joinPath(entries: readonly string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const e of entries) {
    if (e === '' || seen.has(e)) continue;
    seen.add(e);
    out.push(e);
  }
  return out.join(':');
}

/**
 * Builds the complete environment of a module script. The result holds nothing from the daemon's own
 * environment except LANG and TZ (and PATH, whose entries come after stayup's own directories); every other
 * variable is set here. Throws CONFIG_INVALID for a `<var>` whose name is not a shell identifier, collides
 * with a stayup variable, or whose value holds a NUL byte.
 */
export function buildScriptEnv(opts: ScriptEnvOptions): Record<string, string> {
  const parentEnv = opts.parentEnv ?? process.env;
  const paths = nodePaths(parentEnv);
  const varDir = opts.varDir ?? paths.varDir;
  const userVarDir = opts.userVarDir ?? paths.moduleVarDir(opts.module);
  const home = opts.installDir ?? defaultInstallDir;
  const binDir = opts.binDir ?? join(home, 'bin');

  const env: Record<string, string> = {};
  for (const name of PASSTHROUGH_VARS) {
    const v = parentEnv[name];
    if (v !== undefined) env[name] = v;
  }
  // stayup's directories first so `safekit` and `stayup` resolve to this install; then node's own directory,
  // because bin/stayup starts with `#!/usr/bin/env node`; then the daemon's PATH, then the system directories.
  env.PATH = joinPath([
    opts.safeDir,
    binDir,
    dirname(process.execPath),
    ...(parentEnv.PATH ?? '').split(':').filter((p) => p.startsWith('/')),
    ...SYSTEM_PATH.split(':'),
  ]);
  env.HOME = safeHome();

  env.SAFE = opts.safeDir;
  env.SAFEMODULE = opts.module;
  env.SAFEBIN = binDir;
  env.SAFEUSERBIN = opts.userBinDir;
  env.SAFEUSERCONF = opts.userConfDir;
  env.SAFEVAR = varDir;
  env.SAFEUSERVAR = userVarDir;

  env.STAYUP_HOME = home;
  env.STAYUP_MODULE = opts.module;
  env.STAYUP_BIN = binDir;
  env.STAYUP_USERBIN = opts.userBinDir;
  env.STAYUP_USERCONF = opts.userConfDir;
  env.STAYUP_VAR = varDir;
  env.STAYUP_USERVAR = userVarDir;
  for (const [k, v] of Object.entries(env)) checkValue(k, v);

  const vars: readonly ScriptVar[] = Array.isArray(opts.vars)
    ? (opts.vars as readonly ScriptVar[])
    : Object.entries((opts.vars ?? {}) as Record<string, string>).map(([name, value]) => ({ name, value }));
  for (const { name, value } of vars) {
    if (!VAR_NAME.test(name)) {
      throw new StayupError(
        'CONFIG_INVALID',
        `<var name="${name}">: a variable name is letters, digits and _, not starting with a digit`,
      );
    }
    if (RESERVED_VARS.includes(name)) {
      throw new StayupError(
        'CONFIG_INVALID',
        `<var name="${name}">: ${name} is set by stayup and cannot be overridden`,
      );
    }
    checkValue(name, value);
    env[name] = value;
  }
  return env;
}

/** The daemon user's home from the password database (not from $HOME, which is not passed through). */
function safeHome(): string {
  try {
    return userInfo().homedir || '/';
  } catch {
    return '/';
  }
}
