import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { StayupError } from '../../errors/stayup-error.ts';
import { writeFileAtomic } from '../../util/atomic-file.ts';
import { nodePaths } from '../../util/paths.ts';
import { runOnTargets, table, errorText, exitCodeOf, hostsOf } from '../run.ts';
import { resolveTargets } from '../targets.ts';
import { buildTemplatePackage, listTemplates } from '../../packages/templates.ts';
import { encodeModuleKey, generateModuleKey } from '../../heartbeat/module-key.ts';


type IdList = { modules: { name: string; id: number; mode: string }[] };

/**
 * With -H, a module gets the same id on every node (its ports derive from it): the lowest id that is
 * free on all of them, unless the node already has this module (reinstall keeps its id) or -M says.
 */
async function agreedModuleId(hosts: string, name: string): Promise<number | undefined> {
  const targets = resolveTargets(nodePaths(), { hosts });
  const lists = await Promise.all(targets.map((t) => t.call<IdList>('GET', '/api/v1/modules')));
  const existing = new Set(lists.flatMap((l) => l.modules.filter((m) => m.name === name).map((m) => m.id)));
  if (existing.size > 1) throw new StayupError('MODULE_ID_TAKEN', `module "${name}" has different ids on the nodes (${[...existing].join(', ')}): reinstall with -M`);
  if (existing.size === 1) return [...existing][0];
  const used = new Set(lists.flatMap((l) => l.modules.map((m) => m.id)));
  for (let id = 1; id <= 32; id++) if (!used.has(id)) return id;
  throw new StayupError('MODULE_ID_EXHAUSTED', 'no module id from 1 to 32 is free on every node');
}

export function registerModuleCommands(program: Command): void {
  const mod = program.command('module').description('module packages: install, uninstall, list, package, ports');

  mod
    .command('install')
    .requiredOption('-m, --module <name>', 'module name')
    .option('-M, --id <id>', 'force the module id (1-32)')
    .option('-r, --reinstall', 'replace an installed module of that name')
    .argument('<file>', 'module package (.safe or .zip)')
    .description('install a module package on this node (or every -H node, with the same id)')
    .action(async (file: string, opts: { module: string; id?: string; reinstall?: boolean }, cmd: Command) => {
      const hosts = hostsOf(cmd);
      let pkg: string;
      let id: number | undefined;
      let moduleKey: string | undefined;
      try {
        if (opts.id !== undefined && !/^\d+$/.test(opts.id)) throw new StayupError('BAD_ARGUMENT', `-M: module id must be an integer from 1 to 32, got "${opts.id}"`);
        id = opts.id === undefined ? undefined : Number(opts.id);
        try {
          pkg = readFileSync(file).toString('base64');
        } catch (e) {
          throw new StayupError('PACKAGE_INVALID', `${file}: ${(e as Error).message}`);
        }
        if (hosts && id === undefined) id = await agreedModuleId(hosts, opts.module);
        // One module key for every node of this install (a reinstall keeps each node's own key).
        if (hosts && !opts.reinstall) moduleKey = encodeModuleKey(generateModuleKey()).trim();
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      process.exitCode = await runOnTargets({ hosts }, async (c) => {
        const r = await c.call<{ name: string; id: number; moduleKeyId: string }>('POST', `/api/v1/modules/${encodeURIComponent(opts.module)}/install`, {
          package: pkg,
          ...(id === undefined ? {} : { id }),
          ...(opts.reinstall ? { reinstall: true } : {}),
          ...(moduleKey ? { moduleKey } : {}),
        });
        return `module ${r.name} installed with id ${r.id}, module key ${r.moduleKeyId}`;
      });
    });

  mod
    .command('genkey')
    .requiredOption('-m, --module <name>', 'module name')
    .description('give a stopped module a new module key (with -H, the same new key on every node)')
    .action(async (opts: { module: string }, cmd: Command) => {
      const hosts = hostsOf(cmd);
      const key = hosts ? encodeModuleKey(generateModuleKey()).trim() : undefined;
      process.exitCode = await runOnTargets({ hosts }, async (c) => {
        const r = await c.call<{ moduleKeyId: string }>('POST', `/api/v1/modules/${encodeURIComponent(opts.module)}/genkey`, key ? { moduleKey: key } : {});
        return `module ${opts.module}: new module key ${r.moduleKeyId}${hosts ? '' : ' (this node only: the other node must get the same key, use -H)'}`;
      });
    });

  mod
    .command('uninstall')
    .requiredOption('-m, --module <name>', 'module name')
    .description('remove a stopped module')
    .action(async (opts: { module: string }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        await c.call('DELETE', `/api/v1/modules/${encodeURIComponent(opts.module)}`);
        return `module ${opts.module} uninstalled`;
      });
    });

  mod
    .command('list')
    .description('installed module names')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const l = await c.call<IdList>('GET', '/api/v1/modules');
        return l.modules.map((m) => m.name).join('\n');
      });
    });

  mod
    .command('listid')
    .description('installed modules with their ids')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const l = await c.call<IdList>('GET', '/api/v1/modules');
        return l.modules.length ? table(['module', 'id', 'mode'], l.modules.map((m) => [m.name, m.id, m.mode])) : '';
      });
    });

  mod
    .command('package')
    .requiredOption('-m, --module <name>', 'module name')
    .argument('<out>', 'zip file to write')
    .description('write the installed module as a package')
    .action(async (out: string, opts: { module: string }) => {
      process.exitCode = await runOnTargets({}, async (c) => {
        const r = await c.call<{ package: string }>('GET', `/api/v1/modules/${encodeURIComponent(opts.module)}/package`);
        writeFileAtomic(out, Buffer.from(r.package, 'base64'));
        return `module ${opts.module} packaged into ${out}`;
      });
    });

  mod
    .command('getports')
    .requiredOption('-m, --module <name>', 'module name')
    .description('ports the module uses')
    .action(async (opts: { module: string }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const p = await c.call<{ heartbeatUdp: number; replicationTcp: number; farmUdp: number }>('GET', `/api/v1/modules/${encodeURIComponent(opts.module)}/ports`);
        return table(['use', 'protocol', 'port'], [
          ['heartbeat (mirror)', 'udp', p.heartbeatUdp],
          ['replication (mirror)', 'tcp', `${p.replicationTcp}-${p.replicationTcp + 3}`],
          ['membership (farm)', 'udp', p.farmUdp],
        ]);
      });
    });

  mod
    .command('template')
    .argument('<name>', 'template: mirror, farm or demo')
    .argument('<out>', 'package file to write (.safe)')
    .description('write a shipped module template as a package, ready to edit or install')
    .action(async (name: string, out: string) => {
      try {
        const known = listTemplates();
        if (!known.includes(name)) throw new StayupError('NOT_FOUND', `no template "${name}" (templates: ${known.join(', ')})`);
        writeFileAtomic(out, await buildTemplatePackage(name));
        process.stdout.write(`template ${name} written to ${out}\n`);
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
      }
    });
}
