// The virtual IP executor of a mirror module: adds the <vip> addresses on this node, announces them with
// gratuitous ARP, resets the connections sourced from them and removes them, and answers the generated
// intf.* and ip.* checkers. It takes no decision: the mirror machine says when to call up() and down().
// Every system command goes through an injected CommandRunner (see README.md for the exact commands).
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import type { FastVipOps } from './kernel-ops.ts';
import { StayupError, isStayupError } from '../errors/stayup-error.ts';
import type { ErrorCode } from '../errors/codes.ts';
import type { Vip } from '../config/userconfig/types.ts';
import { execRunner, type CommandResult, type CommandRunner } from './runner.ts';
import {
  holdersOf,
  ipFamily,
  netmaskToPrefix,
  networkOf,
  parseIpJson,
  inSubnet,
  ssAddr,
  subnetMatches,
  type Family,
  type IpLink,
  type IpRoute,
} from './net.ts';

/** One <virtual_addr> with the attributes of its <interface>, flattened. */
export interface VipAddress {
  /** As written in the configuration: an IP literal or a host name. */
  addr: string;
  where: 'one_side_alias' | 'one_side';
  /** virtual_addr check: generates ip.<addr>. */
  check: boolean;
  /** virtual_addr connections: the caller may publish connectionCount() as connections.<addr>. */
  connections: boolean;
  netmask?: string;
  /** <interface name>; absent = the interface whose subnet holds the VIP. */
  interface?: string;
  /** <interface check>: generates intf.<net>. */
  interfaceCheck: boolean;
  arpreroute: boolean;
  arpIntervalMs: number;
  arpElapseMs: number;
}

import { realScheduler, type Scheduler } from '../util/scheduler.ts';
export { realScheduler, type Scheduler };

export interface VipManagerOptions {
  /** Runs `ip`, `ss` and `arping` (default: execFile in this process's namespaces). */
  run?: CommandRunner;
  scheduler?: Scheduler;
  /** Resolves a host-name VIP to one address (default: dns.lookup, first answer). */
  resolveHost?: (name: string) => Promise<string>;
  /** Packets per gratuitous ARP burst, one a second (`arping -c`). Default 3. */
  garpCount?: number;
  /** Delay of the second burst after up() (keepalived's garp_master_delay). Default 5000; 0 = none. */
  secondBurstDelayMs?: number;
  /** IPv4 addresses get the label `<dev>:<labelSuffix>` when it fits in 15 characters. Default 'vip'; '' = no label. */
  labelSuffix?: string;
  /** Limit for each `ip` and `ss` command. Default 10000 ms. */
  commandTimeoutMs?: number;
  /** What the manager did, and background failures (gratuitous ARP runs after up() returned). */
  onEvent?: (event: VipEvent) => void;
  /**
   * up() reads this process's addresses from the kernel through os.networkInterfaces() (no process to
   * spawn: a failover is ~5 ms faster) and only runs `ip -j addr show` when that view cannot place a VIP.
   * Only for a manager whose `run` acts on this process's own network namespace (the daemon's).
   */
  localAddressView?: boolean;
  /** The in-process kernel calls (kernel-ops.ts): IPv4 adds and the first gratuitous ARP without a process. */
  fastOps?: FastVipOps;
}

export type VipEvent =
  | { type: 'added' | 'present'; addr: string; ip: string; iface: string; prefixLen: number }
  | { type: 'removed'; addr: string; ip: string; iface: string; prefixLen: number }
  | { type: 'garp'; ip: string; iface: string; reason: 'burst' | 'repeat' | 'reroute'; argv: string[] }
  | { type: 'tcpreset'; ip: string; reset: number; remaining: number }
  | { type: 'route'; ip: string; action: 'prefer' | 'restore'; argv: string[] }
  | { type: 'warning'; error: StayupError };

/** Where up() put one VIP. */
export interface VipPlacement {
  addr: string;
  ip: string;
  iface: string;
  prefixLen: number;
  /** False when the address was already there (idempotent up). */
  added: boolean;
}

/** What down() did for one VIP. */
export interface VipRemoval {
  addr: string;
  ip: string;
  /** Interfaces it was removed from (empty when it was not configured). */
  removedFrom: string[];
  /** Connections reset by `ss -K` (tcpreset). */
  reset: number;
}

export interface VipStatus {
  addr: string;
  ip?: string;
  where: VipAddress['where'];
  /** The interface the VIP belongs on (configured or found by subnet); absent if none is found. */
  interface?: string;
  present: boolean;
  /** Every interface that holds it now. */
  on: Array<{ iface: string; prefixLen: number; label?: string }>;
  /** Why the interface or the address could not be worked out. */
  error?: string;
}

export interface VipCheckResult {
  state: 'up' | 'down';
  reason: string;
}

