// The typed module configuration: what parseUserConfig returns and printEffectiveUserConfig prints.
// Field names are the camelCase of the XML names, with units last (pulseMs, userlogSizeKb). Every
// attribute with a documented default is filled in; optional ones without a default are absent.
// The object tree is built by the generic validator from the table in schema.ts, whose keys match these
// interfaces one for one; the round-trip tests hold the two together.
import type { FailoverRule } from './rules.ts';

export type ModuleMode = 'mirror' | 'farm' | 'light';
export type BootMode = 'on' | 'off' | 'auto' | 'ignore';
/** When a checker or a virtual hostname is active: around which scripts it is switched on. */
export type CheckerWhen = 'pre' | 'prim' | 'second' | 'both';
/** What a checker does when its resource goes down. */
export type CheckerAction = 'wait' | 'restart' | 'stopstart' | 'stop' | 'noaction';

export interface UserConfig {
  /** The <macro> definitions, values expanded, in file order (kept for display; already applied). */
  macros: Macro[];
  service: Service;
}

/** <service>: the module's mode and policies, and every section of the module. */
export interface Service {
  mode: ModuleMode;
  boot: BootMode;
  bootDelayMs: number;
  /** failover="off": the secondary does not take over by itself (mirror). */
  failover: boolean;
  /** "alone", "lastprim" or a node name (mirror). */
  defaultPrim: string;
  /** Automatic restarts allowed within loopIntervalMs before the module is stopped. */
  maxLoop: number;
  /** 0 disables the maxloop counter. */
  loopIntervalMs: number;
  automaticReboot: boolean;

  heart?: Heart;
  farm?: Farm;
  vip?: Vip;
  rfs?: Rfs;
  /** Without <user>, module scripts are not run. */
  user?: User;
  vhost?: Vhost;
  errd?: Errd;
  /** Always present (empty lists when the file has no <check>). */
  check: Checks;
  /** Always present (default timing and no user rules when the file has no <failover>). */
  failoverMachine: FailoverMachine;
}

export interface Macro {
  name: string;
  value: string;
}

export interface Heart {
  /** UDP port; absent means 8888 + (module id - 1), computed by the daemon. */
  port?: number;
  pulseMs: number;
  timeoutMs: number;
  permanentArp: boolean;
  heartbeats: Heartbeat[];
}

export interface Heartbeat {
  /** A lan of cluster.xml. */
  name: string;
  /** Names the resource heartbeat.<ident>; defaults to the lan name. "flow" carries replication. */
  ident: string;
  /** Default: the <heart> values. */
  pulseMs: number;
  timeoutMs: number;
}

export interface Farm {
  /** UDP port; absent means 4803 + (module id - 1) * 3, computed by the daemon. */
  port?: number;
  pulseMs: number;
  mlostCount: number;
  slostCount: number;
  lans: Array<{ name: string }>;
}

export interface Vip {
  /** Reset connections sourced from the VIP before removing it. */
  tcpreset: boolean;
  scriptcontrol: boolean;
  /** From <interface_list>. */
  interfaces: VipInterface[];
  /** From <loadbalancing_list> (farm only; empty otherwise). */
  groups: LoadBalancingGroup[];
}

export interface VipInterface {
  /** Network interface; absent means the one whose subnet holds the VIP. */
  name?: string;
  /** Generates the interface checker intf.<net>. */
  check: boolean;
  /** Send gratuitous ARP every arpIntervalMs for arpElapseMs (IPv4). */
  arpreroute: boolean;
  arpIntervalMs: number;
  arpElapseMs: number;
  /** Mirror form: the VIP is an alias of the real interface. Exactly one of the two forms is set. */
  realInterface?: { virtualAddrs: VirtualAddr[] };
  /** Farm form (or mirror "transparent rerouting" with vmac_invisible). */
  virtualInterface?: VirtualInterface;
}

export interface VirtualInterface {
  type: 'vmac_directed' | 'vmac_invisible';
  /** Virtual MAC address; absent means derived from the VIP. */
  addr?: string;
  virtualAddrs: VirtualAddr[];
}

export type VipWhere = 'one_side_alias' | 'one_side' | 'alias';

export interface VirtualAddr {
  addr: string;
  /** Default: one_side_alias in a mirror, alias in a farm. */
  where: VipWhere;
  /** Generates the IP checker ip.<addr>. */
  check: boolean;
  /** Count active connections into resource connections.<addr>. */
  connections: boolean;
  netmask?: string;
}

export interface LoadBalancingGroup {
  name: string;
  /** From the optional <cluster>: node weights; empty means equal shares. */
  hosts: Array<{ name: string; power: number }>;
  rules: LoadBalancingRule[];
}

