// Syntax checks for network addresses in configuration files. Nothing here touches the network: a host
// name is only checked for RFC 1123 shape; whether it resolves is the runtime's business.
import { isIPv4, isIPv6 } from 'node:net';

export type AddressKind = 'ipv4' | 'ipv6' | 'hostname';

/**
 * Classifies an address written as an IPv4 literal, an IPv6 literal (optionally in brackets, as
 * cluster.xml allows) or an RFC 1123 host name. Returns undefined when it is none of them, including
 * dotted numbers that are not a valid IPv4 address ("10.0.0.300" is a typo, not a host name).
 */
export function addressKind(text: string): AddressKind | undefined {
  if (isIPv4(text)) return 'ipv4';
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (isIPv6(unbracketed)) return 'ipv6';
  if (/^[\d.]+$/.test(text)) return undefined;
  return isHostname(text) ? 'hostname' : undefined;
}

/** RFC 1123: dot-separated labels of letters, digits and inner hyphens, 1-63 characters, 253 in all. */
export function isHostname(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  const labels = text.endsWith('.') ? text.slice(0, -1).split('.') : text.split('.');
  return labels.every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

/** Removes the brackets of a bracketed IPv6 literal; other addresses are returned unchanged. */
export function unbracket(text: string): string {
  return text.startsWith('[') && text.endsWith(']') && isIPv6(text.slice(1, -1)) ? text.slice(1, -1) : text;
}

/** A MAC address as six colon- or hyphen-separated hex pairs. */
export function isMacAddress(text: string): boolean {
  return /^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$/.test(text);
}

/** A netmask as a prefix length (0-128) or a contiguous dotted IPv4 mask such as 255.255.255.0. */
export function isNetmask(text: string): boolean {
  if (/^\d{1,3}$/.test(text)) return Number(text) <= 128;
  if (!isIPv4(text)) return false;
  const bits = text
    .split('.')
    .map((o) => Number(o).toString(2).padStart(8, '0'))
    .join('');
  return /^1*0*$/.test(bits);
}
