// Replication paths: one namespace for all the replicated directories of a module.
//
//   `<dir index>`              the replicated directory itself (its index in <rfs>, from 0)
//   `<dir index>/<relative>`   an object under it (no empty, "." or ".." segment, no NUL)
//
// The peer refuses any other form (a frame cannot name a file outside the replicated directories), and
// resolves the relative part beneath its own root descriptor (RESOLVE_BENEATH in the native layer).

import type { Replicated } from '../config/userconfig/types.ts';

export function replPath(dirIndex: number, rel: string): string {
  return rel === '' ? String(dirIndex) : `${dirIndex}/${rel}`;
}

export function splitReplPath(p: string): { dirIndex: number; rel: string } {
  const slash = p.indexOf('/');
  if (slash < 0) return { dirIndex: Number(p), rel: '' };
  return { dirIndex: Number(p.slice(0, slash)), rel: p.slice(slash + 1) };
}

export function parentOf(p: string): string | null {
  const slash = p.lastIndexOf('/');
  return slash < 0 ? null : p.slice(0, slash);
}

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Why `p` is not a valid replication path for `dirCount` directories, or null when it is. */
export function replPathProblem(p: string, dirCount: number): string | null {
  if (p.includes('\0')) return 'contains NUL';
  const parts = p.split('/');
  const idx = parts[0]!;
  if (!/^\d{1,3}$/.test(idx) || Number(idx) >= dirCount) return `directory index "${idx}" is not one of 0..${dirCount - 1}`;
  for (const seg of parts.slice(1)) {
    if (seg === '' || seg === '.' || seg === '..') return `segment "${seg}" is not allowed`;
  }
  return null;
}

/**
 * <notreplicated path|regexpath> of one replicated directory. `path` excludes that relative path and
 * everything under it; `regexpath` (POSIX ERE, matched against the relative path) excludes matches, or,
 * written "!regex", replicates only what matches.
 */
export class ReplicationFilter {
  private readonly prefixes: string[];
  private readonly excludes: RegExp[];
  private readonly onlies: RegExp[];

  constructor(rules: Replicated['notReplicated']) {
    this.prefixes = rules.flatMap((r) => (r.path !== undefined ? [r.path.replace(/^\/+|\/+$/g, '')] : []));
    const regexes = rules.flatMap((r) => (r.regexpath !== undefined ? [r.regexpath] : []));
    this.excludes = regexes.filter((r) => !r.startsWith('!')).map((r) => new RegExp(r));
    this.onlies = regexes.filter((r) => r.startsWith('!')).map((r) => new RegExp(r.slice(1)));
  }

  /** Is the relative path `rel` ('' for the root) replicated? */
  replicates(rel: string): boolean {
    if (rel === '') return true;
    for (const p of this.prefixes) if (rel === p || rel.startsWith(`${p}/`)) return false;
    for (const r of this.excludes) if (r.test(rel)) return false;
    if (this.onlies.length && !this.onlies.some((r) => r.test(rel))) return false;
    return true;
  }
}
