import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, utimesSync, writeFileSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  MAX_MODULE_ID,
  installModule,
  listModuleIds,
  listModules,
  modulePorts,
  packageModule,
  readInstalledUserConfig,
  readModuleInfo,
  uninstallModule,
  type InstallOptions,
} from '../../src/packages/module-store.ts';
import { withModulesLock } from '../../src/packages/module-lock.ts';
import { openZip } from '../../src/packages/zip-reader.ts';
import type { NodePaths } from '../../src/util/paths.ts';
import { StayupError } from '../../src/errors/stayup-error.ts';
import { USERCONFIG, goodPackage, rawZip, rejectsWith, snapshot, tempNode, testValidator } from './helpers.ts';

function install(paths: NodePaths, name: string, extra: Partial<InstallOptions> = {}) {
  return installModule({ paths, name, pkg: goodPackage(), validateConfig: testValidator, ...extra });
}

/** A pid no process can have (above the kernel's pid_max ceiling of 2^22). */
const DEAD_PID = 999_999_999;

describe('module store: install', () => {
  test('installs a package: files, modes, module.json, list, listid', async (t) => {
    const { paths } = tempNode(t);
    const pkg = goodPackage();
    const info = await installModule({ paths, name: 'web', pkg, validateConfig: testValidator });
    assert.equal(info.name, 'web');
    assert.equal(info.id, 1);
    assert.equal(info.packageSha256, createHash('sha256').update(pkg).digest('hex'));
    assert.equal(info.packageBytes, pkg.length);
    assert.ok(Math.abs(Date.parse(info.installedAt) - Date.now()) < 60_000);
    const dir = join(paths.modulesDir, 'web');
    assert.deepEqual(readdirSync(dir).sort(), ['bin', 'conf', 'module.json']);
    assert.equal(statSync(join(dir, 'bin/start_prim')).mode & 0o7777, 0o755);
    assert.equal(statSync(join(dir, 'bin/stop_prim')).mode & 0o7777, 0o755, 'bin/ scripts are executable even without the bit in the zip');
    assert.equal(statSync(join(dir, 'conf/userconfig.xml')).mode & 0o7777, 0o644);
    assert.equal(statSync(dir).mode & 0o7777, 0o755);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'module.json'), 'utf8')), info);
    assert.deepEqual(readModuleInfo(paths, 'web'), info);
    assert.deepEqual(listModules(paths), ['web']);
    assert.deepEqual(listModuleIds(paths), [{ name: 'web', id: 1 }]);
    assert.equal(readInstalledUserConfig(paths, 'web'), USERCONFIG);
    assert.deepEqual(readdirSync(paths.modulesDir), ['web'], 'no staging or lock left behind');
  });

  test('installs from a file path, labelled by its base name', async (t) => {
    const { dir, paths } = tempNode(t);
    const file = join(dir, 'mine.safe');
    writeFileSync(file, goodPackage());
    const info = await installModule({ paths, name: 'mine', pkg: file, validateConfig: testValidator });
    assert.equal(info.id, 1);
    writeFileSync(file, rawZip([{ name: '../x', data: 'x' }]));
    await rejectsWith(
      installModule({ paths, name: 'other', pkg: file, validateConfig: testValidator }),
      'PACKAGE_HOSTILE',
      'module package mine.safe: entry "../x" escapes the module directory',
    );
    await rejectsWith(
      installModule({ paths, name: 'other', pkg: join(dir, 'none.safe'), validateConfig: testValidator }),
      'PACKAGE_INVALID',
      /^module package none\.safe: cannot be read: ENOENT/,
    );
  });

  test('allocates the lowest free id; -M forces one; a taken id is refused', async (t) => {
    const { paths } = tempNode(t);
    assert.equal((await install(paths, 'a')).id, 1);
    assert.equal((await install(paths, 'b')).id, 2);
    assert.equal((await install(paths, 'c', { id: 7 })).id, 7);
    assert.equal((await install(paths, 'd')).id, 3);
    uninstallModule(paths, 'a');
    assert.equal((await install(paths, 'e')).id, 1, 'a freed id is reused');
    assert.deepEqual(listModuleIds(paths), [
      { name: 'b', id: 2 },
      { name: 'c', id: 7 },
      { name: 'd', id: 3 },
      { name: 'e', id: 1 },
    ]);
    const before = snapshot(paths.modulesDir);
    const err = await rejectsWith(install(paths, 'f', { id: 7 }), 'MODULE_ID_TAKEN', 'module id 7 is already used by module "c"');
    assert.deepEqual(err.details, { id: 7, module: 'c' });
    assert.equal(err.exitCode, 2);
    await rejectsWith(install(paths, 'f', { id: 0 }), 'BAD_ARGUMENT', 'module id 0 is out of range: use 1-32');
    await rejectsWith(install(paths, 'f', { id: 33 }), 'BAD_ARGUMENT', 'module id 33 is out of range: use 1-32');
    await rejectsWith(install(paths, 'f', { id: 1.5 }), 'BAD_ARGUMENT', 'module id 1.5 is out of range: use 1-32');
    assert.deepEqual(snapshot(paths.modulesDir), before, 'refused installs change nothing');
  });

  test('ids run out after 32 modules', async (t) => {
    const { paths } = tempNode(t);
    for (let i = 1; i <= MAX_MODULE_ID; i++) assert.equal((await install(paths, `m${i}`)).id, i);
    const before = snapshot(paths.modulesDir);
    await rejectsWith(install(paths, 'm33'), 'MODULE_ID_EXHAUSTED', 'no free module id is left: all 32 ids are in use');
    assert.deepEqual(snapshot(paths.modulesDir), before);
  });

  test('refuses an existing module without reinstall', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    const before = snapshot(paths.modulesDir);
    await rejectsWith(install(paths, 'web'), 'MODULE_EXISTS', 'module "web" is already installed; use reinstall to replace it');
    mkdirSync(join(paths.modulesDir, 'stray'));
    await rejectsWith(
      install(paths, 'stray'),
      'MODULE_EXISTS',
      'module "stray" already exists in the modules directory (not installed by stayup); use reinstall to replace it',
    );
    assert.deepEqual(listModules(paths), ['web'], 'a directory without module.json is not a module');
    assert.deepEqual(snapshot(paths.modulesDir).filter((l) => !l.startsWith('stray')), before);
  });

  test('reinstall replaces the files, keeps the id, leaves no old copy', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'a');
    const first = await install(paths, 'web');
    assert.equal(first.id, 2);
    writeFileSync(join(paths.modulesDir, 'web', 'conf', 'local-edit.txt'), 'gone after reinstall');
    const pkg2 = goodPackage([{ name: 'bin/checker', data: '#!/bin/sh\n', mode: 0o100755 }], USERCONFIG.replace('mirror', 'farm'));
    const second = await installModule({ paths, name: 'web', pkg: pkg2, reinstall: true, validateConfig: testValidator });
    assert.equal(second.id, 2);
    assert.equal(second.packageSha256, createHash('sha256').update(pkg2).digest('hex'));
    assert.match(readInstalledUserConfig(paths, 'web'), /mode="farm"/);
    assert.ok(existsSync(join(paths.modulesDir, 'web', 'bin', 'checker')));
    assert.ok(!existsSync(join(paths.modulesDir, 'web', 'conf', 'local-edit.txt')));
    assert.deepEqual(readdirSync(paths.modulesDir).sort(), ['a', 'web']);
    // Reinstall with -M moves the module to a free id, and refuses one taken by another module.
    assert.equal((await install(paths, 'web', { reinstall: true, id: 5 })).id, 5);
    await rejectsWith(install(paths, 'web', { reinstall: true, id: 1 }), 'MODULE_ID_TAKEN', 'module id 1 is already used by module "a"');
    assert.equal(readModuleInfo(paths, 'web').id, 5);
    // Reinstall of a module that is not installed is a plain install.
    assert.equal((await install(paths, 'fresh', { reinstall: true })).id, 2);
  });

  test('a failed reinstall leaves the installed module untouched', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    const before = snapshot(paths.modulesDir);
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: rawZip([{ name: 'conf/userconfig.xml', data: 'x' }, { name: '/etc/x', data: 'y' }]), reinstall: true, validateConfig: testValidator }),
      'PACKAGE_HOSTILE',
      'module package web.safe: entry "/etc/x" is an absolute path',
    );
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: goodPackage([], '<safe/>'), reinstall: true, validateConfig: testValidator }),
      'CONFIG_INVALID',
      'web.safe/conf/userconfig.xml:1:1: <service mode="mirror|farm|light"> is required',
    );
    assert.deepEqual(snapshot(paths.modulesDir), before);
  });

  test('module names', async (t) => {
    const { paths } = tempNode(t);
    for (const bad of ['', 'a b', '../x', 'x/y', '.hidden', 'a'.repeat(33), 'é', 'a\u0000']) {
      await rejectsWith(install(paths, bad), 'MODULE_NAME_INVALID', `module name ${JSON.stringify(bad)} is invalid: use 1-32 letters, digits, _ or -`);
    }
    assert.equal((await install(paths, `A_b-9${'z'.repeat(27)}`)).id, 1);
    assert.ok(!existsSync(join(paths.varDir, 'x')));
  });

  test('validateConfig is called with the text and a file label; its error aborts the install', async (t) => {
    const { paths } = tempNode(t);
    const calls: [string, string][] = [];
    await installModule({ paths, name: 'web', pkg: goodPackage(), validateConfig: (text, file) => void calls.push([text, file]), label: 'upload.zip' });
    assert.deepEqual(calls, [[USERCONFIG, 'upload.zip/conf/userconfig.xml']]);
    const before = snapshot(paths.modulesDir);
    const boom = new StayupError('CONFIG_INVALID', 'bad config');
    await assert.rejects(
      installModule({ paths, name: 'other', pkg: goodPackage(), validateConfig: async () => Promise.reject(boom) }),
      (e) => e === boom,
    );
    assert.deepEqual(snapshot(paths.modulesDir), before);
  });

  test('a package without conf/userconfig.xml is refused', async (t) => {
    const { paths } = tempNode(t);
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: rawZip([{ name: 'bin/start_prim', data: 'x' }]), validateConfig: testValidator }),
      'PACKAGE_MISSING_CONFIG',
      'module package web.safe: conf/userconfig.xml is missing',
    );
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: rawZip([{ name: 'conf/userconfig.xml/', mode: 0o40755 }]), validateConfig: testValidator }),
      'PACKAGE_MISSING_CONFIG',
      'module package web.safe: conf/userconfig.xml is missing',
    );
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: rawZip([{ name: 'conf/userconfig.xml', data: Buffer.from([0x3c, 0xff, 0x3e]) }]), validateConfig: testValidator }),
      'PACKAGE_INVALID',
      'module package web.safe: conf/userconfig.xml is not valid UTF-8',
    );
    assert.ok(!existsSync(paths.modulesDir) || readdirSync(paths.modulesDir).length === 0);
  });

  test('package size cap', async (t) => {
    const { paths } = tempNode(t);
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: goodPackage(), validateConfig: testValidator, limits: { maxPackageBytes: 100 } }),
      'PACKAGE_TOO_LARGE',
      `module package web.safe: ${goodPackage().length} bytes, over the cap of 100 bytes`,
    );
  });
});

