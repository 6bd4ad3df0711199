// printEffectiveUserConfig: the canonical, fully explicit form of a module configuration.
import { printDocument } from '../schema/print.ts';
import { userConfigSchema } from './schema.ts';
import type { UserConfig } from './types.ts';

/**
 * Canonical XML of a configuration: macros already expanded (the <macro> elements are kept, for the
 * record), every default written out, durations with explicit units, elements and attributes in schema
 * order, failover rules in canonical layout. Parsing the result (with the same env) gives a deep-equal
 * UserConfig. This is what a node stores as the active configuration and compares between nodes.
 */
export function printEffectiveUserConfig(cfg: UserConfig): string {
  return printDocument(userConfigSchema, cfg as unknown as Record<string, unknown>);
}
