// Naming and addressing plan of the lab. Pure functions, no system access.
//
// Every lab gets an index k (1..511) and the /24 number k of 198.18.0.0/15:
//   k = 1 → 198.18.1.0/24, k = 255 → 198.18.255.0/24, k = 256 → 198.19.0.0/24, k = 511 → 198.19.255.0/24.
// 198.18.0.0/24 (k = 0) is left to hand-made labs (shared/reference/lab.md uses it).
// In a lab's /24: server i (node1..nodeN) is .i, the client is .250, .100-.249 are free for virtual IPs.
// All names start with `su<k>-` (namespaces) or `su<k>` (links), so labs never clash and stay within IFNAMSIZ.

import { StayupError } from '../errors/stayup-error.ts';

export const MIN_INDEX = 1;
export const MAX_INDEX = 511;
export const MAX_SERVERS = 99;
export const CLIENT = 'client';
export const CLIENT_HOST = 250;
/** Name of every node's NIC (inside its own netns). */
export const NIC = 'eth0';
export const PREFIX_LEN = 24;
/** nftables objects the lab owns. */
export const SWITCH_TABLE = 'stayup';
export const FREEZE_TABLE = 'stayup_freeze';

const LAB_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/i;

export function validateLabName(name: string): string {
  if (!LAB_NAME_RE.test(name)) {
    throw new StayupError('BAD_ARGUMENT', `invalid lab name ${JSON.stringify(name)}: use 1-32 letters, digits, _ or -, starting with a letter or digit`);
  }
  return name;
}

export function validateServerCount(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_SERVERS) {
    throw new StayupError('BAD_ARGUMENT', `invalid server count ${n}: a lab has 1 to ${MAX_SERVERS} servers`);
  }
  return n;
}

export function serverName(i: number): string {
  return `node${i}`;
}

/** Network of lab index k, e.g. `198.18.3.0`. */
export function subnetBase(index: number): [number, number, number] {
  if (!Number.isInteger(index) || index < MIN_INDEX || index > MAX_INDEX) {
    throw new RangeError(`lab index ${index} out of range ${MIN_INDEX}..${MAX_INDEX}`);
  }
  return [198, 18 + (index >> 8), index & 0xff];
}

export function subnetCidr(index: number): string {
  return `${subnetBase(index).join('.')}.0/${PREFIX_LEN}`;
}

/** Address `host` (1..254) in lab `index`'s /24. */
export function hostAddr(index: number, host: number): string {
  if (!Number.isInteger(host) || host < 1 || host > 254) throw new RangeError(`host part ${host} out of range 1..254`);
  return `${subnetBase(index).join('.')}.${host}`;
}

export function nsPrefix(index: number): string {
  return `su${index}-`;
}

export interface EndpointNames {
  /** Network namespace (a file in /run/netns). */
  netns: string;
  /** Switch-side veth end, inside the switch netns, enslaved to the bridge. */
  port: string;
}

export function switchNetns(index: number): string {
  return `${nsPrefix(index)}sw`;
}

export function bridgeName(index: number): string {
  return `su${index}br`;
}

/** Names for server i (1-based) or the client (i = 'client'). */
export function endpointNames(index: number, i: number | typeof CLIENT): EndpointNames {
  if (i === CLIENT) return { netns: `${nsPrefix(index)}client`, port: `su${index}c` };
  return { netns: `${nsPrefix(index)}${serverName(i)}`, port: `su${index}n${i}` };
}

/** Lab index encoded in a netns name created by the lab, or undefined. */
export function indexOfNetns(netns: string): number | undefined {
  const m = /^su(\d{1,3})-/.exec(netns);
  if (!m) return undefined;
  const k = Number(m[1]);
  return k >= MIN_INDEX && k <= MAX_INDEX ? k : undefined;
}

/** Directories that are private per server: path inside the server → subdirectory of the server's data dir. */
export const SERVER_BIND_MOUNTS: ReadonlyArray<{ path: string; dir: string }> = [
  { path: '/var/lib/stayup', dir: 'stayup' },
  { path: '/var/lib/app', dir: 'app' },
  { path: '/srv', dir: 'srv' },
  { path: '/var/log/stayup', dir: 'log' },
];

/** Paths that get a fresh private tmpfs in every server (and again on restartServer). */
export const SERVER_TMPFS: ReadonlyArray<{ path: string; mode: string }> = [
  { path: '/run', mode: '755' },
  { path: '/dev/shm', mode: '1777' },
];

export const DEFAULT_BASE_DIR = '/var/lib/stayup-lab';
export const DEFAULT_LAB_NAME = 'lab';