/** A checker generated from <vip>, as the reference names them. */
export interface GeneratedChecker {
  /** intf.<network address> (intf.<name> for a named interface with no subnet) or ip.<addr>. */
  resource: string;
  kind: 'intf' | 'ip';
  /** intf: wait (runs from prestart); ip: stopstart (runs once the module is started). */
  action: 'wait' | 'stopstart';
  when: 'pre' | 'prim';
  /** The interface (intf) or the configured address (ip). */
  target: string;
  check: () => Promise<VipCheckResult>;
}

const MAX_IFNAME = 15;
/** With the in-process calls, the arping burst comes this long after their first gratuitous ARP. */
const FAST_GARP_FOLLOW_UP_MS = 200;
/** Route attributes we can write back with `ip route replace`; a route with anything else is left alone. */
const ROUTE_KEYS = new Set(['dst', 'gateway', 'dev', 'protocol', 'scope', 'prefsrc', 'metric', 'type', 'flags']);
const ROUTE_FLAGS = new Set(['onlink', 'linkdown']);

/** Flattens the typed <vip> into addresses; refuses forms this manager does not implement. */
export function vipAddresses(vip: Vip): VipAddress[] {
  const out: VipAddress[] = [];
  for (const intf of vip.interfaces) {
    if (intf.virtualInterface) {
      throw new StayupError(
        'VIP_UNSUPPORTED',
        `<virtual_interface type="${intf.virtualInterface.type}">: virtual MAC interfaces are not supported by the virtual IP manager (use <real_interface>)`,
      );
    }
    for (const va of intf.realInterface?.virtualAddrs ?? []) {
      if (va.where !== 'one_side_alias' && va.where !== 'one_side') {
        throw new StayupError('VIP_UNSUPPORTED', `VIP ${va.addr}: where="${va.where}" is a farm form; the mirror uses one_side_alias or one_side`);
      }
      const fam = ipFamily(va.addr);
      if (va.where === 'one_side' && fam === 6) {
        throw new StayupError('VIP_UNSUPPORTED', `VIP ${va.addr}: where="one_side" (VIP as source address) is implemented for IPv4 only`);
      }
      if (va.netmask !== undefined && netmaskToPrefix(va.netmask, fam ?? 4) === undefined) {
        throw new StayupError('VIP_UNSUPPORTED', `VIP ${va.addr}: netmask "${va.netmask}" is not a prefix length or a contiguous mask`);
      }
      out.push({
        addr: va.addr,
        where: va.where,
        check: va.check,
        connections: va.connections,
        ...(va.netmask === undefined ? {} : { netmask: va.netmask }),
        ...(intf.name === undefined ? {} : { interface: intf.name }),
        interfaceCheck: intf.check,
        arpreroute: intf.arpreroute,
        arpIntervalMs: intf.arpIntervalMs,
        arpElapseMs: intf.arpElapseMs,
      });
    }
  }
  return out;
}

interface Garp {
  controller: AbortController;
  done: Promise<void>;
}

