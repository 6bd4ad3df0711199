import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { nodePaths, installDir } from '../../src/util/paths.ts';
import { createDaemonContext, type DaemonContext } from '../../src/daemon/context.ts';
import { buildApp } from '../../src/daemon/app.ts';
import { writeFileAtomic } from '../../src/util/atomic-file.ts';
import { buildScriptEnv } from '../../src/scripts/environment.ts';
import { runScript } from '../../src/scripts/runner.ts';
import { moduleLog } from '../../src/daemon/module-logs.ts';
import { goodPackage } from '../packages/helpers.ts';

// A module script written for the reference calls "$SAFE/safekit" printi/printe; with stayup's script
// environment that is stayup's CLI, which reaches the node's daemon and writes into the module log.
let dir: string;
let ctx: DaemonContext;
let app: FastifyInstance;
let port: number;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stayup-compat-'));
  const paths = nodePaths({ STAYUP_VAR: dir });
  ctx = createDaemonContext(paths, { localToken: 'compat-token' });
  writeFileAtomic(paths.localTokenFile, 'compat-token\n', 0o600);
  app = await buildApp(ctx);
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
  await ctx.modules.install('legacy', goodPackage(), {});
});
after(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

test('"$SAFE/safekit" printi|printe from a module script lands in the module log', async () => {
  const paths = ctx.paths;
  const bin = join(dir, 'scriptbin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, 'start_prim'),
    '#!/bin/sh\n"$SAFE/safekit" printe "start_prim $1 $2 $3: application started on $SAFEMODULE"\n"$SAFE/safekit" printi "verbose detail"\n',
    { mode: 0o755 },
  );
  const env = buildScriptEnv({
    module: 'legacy',
    safeDir: join(installDir, 'safe'),
    userBinDir: bin,
    userConfDir: join(paths.modulesDir, 'legacy', 'conf'),
    parentEnv: { STAYUP_VAR: dir, PATH: process.env.PATH ?? '' },
  });
  env.STAYUP_PORT = String(port);
  const r = await runScript({ module: 'legacy', script: 'start_prim', binDir: bin, args: ['WAIT', 'ALONE', 'start'], env, timeoutMs: 60_000, userlogDir: paths.moduleVarDir('legacy'), userlogMaxBytes: 1 << 20 });
  assert.equal(r.exitCode, 0, `script failed; see ${r.userlogFile}`);
  const normal = moduleLog(paths, 'legacy').tail({ count: 10 }).map((x) => `${x.level} ${x.message}`);
  assert.deepEqual(normal, ['E start_prim WAIT ALONE start: application started on legacy']);
  const verbose = moduleLog(paths, 'legacy').tail({ count: 10, verbose: true }).map((x) => `${x.level} ${x.message}`);
  assert.deepEqual(verbose, ['E start_prim WAIT ALONE start: application started on legacy', 'I verbose detail']);
});
