import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.ts';
import { findTool } from '../../src/lab/sys.ts';
import { startDaemons, stayupOn, stayupdBin, writeOnServer } from '../../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../../src/lab/mirror-module.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';

// Synchronous replication end to end: two lab servers, real daemons, a mirror module replicating
// /var/lib/app/data (each server has its own /var/lib/app). A writer appends numbered records with an fsync
// after each and prints the number once fsync returned; the primary server is killed at a random moment,
// 20 times. After each failover every printed record must be on the new primary. The old primary comes
// back, is reintegrated (the figures: bytes copied against the data size), and becomes the next victim.

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the lab needs root (network and mount namespaces)';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  for (const t of ['ip', 'nft', 'nsenter', 'unshare'] as const) if (!findTool(t)) return `\`${t}\` is missing (run scripts/setup.sh)`;
  const native = nativeAvailable();
  if (native !== true) return native;
  return false;
}
const skip = skipReason();
const password = 'lab-admin-password';
const MODULE = 'rep';
const DATA = '/var/lib/app/data';
const ROUNDS = Number(process.env['STAYUP_REPL_ROUNDS'] ?? 20);

const WRITER_PY = `import os, sys
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
while True:
    os.write(fd, b"%010d\\n" % n)
    os.fsync(fd)
    print(n, flush=True)
    n += 1
`;

