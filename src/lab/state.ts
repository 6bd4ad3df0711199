// The lab description persisted as JSON in the lab's state dir, so `status`, `exec` and `down` work from a
// later process. Written atomically; changes that read-modify-write it take the lab's lock.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { StayupError } from '../errors/stayup-error.ts';

export const STATE_VERSION = 1;
export const STATE_FILE = 'lab.json';

export type LabNodeRole = 'server' | 'client';

export interface LabNode {
  /** node1..nodeN or client. */
  name: string;
  role: LabNodeRole;
  /** IPv4 address on the lab's /24, e.g. 198.18.1.2. */
  addr: string;
  prefixLen: number;
  /** Network namespace, /run/netns/<netns>. */
  netns: string;
  /** Inode of the netns file when it was created: guards against deleting a namespace someone else re-created. */
  netnsIno?: number;
  /** Switch-side veth (in the switch netns). */
  port: string;
  /** The node's NIC, inside its netns. */
  nic: string;
  /** Servers only: persisted mount and UTS namespace files (nsfs bind mounts) and their inodes. */
  mntNs?: string;
  mntNsIno?: number;
  utsNs?: string;
  /** Servers only: host directory holding the per-server directories (stayup/, app/, srv/, log/). */
  dataDir?: string;
  /** Set by killServer, cleared by startServer. */
  killed?: boolean;
}

export interface LabProcess {
  pid: number;
  /** /proc/PID/stat start time (clock ticks since boot): tells our process from a later one with the same PID. */
  startTime: number;
  node: string;
  argv: string[];
  logFile: string;
  startedAt: string;
}

export interface LabState {
  version: number;
  name: string;
  index: number;
  subnet: string;
  baseDir: string;
  stateDir: string;
  createdAt: string;
  /** 'building' until `up` finished: a lab left in this phase was interrupted and only `down` applies. */
  phase: 'building' | 'up';
  switch: { netns: string; netnsIno?: number; bridge: string };
  nodes: LabNode[];
  /** Directory holding the nsfs files; bind-mounted on itself and made private. */
  nsDir: string;
  /** Host mount points this lab created (down removes them if empty and no other lab runs). */
  hostDirsCreated: string[];
  processes: LabProcess[];
}

export function stateDirOf(baseDir: string, name: string): string {
  return join(baseDir, name);
}

export function stateFileOf(stateDir: string): string {
  return join(stateDir, STATE_FILE);
}

export function readState(stateDir: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFileOf(stateDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StayupError('IO', `cannot read lab state ${stateFileOf(stateDir)}: ${(e as Error).message}`, { cause: e });
  }
  let s: LabState;
  try {
    s = JSON.parse(text) as LabState;
  } catch (e) {
    throw new StayupError('IO', `lab state ${stateFileOf(stateDir)} is corrupt: ${(e as Error).message}`, { cause: e });
  }
  if (s.version !== STATE_VERSION) {
    throw new StayupError('IO', `lab state ${stateFileOf(stateDir)} has version ${s.version}, expected ${STATE_VERSION}`);
  }
  return s;
}

export function writeState(s: LabState): void {
  writeFileAtomic(stateFileOf(s.stateDir), `${JSON.stringify(s, null, 2)}\n`, 0o600);
}