export class VipManager {
  readonly addresses: readonly VipAddress[];
  readonly tcpreset: boolean;
  readonly #run: CommandRunner;
  readonly #sched: Scheduler;
  readonly #resolveHost: (name: string) => Promise<string>;
  readonly #garpCount: number;
  readonly #secondBurstMs: number;
  readonly #labelSuffix: string;
  readonly #timeoutMs: number;
  readonly #onEvent: (e: VipEvent) => void;
  readonly #localView: boolean;
  readonly #fast: FastVipOps | undefined;
  readonly #ips = new Map<string, string>();
  /** Where up() put each VIP (by configured addr), for the checkers and down(). */
  readonly #placed = new Map<string, VipPlacement>();
  /** Original prefsrc (null = none) of routes up() rewrote for one_side, by route key. */
  readonly #origSrc = new Map<string, string | null>();
  readonly #timers = new Set<unknown>();
  readonly #garps = new Set<Garp>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(vip: Vip, opts: VipManagerOptions = {}) {
    this.addresses = vipAddresses(vip);
    this.tcpreset = vip.tcpreset;
    this.#run = opts.run ?? execRunner;
    this.#sched = opts.scheduler ?? realScheduler;
    this.#resolveHost = opts.resolveHost ?? (async (name) => (await lookup(name)).address);
    this.#garpCount = Math.max(1, Math.floor(opts.garpCount ?? 3));
    this.#secondBurstMs = opts.secondBurstDelayMs ?? 5000;
    this.#labelSuffix = opts.labelSuffix ?? 'vip';
    this.#timeoutMs = opts.commandTimeoutMs ?? 10_000;
    this.#onEvent = opts.onEvent ?? (() => {});
    this.#localView = opts.localAddressView ?? false;
    this.#fast = opts.fastOps;
  }

  // --------------------------------------------------------------------------------------- public API

  /**
   * Adds every VIP (already present on the right interface = fine), makes it the source address for
   * one_side, and starts the gratuitous ARP: a burst now, a second burst after secondBurstDelayMs and,
   * with arpreroute, one every arpinterval for arpelapse. It returns once the addresses are configured;
   * the ARP runs in the background (failures arrive as 'warning' events) until down() cancels it.
   * On an error the VIPs added before it stay: down() removes them.
   */
  up(): Promise<VipPlacement[]> {
    return this.#serial(async () => {
      await this.#silence();
      let links = this.#localView ? osLinks() : await this.#links();
      const out: VipPlacement[] = [];
      for (const e of this.addresses) {
        const ip = await this.#ip(e);
        let place: { iface: string; prefixLen: number };
        try {
          place = this.#placement(e, ip, links);
        } catch (err) {
          if (!this.#localView) throw err;
          // The quick view has no address-less interfaces and no flags: ask `ip` before giving up.
          links = await this.#links();
          place = this.#placement(e, ip, links);
        }
        const { iface, prefixLen } = place;
        const holders = holdersOf(links, ip);
        const here = holders.find((h) => h.ifname === iface);
        let added = false;
        let announced = false;
        if (here) {
          this.#onEvent({ type: 'present', addr: e.addr, ip, iface, prefixLen: here.prefixLen });
        } else if (holders.length > 0) {
          throw new StayupError('VIP_FAILED', `VIP ${ip} is already on ${holders.map((h) => h.ifname).join(', ')}, not on ${iface}: remove it there first`, {
            details: { ip, iface, on: holders.map((h) => h.ifname) },
          });
        } else {
          const fast = await this.#fastAdd(ip, iface, prefixLen);
          if (fast) {
            added = true;
            announced = fast.announced;
          } else {
            const argv = this.#addArgv(ip, iface, prefixLen);
            const r = await this.#cmd(argv, `VIP ${ip} on ${iface}`);
            if (r.code !== 0 && !/already assigned|File exists/i.test(r.stderr)) throw this.#failed(`VIP ${ip} on ${iface}`, argv, r);
            added = r.code === 0;
          }
          this.#onEvent({ type: 'added', addr: e.addr, ip, iface, prefixLen });
        }
        const placement: VipPlacement = { addr: e.addr, ip, iface, prefixLen: here?.prefixLen ?? prefixLen, added };
        this.#placed.set(e.addr, placement);
        if (e.where === 'one_side') await this.#preferSource(ip, iface);
        if (ipFamily(ip) === 4) this.#announce(e, ip, iface, announced);
        out.push(placement);
      }
      return out;
    });
  }

  /**
   * Stops the gratuitous ARP (timers cancelled, running arping killed and awaited), then for each VIP
   * that is configured: with tcpreset, `ss -K` the TCP connections sourced from it; for one_side, gives
   * the rewritten routes their source back; removes the address; sweeps once more with `ss -K`.
   * A VIP that is not configured is skipped. Every VIP is attempted; the failures are thrown together.
   */
  down(): Promise<VipRemoval[]> {
    this.#cancelTimers(); // at once: no announcement may start while we wait for a running up()
    return this.#serial(async () => {
      await this.#silence();
      const links = await this.#links();
      const out: VipRemoval[] = [];
      const errors: StayupError[] = [];
      for (const e of this.addresses) {
        try {
          out.push(await this.#downOne(e, links));
        } catch (err) {
          errors.push(this.#asError(err, `VIP ${e.addr}`));
        }
      }
      if (errors.length === 1) throw errors[0]!;
      if (errors.length > 1) throw new StayupError('VIP_FAILED', errors.map((x) => x.message).join('; '), { cause: errors[0], details: { errors } });
      return out;
    });
  }

  /** Which VIPs are present, and where. Never throws for a VIP; a failure to list addresses throws VIP_FAILED. */
  async status(): Promise<VipStatus[]> {
    const links = await this.#links();
    const out: VipStatus[] = [];
    for (const e of this.addresses) {
      const s: VipStatus = { addr: e.addr, where: e.where, present: false, on: [] };
      try {
        const ip = await this.#ip(e);
        s.ip = ip;
        s.on = holdersOf(links, ip).map((h) => ({ iface: h.ifname, prefixLen: h.prefixLen, ...(h.info.label ? { label: h.info.label } : {}) }));
        s.interface = this.#placed.get(e.addr)?.iface ?? this.#placement(e, ip, links).iface;
        s.present = s.on.some((h) => h.iface === s.interface);
      } catch (err) {
        s.error = this.#asError(err, `VIP ${e.addr}`).message;
      }
      out.push(s);
    }
    return out;
  }

  /** intf.* checker: the interface exists, is administratively up and has carrier. */
  async checkInterface(name: string): Promise<VipCheckResult> {
    const argv = ['ip', '-j', 'link', 'show', 'dev', name];
    const r = await this.#cmd(argv, `interface ${name}`);
    if (r.code !== 0) {
      if (/does not exist|Cannot find device/i.test(r.stderr)) return { state: 'down', reason: `interface ${name} does not exist` };
      throw this.#failed(`interface ${name}`, argv, r);
    }
    const link = this.#parse<IpLink>(r.stdout, argv)[0];
    if (!link) return { state: 'down', reason: `interface ${name} does not exist` };
    const flags = link.flags ?? [];
    if (!flags.includes('UP')) return { state: 'down', reason: `interface ${name} is administratively down` };
    if (flags.includes('NO-CARRIER') || !flags.includes('LOWER_UP')) {
      return { state: 'down', reason: `interface ${name} has no carrier (operstate ${link.operstate ?? 'unknown'})` };
    }
    return { state: 'up', reason: `interface ${name} is up with carrier` };
  }

  /**
   * ip.* checker: the VIP (a configured addr, or any IP) is on its interface. Down when it is missing,
   * on another interface, or failed duplicate address detection (IPv6).
   */
  async checkAddress(addr: string): Promise<VipCheckResult> {
    const e = this.#entry(addr);
    const ip = e ? await this.#ip(e) : addr;
    if (ipFamily(ip) === undefined) throw new StayupError('BAD_ARGUMENT', `${addr} is neither a configured VIP nor an IP address`);
    const links = await this.#links();
    let expected: string | undefined;
    if (e) {
      try {
        expected = this.#placed.get(e.addr)?.iface ?? this.#placement(e, ip, links).iface;
      } catch (err) {
        return { state: 'down', reason: this.#asError(err, `VIP ${ip}`).message };
      }
    }
    const holders = holdersOf(links, ip);
    if (holders.length === 0) return { state: 'down', reason: `VIP ${ip} is not on any interface${expected ? ` (expected on ${expected})` : ''}` };
    const h = expected ? holders.find((x) => x.ifname === expected) : holders[0];
    if (!h) return { state: 'down', reason: `VIP ${ip} is on ${holders.map((x) => x.ifname).join(', ')}, expected on ${expected}` };
    if (h.info.dadfailed) return { state: 'down', reason: `VIP ${ip} on ${h.ifname} failed duplicate address detection` };
    if (h.info.tentative) return { state: 'down', reason: `VIP ${ip} on ${h.ifname} is tentative (duplicate address detection running)` };
    return { state: 'up', reason: `VIP ${ip} is on ${h.ifname}` };
  }

  /** The established TCP connections sourced from the VIP (for connections.<addr>). */
  async connectionCount(addr: string): Promise<number> {
    const e = this.#entry(addr);
    const ip = e ? await this.#ip(e) : addr;
    const argv = ['ss', '-H', '-t', '-n', 'state', 'established', 'src', ssAddr(ip)];
    const r = await this.#cmd(argv, `VIP ${ip}`);
    if (r.code !== 0) throw this.#failed(`VIP ${ip}`, argv, r);
    return countLines(r.stdout);
  }

  /**
   * The checkers <vip> generates: intf.<net> per interface with check="on" (action wait) and ip.<addr>
   * per virtual_addr with check="on" (action stopstart). The interface is resolved now (it needs `ip`).
   */
  async checkers(): Promise<GeneratedChecker[]> {
    const links = await this.#links();
    const out: GeneratedChecker[] = [];
    const seen = new Set<string>();
    for (const e of this.addresses) {
      if (e.interfaceCheck) {
        const ip = await this.#ip(e);
        const { iface, prefixLen, subnet } = this.#placement(e, ip, links);
        const resource = `intf.${subnet ? networkOf(ip, prefixLen) : iface}`;
        if (!seen.has(resource)) {
          seen.add(resource);
          out.push({ resource, kind: 'intf', action: 'wait', when: 'pre', target: iface, check: () => this.checkInterface(iface) });
        }
      }
      if (e.check) {
        const resource = `ip.${e.addr}`;
        if (!seen.has(resource)) {
          seen.add(resource);
          out.push({ resource, kind: 'ip', action: 'stopstart', when: 'prim', target: e.addr, check: () => this.checkAddress(e.addr) });
        }
      }
    }
    return out;
  }

  /** Timers and arping processes still pending (0 after down()). */
  get pendingAnnouncements(): number {
    return this.#timers.size + this.#garps.size;
  }

  // ------------------------------------------------------------------------------------------ up/down

  #addArgv(ip: string, iface: string, prefixLen: number): string[] {
    const argv = ['ip', 'addr', 'add', `${ip}/${prefixLen}`, 'dev', iface];
    if (ipFamily(ip) === 6) return [...argv, 'nodad'];
    const label = this.#labelOf(iface);
    return label ? [...argv, 'label', label] : argv;
  }

  /** The IPv4 label `<dev>:<suffix>`, or '' when there is none or it would not fit. */
  #labelOf(iface: string): string {
    const label = this.#labelSuffix ? `${iface}:${this.#labelSuffix}` : '';
    return label.length <= MAX_IFNAME ? label : '';
  }

  /**
   * Adds the address with the in-process kernel calls and announces it right after (one_side_alias:
   * nothing else has to happen first; one_side's source route comes after, the ARP does not need it).
   * Null when there are none, the address is IPv6, or the add failed (the caller runs `ip`, which reports
   * the error).
   */
  async #fastAdd(ip: string, iface: string, prefixLen: number): Promise<{ announced: boolean } | null> {
    if (!this.#fast || ipFamily(ip) !== 4) return null;
    try {
      const r = await this.#fast.addAddress(ip, prefixLen, iface, this.#labelOf(iface), 1);
      if (r.garpError !== undefined) this.#onEvent({ type: 'warning', error: new StayupError('VIP_FAILED', `VIP ${ip} on ${iface}: gratuitous ARP (in process): ${r.garpError}`) });
      return { announced: r.announced };
    } catch (err) {
      if ((err as { errno?: number }).errno === 17) return { announced: false }; // EEXIST: already there
      this.#onEvent({ type: 'warning', error: new StayupError('VIP_FAILED', `VIP ${ip} on ${iface}: netlink add: ${(err as Error).message}; using ip`) });
      return null;
    }
  }

  async #downOne(e: VipAddress, links: IpLink[]): Promise<VipRemoval> {
    const ip = await this.#ip(e);
    const holders = holdersOf(links, ip);
    const rem: VipRemoval = { addr: e.addr, ip, removedFrom: [], reset: 0 };
    if (holders.length === 0) {
      this.#placed.delete(e.addr);
      return rem;
    }
    const where = `VIP ${ip} on ${holders.map((h) => h.ifname).join(', ')}`;
    if (this.tcpreset) rem.reset = await this.#tcpReset(ip, where, true);
    let routeError: StayupError | undefined;
    if (e.where === 'one_side') {
      // Deleting an address flushes every route whose source is that address: give them theirs back first.
      try {
        await this.#restoreSource(ip, links);
      } catch (err) {
        routeError = this.#asError(err, where);
      }
    }
    for (const h of holders) {
      const argv = ['ip', 'addr', 'del', `${ip}/${h.prefixLen}`, 'dev', h.ifname];
      const r = await this.#cmd(argv, `VIP ${ip} on ${h.ifname}`);
      if (r.code !== 0 && !/not found|Cannot assign requested address/i.test(r.stderr)) throw this.#failed(`VIP ${ip} on ${h.ifname}`, argv, r);
      rem.removedFrom.push(h.ifname);
      this.#onEvent({ type: 'removed', addr: e.addr, ip, iface: h.ifname, prefixLen: h.prefixLen });
    }
    this.#placed.delete(e.addr);
    // Connections accepted between the reset and the removal: free them too (no RST can leave now).
    if (this.tcpreset) rem.reset += await this.#tcpReset(ip, where, false);
    if (routeError) throw routeError;
    return rem;
  }

  /** `ss -K` on TCP sockets sourced from ip; returns how many were reset. Problems are warnings. */
  async #tcpReset(ip: string, where: string, verify: boolean): Promise<number> {
    const argv = ['ss', '-K', '-H', '-t', '-n', 'src', ssAddr(ip)];
    let reset = 0;
    try {
      const r = await this.#cmd(argv, where);
      if (r.code !== 0) {
        this.#warn('VIP_FAILED', `${where}: tcpreset: \`${argv.join(' ')}\` exited ${r.code}: ${oneLine(r.stderr)}`);
        return 0;
      }
      reset = countLines(r.stdout);
      // ss exits 0 even when the kernel refuses (EPERM: no CAP_NET_ADMIN) and says so only on stderr;
      // EOPNOTSUPP (no CONFIG_INET_DIAG_DESTROY) it ignores silently. The count below catches both.
      const refused = /SOCK_DESTROY answers: *(.*)/.exec(r.stderr)?.[1]?.trim();
      if (!verify) return reset;
      const left = ['ss', '-H', '-t', '-n', 'state', 'established', 'src', ssAddr(ip)];
      const r2 = await this.#cmd(left, where);
      const remaining = r2.code === 0 ? countLines(r2.stdout) : 0;
      this.#onEvent({ type: 'tcpreset', ip, reset, remaining });
      if (remaining > 0 || refused) {
        const why = refused
          ? `the kernel refused: ${refused}${/not permitted/i.test(refused) ? ' (stayup needs CAP_NET_ADMIN)' : ''}`
          : 'the kernel may lack CONFIG_INET_DIAG_DESTROY';
        this.#warn(
          'VIP_FAILED',
          `${where}: tcpreset: ${remaining} established connection(s) survived \`ss -K\`; ${why}. ` +
            'They are not reset here: their peers get a reset from the new owner of the VIP on their next packet',
        );
      }
    } catch (err) {
      this.#onEvent({ type: 'warning', error: this.#asError(err, `${where}: tcpreset`) });
    }
    return reset;
  }

  /** one_side: every IPv4 route of the main table out of `iface` gets `src ip`. */
  async #preferSource(ip: string, iface: string): Promise<void> {
    for (const r of await this.#routes()) {
      if (r.dev !== iface || (r.type !== undefined && r.type !== 'unicast') || r.prefsrc === ip) continue;
      const spec = routeSpec(r);
      if (!spec) {
        this.#warn('VIP_FAILED', `VIP ${ip} on ${iface}: route "${r.dst}" has attributes stayup does not rewrite; it keeps its source address`);
        continue;
      }
      const key = routeKey(r);
      if (!this.#origSrc.has(key)) this.#origSrc.set(key, r.prefsrc ?? null);
      const argv = ['ip', 'route', 'replace', ...spec, 'src', ip];
      const res = await this.#cmd(argv, `VIP ${ip} on ${iface}`);
      if (res.code !== 0) throw this.#failed(`VIP ${ip} on ${iface}: making it the source address`, argv, res);
      this.#onEvent({ type: 'route', ip, action: 'prefer', argv });
    }
  }

  /**
   * Before removing a one_side VIP: every route whose source is the VIP goes back to the source it had
   * (remembered by up()), or, when this process did not rewrite it, to the interface's own address for a
   * kernel prefix route and to no source otherwise. The VIP's own prefix route is left to the kernel.
   */
  async #restoreSource(ip: string, links: IpLink[]): Promise<void> {
    for (const r of await this.#routes()) {
      if (r.prefsrc !== ip) continue;
      const spec = routeSpec(r);
      const key = routeKey(r);
      if (!spec) {
        this.#warn('VIP_FAILED', `VIP ${ip}: route "${r.dst}" uses it as source and has attributes stayup does not rewrite; removing the VIP removes that route`);
        continue;
      }
      let src: string | undefined;
      if (this.#origSrc.has(key)) {
        src = this.#origSrc.get(key) ?? undefined;
      } else if (r.protocol === 'kernel' && r.scope === 'link' && r.dst.includes('/')) {
        const [net, len] = r.dst.split('/');
        const own = links
          .find((l) => l.ifname === r.dev)
          ?.addr_info?.find((a) => a.family === 'inet' && a.local !== ip && inSubnet(a.local, net!, Number(len)) && a.prefixlen === Number(len));
        if (!own) continue; // the VIP's own subnet: the kernel deletes this route with the address
        src = own.local;
      }
      const argv = ['ip', 'route', 'replace', ...spec, ...(src ? ['src', src] : [])];
      const res = await this.#cmd(argv, `VIP ${ip} on ${r.dev}`);
      if (res.code !== 0) throw this.#failed(`VIP ${ip} on ${r.dev}: giving route ${r.dst} its source address back`, argv, res);
      this.#origSrc.delete(key);
      this.#onEvent({ type: 'route', ip, action: 'restore', argv });
    }
  }

  // ------------------------------------------------------------------------------- gratuitous ARP

  /**
   * The first burst now (unless the in-process add already sent its first packets: `announced`), the second
   * later, and the arpreroute refreshes.
   */
  #announce(e: VipAddress, ip: string, iface: string, announced: boolean): void {
    // The first packets at once from this process; the arping burst follows as before, a little later,
    // because starting a process stalls this one for milliseconds in the middle of a takeover.
    if (this.#fast && ipFamily(ip) === 4) {
      if (!announced) this.#fast.garp(ip, iface, 1).catch((err: Error) => this.#onEvent({ type: 'warning', error: new StayupError('VIP_FAILED', `VIP ${ip} on ${iface}: gratuitous ARP (in process): ${err.message}`) }));
      this.#after(FAST_GARP_FOLLOW_UP_MS, () => this.#garp(ip, iface, 'burst'));
    } else this.#garp(ip, iface, 'burst');
    if (this.#secondBurstMs > 0) this.#after(this.#secondBurstMs, () => this.#garp(ip, iface, 'repeat'));
    if (e.arpreroute && e.arpIntervalMs > 0) {
      let elapsed = 0;
      const tick = (): void => {
        elapsed += e.arpIntervalMs;
        this.#garp(ip, iface, 'reroute');
        if (elapsed + e.arpIntervalMs <= e.arpElapseMs) this.#after(e.arpIntervalMs, tick);
      };
      if (e.arpIntervalMs <= e.arpElapseMs) this.#after(e.arpIntervalMs, tick);
    }
  }

  /** Bursts send `arping -U` (request) and `arping -A` (reply) side by side; a refresh sends one -U. */
  #garp(ip: string, iface: string, reason: 'burst' | 'repeat' | 'reroute'): void {
    const count = reason === 'reroute' ? 1 : this.#garpCount;
    const modes = reason === 'reroute' ? ['-U'] : ['-U', '-A'];
    for (const mode of modes) {
      const argv = ['arping', mode, '-c', String(count), '-I', iface, '-s', ip, ip];
      const controller = new AbortController();
      const g: Garp = { controller, done: Promise.resolve() };
      g.done = this.#run(argv, { signal: controller.signal, timeoutMs: count * 1000 + 5000 })
        .then((r) => {
          if (r.code !== 0) this.#warn('VIP_FAILED', `VIP ${ip} on ${iface}: gratuitous ARP \`${argv.join(' ')}\` exited ${r.code}: ${oneLine(r.stderr || r.stdout)}`);
        })
        .catch((err: unknown) => {
          if (!controller.signal.aborted) this.#onEvent({ type: 'warning', error: this.#asError(err, `VIP ${ip} on ${iface}: gratuitous ARP`, argv) });
        })
        .finally(() => this.#garps.delete(g));
      this.#garps.add(g);
      this.#onEvent({ type: 'garp', ip, iface, reason, argv });
    }
  }

  #after(ms: number, fn: () => void): void {
    const h = this.#sched.setTimeout(() => {
      this.#timers.delete(h);
      fn();
    }, ms);
    this.#timers.add(h);
  }

  #cancelTimers(): void {
    for (const h of this.#timers) this.#sched.clearTimeout(h);
    this.#timers.clear();
  }

  /** Cancels the timers, kills running arping and waits until they are gone: no ARP leaves after this. */
  async #silence(): Promise<void> {
    this.#cancelTimers();
    const running = [...this.#garps];
    for (const g of running) g.controller.abort();
    await Promise.all(running.map((g) => g.done));
  }

  // ---------------------------------------------------------------------------------------- helpers

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn, fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #entry(addr: string): VipAddress | undefined {
    return this.addresses.find((e) => e.addr === addr) ?? this.addresses.find((e) => this.#ips.get(e.addr) === addr);
  }

  async #ip(e: VipAddress): Promise<string> {
    if (ipFamily(e.addr)) return e.addr;
    const cached = this.#ips.get(e.addr);
    if (cached) return cached;
    let ip: string;
    try {
      ip = await this.#resolveHost(e.addr);
    } catch (err) {
      throw new StayupError('VIP_FAILED', `VIP ${e.addr}: cannot resolve the host name: ${(err as Error).message}`, { cause: err });
    }
    if (!ipFamily(ip)) throw new StayupError('VIP_FAILED', `VIP ${e.addr}: the host name resolved to "${ip}", not an IP address`);
    this.#ips.set(e.addr, ip);
    return ip;
  }

  /** The interface and prefix length for a VIP, from the configuration and the node's addresses. */
  #placement(e: VipAddress, ip: string, links: IpLink[]): { iface: string; prefixLen: number; subnet: boolean } {
    const family: Family = ipFamily(ip) ?? 4;
    const full = family === 4 ? 32 : 128;
    const configured = e.netmask === undefined ? undefined : netmaskToPrefix(e.netmask, family);
    if (e.interface !== undefined) {
      const link = links.find((l) => l.ifname === e.interface);
      if (!link) {
        throw new StayupError('VIP_NO_INTERFACE', `VIP ${ip}: interface ${e.interface} does not exist on this node`, { details: { ip, iface: e.interface } });
      }
      const m = subnetMatches([link], ip)[0];
      return { iface: link.ifname, prefixLen: configured ?? m?.prefixLen ?? full, subnet: m !== undefined };
    }
    const matches = subnetMatches(links, ip);
    const best = matches[0];
    if (!best) {
      // Only the VIP itself holds the subnet (e.g. the interface's own address was removed): keep it there.
      const held = holdersOf(links, ip)[0];
      if (held) return { iface: held.ifname, prefixLen: configured ?? held.prefixLen, subnet: held.prefixLen < full };
      const have = links
        .flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === (family === 4 ? 'inet' : 'inet6') && a.scope !== 'host').map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`))
        .join(', ');
      throw new StayupError(
        'VIP_NO_INTERFACE',
        `VIP ${ip}: no interface has an address in its subnet (${have || 'no addresses'}); set <interface name="..."> or add an address in the VIP's subnet`,
        { details: { ip } },
      );
    }
    const rival = matches.find((m) => m.ifname !== best.ifname && m.prefixLen === best.prefixLen);
    if (rival) {
      throw new StayupError(
        'VIP_NO_INTERFACE',
        `VIP ${ip}: both ${best.ifname} (${best.local}/${best.prefixLen}) and ${rival.ifname} (${rival.local}/${rival.prefixLen}) hold its subnet; set <interface name="...">`,
        { details: { ip, candidates: [best.ifname, rival.ifname] } },
      );
    }
    return { iface: best.ifname, prefixLen: configured ?? best.prefixLen, subnet: true };
  }

  async #links(): Promise<IpLink[]> {
    const argv = ['ip', '-j', 'addr', 'show'];
    const r = await this.#cmd(argv, 'listing the addresses');
    if (r.code !== 0) throw this.#failed('listing the addresses', argv, r);
    return this.#parse<IpLink>(r.stdout, argv);
  }

  async #routes(): Promise<IpRoute[]> {
    const argv = ['ip', '-j', '-4', 'route', 'show', 'table', 'main'];
    const r = await this.#cmd(argv, 'listing the routes');
    if (r.code !== 0) throw this.#failed('listing the routes', argv, r);
    return this.#parse<IpRoute>(r.stdout, argv);
  }

  #parse<T>(stdout: string, argv: string[]): T[] {
    try {
      return parseIpJson<T>(stdout);
    } catch (err) {
      throw new StayupError('VIP_FAILED', `\`${argv.join(' ')}\` printed something that is not JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  async #cmd(argv: string[], what: string): Promise<CommandResult> {
    try {
      return await this.#run(argv, { timeoutMs: this.#timeoutMs });
    } catch (err) {
      throw this.#asError(err, what, argv);
    }
  }

  #failed(what: string, argv: string[], r: CommandResult): StayupError {
    const why = r.code === 124 ? 'timed out' : `exited ${r.code}`;
    return new StayupError('VIP_FAILED', `${what}: \`${argv.join(' ')}\` ${why}: ${oneLine(r.stderr || r.stdout) || 'no message'}`, {
      details: { argv, code: r.code, stderr: r.stderr },
    });
  }

  #asError(err: unknown, what: string, argv?: string[]): StayupError {
    if (isStayupError(err)) return err;
    const e = err as NodeJS.ErrnoException;
    const pkg = argv?.[0] === 'arping' ? 'iputils-arping' : 'iproute2';
    const msg = e?.code === 'ENOENT' && argv ? `${argv[0]} is not installed (package ${pkg})` : `${e?.message ?? String(err)}`;
    return new StayupError('VIP_FAILED', `${what}: ${argv ? `cannot run \`${argv.join(' ')}\`: ` : ''}${msg}`, { cause: err });
  }

  #warn(code: ErrorCode, message: string): void {
    this.#onEvent({ type: 'warning', error: new StayupError(code, message) });
  }
}

/** `ip route replace` arguments that recreate the route (without its source), or undefined if we cannot. */
/**
 * This process's interfaces and addresses as `ip -j addr show` would list them (addresses only).
 * getifaddrs names an IPv4 address by its label ("eth0:vip"): it belongs to eth0.
 */
function osLinks(): IpLink[] {
  const byName = new Map<string, IpLink>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const ifname = name.split(':')[0]!;
    let link = byName.get(ifname);
    if (!link) {
      link = { ifindex: byName.size + 1, ifname, flags: ['UP'], addr_info: [] };
      byName.set(ifname, link);
    }
    for (const a of addrs ?? []) {
      link.addr_info!.push({
        family: a.family === 'IPv6' ? 'inet6' : 'inet',
        local: a.address.replace(/%.*$/, ''),
        prefixlen: Number((a.cidr ?? '/0').split('/')[1]),
        scope: a.internal ? 'host' : 'global',
        ...(name !== ifname ? { label: name } : {}),
      });
    }
  }
  return [...byName.values()];
}

export function routeSpec(r: IpRoute): string[] | undefined {
  if (Object.keys(r).some((k) => !ROUTE_KEYS.has(k))) return undefined;
  if ((r.flags ?? []).some((f) => !ROUTE_FLAGS.has(f))) return undefined;
  if (!r.dev || !r.dst) return undefined;
  return [
    r.dst,
    ...(r.gateway ? ['via', r.gateway] : []),
    'dev',
    r.dev,
    ...(r.protocol ? ['proto', r.protocol] : []),
    ...(r.scope ? ['scope', r.scope] : []),
    ...(r.metric !== undefined ? ['metric', String(r.metric)] : []),
    ...((r.flags ?? []).includes('onlink') ? ['onlink'] : []),
  ];
}

function routeKey(r: IpRoute): string {
  return `${r.dst}|${r.metric ?? 0}|${r.dev ?? ''}`;
}

function countLines(s: string): number {
  return s.split('\n').filter((l) => l.trim() !== '').length;
}

function oneLine(s: string): string {
  return s.trim().replace(/\s*\n\s*/g, ' / ').slice(0, 500);
}
