import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { buildScriptEnv, SYSTEM_PATH } from '../../src/scripts/environment.ts';
import { installDir } from '../../src/util/paths.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const base = {
  module: 'pg',
  safeDir: '/opt/stayup/safe',
  userBinDir: '/var/lib/x/modules/pg/bin',
  userConfDir: '/var/lib/x/modules/pg/conf',
};

test('the script environment is exactly the SAFE* and STAYUP_* variables, the <var>s and an allowlist', () => {
  const env = buildScriptEnv({
    ...base,
    vars: [
      { name: 'PGDATA', value: '/srv/pg' },
      { name: 'PGPORT', value: '5432' },
      { name: 'PGPORT', value: '5433' },
    ],
    parentEnv: {
      PATH: '/usr/local/bin:/usr/bin:relative:/bin',
      LANG: 'fr_FR.UTF-8',
      TZ: 'Europe/Paris',
      STAYUP_VAR: '/srv/stayup',
      HOME: '/home/daemon',
      AWS_SECRET_ACCESS_KEY: 'x',
      NODE_OPTIONS: '--inspect',
    },
  });
  const bin = join(installDir, 'bin');
  assert.deepEqual(env, {
    LANG: 'fr_FR.UTF-8',
    TZ: 'Europe/Paris',
    PATH: [
      '/opt/stayup/safe',
      bin,
      ...[dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin', ...SYSTEM_PATH.split(':')].filter(
        (p, i, a) => a.indexOf(p) === i,
      ),
    ]
      .filter((p, i, a) => a.indexOf(p) === i)
      .join(':'),
    HOME: userInfo().homedir,
    SAFE: '/opt/stayup/safe',
    SAFEMODULE: 'pg',
    SAFEBIN: bin,
    SAFEUSERBIN: base.userBinDir,
    SAFEUSERCONF: base.userConfDir,
    SAFEVAR: '/srv/stayup',
    SAFEUSERVAR: '/srv/stayup/modvar/pg',
    STAYUP_HOME: installDir,
    STAYUP_MODULE: 'pg',
    STAYUP_BIN: bin,
    STAYUP_USERBIN: base.userBinDir,
    STAYUP_USERCONF: base.userConfDir,
    STAYUP_VAR: '/srv/stayup',
    STAYUP_USERVAR: '/srv/stayup/modvar/pg',
    PGDATA: '/srv/pg',
    PGPORT: '5433',
  });
  assert.ok(!env.PATH!.split(':').includes('relative'), 'relative PATH entries are dropped');
});

test('explicit directories win over the defaults, and a <var> map works like a list', () => {
  const env = buildScriptEnv({
    ...base,
    varDir: '/v',
    userVarDir: '/v/m',
    binDir: '/b',
    installDir: '/i',
    vars: { A: '1' },
    parentEnv: {},
  });
  assert.equal(env.SAFEVAR, '/v');
  assert.equal(env.STAYUP_VAR, '/v');
  assert.equal(env.SAFEUSERVAR, '/v/m');
  assert.equal(env.SAFEBIN, '/b');
  assert.equal(env.STAYUP_HOME, '/i');
  assert.equal(env.A, '1');
  assert.equal(env.LANG, undefined);
  assert.ok(env.PATH!.startsWith('/opt/stayup/safe:/b:'));
  for (const dir of SYSTEM_PATH.split(':')) assert.ok(env.PATH!.split(':').includes(dir), dir);
});

test('a <var> may not override stayup variables, nor have a bad name or a NUL byte', () => {
  const bad = (vars: { name: string; value: string }[], re: RegExp): void =>
    assert.throws(() => buildScriptEnv({ ...base, vars, parentEnv: {} }), (e) => isStayupError(e) && e.code === 'CONFIG_INVALID' && re.test(e.message));
  bad([{ name: 'SAFEMODULE', value: 'x' }], /set by stayup/);
  bad([{ name: 'STAYUP_VAR', value: 'x' }], /set by stayup/);
  bad([{ name: '1X', value: 'x' }], /letters, digits/);
  bad([{ name: 'A=B', value: 'x' }], /letters, digits/);
  bad([{ name: '', value: 'x' }], /letters, digits/);
  bad([{ name: 'OK', value: 'a\0b' }], /NUL/);
  // PATH and LANG are not stayup's: a module may set them.
  const env = buildScriptEnv({ ...base, vars: [{ name: 'PATH', value: '/only' }, { name: 'LANG', value: 'C' }], parentEnv: {} });
  assert.equal(env.PATH, '/only');
  assert.equal(env.LANG, 'C');
});
