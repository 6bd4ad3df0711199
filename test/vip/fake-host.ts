// A recording CommandRunner for the VIP manager's unit tests: it answers the few `ip`, `ss` and `arping`
// command lines the manager uses from an in-memory model of one host (interfaces, addresses, routes,
// sockets), records every call, and refuses anything else, so a test fails on an unexpected command.
import type { CommandOptions, CommandResult, CommandRunner } from '../../src/vip/runner.ts';
import type { Scheduler } from '../../src/vip/manager.ts';
import type { VipInterface, Vip, VirtualAddr } from '../../src/config/userconfig/types.ts';
import type { IpRoute } from '../../src/vip/net.ts';

export interface FakeAddr {
  local: string;
  prefixlen: number;
  label?: string;
  noprefixroute?: boolean;
  dadfailed?: boolean;
}

export interface FakeLink {
  ifname: string;
  up?: boolean;
  carrier?: boolean;
  addrs: FakeAddr[];
}

export interface FakeSocket {
  src: string;
  state: 'ESTAB' | 'TIME-WAIT';
}

const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
const err = (code: number, stderr: string): CommandResult => ({ code, stdout: '', stderr });

export class FakeHost {
  links: FakeLink[];
  routes: IpRoute[] = [];
  sockets: FakeSocket[] = [];
  /** Every command line, space-joined, in call order (plus "ABORT <argv>" when an arping is killed). */
  calls: string[] = [];
  /** false: `ss -K` kills nothing (a kernel without CONFIG_INET_DIAG_DESTROY). */
  destroySupported = true;
  /** true: arping runs until aborted (like a real 3-packet burst that has not finished). */
  arpingHangs = false;
  /** Programs that are not installed: running them rejects with ENOENT. */
  missing = new Set<string>();
  /** Return a result to override the model for one command line. */
  override: (line: string) => CommandResult | undefined = () => undefined;
  running = 0;

  constructor(links: FakeLink[]) {
    this.links = links;
  }

  /** Calls other than the read-only listings, for exact command-sequence assertions. */
  get actions(): string[] {
    return this.calls.filter((c) => !c.startsWith('ip -j '));
  }

  clear(): void {
    this.calls = [];
  }

