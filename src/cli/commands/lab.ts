// `stayup lab …`: build and drive a test lab of simulated servers on this machine (see docs/lab.md).

import { Command, InvalidArgumentError } from 'commander';
import { errorCodes } from '../../errors/codes.ts';
import { StayupError, isStayupError } from '../../errors/stayup-error.ts';
import { Lab, type LabStatus, type NodeStatus } from '../../lab/lab.ts';
import { DEFAULT_LAB_NAME, MAX_SERVERS } from '../../lab/names.ts';

interface CommonOpts {
  name: string;
  baseDir?: string;
}

const FAULTS = ['kill', 'start', 'restart', 'cut', 'restore', 'isolate', 'unisolate', 'freeze', 'thaw', 'stop', 'cont', 'linkdown', 'linkup', 'heal'] as const;
type Fault = (typeof FAULTS)[number];
const PAIR_FAULTS: readonly Fault[] = ['cut', 'restore'];

/** Prints `stayup: <message>` and sets the registry's exit code. */
export function reportError(e: unknown): void {
  if (isStayupError(e)) {
    process.stderr.write(`stayup: ${e.message}\n`);
    process.exitCode = errorCodes[e.code].exit;
  } else {
    process.stderr.write(`stayup: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = errorCodes.INTERNAL.exit;
  }
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      reportError(e);
    }
  };
}

function parseServers(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > MAX_SERVERS) throw new InvalidArgumentError(`must be a whole number from 1 to ${MAX_SERVERS}`);
  return n;
}

function common(cmd: Command): Command {
  return cmd
    .option('--name <lab>', 'lab name', DEFAULT_LAB_NAME)
    .option('--base-dir <dir>', 'where labs keep their state (default $STAYUP_LAB_DIR or /var/lib/stayup-lab)');
}

function baseOpts(o: CommonOpts): { baseDir?: string } {
  return o.baseDir === undefined ? {} : { baseDir: o.baseDir };
}

function nodeLine(n: NodeStatus): string {
  const faults: string[] = [];
  if (!n.present) faults.push('missing');
  if (n.killed) faults.push('killed');
  if (!n.portUp) faults.push('switch port down');
  if (!n.nicUp) faults.push('nic down');
  if (n.frozen) faults.push('frozen');
  if (n.isolated) faults.push('isolated');
  if (n.cutFrom.length) faults.push(`cut from ${n.cutFrom.join(',')}`);
  const procs = n.processes.filter((p) => p.state !== 'exited');
  const stopped = procs.filter((p) => p.state === 'stopped').length;
  const p = procs.length ? `${procs.length} proc${stopped ? ` (${stopped} stopped)` : ''}` : '';
  return [n.name.padEnd(8), n.addr.padEnd(16), (n.up ? 'up' : 'down').padEnd(6), faults.join(', ') || '-', p ? ` [${p}]` : ''].join(' ').trimEnd();
}

export function formatStatus(st: LabStatus): string {
  const lines = [`lab ${st.name}: ${st.subnet}, switch netns ${st.switchNetns}, ${st.running ? (st.phase === 'up' ? 'running' : 'half-built (run lab down)') : 'not running (run lab down)'}`];
  lines.push(`${'NODE'.padEnd(8)} ${'ADDRESS'.padEnd(16)} ${'LINK'.padEnd(6)} FAULTS`);
  for (const n of st.nodes) lines.push(nodeLine(n));
  return `${lines.join('\n')}\n`;
}

export function registerLabCommands(program: Command): Command {
  const lab = program
    .command('lab')
    .description('a test lab: simulated servers in network, mount and UTS namespaces on this machine (needs root)');

  common(lab.command('up'))
    .description('build a lab: a switch, servers node1..nodeN and a client')
    .option('--servers <n>', `number of servers (1-${MAX_SERVERS})`, parseServers, 2)
    .option('--json', 'print the lab status as JSON')
    .action(
      action(async (o: CommonOpts & { servers: number; json?: boolean }) => {
        const l = await Lab.up({ name: o.name, servers: o.servers, ...baseOpts(o) });
        const st = await l.status();
        process.stdout.write(o.json ? `${JSON.stringify(st, null, 2)}\n` : formatStatus(st));
      }),
    );

  common(lab.command('down'))
    .description('tear a lab down: kill its processes, unmount, delete its namespaces and state (idempotent)')
    .option('--keep-data', 'keep the per-server directories and logs')
    .option('--json', 'print what was cleaned as JSON')
    .action(
      action(async (o: CommonOpts & { keepData?: boolean; json?: boolean }) => {
        const r = await Lab.down(o.name, { ...baseOpts(o), keepData: Boolean(o.keepData) });
        if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        else if (!r.found) process.stdout.write(`lab ${o.name} is not up (nothing to do)\n`);
        else process.stdout.write(`lab ${o.name} is down (${r.killed.length} processes killed, ${r.netnsDeleted.length} namespaces deleted)\n`);
        for (const w of r.warnings) process.stderr.write(`stayup: warning: ${w}\n`);
        if (r.warnings.length) process.exitCode = errorCodes.LAB_COMMAND_FAILED.exit;
      }),
    );

  common(lab.command('status'))
    .description("show a lab's nodes, addresses, links and faults")
    .option('--json', 'print as JSON')
    .action(
      action(async (o: CommonOpts & { json?: boolean }) => {
        const st = await Lab.open(o.name, baseOpts(o)).status();
        process.stdout.write(o.json ? `${JSON.stringify(st, null, 2)}\n` : formatStatus(st));
      }),
    );

  lab
    .command('list')
    .description('list the labs on this machine')
    .option('--base-dir <dir>', 'where labs keep their state')
    .option('--json', 'print as JSON')
    .action(
      action((o: { baseDir?: string; json?: boolean }) => {
        const labs = Lab.list(o.baseDir === undefined ? {} : { baseDir: o.baseDir });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(labs, null, 2)}\n`);
          return;
        }
        if (!labs.length) {
          process.stdout.write('no labs\n');
          return;
        }
        for (const l of labs) {
          process.stdout.write(`${l.name.padEnd(16)} ${l.subnet.padEnd(16)} ${String(l.servers).padStart(2)} servers  ${l.running ? (l.phase === 'up' ? 'running' : 'half-built') : 'not running'}\n`);
        }
      }),
    );

  common(lab.command('exec'))
    .description('run a command inside a node (node1..nodeN or client); exits with its exit code')
    .argument('<node>', 'node1..nodeN or client')
    .argument('<command...>', 'the command, after --')
    .allowUnknownOption()
    .usage('[--name L] NODE -- CMD...')
    .action(
      action(async (node: string, argv: string[], o: CommonOpts) => {
        const r = await Lab.open(o.name, baseOpts(o)).exec(node, argv, { stdio: 'inherit', timeoutMs: 0 });
        process.exitCode = r.code;
      }),
    );

  common(lab.command('spawn'))
    .description('start a background process inside a node (recorded: killed by fault kill and lab down); prints its PID')
    .argument('<node>', 'node1..nodeN or client')
    .argument('<command...>', 'the command, after --')
    .option('--log <file>', 'file for its stdout and stderr (default under the lab state dir)')
    .allowUnknownOption()
    .usage('[--name L] [--log FILE] NODE -- CMD...')
    .action(
      action(async (node: string, argv: string[], o: CommonOpts & { log?: string }) => {
        const p = await Lab.open(o.name, baseOpts(o)).spawn(node, argv, o.log === undefined ? {} : { logFile: o.log });
        process.stdout.write(`${p.pid}\n`);
      }),
    );

  common(lab.command('fault'))
    .description(
      'inject or undo a fault: kill|start|restart NODE (crash / boot a server), cut|restore NODE PEER, isolate|unisolate NODE, ' +
        'freeze|thaw NODE (drop all its frames), stop|cont NODE (SIGSTOP/SIGCONT its processes), linkdown|linkup NODE, heal',
    )
    .argument('<fault>', FAULTS.join('|'))
    .argument('[node]', 'node1..nodeN or client')
    .argument('[peer]', 'the other node, for cut and restore')
    .action(
      action(async (fault: string, node: string | undefined, peer: string | undefined, o: CommonOpts) => {
        if (!(FAULTS as readonly string[]).includes(fault)) {
          throw new StayupError('BAD_ARGUMENT', `unknown fault ${JSON.stringify(fault)} (one of ${FAULTS.join(', ')})`);
        }
        const f = fault as Fault;
        const l = Lab.open(o.name, baseOpts(o));
        if (f === 'heal') {
          await l.heal();
          return;
        }
        if (node === undefined) throw new StayupError('BAD_ARGUMENT', `fault ${f} needs a node`);
        if (PAIR_FAULTS.includes(f) ? peer === undefined : peer !== undefined) {
          throw new StayupError('BAD_ARGUMENT', PAIR_FAULTS.includes(f) ? `fault ${f} needs two nodes` : `fault ${f} takes one node`);
        }
        switch (f) {
          case 'kill': {
            const killed = await l.killServer(node);
            process.stdout.write(`${node} killed (${killed.length} processes)\n`);
            return;
          }
          case 'start':
            return l.startServer(node);
          case 'restart':
            await l.restartServer(node);
            return;
          case 'cut':
            return l.cut(node, peer!);
          case 'restore':
            return l.restore(node, peer!);
          case 'isolate':
            return l.isolate(node);
          case 'unisolate':
            return l.unisolate(node);
          case 'freeze':
            return l.freeze(node);
          case 'thaw':
            return l.thaw(node);
          case 'stop':
            await l.stopProcesses(node);
            return;
          case 'cont':
            await l.contProcesses(node);
            return;
          case 'linkdown':
            return l.linkDown(node);
          case 'linkup':
            return l.linkUp(node);
        }
      }),
    );

  return lab;
}
