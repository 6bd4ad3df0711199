// Shipped module templates (`<repo>/modules/<name>`: mirror, farm, demo), packaged on demand with the
// same deterministic packer as installed modules, so a template always gives the same package bytes.
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { StayupError } from '../errors/stayup-error.ts';
import { nodePaths } from '../util/paths.ts';
import { packDirectory } from './zip-writer.ts';
import { MODULE_NAME_RE, USERCONFIG_PATH } from './module-store.ts';

function templatesRoot(templatesDir?: string): string {
  return templatesDir ?? nodePaths().templatesDir;
}

/** Names of the shipped templates (directories holding conf/userconfig.xml), sorted. */
export function listTemplates(templatesDir?: string): string[] {
  const root = templatesRoot(templatesDir);
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.filter((n) => MODULE_NAME_RE.test(n) && existsSync(join(root, n, ...USERCONFIG_PATH.split('/')))).sort();
}

/** The `.safe` package of a shipped template. Errors: NOT_FOUND, PACKAGE_MISSING_CONFIG. */
export async function buildTemplatePackage(name: string, templatesDir?: string): Promise<Buffer> {
  const root = templatesRoot(templatesDir);
  const dir = join(root, name);
  let isDir = false;
  try {
    isDir = MODULE_NAME_RE.test(name) && lstatSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    throw new StayupError('NOT_FOUND', `no module template named ${JSON.stringify(name)} (templates: ${listTemplates(root).join(', ') || 'none'})`, {
      details: { template: name },
    });
  }
  if (!existsSync(join(dir, ...USERCONFIG_PATH.split('/')))) {
    throw new StayupError('PACKAGE_MISSING_CONFIG', `module template ${name} has no ${USERCONFIG_PATH}`, { details: { template: name } });
  }
  return packDirectory(dir, { label: `module template ${name}` });
}