describe('module store: hostile packages change nothing', () => {
  const cases: [string, Buffer, string, string][] = [
    ['zip-slip', goodPackage([{ name: '../evil.sh', data: 'x' }]), 'PACKAGE_HOSTILE', 'entry "../evil.sh" escapes the module directory'],
    ['absolute', goodPackage([{ name: '/tmp/evil.sh', data: 'x' }]), 'PACKAGE_HOSTILE', 'entry "/tmp/evil.sh" is an absolute path'],
    ['symlink', goodPackage([{ name: 'bin/link', data: '/etc/shadow', mode: 0o120777, method: 0 }]), 'PACKAGE_HOSTILE', 'entry "bin/link" is a symbolic link'],
    ['char device', goodPackage([{ name: 'bin/tty', mode: 0o020644 }]), 'PACKAGE_HOSTILE', 'entry "bin/tty" is a character device'],
    ['not a zip', Buffer.from('hello'), 'PACKAGE_INVALID', 'not a zip file'],
    [
      'lying header, caught while extracting',
      goodPackage([{ name: 'data/zeros', data: Buffer.alloc(4 * 1024 * 1024), declaredSize: 1000 }]),
      'PACKAGE_HOSTILE',
      'entry "data/zeros" inflates to more than the 1000 bytes its header declares',
    ],
    ['CRC, caught while extracting', goodPackage([{ name: 'bin/x', data: 'hello', crc: 42 }]), 'PACKAGE_INVALID', 'entry "bin/x" fails its CRC-32 check'],
  ];
  for (const [what, pkg, code, message] of cases) {
    test(what, async (t) => {
      const { paths } = tempNode(t);
      await install(paths, 'keep');
      const before = snapshot(paths.modulesDir);
      await rejectsWith(
        installModule({ paths, name: 'web', pkg, validateConfig: testValidator }),
        code as 'PACKAGE_HOSTILE',
        `module package web.safe: ${message}`,
      );
      await rejectsWith(
        installModule({ paths, name: 'keep', pkg, reinstall: true, validateConfig: testValidator }),
        code as 'PACKAGE_HOSTILE',
        `module package keep.safe: ${message}`,
      );
      assert.deepEqual(snapshot(paths.modulesDir), before);
    });
  }

  test('into an empty node: the modules directory stays empty', async (t) => {
    const { paths } = tempNode(t);
    await rejectsWith(
      installModule({ paths, name: 'web', pkg: goodPackage([{ name: 'bin/x', data: 'hello', crc: 42 }]), validateConfig: testValidator }),
      'PACKAGE_INVALID',
      'module package web.safe: entry "bin/x" fails its CRC-32 check',
    );
    assert.deepEqual(snapshot(paths.modulesDir), []);
  });
});

