import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.ts';
import { firstStartReplicated, installModule, labSkipReason, stayupOn, upStayupLab, waitModuleState } from '../../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../../src/lab/mirror-module.ts';

// The replication's operator tools and its stall timeout, with real daemons on two lab servers: rfsverify
// on the secondary and rfsdiff on the primary; then the secondary's daemon is SIGSTOPped while an
// application on the primary writes and fsyncs records: its writes wait for the stalled peer for about
// sendtimeout (3 s here), then the primary drops it and the writes go on (the primary is ALONE); after
// SIGCONT the secondary is reintegrated, and rfsverify finds both copies identical.

const skip = labSkipReason({ replication: true });
const password = 'lab-admin-password';
const MODULE = 'tools';
const DATA = '/var/lib/app/data';
const SENDTIMEOUT_S = 3;

/** Appends numbered records with an fsync after each; prints "<n> <monotonic s>" once fsync returned. */
const WRITER_PY = `import os, sys, time
path, n = sys.argv[1], 1
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
while True:
    os.write(fd, b"%010d\\n" % n)
    os.fsync(fd)
    print(n, time.monotonic(), flush=True)
    n += 1
    time.sleep(0.01)
`;

describe('lab: rfsverify, rfsdiff, and a SIGSTOPped secondary dropped after sendtimeout', { skip }, () => {
  const name = `rt${process.pid % 100000}`;
  let lab: Lab;
  const report: string[] = [];
  const stayup = (node: string, args: string[]) => stayupOn(lab, node, args, { timeoutMs: 120_000 });

  before(async () => {
    lab = await upStayupLab({ name, password, dirs: [DATA], files: { '/srv/writer.py': WRITER_PY } });
    await lab.exec('node1', ['sh', '-c', `head -c 3000000 /dev/urandom > ${DATA}/static.bin && mkdir -p ${DATA}/d && echo hello > ${DATA}/d/a.txt`], { check: true });
    await installModule(lab, MODULE, await labMirrorPackage({ vip: lab.ip(100), pulseMs: 100, timeoutMs: 1000, startService: false, rfs: { dirs: [DATA], sendTimeout: `${SENDTIMEOUT_S}s` } }));
    // First start: neither node can prove its data is current; node1's is the one to copy (prim).
    await firstStartReplicated(lab, MODULE, 'node1', 120);
  });

  after(async () => {
    if (report.length) process.stdout.write(`# rfs tools figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    if (lab) await Lab.down(name);
  });

  it('rfsverify on the secondary and rfsdiff on the primary: identical copies, exit 0; on the wrong node, RFS_WRONG_ROLE', async () => {
    const v = await stayup('node2', ['rfsverify', '-m', MODULE]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /^rfsverify tools on node2: 2 files, 2 directories compared with node1 in .*; 0 paths differ; a reintegration from node1 to node2 would send 0 bytes/);
    const d = await stayup('node1', ['rfsdiff', '-m', MODULE]);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /^rfsdiff tools on node1: 2 files, 2 directories compared with node2 in .*; 0 paths differ/);
    report.push(v.stdout.trim(), d.stdout.trim());
    const wrong = await stayup('node1', ['rfsverify', '-m', MODULE]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^stayup: rfsverify runs on the secondary; module tools is PRIM on this node \(run it on node2/);
  });

  it(`the secondary's daemon stops (SIGSTOP): the writer waits about sendtimeout (${SENDTIMEOUT_S} s), then goes on ALONE; after SIGCONT the secondary is reintegrated and identical`, async () => {
    const log = join(lab.stateDir, 'logs', 'rfs-tools-writer.log');
    const writer = await lab.spawn('node1', ['python3', '/srv/writer.py', `${DATA}/records.txt`], { logFile: log });
    await sleep(1500);
    const stopped = await lab.stopProcesses('node2');
    const stoppedAt = Date.now();
    await waitModuleState(lab, 'node1', MODULE, 'ALONE', 30);
    await sleep((SENDTIMEOUT_S + 3) * 1000);
    const records = (): Array<[number, number]> =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => /^\d+ [\d.]+$/.test(l))
        .map((l) => l.split(' ').map(Number) as [number, number]);
    const during = records();
    // The longest wait between two records that returned: the stalled peer held the writes that long.
    let gap = 0;
    let after = 0;
    for (let i = 1; i < during.length; i++) {
      const g = during[i]![1] - during[i - 1]![1];
      if (g > gap) {
        gap = g;
        after = during[i - 1]![0];
      }
    }
    const wroteAfter = during.length - during.findIndex(([n]) => n === after) - 1;
    report.push(`SIGSTOP of node2's daemon (${stopped.length} processes): the writer's longest wait ${gap.toFixed(2)} s after record ${after}; ${wroteAfter} records written after it within ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s of the stop`);
    assert.ok(gap >= SENDTIMEOUT_S - 1 && gap <= SENDTIMEOUT_S + 4, `the writes waited ${gap.toFixed(2)} s for the stalled peer, sendtimeout is ${SENDTIMEOUT_S} s`);
    assert.ok(wroteAfter > 20, `the writer did not go on after the peer was dropped (${wroteAfter} records)`);
    const st = await stayup('node1', ['state', '-v', '-m', MODULE]);
    assert.match(st.stdout, new RegExp(`replication\\.lastStall: \\S+: the peer acknowledged nothing for [\\d.]+ s with frames waiting \\(sendtimeout ${SENDTIMEOUT_S}(\\.0)? s\\)`), st.stdout);
    const log1 = (await stayup('node1', ['log', '-m', MODULE, '-A', '-s', '400'])).stdout;
    assert.match(log1, /Replication to node2 stalled: the peer acknowledged nothing for/);

    await lab.contProcesses('node2');
    await waitModuleState(lab, 'node2', MODULE, 'SECOND', 120);
    await waitModuleState(lab, 'node1', MODULE, 'PRIM', 60);
    await lab.kill(writer.pid, 'SIGKILL');
    await sleep(500);
    const v = await stayup('node2', ['rfsverify', '-m', MODULE]);
    report.push(`after SIGCONT and the reintegration: ${v.stdout.trim()}`);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /; 0 paths differ;/);
  });
});
