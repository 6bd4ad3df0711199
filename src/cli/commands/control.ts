// Module control commands (reference §1.3): start, stop, restart, stopstart, forcestop, swap [nosync],
// prim, second [fullsync], primforce, and the waits. Each runs on this node or on every -H node at once. Module
// scripts call them without -m (SAFEMODULE) and with -i to be counted by maxloop.
import type { Command } from 'commander';
import { StayupError } from '../../errors/stayup-error.ts';
import type { ModuleStatus } from '../../daemon/module-manager.ts';
import type { NodeClient } from '../client.ts';
import type { MirrorCommandName } from '../../mirror/types.ts';
import { runOnTargets, moduleName, hostsOf } from '../run.ts';

/**
 * The machine's commands (names checked by the type). `flag`: the one optional word a command takes
 * (`swap nosync`, `second fullsync`), sent as a boolean of the same name.
 */
const COMMANDS: Array<{ name: MirrorCommandName; help: string; identity: boolean; flag?: { name: 'nosync' | 'fullsync'; help: string } }> = [
  { name: 'start', help: 'start the module (a mirror node chooses primary, secondary or WAIT by itself)', identity: false },
  { name: 'stop', help: 'stop the module', identity: true },
  { name: 'restart', help: 'run the stop then start scripts of the current state, without changing state', identity: true },
  { name: 'stopstart', help: 'stop then start the module (on a primary: a failover)', identity: true },
  { name: 'forcestop', help: 'stop at once: running scripts are killed, only forced stops run', identity: false },
  { name: 'prim', help: 'mirror: start as primary (refused if the other node is primary)', identity: false },
  {
    name: 'second',
    help: 'mirror: start as secondary (waits for a primary); fullsync: its reintegration compares and copies everything',
    identity: false,
    flag: { name: 'fullsync', help: 'compare and copy everything (the way out of "abnormal delta between the dates of the last synchronization")' },
  },
  {
    name: 'swap',
    help: 'mirror: exchange the primary and secondary roles (nosync: without resynchronisation)',
    identity: true,
    flag: { name: 'nosync', help: 'the old primary becomes secondary without resynchronisation' },
  },
  { name: 'primforce', help: 'mirror: start as primary even after an interrupted reintegration', identity: false },
];

/** A wait is a series of long polls of at most this long, so proxies and the daemon never hold one for long. */
export const WAIT_SLICE_MS = 60_000;
/**
 * How much longer than its slice the CLI waits for one long poll's answer: the daemon answers
 * WAIT_TIMEOUT at the end of the slice, and that answer must arrive before the CLI gives up on the
 * connection (with equal times the CLI lost the race and said "cannot reach the stayup daemon").
 */
export const WAIT_ANSWER_GRACE_MS = 15_000;

/** Waits until the module is stable in one of `states`, in long polls of `sliceMs`; WAIT_TIMEOUT after `timeoutMs`. */
export async function waitForState(c: NodeClient, module: string, states: string[], timeoutMs: number | undefined, sliceMs = WAIT_SLICE_MS): Promise<ModuleStatus> {
  const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    const slice = Math.round(Math.max(0, Math.min(sliceMs, left)));
    try {
      return await c.call<ModuleStatus>('GET', `/api/v1/modules/${encodeURIComponent(module)}/wait?states=${states.join(',')}&timeoutMs=${slice}`, undefined, {
        timeoutMs: slice + WAIT_ANSWER_GRACE_MS,
      });
    } catch (e) {
      if (!(e instanceof StayupError) || e.code !== 'WAIT_TIMEOUT' || Date.now() >= deadline) throw e;
    }
  }
}

function parseTimeout(t: string | undefined): number | undefined {
  if (t === undefined) return undefined;
  if (!/^\d+$/.test(t)) throw new StayupError('BAD_ARGUMENT', `-t: a number of seconds, got "${t}"`);
  return Number(t) * 1000;
}

function line(s: ModuleStatus, node: string | null | undefined): string {
  return `${node ?? ''}${node ? ' ' : ''}${s.module} ${s.state} (${s.qualifier})${s.reason ? `: ${s.reason}` : ''}`;
}

export function registerControlCommands(program: Command): void {
  for (const spec of COMMANDS) {
    const cmd = program.command(spec.name).description(spec.help).option('-m, --module <name>', 'module (default: $SAFEMODULE, set for module scripts)');
    if (spec.flag) cmd.argument(`[${spec.flag.name}]`, spec.flag.help);
    if (spec.identity) cmd.option('-i, --identity <who>', 'automated caller (checker, script): counted by maxloop');
    cmd.action(async (...args: unknown[]) => {
      const word = spec.flag ? (args.shift() as string | undefined) : undefined;
      const [opts, c] = args as [{ module?: string; identity?: string }, Command];
      if (word !== undefined && word !== spec.flag?.name) {
        process.stderr.write(`stayup: ${spec.name}: unknown argument "${word}" (only "${spec.flag!.name}")\n`);
        process.exitCode = 2;
        return;
      }
      process.exitCode = await runOnTargets({ hosts: hostsOf(c) }, async (client) => {
        const m = moduleName(opts.module);
        const r = await client.call<ModuleStatus & { message: string; node?: string | null }>('POST', `/api/v1/modules/${encodeURIComponent(m)}/command`, {
          command: spec.name,
          ...(word ? { [word]: true } : {}),
          ...(opts.identity ? { identity: opts.identity } : {}),
        });
        return `${m}: ${spec.name}: ${r.message} (now ${r.state} ${r.qualifier})`;
      });
    });
  }

  const waits: Array<{ name: string; help: string; states: string[] }> = [
    { name: 'waitstart', help: 'wait until the start has finished (ALONE, PRIM, SECOND, UP, or blocked in WAIT)', states: ['ALONE', 'PRIM', 'SECOND', 'UP', 'WAIT'] },
    { name: 'waitstop', help: 'wait until the module is stopped', states: ['STOP'] },
  ];
  for (const w of waits) {
    program
      .command(w.name)
      .description(w.help)
      .option('-m, --module <name>', 'module (default: $SAFEMODULE)')
      .option('-t, --timeout <seconds>', 'give up after this many seconds (exit 1, WAIT_TIMEOUT)')
      .action(async (opts: { module?: string; timeout?: string }, c: Command) => {
        process.exitCode = await runOnTargets({ hosts: hostsOf(c) }, async (client) => {
          const s = await waitForState(client, moduleName(opts.module), w.states, parseTimeout(opts.timeout));
          return line(s, null);
        });
      });
  }
  program
    .command('waitstate')
    .description('wait until the module is in a stable state: STOP, WAIT, ALONE, UP, PRIM or SECOND (several: comma-separated)')
    .argument('<state>', 'STOP|WAIT|ALONE|UP|PRIM|SECOND')
    .option('-m, --module <name>', 'module (default: $SAFEMODULE)')
    .option('-t, --timeout <seconds>', 'give up after this many seconds (exit 1, WAIT_TIMEOUT)')
    .action(async (state: string, opts: { module?: string; timeout?: string }, c: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(c) }, async (client) => {
        const s = await waitForState(client, moduleName(opts.module), state.toUpperCase().split(','), parseTimeout(opts.timeout));
        return line(s, null);
      });
    });
}
