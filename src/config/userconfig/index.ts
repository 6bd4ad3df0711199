// Public API of the module configuration (userconfig.xml).
export { parseUserConfig, type ParseUserConfigOptions } from './parse.ts';
export { printEffectiveUserConfig } from './print.ts';
export type * from './types.ts';
export type {
  FailoverRule,
  ResourceRef,
  ResourceValue,
  RuleAction,
  RuleActionName,
  RuleExpr,
  RuleOperand,
} from './rules.ts';
export { formatRule, formatCondition, formatAction, formatResource } from './rules.ts';
export { userConfigSchema } from './schema.ts';