describe('module store: uninstall, ports, config', () => {
  test('uninstall', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    uninstallModule(paths, 'web');
    assert.deepEqual(listModules(paths), []);
    assert.deepEqual(readdirSync(paths.modulesDir), []);
    await rejectsWith(() => uninstallModule(paths, 'web'), 'MODULE_NOT_FOUND', 'module "web" is not installed');
    await rejectsWith(() => uninstallModule(paths, '../etc'), 'MODULE_NAME_INVALID', 'module name "../etc" is invalid: use 1-32 letters, digits, _ or -');
    await rejectsWith(() => readInstalledUserConfig(paths, 'web'), 'MODULE_NOT_FOUND', 'module "web" is not installed');
    await rejectsWith(() => readModuleInfo(paths, 'web'), 'MODULE_NOT_FOUND', 'module "web" is not installed');
  });

  test('listing an absent modules directory is empty', (t) => {
    const { paths } = tempNode(t);
    assert.deepEqual(listModules(paths), []);
    assert.deepEqual(listModuleIds(paths), []);
  });

  test('a corrupt module.json is reported, not guessed', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    const file = join(paths.modulesDir, 'web', 'module.json');
    writeFileSync(file, JSON.stringify({ name: 'web', id: 99 }));
    await rejectsWith(() => listModuleIds(paths), 'IO', `module "web": ${file} is corrupt`);
    writeFileSync(file, '{');
    await rejectsWith(() => readModuleInfo(paths, 'web'), 'IO', new RegExp(`^module "web": cannot read ${file}: `));
  });

  test('a missing userconfig.xml of an installed module', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    const file = join(paths.modulesDir, 'web', 'conf', 'userconfig.xml');
    renameSync(file, `${file}.bak`);
    await rejectsWith(() => readInstalledUserConfig(paths, 'web'), 'CONFIG_FILE_UNREADABLE', new RegExp(`^module "web": cannot read ${file}: ENOENT`));
    await rejectsWith(packageModule(paths, 'web'), 'PACKAGE_MISSING_CONFIG', 'module "web" has no conf/userconfig.xml to package');
  });

  test('ports (§7.2)', () => {
    assert.deepEqual(modulePorts(1), { heartbeatUdp: 8888, replicationTcp: 5600, farmUdp: 4803 });
    assert.deepEqual(modulePorts(2), { heartbeatUdp: 8889, replicationTcp: 5604, farmUdp: 4806 });
    assert.deepEqual(modulePorts(32), { heartbeatUdp: 8919, replicationTcp: 5724, farmUdp: 4896 });
    assert.throws(() => modulePorts(0), (e) => e instanceof StayupError && e.code === 'BAD_ARGUMENT');
    assert.throws(() => modulePorts(33), (e) => e instanceof StayupError && e.code === 'BAD_ARGUMENT');
  });
});