describe('replication: no acknowledged write lost across 20 primary crashes; resync copies only what changed', { skip }, () => {
  const name = `rp${process.pid % 100000}`;
  let lab: Lab;
  const report: string[] = [];

  const waitState = async (node: string, state: string, timeoutS = 60): Promise<void> => {
    const r = await stayupOn(lab, node, ['waitstate', '-m', MODULE, '-t', String(timeoutS), state], { timeoutMs: (timeoutS + 10) * 1000 });
    if (r.code !== 0) {
      const v = await stayupOn(lab, node, ['state', '-m', MODULE, '-v']);
      const log = await stayupOn(lab, node, ['log', '-m', MODULE, '-s', '60']);
      assert.fail(`${node} did not reach ${state}: ${r.stdout}${r.stderr}\n${v.stdout}\n${log.stdout}`);
    }
  };
  const startDaemon = async (node: string): Promise<void> => {
    await lab.spawn(node, [process.execPath, stayupdBin], { logFile: join(lab.stateDir, 'logs', `${node}-stayupd.log`) });
    for (let i = 0; i < 200; i++) {
      if ((await stayupOn(lab, node, ['level'], { timeoutMs: 10_000 })).code === 0) return;
      await sleep(100);
    }
    assert.fail(`stayupd on ${node} did not answer`);
  };
  const moduleLog = async (node: string, lines = 400): Promise<string> => (await stayupOn(lab, node, ['log', '-A', '-m', MODULE, '-s', String(lines)])).stdout;
  const records = async (node: string): Promise<number[]> => {
    const r = await lab.exec(node, ['sh', '-c', `cat ${DATA}/records.txt 2>/dev/null || true`]);
    return r.stdout.split('\n').filter(Boolean).map(Number);
  };

  before(async () => {
    lab = await Lab.up({ name, servers: 2 });
    await startDaemons(lab, { password });
    const xml = `<cluster>\n  <lans>\n    <lan name="default">\n${lab.servers.map((n) => `      <node name="${n}" addr="${lab.addr(n)}"/>`).join('\n')}\n    </lan>\n  </lans>\n</cluster>\n`;
    writeOnServer(lab, 'node1', '/srv/cluster.xml', xml);
    const c = await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'config', '/srv/cluster.xml'], { env: { STAYUP_PASSWORD: password } });
    assert.equal(c.code, 0, c.stdout + c.stderr);
    for (const n of lab.servers) {
      await lab.exec(n, ['mkdir', '-p', DATA], { check: true });
      writeOnServer(lab, n, '/srv/writer.py', WRITER_PY);
    }
    // Some data that does not change, so a resync has something it must not copy.
    await lab.exec('node1', ['sh', '-c', `head -c 33554432 /dev/urandom > ${DATA}/static.bin`], { check: true });
    writeOnServer(lab, 'node1', '/srv/rep.safe', await labMirrorPackage({ vip: lab.ip(100), pulseMs: 100, timeoutMs: 1000, startService: false, rfs: { dirs: [DATA], async: 'second' } }));
    const i = await stayupOn(lab, 'node1', ['-H', '*', 'module', 'install', '-m', MODULE, '/srv/rep.safe']);
    assert.equal(i.code, 0, i.stdout + i.stderr);
  });

  after(async () => {
    if (report.length) process.stdout.write(`# replication figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    if (lab) await Lab.down(name);
  });

  it('a first start copies the data to the secondary (full reintegration), which then is a byte-identical copy', async () => {
    const r = await stayupOn(lab, 'node1', ['-H', '*', 'start', '-m', MODULE]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // A first start: neither node can prove its data is current, both wait; the operator names the source.
    await waitState('node1', 'WAIT');
    const p = await stayupOn(lab, 'node1', ['prim', '-m', MODULE]);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    await waitState('node1', 'PRIM');
    await waitState('node2', 'SECOND');
    const sum = async (n: string): Promise<string> => (await lab.exec(n, ['sh', '-c', `md5sum < ${DATA}/static.bin`])).stdout.trim();
    assert.equal(await sum('node2'), await sum('node1'));
    // The secondary's copy is read-only to applications.
    const w = await lab.exec('node2', ['sh', '-c', `echo x > ${DATA}/nope.txt`]);
    assert.notEqual(w.code, 0);
    assert.match(w.stderr, /Read-only/i);
    const line = (await moduleLog('node1')).split('\n').find((l) => /Reintegration ended/.test(l));
    report.push(`first start: ${line?.replace(/^.*Reintegration ended/, 'Reintegration ended') ?? '(no line)'}`);
  });

  it(`${ROUNDS} crashes of the primary while it writes and fsyncs records: every acknowledged record survives`, async () => {
    let prim = 'node1';
    let next = 1;
    for (let round = 1; round <= ROUNDS; round++) {
      const second = prim === 'node1' ? 'node2' : 'node1';
      const out = join(lab.stateDir, 'logs', `writer-${round}.log`);
      await lab.spawn(prim, ['python3', '/srv/writer.py', `${DATA}/records.txt`, String(next)], { logFile: out });
      await sleep(300 + Math.floor(Math.random() * 1200));
      await lab.killServer(prim);
      const printed = readFileSync(out, 'utf8').split('\n').filter(Boolean).map(Number);
      const acked = printed.length ? printed[printed.length - 1]! : next - 1;
      await waitState(second, 'ALONE', 30);
      const have = await records(second);
      const missing: number[] = [];
      const present = new Set(have);
      for (let k = 1; k <= acked; k++) if (!present.has(k)) missing.push(k);
      assert.deepEqual(missing.slice(0, 10), [], `round ${round}: records acknowledged on ${prim} but missing on ${second} (acked up to ${acked})`);
      // Contiguous: no hole before the last record either.
      const last = have.length ? have[have.length - 1]! : 0;
      assert.deepEqual(have, Array.from({ length: have.length }, (_, k) => k + 1), `round ${round}: records not contiguous`);
      // The old primary returns and is reintegrated.
      await lab.startServer(prim);
      await startDaemon(prim);
      const s = await stayupOn(lab, prim, ['start', '-m', MODULE]);
      assert.equal(s.code, 0, s.stdout + s.stderr);
      await waitState(prim, 'SECOND', 120);
      const ended = (await moduleLog(second)).split('\n').filter((l) => /Reintegration ended/.test(l)).pop() ?? '';
      report.push(`round ${round}: ${prim} killed after record ${acked} (${last} on ${second}); back as SECOND: ${ended.replace(/^.*Reintegration ended/, 'Reintegration ended')}`);
      next = last + 1;
      prim = second;
    }
  });
});
