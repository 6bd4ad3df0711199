import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { api, freePorts, loopbackRuntime, rfsConfig, rfsUserconfig, twoNodes, type TestNode } from './rfs-harness.ts';

// Bad inputs of the replication: a <tocheck> path that does not exist (the filesystem of the replicated
// directory is not mounted) is refused before anything is mounted or started, with a message that names
// the path; nothing changes.

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the replication runtime needs Linux';
  if (process.getuid?.() !== 0) return 'the replication runtime needs root';
  const n = nativeAvailable();
  return n === true ? false : n;
}

const mounts = (): string => readFileSync('/proc/self/mountinfo', 'utf8');

describe('a missing <tocheck> path', { skip: skipReason() }, () => {
  let n1: TestNode;
  let close: () => Promise<void>;
  before(async () => {
    const pair = await twoNodes({ module: 'guarded', moduleId: 30, userconfig: (data) => rfsUserconfig(data, '', '<tocheck path="app/marker"/>') });
    n1 = pair.nodes[0];
    close = pair.close;
  });
  after(async () => close?.());

  it('start is refused by the daemon (RFS_TOCHECK_MISSING, the path named), before the module engine is even opened', async () => {
    for (const command of ['start', 'prim', 'second', 'primforce']) {
      const r = await api<{ code: string; message: string }>(n1, 'POST', '/api/v1/modules/guarded/command', { command });
      assert.equal(r.status, 409, command);
      assert.deepEqual(r.body, {
        code: 'RFS_TOCHECK_MISSING',
        message: `<replicated dir="${n1.data}"> <tocheck path="app/marker">: ${n1.data}/app/marker does not exist (ENOENT): is the filesystem of ${n1.data} mounted? Nothing was mounted or started`,
      });
    }
    const st = await api<{ state: string; mirror?: unknown }>(n1, 'GET', '/api/v1/modules/guarded/state');
    assert.equal(st.body.state, 'STOP');
    assert.equal(st.body.mirror, undefined, 'an engine was opened');
    assert.ok(!mounts().includes(n1.data), 'something was mounted');
  });

  it('once the path exists, the same start is accepted', async () => {
    mkdirSync(join(n1.data, 'app'));
    writeFileSync(join(n1.data, 'app', 'marker'), '');
    const r = await api(n1, 'POST', '/api/v1/modules/guarded/command', { command: 'start' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
});

describe('the runtime checks every <tocheck> before its first mount', { skip: skipReason() }, () => {
  let base: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'stayup-tocheck-'));
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it('the second directory\'s path is missing: nothing is mounted, not even the first directory', async () => {
    const one = join(base, 'one');
    const two = join(base, 'two');
    mkdirSync(join(one, 'ok'), { recursive: true });
    mkdirSync(two);
    const rfs = rfsConfig(one, {
      replicated: [
        { dir: one, toCheck: [{ path: 'ok' }], notReplicated: [] },
        { dir: two, toCheck: [{ path: 'db/PG_VERSION' }], notReplicated: [] },
      ],
    } as never);
    const logs: string[] = [];
    const rt = loopbackRuntime({ rfs, port: await freePorts('127.0.0.1'), stateDir: join(base, 'state'), logs });
    try {
      await assert.rejects(
        () => rt.beforeScripts({ type: 'runScripts', id: 1, current: 'STOP', next: 'WAIT', action: 'start', calls: [{ script: 'prestart' }] }),
        (e: unknown) => {
          assert.ok(isStayupError(e));
          assert.equal(e.code, 'RFS_TOCHECK_MISSING');
          assert.equal(e.message, `<replicated dir="${two}"> <tocheck path="db/PG_VERSION">: ${two}/db/PG_VERSION does not exist (ENOENT): is the filesystem of ${two} mounted? Nothing was mounted or started`);
          return true;
        },
      );
      assert.equal(rt.status().mounted, false);
      assert.ok(!mounts().includes(one) && !mounts().includes(two), 'a directory was mounted');
    } finally {
      await rt.close();
    }
  });
});
