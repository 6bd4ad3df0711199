// Address arithmetic and the parts of `ip -j` output the virtual IP manager reads. Pure: no I/O here.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** The family of an IP literal, or undefined when it is not one. */
export function ipFamily(text: string): Family | undefined {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  return undefined;
}

/** The address as an unsigned integer (32 or 128 bits). */
export function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return ip.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  if (!isIPv6(ip)) throw new RangeError(`not an IP address: ${ip}`);
  let text = ip.replace(/%.*$/, '');
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipToBigInt(v4[1]!);
    text = `${text.slice(0, -v4[1]!.length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** The text form of an integer address (IPv6 without zero compression, lower case). */
export function bigIntToIp(n: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((n >> s) & 0xffffn).toString(16));
  return groups.join(':');
}

function bits(family: Family): bigint {
  return family === 4 ? 32n : 128n;
}

/** The network address of ip/prefixLen, e.g. 198.18.1.0 for 198.18.1.100/24. */
export function networkOf(ip: string, prefixLen: number, family: Family = ipFamily(ip) ?? 4): string {
  const width = bits(family);
  const host = width - BigInt(prefixLen);
  const n = ipToBigInt(ip);
  return bigIntToIp((n >> host) << host, family);
}

/** Whether `ip` lies in the subnet net/prefixLen (both of the same family). */
export function inSubnet(ip: string, net: string, prefixLen: number): boolean {
  const fa = ipFamily(ip);
  const fb = ipFamily(net);
  if (fa === undefined || fa !== fb) return false;
  const host = bits(fa) - BigInt(prefixLen);
  return ipToBigInt(ip) >> host === ipToBigInt(net) >> host;
}

/**
 * A <virtual_addr netmask> as a prefix length: "24", "/24" or a contiguous dotted mask "255.255.255.0".
 * Undefined when it is none of them (the config validator already refused those).
 */
export function netmaskToPrefix(netmask: string, family: Family): number | undefined {
  const t = netmask.trim().replace(/^\//, '');
  if (/^\d{1,3}$/.test(t)) {
    const n = Number(t);
    return n <= (family === 4 ? 32 : 128) ? n : undefined;
  }
  if (family !== 4 || !isIPv4(t)) return undefined;
  const b = ipToBigInt(t).toString(2).padStart(32, '0');
  if (!/^1*0*$/.test(b)) return undefined;
  const firstZero = b.indexOf('0');
  return firstZero === -1 ? 32 : firstZero;
}

/** The address form `ss` filters accept: IPv6 in brackets. */
export function ssAddr(ip: string): string {
  return ipFamily(ip) === 6 ? `[${ip}]` : ip;
}

// ------------------------------------------------------------------------------------ `ip -j` output

/** One address of `ip -j addr show` (the fields we read). */
export interface IpAddrInfo {
  family: 'inet' | 'inet6' | string;
  local: string;
  prefixlen: number;
  scope?: string;
  label?: string;
  secondary?: boolean;
  tentative?: boolean;
  dadfailed?: boolean;
  noprefixroute?: boolean;
}

/** One interface of `ip -j addr show` / `ip -j link show`. */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  operstate?: string;
  address?: string;
  addr_info?: IpAddrInfo[];
}

/** One route of `ip -j route show`. */
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  type?: string;
  flags?: string[];
  [other: string]: unknown;
}

/** Parses `ip -j` output; an empty answer is an empty list. */
export function parseIpJson<T>(stdout: string): T[] {
  const t = stdout.trim();
  if (t === '') return [];
  const v: unknown = JSON.parse(t);
  if (!Array.isArray(v)) throw new SyntaxError('ip -j did not print a JSON array');
  // `ip -j addr` prints an empty {} for interfaces filtered out by -4/-6 on some versions.
  return v.filter((e) => e && typeof e === 'object' && Object.keys(e as object).length > 0) as T[];
}

/** The IPv4/IPv6 family name `ip` uses. */
export function ipFamilyName(family: Family): 'inet' | 'inet6' {
  return family === 4 ? 'inet' : 'inet6';
}

/** The interfaces that hold `ip`, with the prefix length it was added with. */
export function holdersOf(links: readonly IpLink[], ip: string): Array<{ ifname: string; prefixLen: number; info: IpAddrInfo }> {
  const fam = ipFamilyName(ipFamily(ip) ?? 4);
  const want = ipToBigInt(ip);
  const out: Array<{ ifname: string; prefixLen: number; info: IpAddrInfo }> = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family === fam && ipFamily(a.local) !== undefined && ipToBigInt(a.local) === want) out.push({ ifname: l.ifname, prefixLen: a.prefixlen, info: a });
    }
  }
  return out;
}

/**
 * The interfaces with an address (other than `ip` itself) whose subnet holds `ip`, longest prefix first.
 * Host routes (/32, /128) never match.
 */
export function subnetMatches(links: readonly IpLink[], ip: string): Array<{ ifname: string; local: string; prefixLen: number }> {
  const family = ipFamily(ip) ?? 4;
  const fam = ipFamilyName(family);
  const full = family === 4 ? 32 : 128;
  const out: Array<{ ifname: string; local: string; prefixLen: number }> = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family !== fam || a.prefixlen >= full || ipFamily(a.local) !== family) continue;
      if (ipToBigInt(a.local) === ipToBigInt(ip)) continue;
      if (family === 6 && /^fe80:/i.test(a.local)) continue;
      if (inSubnet(ip, a.local, a.prefixlen)) out.push({ ifname: l.ifname, local: a.local, prefixLen: a.prefixlen });
    }
  }
  return out.sort((x, y) => y.prefixLen - x.prefixLen);
}
