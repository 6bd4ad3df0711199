import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTemplatePackage, listTemplates } from '../../src/packages/templates.ts';
import { installModule, packageModule, readInstalledUserConfig } from '../../src/packages/module-store.ts';
import { openZip } from '../../src/packages/zip-reader.ts';
import { packDirectory } from '../../src/packages/zip-writer.ts';
import { parseUserConfig } from '../../src/config/userconfig/index.ts';
import { parseClusterConfig } from '../../src/config/cluster.ts';
import { installDir, nodePaths } from '../../src/util/paths.ts';
import { rejectsWith, tempNode, testValidator } from './helpers.ts';

const templatesDir = nodePaths().templatesDir;
const SCRIPTS: Record<string, string[]> = {
  mirror: ['poststop', 'prestart', 'start_prim', 'stop_prim'],
  farm: ['poststop', 'prestart', 'start_both', 'stop_both'],
  demo: ['poststop', 'prestart', 'start_prim', 'stop_prim'],
};

function tempDir(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'stayup-tpl-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A fake SAFE directory whose `safekit` appends "printi|printe message" lines to a log. */
function fakeSafe(dir: string): { safe: string; log: string } {
  const safe = join(dir, 'safe');
  const log = join(dir, 'safekit.log');
  mkdirSync(safe, { recursive: true });
  writeFileSync(join(safe, 'safekit'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\n`);
  chmodSync(join(safe, 'safekit'), 0o755);
  return { safe, log };
}

/** The mirror template with a heartbeat on a lan the cluster does not have. */
async function packBroken(t: { after: (fn: () => void) => void }): Promise<Buffer> {
  const dir = join(tempDir(t), 'broken');
  cpSync(join(templatesDir, 'mirror'), dir, { recursive: true });
  const conf = join(dir, 'conf', 'userconfig.xml');
  writeFileSync(conf, readFileSync(conf, 'utf8').replace('<heartbeat name="default"', '<heartbeat name="nosuchlan"'));
  return packDirectory(dir, { label: 'broken' });
}

function read(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

describe('templates: packages', () => {
  test('the shipped templates', () => {
    assert.deepEqual(listTemplates(), ['demo', 'farm', 'mirror']);
    assert.equal(templatesDir, join(installDir, 'modules'));
  });

  for (const name of ['mirror', 'farm', 'demo']) {
    test(`${name}: deterministic package with conf and executable scripts, installable`, async (t) => {
      const a = await buildTemplatePackage(name);
      const b = await buildTemplatePackage(name, templatesDir);
      assert.ok(a.equals(b), 'same bytes every time');
      const zip = await openZip(a);
      assert.deepEqual(
        zip.entries.map((e) => [e.name, e.kind, e.mode]),
        [
          ['bin', 'directory', 0o755],
          ...SCRIPTS[name]!.map((s) => [`bin/${s}`, 'file', 0o755]),
          ['conf', 'directory', 0o755],
          ['conf/userconfig.xml', 'file', 0o644],
        ],
      );
      zip.close();

      const { paths } = tempNode(t);
      const info = await installModule({ paths, name, pkg: a, validateConfig: testValidator });
      assert.equal(info.id, 1);
      assert.equal(readInstalledUserConfig(paths, name), readFileSync(join(templatesDir, name, 'conf', 'userconfig.xml'), 'utf8'));
      for (const s of SCRIPTS[name]!) assert.equal(statSync(join(paths.modulesDir, name, 'bin', s)).mode & 0o777, 0o755);
      assert.ok((await packageModule(paths, name)).equals(a), 'the installed template packages to the same bytes');
    });
  }

  test('the templates pass the real userconfig parser, against a two-node cluster', async (t) => {
    const cluster = parseClusterConfig(
      '<cluster><lans><lan name="default"><node name="n1" addr="198.18.0.1"/><node name="n2" addr="198.18.0.2"/></lan></lans></cluster>',
    );
    for (const name of ['mirror', 'farm', 'demo']) {
      const { paths } = tempNode(t);
      await installModule({
        paths,
        name,
        pkg: await buildTemplatePackage(name),
        validateConfig: (text, file) => void parseUserConfig(text, { file, cluster, moduleName: name, env: {} }),
      });
    }
    const demo = parseUserConfig(readFileSync(join(templatesDir, 'demo', 'conf', 'userconfig.xml'), 'utf8'), { file: 'demo', cluster, env: {} });
    assert.equal(demo.service.mode, 'mirror');
    assert.match(JSON.stringify(demo), /198\.18\.0\.100/);
    assert.match(JSON.stringify(demo), /"DEMO_PORT"/);
    // A broken config is refused by install, with the parser's diagnostics.
    const { paths } = tempNode(t);
    await rejectsWith(
      installModule({
        paths,
        name: 'broken',
        pkg: await packBroken(t),
        validateConfig: (text, file) => void parseUserConfig(text, { file, cluster, moduleName: 'broken', env: {} }),
      }),
      'CONFIG_INVALID',
      /^broken\.safe\/conf\/userconfig\.xml:\d+:\d+: /,
    );
    assert.ok(!existsSync(join(paths.modulesDir, 'broken')));
  });

  test('unknown template, template without a config', async (t) => {
    await rejectsWith(buildTemplatePackage('nope'), 'NOT_FOUND', 'no module template named "nope" (templates: demo, farm, mirror)');
    await rejectsWith(buildTemplatePackage('../modules'), 'NOT_FOUND', 'no module template named "../modules" (templates: demo, farm, mirror)');
    const dir = tempDir(t);
    mkdirSync(join(dir, 'bare', 'bin'), { recursive: true });
    assert.deepEqual(listTemplates(dir), []);
    await rejectsWith(buildTemplatePackage('bare', dir), 'PACKAGE_MISSING_CONFIG', 'module template bare has no conf/userconfig.xml');
  });
});

describe('templates: scripts', () => {
  test('POSIX sh syntax, shebang and executable bit', () => {
    for (const [name, scripts] of Object.entries(SCRIPTS)) {
      assert.deepEqual(readdirSync(join(templatesDir, name, 'bin')).sort(), scripts);
      for (const s of scripts) {
        const file = join(templatesDir, name, 'bin', s);
        assert.ok(readFileSync(file, 'utf8').startsWith('#!/bin/sh\n'), file);
        assert.equal(statSync(file).mode & 0o111, 0o111, `${file} is executable`);
        const r = spawnSync(existsSync('/bin/dash') ? '/bin/dash' : '/bin/sh', ['-n', file], { encoding: 'utf8' });
        assert.equal(r.status, 0, `${file}: ${r.stderr}`);
      }
    }
  });

  for (const [name, start, stop] of [
    ['mirror', 'start_prim', 'stop_prim'],
    ['farm', 'start_both', 'stop_both'],
  ] as const) {
    test(`${name}: SERVICES started in order, stopped in reverse, force kills, prestart disables boot start`, (t) => {
      const dir = tempDir(t);
      const { safe, log } = fakeSafe(dir);
      const fakeBin = join(dir, 'fakebin');
      const calls = join(dir, 'systemctl.log');
      mkdirSync(fakeBin);
      // A fake systemctl: units are "enabled" and "active" until stopped.
      writeFileSync(
        join(fakeBin, 'systemctl'),
        `#!/bin/sh\necho "$*" >> '${calls}'\ncase "$1" in\n  is-enabled) exit 0 ;;\n  is-active) grep -q "^stop $3\\$" '${calls}' && exit 3; exit 0 ;;\nesac\nexit 0\n`,
      );
      chmodSync(join(fakeBin, 'systemctl'), 0o755);
      const bin = join(templatesDir, name, 'bin');
      const env = { PATH: `${fakeBin}:/usr/bin:/bin`, SAFE: safe, SAFEUSERBIN: bin, SERVICES: ' db, app ,web ' };
      const run = (script: string, ...args: string[]) => spawnSync(join(bin, script), args, { env, encoding: 'utf8' });

      assert.equal(run(start, 'WAIT', 'ALONE', 'start').status, 0);
      assert.deepEqual(read(calls), ['start db', 'start app', 'start web']);
      assert.equal(run(stop, 'ALONE', 'WAIT', 'stop').status, 0);
      assert.deepEqual(read(calls).slice(3), ['stop web', 'stop app', 'stop db']);
      assert.equal(run(stop, 'force', 'WAIT', 'STOP', 'stop').status, 0, 'force after a clean stop: nothing to kill');
      assert.deepEqual(read(calls).slice(6), ['is-active --quiet web', 'is-active --quiet app', 'is-active --quiet db']);
      writeFileSync(calls, '');
      assert.equal(run('prestart', 'STOP', 'WAIT', 'start').status, 0);
      assert.deepEqual(read(calls), [
        'is-enabled --quiet db',
        'disable --quiet db',
        'is-enabled --quiet app',
        'disable --quiet app',
        'is-enabled --quiet web',
        'disable --quiet web',
        'stop web',
        'stop app',
        'stop db',
      ]);
      assert.equal(run('poststop', 'WAIT', 'STOP', 'stop').status, 0);
      const lines = read(log);
      assert.ok(lines.includes(`printi ${start}: WAIT -> ALONE (start)`), lines.join('\n'));
      assert.ok(lines.includes(`printi ${start}: starting db`));
      assert.ok(lines.includes(`printi ${stop}: stopping web`));
      assert.ok(lines.includes(`printi ${stop} force: WAIT -> STOP (stop)`));
      assert.ok(lines.includes('printi prestart: disabled the start at boot of app: the module starts it'));
      assert.ok(lines.includes('printi poststop: WAIT -> STOP (stop)'));

      // A service that fails to start: printe and a non-zero exit.
      writeFileSync(join(fakeBin, 'systemctl'), `#!/bin/sh\n[ "$1" = start ] && [ "$2" = app ] && exit 1\nexit 0\n`);
      const r = run(start, 'WAIT', 'ALONE', 'start');
      assert.equal(r.status, 1);
      assert.ok(read(log).includes(`printe ${start}: cannot start app`));

      // No SERVICES: nothing to do, success.
      const empty = spawnSync(join(bin, start), ['WAIT', 'ALONE', 'start'], { env: { ...env, SERVICES: '' }, encoding: 'utf8' });
      assert.equal(empty.status, 0);
    });
  }

  test('demo: start_prim serves DEMO_DIR on DEMO_PORT with a pid file; stop_prim stops it by pid', async (t) => {
    if (spawnSync('python3', ['--version']).status !== 0) return t.skip('python3 is not installed');
    const dir = tempDir(t);
    const { safe, log } = fakeSafe(dir);
    const port = await new Promise<number>((res) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    const bin = join(templatesDir, 'demo', 'bin');
    const userVar = join(dir, 'var');
    const data = join(dir, 'data');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', SAFE: safe, SAFEUSERBIN: bin, SAFEUSERVAR: userVar, DEMO_PORT: String(port), DEMO_DIR: data };
    const run = (script: string, ...args: string[]) => spawnSync(join(bin, script), args, { env, encoding: 'utf8', timeout: 30_000 });
    const pidFile = join(userVar, 'demo-http.pid');
    t.after(() => {
      // Never leave a server behind, whatever failed.
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        /* not running */
      }
    });

    assert.equal(run('prestart', 'STOP', 'WAIT', 'start').status, 0);
    assert.ok(existsSync(data), 'prestart creates the served directory');
    assert.equal(run('start_prim', 'WAIT', 'ALONE', 'start').status, 0, read(log).join('\n'));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(pid > 0);
    writeFileSync(join(data, 'hello.txt'), 'replicated hello\n');
    const res = await fetch(`http://127.0.0.1:${port}/hello.txt`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'replicated hello\n');
    assert.match(await (await fetch(`http://127.0.0.1:${port}/`)).text(), /stayup demo/);

    assert.equal(run('start_prim', 'WAIT', 'ALONE', 'start').status, 0, 'a second start is a no-op');
    assert.equal(Number(readFileSync(pidFile, 'utf8')), pid);
    assert.ok(read(log).includes(`printi start_prim: web server already running (pid ${pid})`));

    assert.equal(run('stop_prim', 'ALONE', 'WAIT', 'stop').status, 0);
    assert.ok(!existsSync(pidFile));
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`));
    assert.equal(run('stop_prim', 'force', 'WAIT', 'STOP', 'stop').status, 0, 'force with nothing running succeeds');
    assert.equal(run('poststop', 'WAIT', 'STOP', 'stop').status, 0);

    // A stale pid file naming another process is not trusted: that process is left alone.
    writeFileSync(pidFile, `${process.pid}\n`);
    assert.equal(run('stop_prim', 'ALONE', 'WAIT', 'stop').status, 0);
    assert.ok(!existsSync(pidFile));

    // stop_prim force kills with SIGKILL.
    assert.equal(run('start_prim', 'WAIT', 'ALONE', 'start').status, 0);
    const pid2 = Number(readFileSync(pidFile, 'utf8'));
    assert.equal(run('stop_prim', 'force', 'ALONE', 'STOP', 'stop').status, 0);
    assert.throws(() => process.kill(pid2, 0), /ESRCH/);
    assert.ok(read(log).includes(`printi stop_prim force: stopping the web server (pid ${pid2}, SIGKILL)`));
  });

  test('demo: start_prim fails cleanly when the port is taken', async (t) => {
    if (spawnSync('python3', ['--version']).status !== 0) return t.skip('python3 is not installed');
    const dir = tempDir(t);
    const { safe, log } = fakeSafe(dir);
    const server = createServer().listen(0, '0.0.0.0');
    await new Promise((r) => server.once('listening', r));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const bin = join(templatesDir, 'demo', 'bin');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', SAFE: safe, SAFEUSERVAR: join(dir, 'var'), DEMO_PORT: String(port), DEMO_DIR: join(dir, 'data') };
    const r = spawnSync(join(bin, 'start_prim'), ['WAIT', 'ALONE', 'start'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1);
    assert.ok(read(log).some((l) => l.startsWith('printe start_prim: the web server exited at once:') && l.includes('Address already in use')), read(log).join('\n'));
    assert.ok(!existsSync(join(dir, 'var', 'demo-http.pid')));
  });
});
