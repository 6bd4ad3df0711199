// The stayup test lab: simulated servers in namespaces on one Linux machine. See docs/lab.md.
export {
  Lab,
  type ExecOptions,
  type ExecResult,
  type LabDownOptions,
  type LabDownReport,
  type LabOpenOptions,
  type LabStatus,
  type LabSummary,
  type LabUpOptions,
  type LinkSide,
  type NodeStatus,
  type SpawnOptions,
  type SpawnedProcess,
} from './lab.ts';
export type { LabNode, LabNodeRole, LabProcess, LabState } from './state.ts';
export {
  CLIENT,
  CLIENT_HOST,
  DEFAULT_BASE_DIR,
  DEFAULT_LAB_NAME,
  MAX_SERVERS,
  NIC,
  SERVER_BIND_MOUNTS,
  SERVER_TMPFS,
  hostAddr,
  subnetCidr,
} from './names.ts';
export { checkPrerequisites, isAlive, procStat } from './sys.ts';

import { Lab, type LabDownOptions, type LabDownReport, type LabOpenOptions, type LabSummary, type LabUpOptions } from './lab.ts';

/** Lab.up as a function. */
export function labUp(opts: LabUpOptions = {}): Promise<Lab> {
  return Lab.up(opts);
}
/** Lab.open as a function. */
export function openLab(name?: string, opts: LabOpenOptions = {}): Lab {
  return Lab.open(name, opts);
}
/** Lab.down as a function. */
export function labDown(name?: string, opts: LabDownOptions = {}): Promise<LabDownReport> {
  return Lab.down(name, opts);
}
/** Lab.list as a function. */
export function listLabs(opts: LabOpenOptions = {}): LabSummary[] {
  return Lab.list(opts);
}
