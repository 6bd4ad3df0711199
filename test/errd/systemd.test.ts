// Service procs: reading `systemctl is-active`, and the operating error when systemd is not PID 1.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { interpretIsActive, initName, systemdIsPid1, systemdServiceChecker, type SystemctlResult } from '../../src/errd/systemd.ts';

describe('systemctl is-active answers', () => {
  const cases: Array<[string, SystemctlResult, ReturnType<typeof interpretIsActive>]> = [
    ['active', { code: 0, stdout: 'active\n', stderr: '' }, { kind: 'active' }],
    ['reloading counts as active (exit 0)', { code: 0, stdout: 'reloading\n', stderr: '' }, { kind: 'active' }],
    ['inactive', { code: 3, stdout: 'inactive\n', stderr: '' }, { kind: 'inactive', state: 'inactive' }],
    ['failed', { code: 3, stdout: 'failed\n', stderr: '' }, { kind: 'inactive', state: 'failed' }],
    ['activating', { code: 3, stdout: 'activating\n', stderr: '' }, { kind: 'inactive', state: 'activating' }],
    [
      'no bus',
      { code: 1, stdout: '', stderr: 'System has not been booted with systemd as init system (PID 1). Can\'t operate.\nFailed to connect to bus\n' },
      { kind: 'error', message: "systemctl is-active failed: System has not been booted with systemd as init system (PID 1). Can't operate." },
    ],
    ['cannot run', { code: null, stdout: '', stderr: '', error: 'spawn systemctl ENOENT' }, { kind: 'error', message: 'spawn systemctl ENOENT' }],
    ['odd output', { code: 4, stdout: '', stderr: '' }, { kind: 'error', message: 'systemctl is-active failed: exit 4' }],
  ];
  for (const [what, r, expected] of cases) {
    it(what, () => assert.deepEqual(interpretIsActive(r), expected));
  }
});

describe('the service checker', () => {
  it('without systemd as PID 1: an operating error naming PID 1, systemctl not run', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'stayup-errd-init-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, '1'));
    writeFileSync(join(root, '1', 'comm'), 'tini\n');
    assert.equal(initName(root), 'tini');
    assert.equal(systemdIsPid1(root), false);
    let ran = 0;
    const check = systemdServiceChecker({ procRoot: root, run: async () => (ran++, { code: 0, stdout: 'active', stderr: '' }) });
    assert.deepEqual(await check('nginx'), {
      kind: 'error',
      message: 'systemd is not PID 1 on this node (PID 1 is tini), so service="yes" cannot be monitored',
    });
    assert.equal(ran, 0);
  });

  it('with systemd: asks systemctl about the unit', async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'stayup-errd-init-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, '1'));
    writeFileSync(join(root, '1', 'comm'), 'systemd\n');
    const asked: string[] = [];
    const check = systemdServiceChecker({
      procRoot: root,
      run: async (u) => (asked.push(u), u === 'nginx' ? { code: 0, stdout: 'active\n', stderr: '' } : { code: 3, stdout: 'inactive\n', stderr: '' }),
    });
    assert.deepEqual(await check('nginx'), { kind: 'active' });
    assert.deepEqual(await check('db'), { kind: 'inactive', state: 'inactive' });
    assert.deepEqual(asked, ['nginx', 'db']);
  });

  it('on this machine: never throws, and answers by what PID 1 is', async () => {
    const r = await systemdServiceChecker()('stayup-no-such-unit-4711.service');
    if (systemdIsPid1()) assert.deepEqual(r, { kind: 'inactive', state: 'inactive' });
    else {
      assert.equal(r.kind, 'error');
      assert.match((r as { message: string }).message, /^systemd is not PID 1 on this node/);
    }
  });
});