export interface LoadBalancingRule {
  virtualAddr: string | '*';
  port: number | '*';
  proto: 'tcp' | 'udp' | 'arp';
  filter: 'on_addr' | 'on_port' | 'on_ipid';
}

export interface Rfs {
  acl: boolean;
  /** "second": the secondary acknowledges on receipt; "none": after writing to disk. */
  async: 'second' | 'none';
  iotimeoutMs?: number;
  /** Windows only; kept as written. */
  roflags?: string;
  locktimeoutMs: number;
  sendtimeoutMs: number;
  nbrei: number;
  packetsize?: number;
  reipacketsize: number;
  ruzoneBlocksize: number;
  namespacepolicy: '0' | '1' | '3' | '4';
  reitimeoutMs: number;
  reicommit: number;
  reidetail: boolean;
  allocthreshold?: number;
  nbremconn: number;
  checktimeMs: number;
  checkintvMs: number;
  nfsboxOptions?: string;
  scripts: boolean;
  /** Reintegration bandwidth cap in KB/s. */
  reiallowedbwKbps?: number;
  /** 0 disables. */
  syncdeltaMs: number;
  /** Scheduled resync (crontab time) instead of real-time replication. */
  syncat?: string;
  mountoversuffix?: string;
  /** Legacy <flow name>: the lan of the replication stream. */
  flow?: { name: string };
  replicated: Replicated[];
}

export interface Replicated {
  /** Absolute, normalised. */
  dir: string;
  mode?: 'read_only';
  /** Entries that must exist before replication starts (guards against an unmounted filesystem). */
  toCheck: Array<{ path: string }>;
  /** Each has exactly one of path (relative) or regexpath (ERE; a leading "!" means "replicate only"). */
  notReplicated: Array<{ path?: string; regexpath?: string }>;
}

export interface User {
  nicestoptimeoutMs: number;
  forcestoptimeoutMs: number;
  logging: 'userlog' | 'none';
  userlogSizeKb: number;
  vars: Array<{ name: string; value: string }>;
}

export interface Vhost {
  /** From <virtualhostname>. */
  hostnames: Array<{ name: string; envfile: string; when: 'prim' | 'second' | 'both' }>;
}

export interface Errd {
  polltimerMs: number;
  procs: Proc[];
}

export interface Proc {
  /** Process command name (at most 15 characters on Linux unless nameregex is set) or systemd unit. */
  name: string;
  /** service="yes": monitor a systemd unit. */
  service: boolean;
  nameregex?: string;
  argregex?: string;
  /** -1 disables the criterion. */
  atleast: number;
  atmax: number;
  /** restart | stopstart | stop | noaction, or a handler executable. */
  action: string;
  restartServices?: string[];
  /** prim | both | pre | second | sec, or a custom class. */
  class: string;
  /** Monitoring starts after (startAfter - 1) polls. */
  startAfter: number;
}

export interface Checks {
  tcp: TcpChecker[];
  ping: PingChecker[];
  intf: IntfChecker[];
  ip: IpChecker[];
  custom: CustomChecker[];
  module: ModuleChecker[];
  /** At most one (mirror). */
  splitbrain?: SplitbrainChecker;
}

export interface TcpChecker {
  ident: string;
  when: CheckerWhen;
  /** Default: wait when when="pre", restart otherwise. */
  action: CheckerAction;
  to: { addr: string; port: number; intervalMs: number; timeoutMs: number };
}

export interface PingChecker {
  ident: string;
  when: CheckerWhen;
  action: CheckerAction;
  to: Array<{ addr: string; intervalMs: number; timeoutMs: number }>;
}

export interface IntfChecker {
  ident: string;
  when: CheckerWhen;
  to: { localAddr: string };
}

export interface IpChecker {
  ident: string;
  when: CheckerWhen;
  to: { addr: string; intervalMs: number };
}

export interface CustomChecker {
  ident: string;
  when: CheckerWhen;
  /** Relative paths are resolved against the module's bin directory. */
  exec: string;
  arg?: string;
  action: CheckerAction;
}

export interface ModuleChecker {
  /** The watched module. */
  name: string;
  ident?: string;
  /** Default: the local node's web service. */
  to: { addr: string; port: number; secure: boolean };
}

export interface SplitbrainChecker {
  ident: string;
  exec: string;
  /** Witnesses pinged by each node (from arg="w1 w2"). */
  witnesses: string[];
}

export interface FailoverMachine {
  /** extends="no" replaces the default rules (discouraged). */
  extends: boolean;
  periodMs: number;
  /** A candidate action must hold this long before it is applied; a multiple of periodMs. */
  handleTimeMs: number;
  rules: FailoverRule[];
}
