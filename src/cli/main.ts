import { Command, CommanderError } from 'commander';
import { registerClusterCommands, pushLocalCluster } from './commands/cluster.ts';
import { registerModuleCommands } from './commands/module.ts';
import { registerStateCommands } from './commands/state.ts';
import { registerControlCommands } from './commands/control.ts';
import { registerLabCommands } from './commands/lab.ts';
import { registerReplicationCommands } from './commands/replication.ts';
import { version } from '../version.ts';

/**
 * `stayup`: the operator's command line, a thin client of the node daemon's API. `-H "*"` or
 * `-H node1,node2` runs a command on those nodes (sealed with the cluster key) and prints one result
 * per node; inside module scripts `$SAFE/safekit` is this same command.
 */
const program = new Command('stayup')
  .version(version)
  .description('stayup: high availability for Linux (mirror and farm modules)')
  .option('-H, --hosts <hosts>', 'run on these nodes: "*" (all of cluster.xml) or node1,node2')
  .option('-G, --push-cluster', 'push this node\'s cluster.xml and key to the -H nodes (default all)')
  .enablePositionalOptions()
  .allowExcessArguments(true)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `stayup: ${s.slice(7)}` : s) });

registerClusterCommands(program);
registerModuleCommands(program);
registerStateCommands(program);
registerControlCommands(program);
registerReplicationCommands(program);
registerLabCommands(program);

program.action(async (opts: { hosts?: string; pushCluster?: boolean }) => {
  if (program.args.length > 0) {
    process.stderr.write(`stayup: unknown command "${program.args[0]}" (see stayup --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.pushCluster) {
    process.exitCode = await pushLocalCluster(opts.hosts);
    return;
  }
  program.help({ error: true });
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Usage errors are bad input: exit 2 like every other input error; help and version exit 0.
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else {
    throw e;
  }
}