describe('module store: packaging', () => {
  test('package → install elsewhere round trip, deterministic bytes', async (t) => {
    const { dir, paths } = tempNode(t);
    await install(paths, 'web');
    mkdirSync(join(paths.modulesDir, 'web', 'conf', 'extra'));
    writeFileSync(join(paths.modulesDir, 'web', 'conf', 'extra', 'notes.txt'), 'hello');
    const p1 = await packageModule(paths, 'web');
    // Same files with other times and a fresh id: same bytes.
    utimesSync(join(paths.modulesDir, 'web', 'bin', 'start_prim'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    const p2 = await packageModule(paths, 'web');
    assert.ok(p1.equals(p2), 'packaging is deterministic');

    const zip = await openZip(p1);
    assert.deepEqual(
      zip.entries.map((e) => [e.name, e.kind, e.mode]),
      [
        ['bin', 'directory', 0o755],
        ['bin/start_prim', 'file', 0o755],
        ['bin/stop_prim', 'file', 0o755],
        ['conf', 'directory', 0o755],
        ['conf/extra', 'directory', 0o755],
        ['conf/extra/notes.txt', 'file', 0o644],
        ['conf/userconfig.xml', 'file', 0o644],
      ],
      'sorted, module.json left out, normalised modes',
    );
    zip.close();

    const other = { ...paths, modulesDir: join(dir, 'node2', 'modules') };
    const info = await installModule({ paths: other, name: 'copy', pkg: p1, id: 9, validateConfig: testValidator });
    assert.equal(info.id, 9);
    assert.equal(readFileSync(join(other.modulesDir, 'copy', 'conf', 'extra', 'notes.txt'), 'utf8'), 'hello');
    assert.ok((await packageModule(other, 'copy')).equals(p1), 'the copy packages to the same bytes');

    // A copy of the module tree elsewhere, under another name and umask-dependent modes: same bytes.
    cpSync(join(paths.modulesDir, 'web'), join(paths.modulesDir, 'twin'), { recursive: true });
    chmodSync(join(paths.modulesDir, 'twin', 'conf', 'userconfig.xml'), 0o600);
    assert.ok((await packageModule(paths, 'twin')).equals(p1));
  });

  test('packaging refuses symlinks and unknown modules', async (t) => {
    const { paths } = tempNode(t);
    await rejectsWith(packageModule(paths, 'web'), 'MODULE_NOT_FOUND', 'module "web" is not installed');
    await install(paths, 'web');
    const { symlinkSync } = await import('node:fs');
    symlinkSync('/etc/passwd', join(paths.modulesDir, 'web', 'bin', 'link'));
    await rejectsWith(packageModule(paths, 'web'), 'PACKAGE_INVALID', 'module web: bin/link is a symbolic link; packages hold only regular files and directories');
  });
});

describe('module store: concurrency and crash recovery', () => {
  test('concurrent installs in one process get distinct ids', async (t) => {
    const { paths } = tempNode(t);
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const infos = await Promise.all(names.map((n) => install(paths, n)));
    assert.deepEqual(infos.map((i) => i.id).sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(listModules(paths), names);
    assert.deepEqual(readdirSync(paths.modulesDir).sort(), names);
  });

  test('concurrent installs of the same name: one wins, the other gets MODULE_EXISTS', async (t) => {
    const { paths } = tempNode(t);
    const results = await Promise.allSettled([install(paths, 'web'), install(paths, 'web'), install(paths, 'web')]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as StayupError).code, 'MODULE_EXISTS');
    assert.deepEqual(readdirSync(paths.modulesDir), ['web']);
  });

  test('concurrent installs from several processes get distinct ids', async (t) => {
    const { dir, paths } = tempNode(t);
    const pkgFile = join(dir, 'p.safe');
    writeFileSync(pkgFile, goodPackage());
    const start = join(dir, 'go');
    const child = fileURLToPath(new URL('./fixtures/install-child.ts', import.meta.url));
    const names = ['p1', 'p2', 'p3', 'p4'];
    let ready = 0;
    let allReady!: () => void;
    const readyP = new Promise<void>((r) => (allReady = r));
    const runs = names.map(
      (n) =>
        new Promise<string>((res, rej) => {
          const cp = spawn(process.execPath, ['--import', 'tsx', child, dir, n, pkgFile, start], { stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          let err = '';
          cp.stdout.on('data', (d) => {
            out += d;
            if (out.startsWith('ready\n') && !(cp as { counted?: boolean }).counted) {
              (cp as { counted?: boolean }).counted = true;
              if (++ready === names.length) allReady();
            }
          });
          cp.stderr.on('data', (d) => (err += d));
          cp.on('exit', (code) => (code === 0 ? res(out.replace('ready\n', '').trim()) : rej(new Error(`child ${n} exited ${code}: ${err}`))));
        }),
    );
    await Promise.race([readyP, Promise.all(runs)]); // all children loaded and waiting (or one failed)
    writeFileSync(start, '');
    const ids = (await Promise.all(runs)).map(Number).sort((a, b) => a - b);
    assert.deepEqual(ids, [1, 2, 3, 4]);
    assert.deepEqual(listModuleIds(paths).map((m) => m.id).sort((a, b) => a - b), [1, 2, 3, 4]);
    assert.deepEqual(readdirSync(paths.modulesDir).sort(), names);
  });

  test('recovery: a reinstall that died mid-swap gets its old copy back; dead stagings are removed', async (t) => {
    const { paths } = tempNode(t);
    await install(paths, 'web');
    await install(paths, 'keep');
    // Simulate a crash of another process: "web" moved aside, new copy never moved in.
    renameSync(join(paths.modulesDir, 'web'), join(paths.modulesDir, `.stayup-old.${DEAD_PID}.abcdef.web`));
    mkdirSync(join(paths.modulesDir, `.stayup-tmp.${DEAD_PID}.abcdef.web`));
    mkdirSync(join(paths.modulesDir, `.stayup-del.${DEAD_PID}.abcdef.gone`));
    // An old copy whose module is in place is just removed.
    mkdirSync(join(paths.modulesDir, `.stayup-old.${DEAD_PID}.123456.keep`));
    // A staging of a live process (this one) is left alone.
    const live = join(paths.modulesDir, `.stayup-tmp.${process.pid}.abcdef.busy`);
    mkdirSync(live);
    assert.deepEqual(listModules(paths), ['keep']);
    await install(paths, 'other'); // any locked operation recovers
    assert.deepEqual(listModuleIds(paths), [
      { name: 'keep', id: 2 },
      { name: 'other', id: 3 },
      { name: 'web', id: 1 },
    ]);
    assert.deepEqual(readdirSync(paths.modulesDir).sort(), [`.stayup-tmp.${process.pid}.abcdef.busy`, 'keep', 'other', 'web']);
  });

  test('lock: a stale lock of a dead process is broken; a live one times out with CONFLICT', async (t) => {
    const { paths } = tempNode(t);
    const lock = join(paths.modulesDir, '.lock');
    mkdirSync(lock, { recursive: true });
    writeFileSync(join(lock, 'owner'), `${DEAD_PID}\n`);
    assert.equal((await install(paths, 'web')).id, 1);
    assert.ok(!existsSync(lock));

    // Left by this very process in a former life (same pid and thread, e.g. after a reboot): stale.
    mkdirSync(lock);
    writeFileSync(join(lock, 'owner'), `${process.pid} 0\n`);
    assert.equal(withModulesLock(paths.modulesDir, () => 'mine', { timeoutMs: 100 }), 'mine');
    // Written before the last boot by a pid that happens to be alive now: stale.
    mkdirSync(lock);
    writeFileSync(join(lock, 'owner'), `${process.ppid} 0 00000000-0000-0000-0000-000000000000\n`);
    assert.equal(withModulesLock(paths.modulesDir, () => 'rebooted', { timeoutMs: 100 }), 'rebooted');
    assert.ok(!existsSync(lock));

    // A live owner: the parent of this process (the test runner) never exits during the test.
    mkdirSync(lock);
    writeFileSync(join(lock, 'owner'), `${process.ppid}\n`);
    const t0 = Date.now();
    await rejectsWith(
      () => withModulesLock(paths.modulesDir, () => 1, { timeoutMs: 200 }),
      'CONFLICT',
      `the modules directory ${paths.modulesDir} is locked by process ${process.ppid}; try again`,
    );
    assert.ok(Date.now() - t0 >= 200);
    assert.deepEqual(listModules(paths), ['web']);
  });

  test('lock: excludes another process until it releases', async (t) => {
    const { paths } = tempNode(t);
    const child = fileURLToPath(new URL('./fixtures/hold-lock.ts', import.meta.url));
    const cp = spawn(process.execPath, ['--import', 'tsx', child, paths.modulesDir, '1500'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    await new Promise<void>((res, rej) => {
      cp.stdout.on('data', (d) => {
        out += d;
        if (out.includes('locked')) res();
      });
      cp.on('exit', () => rej(new Error(`child exited early: ${out}`)));
    });
    await rejectsWith(
      () => withModulesLock(paths.modulesDir, () => 1, { timeoutMs: 100 }),
      'CONFLICT',
      `the modules directory ${paths.modulesDir} is locked by process ${cp.pid}; try again`,
    );
    const t0 = Date.now();
    // Waits (synchronously) for the child to release, then gets the lock.
    assert.equal(withModulesLock(paths.modulesDir, () => 'ok'), 'ok');
    assert.ok(Date.now() - t0 >= 500, 'had to wait for the other process');
    await new Promise((r) => cp.once('exit', r));
    assert.match(out, /locked\nreleased\n/);
  });

  test('lock: an ownerless lock is broken only once old', async (t) => {
    const { paths } = tempNode(t);
    const lock = join(paths.modulesDir, '.lock');
    mkdirSync(lock, { recursive: true });
    await rejectsWith(() => withModulesLock(paths.modulesDir, () => 1, { timeoutMs: 100 }), 'CONFLICT', `the modules directory ${paths.modulesDir} is locked; try again`);
    assert.equal(withModulesLock(paths.modulesDir, () => 42, { timeoutMs: 100, ownerlessStaleMs: 0 }), 42);
    assert.ok(!existsSync(lock));
    // Re-entrant within one call chain.
    assert.equal(withModulesLock(paths.modulesDir, () => withModulesLock(paths.modulesDir, () => 7)), 7);
  });
});
