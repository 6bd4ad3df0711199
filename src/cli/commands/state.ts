import { readFileSync, existsSync } from 'node:fs';
import type { Command } from 'commander';
import { StayupError } from '../../errors/stayup-error.ts';
import { parseUserConfig } from '../../config/userconfig/index.ts';
import { parseClusterConfig } from '../../config/cluster.ts';
import { nodePaths } from '../../util/paths.ts';
import { runOnTargets, table, moduleName, errorText, exitCodeOf, hostsOf } from '../run.ts';
import { stateExitCodes, type ModuleStatus } from '../../daemon/module-manager.ts';
import { formatRecord, type LogRecord } from '../../logs/module-log.ts';
import { installTls } from '../../daemon/tls.ts';
import { replicationLines } from './replication.ts';



export function registerStateCommands(program: Command): void {
  program
    .command('state')
    .option('-m, --module <name>', 'one module')
    .option('-v, --verbose', 'every resource of the module')
    .option('-l, --lq', 'with -q: print the state and exit with its code (STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4)')
    .option('-q, --quiet', 'see -l')
    .description('state of the modules')
    .action(async (opts: { module?: string; verbose?: boolean; lq?: boolean; quiet?: boolean }, cmd: Command) => {
      const hosts = hostsOf(cmd);
      process.exitCode = await runOnTargets({ hosts }, async (c) => {
        if (opts.module) {
          const s = await c.call<ModuleStatus & { node: string | null }>('GET', `/api/v1/modules/${encodeURIComponent(opts.module)}/state`);
          if (opts.lq && opts.quiet) return { text: `${s.module} ${s.state}`, exitCode: hosts ? 0 : stateExitCodes[s.state] };
          const base = table(['node', 'module', 'state', 'qualifier', 'id', 'mode'], [[s.node ?? '-', s.module, s.state, s.qualifier, s.id, s.mode]]);
          if (!opts.verbose) return base;
          const lines = [`reason: ${s.reason}`];
          const m = s.mirror;
          if (m) {
            lines.push(`heartbeat.remote: ${m.remote.alive ? `${m.peer} ${m.remote.state} (${m.remote.qualifier})` : `${m.peer} not heard`}`);
            for (const l of m.lans) lines.push(`heartbeat.${l.lan}: ${l.up ? 'up' : 'down'}${l.lastHeardAgoMs === null ? '' : ` (last heard ${l.lastHeardAgoMs} ms ago)`}`);
            lines.push(`vip: ${m.vip ? 'up' : 'down'}`, `ready: ${m.ready ? 'yes' : 'no'}`);
            for (const c of m.checkers) lines.push(`${c.name}: ${c.up ? 'up' : 'down'} (${c.reason})`);
            lines.push(`data: ${m.persisted.uptodate ? 'uptodate' : 'not provably uptodate'}${m.persisted.lastPrim ? ', last primary' : ''}${m.persisted.reintegrationInterrupted ? ', reintegration interrupted' : ''}`);
            if (m.replication) lines.push(...replicationLines(m.replication));
            if (m.faulted) lines.push(`faulted: ${m.faulted}`);
          }
          return base + lines.join('\n') + '\n';
        }
        const all = await c.call<{ node: string | null; modules: ModuleStatus[] }>('GET', '/api/v1/state');
        if (all.modules.length === 0) return `${all.node ?? 'this node'}: no module installed`;
        return table(['node', 'module', 'state', 'qualifier', 'id', 'mode'], all.modules.map((s) => [all.node ?? '-', s.module, s.state, s.qualifier, s.id, s.mode]));
      });
    });

  program
    .command('confcheck')
    .option('-m, --module <name>', 'check an installed module')
    .option('--file <path>', 'check a userconfig.xml file alone (against this node\'s cluster.xml if it has one)')
    .description('validate a module configuration; exit 0 when valid, 2 with the errors otherwise')
    .action(async (opts: { module?: string; file?: string }, cmd: Command) => {
      if (opts.file) {
        try {
          const paths = nodePaths();
          const cluster = existsSync(paths.clusterXml) ? parseClusterConfig(readFileSync(paths.clusterXml, 'utf8'), paths.clusterXml) : undefined;
          let text: string;
          try {
            text = readFileSync(opts.file, 'utf8');
          } catch (e) {
            throw new StayupError('CONFIG_FILE_UNREADABLE', `${opts.file}: ${(e as Error).message}`);
          }
          const cfg = parseUserConfig(text, { file: opts.file, cluster, env: process.env });
          process.stdout.write(`${opts.file}: OK (${cfg.service.mode})\n`);
          process.exitCode = 0;
        } catch (e) {
          process.stderr.write(`${errorText(e)}\n`);
          process.exitCode = exitCodeOf(e);
        }
        return;
      }
      let m: string;
      try {
        m = moduleName(opts.module);
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const r = await c.call<{ mode: string }>('GET', `/api/v1/modules/${encodeURIComponent(m)}/confcheck`);
        return `${m}: OK (${r.mode})`;
      });
    });

  program
    .command('confinfo')
    .requiredOption('-m, --module <name>', 'module')
    .option('--effective', 'print the effective configuration (defaults filled in, macros expanded)')
    .description('signature and date of the module configuration')
    .action(async (opts: { module: string; effective?: boolean }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const r = await c.call<{ module: string; id: number; configuredAt: string; signature: string; effective?: string }>('GET', `/api/v1/modules/${encodeURIComponent(opts.module)}/confinfo${opts.effective ? '?effective=true' : ''}`);
        if (opts.effective) return r.effective ?? '';
        return table(['module', 'id', 'date', 'signature'], [[r.module, r.id, r.configuredAt, r.signature]]);
      });
    });

  program
    .command('log')
    .option('-m, --module <name>', 'module')
    .option('-s, --size <n>', 'number of messages', '300')
    .option('-A, --all', 'include the verbose messages')
    .description('the last messages of the module log')
    .action(async (opts: { module?: string; size: string; all?: boolean }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const m = moduleName(opts.module);
        if (!/^\d+$/.test(opts.size) || Number(opts.size) < 1) throw new StayupError('BAD_ARGUMENT', `-s: expected a positive number of messages, got "${opts.size}"`);
        const r = await c.call<{ records: LogRecord[] }>('GET', `/api/v1/modules/${encodeURIComponent(m)}/log?count=${Number(opts.size)}${opts.all ? '&verbose=true' : ''}`);
        return r.records.map(formatRecord).join('\n');
      });
    });

  for (const [name, level] of [['printi', 'I'], ['printe', 'E']] as const) {
    program
      .command(name)
      .option('-m, --module <name>', 'module (default $SAFEMODULE)')
      .argument('<message...>', 'message')
      .description(level === 'I' ? 'write an information message (verbose log) into the module log' : 'write an error message into the module log')
      .action(async (words: string[], opts: { module?: string }) => {
        process.exitCode = await runOnTargets({}, async (c) => {
          const m = moduleName(opts.module);
          await c.call('POST', `/api/v1/modules/${encodeURIComponent(m)}/log`, { level, message: words.join(' ') });
          return '';
        });
      });
  }

  program
    .command('cmdlog')
    .option('-s, --size <n>', 'number of records', '100')
    .description('who ran which state-changing command on this node')
    .action(async (opts: { size: string }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const r = await c.call<{ records: { ts: string; user: string; role: string; remote?: string; command: string; module?: string; ok: boolean; status?: number }[] }>('GET', `/api/v1/cmdlog?count=${Number(opts.size) || 100}`);
        return table(['date', 'user', 'from', 'command', 'module', 'result'], r.records.map((x) => [x.ts, x.user, x.remote ?? '-', x.command, x.module ?? '-', x.ok ? 'ok' : `failed ${x.status ?? ''}`.trim()]));
      });
    });

  program
    .command('level')
    .description('node, host, OS and stayup version')
    .action(async (_o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const l = await c.call<Record<string, string>>('GET', '/api/v1/level');
        return Object.entries(l).map(([k, v]) => `${k}: ${v}`).join('\n');
      });
    });

  program
    .command('webservercfg')
    .requiredOption('--passwd <password>', 'password (at least 8 characters)')
    .option('--user <name>', 'user name', 'admin')
    .option('--role <role>', 'Admin, Control or Monitor', 'Admin')
    .description('create a console/API user or set its password')
    .action(async (opts: { passwd: string; user: string; role: string }, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        await c.call('PUT', `/api/v1/users/${encodeURIComponent(opts.user)}`, { password: opts.passwd, role: opts.role });
        return `user ${opts.user} (${opts.role}) set`;
      });
    });

  program
    .command('httpscfg')
    .requiredOption('--cert <file>', 'PEM server certificate (with the node\'s names and addresses)')
    .requiredOption('--key <file>', 'PEM private key of that certificate')
    .description('serve the API and console over HTTPS on 9453 from the next daemon start (HTTP 9010 then redirects)')
    .action((opts: { cert: string; key: string }) => {
      try {
        const r = installTls(nodePaths().webDir, opts.cert, opts.key, Date.now());
        process.stdout.write(`certificate ${r.subject.replace(/\n/g, ', ')} (valid to ${r.validTo}, sha256 ${r.fingerprint256}) installed: restart stayupd to serve HTTPS on 9453\n`);
      } catch (e) {
        process.stderr.write(`stayup: ${errorText(e)}\n`);
        process.exitCode = exitCodeOf(e);
      }
    });

  const apikey = program.command('apikey').description('API tokens');
  apikey
    .command('create')
    .argument('<role>', 'Admin, Control or Monitor')
    .argument('<name>', 'token name')
    .action(async (role: string, name: string, _o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const r = await c.call<{ token: string }>('POST', `/api/v1/apikey/${encodeURIComponent(role)}/${encodeURIComponent(name)}`);
        return r.token;
      });
    });
  apikey
    .command('delete')
    .argument('<name>', 'token name')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      process.exitCode = await runOnTargets({ hosts: hostsOf(cmd) }, async (c) => {
        const r = await c.call<{ deleted: boolean }>('DELETE', `/api/v1/apikey/${encodeURIComponent(name)}`);
        return r.deleted ? `token ${name} revoked` : `no token ${name}`;
      });
    });
}
