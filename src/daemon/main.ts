import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { nodePaths } from '../util/paths.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { buildApp } from './app.ts';
import { version } from '../version.ts';
import { createDaemonContext } from './context.ts';
import { loadTls, httpsPort } from './tls.ts';

/**
 * stayupd: one per node. Start order: state directories, the local CLI token, stores, the API, then the
 * modules with boot="on" (after their boot_delay). Stop order (SIGTERM/SIGINT): stop the running modules
 * (their stop scripts run, the virtual IP is removed, the peer takes over), stop taking requests, exit.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.STAYUP_PORT ?? '9010' },
    host: { type: 'string', default: process.env.STAYUP_LISTEN ?? '0.0.0.0' },
    'admin-password-file': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

const paths = nodePaths();
for (const d of [paths.varDir, paths.clusterDir, paths.modulesDir, paths.storeDir, paths.webDir, dirname(paths.localTokenFile), dirname(paths.auditLog)]) {
  mkdirSync(d, { recursive: true, mode: 0o755 });
}
mkdirSync(dirname(paths.localTokenFile), { recursive: true, mode: 0o700 });

// A fresh token at every start: only root (who can read the file) can act as the local CLI.
const localToken = randomBytes(32).toString('base64url');
writeFileAtomic(paths.localTokenFile, localToken + '\n', 0o600);

const ctx = createDaemonContext(paths, { localToken });
const initial = values['admin-password-file'];
if (initial && !ctx.users.hasUsers()) ctx.users.setPassword('admin', readFileSync(initial, 'utf8').trim(), 'Admin');
const cluster = ctx.cluster;

const tls = loadTls(paths.webDir);
const app = await buildApp(ctx, { logger: values.verbose, ...(tls ? { redirectToHttpsPort: httpsPort } : {}) });
const port = Number(values.port);
await app.listen({ port, host: values.host });
const httpsApp = tls ? await buildApp(ctx, { logger: values.verbose, https: tls }) : undefined;
if (httpsApp) await httpsApp.listen({ port: Number(process.env.STAYUP_HTTPS_PORT ?? httpsPort), host: values.host });
const pidFile = join(paths.varDir, 'private', 'stayupd.pid');
writeFileAtomic(pidFile, `${process.pid}\n`, 0o644);
process.stderr.write(`stayupd ${version}: node ${cluster.load()?.localNode ?? '(no cluster yet)'}, API on ${values.host}:${port}${httpsApp ? ` and HTTPS ${httpsPort}` : ''}, state in ${paths.varDir}\n`);

for (const { name, delayMs } of ctx.modules.bootModules()) {
  setTimeout(() => {
    if (stopping) return;
    ctx.modules.command(name, 'start', { identity: 'boot' }).catch((e: Error) => process.stderr.write(`stayupd: boot start of ${name}: ${e.message}\n`));
  }, delayMs).unref();
}

/** How long a daemon stop waits for the modules' stop scripts before it exits anyway. */
const SHUTDOWN_MODULE_STOP_MS = 120_000;
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`stayupd: ${signal}, stopping\n`);
  await Promise.all(
    ctx.modules
      .list()
      .filter((m) => ctx.modules.isRunning(m.name))
      .map(async (m) => {
        try {
          await ctx.modules.command(m.name, 'stop');
          await ctx.modules.waitState(m.name, ['STOP'], SHUTDOWN_MODULE_STOP_MS);
        } catch (e) {
          process.stderr.write(`stayupd: stopping ${m.name}: ${(e as Error).message}\n`);
        }
      }),
  );
  await ctx.modules.closeAll();
  await app.close();
  await httpsApp?.close();
  rmSync(paths.localTokenFile, { force: true });
  if (existsSync(pidFile)) rmSync(pidFile, { force: true });
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
