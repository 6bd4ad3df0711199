import { isStayupError, StayupError } from '../errors/stayup-error.ts';
import { nodePaths } from '../util/paths.ts';
import type { NodeClient } from './client.ts';
import { resolveTargets, type TargetOptions } from './targets.ts';

/** What one node's run of a command gives: text to print and, for `state -lq`, an exit code. */
export interface NodeOutput {
  text: string;
  exitCode?: number;
}

export function errorText(e: unknown): string {
  if (isStayupError(e)) return e.message;
  return `internal error: ${(e as Error)?.stack ?? String(e)}`;
}

export function exitCodeOf(e: unknown): number {
  return isStayupError(e) ? e.exitCode : 1;
}

/**
 * Runs a command on this node, or on every -H node at once, and prints one result per node. Without -H
 * the output is the command's own; with -H each node's block is headed by its name and address, and the
 * exit code is 0 only if every node succeeded (and, with exitCodesWithHosts, gave exit code 0).
 */
export async function runOnTargets(
  opts: TargetOptions,
  fn: (client: NodeClient) => Promise<NodeOutput | string>,
  how: { exitCodesWithHosts?: boolean } = {},
): Promise<number> {
  const paths = nodePaths();
  let targets: NodeClient[];
  try {
    targets = resolveTargets(paths, opts);
  } catch (e) {
    process.stderr.write(`stayup: ${errorText(e)}\n`);
    return exitCodeOf(e);
  }
  if (!opts.hosts) {
    try {
      const out = normalise(await fn(targets[0]!));
      if (out.text) process.stdout.write(out.text.endsWith('\n') ? out.text : out.text + '\n');
      return out.exitCode ?? 0;
    } catch (e) {
      process.stderr.write(`stayup: ${errorText(e)}\n`);
      return exitCodeOf(e);
    }
  }
  const results = await Promise.allSettled(targets.map(async (t) => normalise(await fn(t))));
  let code = 0;
  results.forEach((r, i) => {
    const t = targets[i]!;
    if (r.status === 'fulfilled') {
      process.stdout.write(`--- ${t.name} (${t.address}): OK\n`);
      if (r.value.text) process.stdout.write(indent(r.value.text));
      if (how.exitCodesWithHosts && code === 0) code = r.value.exitCode ?? 0;
    } else {
      const e = r.reason;
      process.stdout.write(`--- ${t.name} (${t.address}): ERROR ${isStayupError(e) ? e.code : 'INTERNAL'}\n`);
      process.stdout.write(indent(errorText(e)));
      if (code === 0) code = exitCodeOf(e);
    }
  });
  return code;
}

function normalise(x: NodeOutput | string): NodeOutput {
  return typeof x === 'string' ? { text: x } : x;
}

function indent(text: string): string {
  return text.replace(/\n$/, '').split('\n').map((l) => `    ${l}\n`).join('');
}

/** The -H option of the command line (global), if given. */
export function hostsOf(cmd: { optsWithGlobals(): unknown }): string | undefined {
  return (cmd.optsWithGlobals() as { hosts?: string }).hosts;
}

/** A module name from -m, else $SAFEMODULE (set for module scripts), else an error. */
export function moduleName(opt: string | undefined): string {
  const m = opt ?? process.env.SAFEMODULE;
  if (!m) throw new StayupError('BAD_ARGUMENT', 'which module? give -m MODULE');
  return m;
}

/** Left-aligned text table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
