// The virtual IP executor of the mirror module. See README.md.
export {
  VipManager,
  realScheduler,
  routeSpec,
  vipAddresses,
  type GeneratedChecker,
  type Scheduler,
  type VipAddress,
  type VipCheckResult,
  type VipEvent,
  type VipManagerOptions,
  type VipPlacement,
  type VipRemoval,
  type VipStatus,
} from './manager.ts';
export { commandPath, execRunner, runCommand, type CommandOptions, type CommandResult, type CommandRunner } from './runner.ts';
export { inSubnet, ipFamily, netmaskToPrefix, networkOf } from './net.ts';