  run: CommandRunner = (argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> => {
    const line = argv.join(' ');
    this.calls.push(line);
    if (this.missing.has(argv[0]!)) {
      const e = Object.assign(new Error(`spawn ${argv[0]} ENOENT`), { code: 'ENOENT' });
      return Promise.reject(e);
    }
    const o = this.override(line);
    if (o) return Promise.resolve(o);
    if (argv[0] === 'arping') return this.#arping(line, opts);
    return Promise.resolve(this.#answer([...argv]));
  };

  #arping(line: string, opts: CommandOptions): Promise<CommandResult> {
    if (!this.arpingHangs) return Promise.resolve(ok('Sent 3 probes\n'));
    this.running++;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.running--;
        this.calls.push(`ABORT ${line}`);
        reject(Object.assign(new Error('The operation was aborted'), { name: 'AbortError' }));
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      void resolve;
    });
  }

  holders(ip: string): string[] {
    return this.links.filter((l) => l.addrs.some((a) => a.local === ip)).map((l) => l.ifname);
  }

  #link(name: string): FakeLink | undefined {
    return this.links.find((l) => l.ifname === name);
  }

  #linkJson(l: FakeLink, i: number): Record<string, unknown> {
    const flags = ['BROADCAST', 'MULTICAST'];
    if (l.up !== false) flags.push('UP');
    if (l.up !== false && l.carrier !== false) flags.push('LOWER_UP');
    if (l.up !== false && l.carrier === false) flags.unshift('NO-CARRIER');
    return {
      ifindex: i + 1,
      ifname: l.ifname,
      flags,
      mtu: 1500,
      operstate: l.up === false ? 'DOWN' : l.carrier === false ? 'DOWN' : 'UP',
      address: `02:00:00:00:00:0${i + 1}`,
      addr_info: l.addrs.map((a) => ({
        family: a.local.includes(':') ? 'inet6' : 'inet',
        local: a.local,
        prefixlen: a.prefixlen,
        ...(a.noprefixroute ? { noprefixroute: true } : {}),
        ...(a.dadfailed ? { dadfailed: true } : {}),
        scope: a.local.startsWith('127.') || a.local === '::1' ? 'host' : 'global',
        ...(a.local.includes(':') ? {} : { label: a.label ?? l.ifname }),
      })),
    };
  }

  #answer(a: string[]): CommandResult {
    const line = a.join(' ');
    if (line === 'ip -j addr show') return ok(JSON.stringify(this.links.map((l, i) => this.#linkJson(l, i))));
    if (line.startsWith('ip -j link show dev ')) {
      const i = this.links.findIndex((l) => l.ifname === a[5]);
      if (i < 0) return err(1, `Device "${a[5]}" does not exist.\n`);
      const j = this.#linkJson(this.links[i]!, i);
      delete j.addr_info;
      return ok(JSON.stringify([j]));
    }
    if (line === 'ip -j -4 route show table main') return ok(JSON.stringify(this.routes));
    if (a[0] === 'ip' && a[1] === 'addr' && (a[2] === 'add' || a[2] === 'del')) {
      const [local, len] = a[3]!.split('/');
      const dev = a[a.indexOf('dev') + 1]!;
      const l = this.#link(dev);
      if (!l) return err(1, `Cannot find device "${dev}"\n`);
      const fam = local!.includes(':') ? 'ipv6' : 'ipv4';
      const has = l.addrs.findIndex((x) => x.local === local && x.prefixlen === Number(len));
      if (a[2] === 'add') {
        if (has >= 0) return err(2, `Error: ${fam}: Address already assigned.\n`);
        const li = a.indexOf('label');
        l.addrs.push({ local: local!, prefixlen: Number(len), ...(li > 0 ? { label: a[li + 1]! } : {}) });
        return ok();
      }
      if (has < 0) return err(2, `Error: ${fam}: Address not found.\n`);
      l.addrs.splice(has, 1);
      // The kernel flushes the routes whose source is the deleted address.
      this.routes = this.routes.filter((r) => r.prefsrc !== local);
      return ok();
    }
    if (a[0] === 'ip' && a[1] === 'route' && a[2] === 'replace') {
      const r: IpRoute = { dst: a[3]!, flags: [] };
      for (let i = 4; i < a.length; i++) {
        const k = a[i]!;
        const v = a[i + 1];
        if (k === 'via') (r.gateway = v!), i++;
        else if (k === 'dev') (r.dev = v!), i++;
        else if (k === 'proto') (r.protocol = v!), i++;
        else if (k === 'scope') (r.scope = v!), i++;
        else if (k === 'metric') (r.metric = Number(v)), i++;
        else if (k === 'src') (r.prefsrc = v!), i++;
        else if (k === 'onlink') r.flags!.push('onlink');
        else return err(1, `Error: unexpected "${k}"\n`);
      }
      const i = this.routes.findIndex((x) => x.dst === r.dst && (x.metric ?? 0) === (r.metric ?? 0));
      // Keep the key order `ip -j` prints, so a restored route compares equal.
      const norm: IpRoute = {
        dst: r.dst,
        ...(r.gateway ? { gateway: r.gateway } : {}),
        dev: r.dev!,
        ...(r.protocol ? { protocol: r.protocol } : {}),
        ...(r.scope ? { scope: r.scope } : {}),
        ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}),
        ...(r.metric !== undefined ? { metric: r.metric } : {}),
        flags: r.flags!,
      };
      if (i >= 0) this.routes[i] = norm;
      else this.routes.push(norm);
      return ok();
    }
    if (a[0] === 'ss') {
      const src = a[a.indexOf('src') + 1]!.replace(/^\[|\]$/g, '');
      const fmt = (s: FakeSocket): string => `${s.state} 0 0 ${src}:8080 198.18.1.250:40000`;
      if (a[1] === '-K') {
        const hit = this.sockets.filter((s) => s.src === src && s.state === 'ESTAB');
        if (!this.destroySupported) return ok();
        this.sockets = this.sockets.filter((s) => !hit.includes(s));
        return ok(hit.map(fmt).join('\n') + (hit.length ? '\n' : ''));
      }
      const est = this.sockets.filter((s) => s.src === src && s.state === 'ESTAB');
      return ok(est.map(fmt).join('\n') + (est.length ? '\n' : ''));
    }
    throw new Error(`FakeHost: unexpected command: ${line}`);
  }
}

/** A manual clock: timers fire only when the test advances it. */
export class FakeScheduler implements Scheduler {
  now = 0;
  #seq = 0;
  #tasks = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#tasks.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.#tasks.delete(h as number);
  }

  get pending(): number {
    return this.#tasks.size;
  }

  /** Runs every timer due up to now + ms, in time order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const next = [...this.#tasks.entries()].filter(([, t]) => t.at <= end).sort((x, y) => x[1].at - y[1].at || x[0] - y[0])[0];
      if (!next) break;
      this.#tasks.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
}

/** A typed <vip> with one <interface> and its <virtual_addr>s (defaults as the schema fills them). */
export function vipConfig(
  addrs: Array<Partial<VirtualAddr> & { addr: string }>,
  intf: Partial<Omit<VipInterface, 'realInterface' | 'virtualInterface'>> = {},
  vip: Partial<Pick<Vip, 'tcpreset'>> = {},
): Vip {
  return {
    tcpreset: vip.tcpreset ?? true,
    scriptcontrol: false,
    groups: [],
    interfaces: [
      {
        check: true,
        arpreroute: false,
        arpIntervalMs: 60_000,
        arpElapseMs: 1_200_000,
        ...intf,
        realInterface: { virtualAddrs: addrs.map((a) => ({ where: 'one_side_alias', check: true, connections: false, ...a })) },
      },
    ],
  };
}

/** The lab-like host: eth0 198.18.1.1/24 with a default route, and lo. */
export function oneNic(): FakeHost {
  const h = new FakeHost([
    { ifname: 'lo', addrs: [{ local: '127.0.0.1', prefixlen: 8 }] },
    { ifname: 'eth0', addrs: [{ local: '198.18.1.1', prefixlen: 24 }] },
  ]);
  h.routes = [
    { dst: 'default', gateway: '198.18.1.254', dev: 'eth0', flags: [] },
    { dst: '198.18.1.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '198.18.1.1', flags: [] },
  ];
  return h;
}

/** Lets queued promise callbacks run. */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
