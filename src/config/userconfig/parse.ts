// parseUserConfig: userconfig.xml text → typed, validated, macro-expanded UserConfig.
import { diagnosticsError } from '../../errors/stayup-error.ts';
import type { ClusterConfig } from '../cluster.ts';
import { sortDiagnostics, validateDocument } from '../schema/validate.ts';
import { parseXml } from '../xml.ts';
import { checkUserConfig } from './checks.ts';
import { collectMacros, type Environment } from './macros.ts';
import { userConfigSchema } from './schema.ts';
import type { UserConfig } from './types.ts';

export interface ParseUserConfigOptions {
  /** Name used in diagnostics, e.g. "userconfig.xml" or "modules/web/conf/userconfig.xml". */
  file: string;
  /** When given, lan and node names are checked against it. */
  cluster?: ClusterConfig;
  /** Environment for %NAME% expansion (macros win). Not read from process.env unless you pass it. */
  env?: Environment;
  /** The module being configured: a <module> checker may not watch it. */
  moduleName?: string;
}

/**
 * Parses and checks a module configuration. Throws StayupError CONFIG_XML_MALFORMED (one diagnostic) for
 * XML that is not well-formed, or CONFIG_INVALID carrying every diagnostic found, sorted by position.
 */
export function parseUserConfig(text: string, opts: ParseUserConfigOptions): UserConfig {
  const root = parseXml(text, opts.file);
  const { expander } = collectMacros(root, opts.env ?? {});
  const { value, diagnostics, sources } = validateDocument(root, userConfigSchema, { file: opts.file, expander });
  if (root.name === userConfigSchema.name) {
    diagnostics.push(
      ...checkUserConfig(value as unknown as UserConfig, {
        file: opts.file,
        sources,
        ...(opts.cluster ? { cluster: opts.cluster } : {}),
        ...(opts.moduleName !== undefined ? { moduleName: opts.moduleName } : {}),
      }),
    );
  }
  if (diagnostics.length > 0) throw diagnosticsError('CONFIG_INVALID', sortDiagnostics(diagnostics));
  return value as unknown as UserConfig;
}
