import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalClient } from '../../src/cli/client.ts';
import { waitForState } from '../../src/cli/commands/control.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { stayupBin } from '../../src/lab/stayup-cluster.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import { api, cliEnv, rfsUserconfig, twoNodes, type TestNode } from '../daemon/rfs-harness.ts';

// The CLI against two real daemons in this process (test/daemon/rfs-harness.ts): a module that replicates
// a directory, node1 primary, node2 secondary after a real reintegration over TLS on loopback. The CLI
// runs as a child process (asynchronously: the daemons answer from this process's event loop).

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the replication runtime needs Linux';
  if (process.getuid?.() !== 0) return 'the replication runtime needs root';
  const n = nativeAvailable();
  return n === true ? false : n;
}

function cli(n: TestNode, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [stayupBin, ...args], { env: cliEnv(n), encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const MiB = 1024 * 1024;

describe('replication operator tools on two daemons: rfsverify, rfsdiff, state -v, waitstate', { skip: skipReason() }, () => {
  let n1: TestNode;
  let n2: TestNode;
  let close: () => Promise<void>;

  before(async () => {
    const pair = await twoNodes({ module: 'demo', moduleId: 29, userconfig: (data) => rfsUserconfig(data, 'reiallowedbw="10240"') });
    [n1, n2] = pair.nodes;
    close = pair.close;
    writeFileSync(join(n1.data, 'a.txt'), 'hello');
    writeFileSync(join(n1.data, 'big.bin'), randomBytes(2 * MiB + 100));
    mkdirSync(join(n1.data, 'sub'));
    writeFileSync(join(n1.data, 'sub', 'b.txt'), 'world');
    assert.equal((await api(n1, 'POST', '/api/v1/modules/demo/command', { command: 'prim' })).status, 200);
    await n1.ctx.modules.waitState('demo', ['ALONE'], 20_000);
    assert.equal((await api(n2, 'POST', '/api/v1/modules/demo/command', { command: 'start' })).status, 200);
    await n2.ctx.modules.waitState('demo', ['SECOND'], 30_000);
    await n1.ctx.modules.waitState('demo', ['PRIM'], 10_000);
  });
  after(async () => close?.());

  it('rfsverify on the secondary: the replicas are identical, exit 0 and the summary', async () => {
    const r = await cli(n2, ['rfsverify', '-m', 'demo']);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0, r.stdout);
    assert.match(
      r.stdout,
      /^rfsverify demo on node2: 3 files, 2 directories compared with node1 in \d+(\.\d)? m?s; 0 paths differ; a reintegration from node1 to node2 would send 0 bytes \(0 B\), about 0 ms at [\d.]+ [KMG]iB\/s \((reiallowedbw|last reintegration)\)\n$/,
    );
  });

  it('a file changed behind the replication: rfsverify lists it with its reasons and exits 1; rfsdiff on the primary says what a reintegration would send', async () => {
    const fd = openSync(join(n2.data, 'big.bin'), 'r+');
    writeSync(fd, Buffer.from('damage'), 0, 6, MiB + 5);
    closeSync(fd);
    const v = await cli(n2, ['rfsverify', '-m', 'demo']);
    assert.equal(v.code, 1, v.stdout + v.stderr);
    const lines = v.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, v.stdout);
    assert.match(lines[0]!, new RegExp(`^${n2.data}/big\\.bin: content: 1 of 3 blocks differ; mtime: \\S+ on node1, \\S+ on node2$`));
    assert.match(lines[1]!, /; 1 path differs; a reintegration from node1 to node2 would send 1048576 bytes \(1\.0 MiB\), about \d+ ms at [\d.]+ [KMG]iB\/s \((reiallowedbw|last reintegration)\)$/);

    const d = await cli(n1, ['rfsdiff', '-m', 'demo']);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    const dl = d.stdout.trimEnd().split('\n');
    assert.match(dl[0]!, new RegExp(`^${n1.data}/big\\.bin: content: 1 of 3 blocks differ; mtime: \\S+ on node1, \\S+ on node2$`));
    assert.match(dl[1]!, /^rfsdiff demo on node1: 3 files, 2 directories compared with node2 in .*; 1 path differs; a reintegration from node1 to node2 would send 1048576 bytes/);

    // -H from the primary to the secondary: the same report in node2's block, and its exit code.
    const h = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [stayupBin, '-H', `127.0.0.1:${n2.port}`, 'rfsverify', '-m', 'demo'], { env: { ...cliEnv(n1), STAYUP_VAR: n2.dir }, encoding: 'utf8' }, (e, stdout) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout }),
      );
    });
    assert.equal(h.code, 1, h.stdout);
    assert.match(h.stdout, /^--- node1 \(127\.0\.0\.1:\d+\): OK\n {4}\/\S+\/big\.bin: content: 1 of 3 blocks differ/);
  });

  it('each tool on the wrong node: RFS_WRONG_ROLE, exit 1, and where to run it', async () => {
    const v = await cli(n1, ['rfsverify', '-m', 'demo']);
    assert.equal(v.code, 1);
    assert.equal(v.stderr, 'stayup: rfsverify runs on the secondary; module demo is PRIM on this node (run it on node2: "stayup -H node2 rfsverify -m demo")\n');
    const d = await cli(n2, ['rfsdiff', '-m', 'demo']);
    assert.equal(d.code, 1);
    assert.equal(d.stderr, 'stayup: rfsdiff runs on the primary (ALONE or PRIM); module demo is SECOND on this node (run it on node1: "stayup -H node1 rfsdiff -m demo")\n');
  });

  it('state -v shows the replication: role, link, held calls, journal, last sync, clean, the last reintegration', async () => {
    const r = await cli(n1, ['state', '-v', '-m', 'demo']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\nreplication: role prim, link up \(protocol v\d+\), not mounted, 0 application calls waiting for the peer, journal 0 paths, not clean \(a role runs, or the last one ended in a crash\)\n/);
    assert.match(r.stdout, /\nreplication\.lastSync: \d{4}-\d\d-\d\dT[\d:.]+Z \(sync point [0-9a-f-]{36}\)\n/);
    assert.match(r.stdout, /\nreplication\.lastReintegration: full \(no common sync point\): 3 files, 2\.0 MiB sent in .*, ended \d{4}-/);
    const s = await cli(n2, ['state', '-v', '-m', 'demo']);
    assert.match(s.stdout, /\nreplication: role second, link up \(protocol v\d+\), not mounted, not clean/);
  });

  // The daemon answers a long poll at the end of its slice: the CLI must wait for that answer longer than the
  // slice. With the slice and the HTTP timeout equal (60 s each before the fix), the CLI gave up first and
  // said "cannot reach the stayup daemon". Here both are 500 ms, as in production both were 60 s.
  it('waitstate: long polls as long as the CLI\'s request timeout end in WAIT_TIMEOUT, not "cannot reach the daemon"', async () => {
    const client = new LocalClient(n1.ctx.paths.localTokenFile, n1.port, 500);
    const t0 = Date.now();
    await assert.rejects(
      () => waitForState(client, 'demo', ['STOP'], 2500, 500),
      (e: unknown) => {
        assert.ok(isStayupError(e), String(e));
        assert.equal(e.code, 'WAIT_TIMEOUT', e.message);
        assert.match(e.message, /^demo: still PRIM \(Ready\) after \d+ ms, waiting for STOP$/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 >= 2400, 'the wait ended before its timeout');
  });
});
