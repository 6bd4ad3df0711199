import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../../src/lab/lab.ts';
import { firstStartReplicated, installModule, labSkipReason, stayupOn, upStayupLab, waitModuleState } from '../../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../../src/lab/mirror-module.ts';
import { PROTOCOL_VERSION } from '../../src/replication/protocol.ts';

// <rfs nbremconn="3"> with real daemons on two lab servers: the replication stream goes over 3 TLS
// connections (state -v on both nodes says so, and the secondary's replication port has 3 connections from
// the primary); after writes through the primary's mount and after a reintegration of a secondary that was
// stopped while the primary wrote, rfsverify finds both copies identical.

const skip = labSkipReason({ replication: true });
const password = 'lab-admin-password';
const MODULE = 'striped';
const DATA = '/var/lib/app/data';
/** Module id 1: its replication port. */
const PORT = 5600;

describe('lab: nbremconn="3", the stream over three connections', { skip }, () => {
  const name = `rn${process.pid % 100000}`;
  let lab: Lab;
  const report: string[] = [];
  const stayup = (node: string, args: string[]) => stayupOn(lab, node, args, { timeoutMs: 120_000 });

  before(async () => {
    lab = await upStayupLab({ name, password, dirs: [DATA] });
    await lab.exec('node1', ['sh', '-c', `head -c 2000000 /dev/urandom > ${DATA}/static.bin`], { check: true });
    await installModule(lab, MODULE, await labMirrorPackage({ vip: lab.ip(100), pulseMs: 100, timeoutMs: 1000, startService: false, rfs: { dirs: [DATA], nbremconn: 3 } }));
    await firstStartReplicated(lab, MODULE, 'node1', 120);
  });

  after(async () => {
    if (report.length) process.stdout.write(`# nbremconn figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    if (lab) await Lab.down(name);
  });

  /** rfsverify on node2: exit 0, nothing differs. */
  async function identical(when: string): Promise<void> {
    const v = await stayup('node2', ['rfsverify', '-m', MODULE]);
    report.push(`${when}: ${v.stdout.trim()}`);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /; 0 paths differ;/);
  }

  /** state -v on both nodes says 3 connections; node2's replication port has 3 established from node1. */
  async function threeConnections(): Promise<void> {
    for (const node of ['node1', 'node2']) {
      const st = await stayup(node, ['state', '-v', '-m', MODULE]);
      assert.match(st.stdout, new RegExp(`\\nreplication: role (prim|second), link up \\(protocol v${PROTOCOL_VERSION}, 3 connections\\)`), `${node}: ${st.stdout}`);
    }
    const ss = await lab.exec('node2', ['ss', '-Htn', 'state', 'established', `( sport = :${PORT} )`], { check: true });
    const peers = ss.stdout.split('\n').filter((l) => l.includes(lab.ip(1)));
    assert.equal(peers.length, 3, ss.stdout);
  }

  it('live writes through the mount: state -v and ss show 3 connections, rfsverify finds the copies identical', async () => {
    await threeConnections();
    await lab.exec('node1', ['sh', '-c', `cd ${DATA} && mkdir -p d && for i in $(seq 1 300); do echo "record $i" >> d/log; done && head -c 20000000 /dev/urandom > d/big && mv d/log d/log.1 && sync d/big`], { check: true });
    await identical('after live writes');
  });

  it('the secondary stops while the primary writes; at its start it is reintegrated over 3 connections, identical', async () => {
    await stayup('node2', ['stop', '-m', MODULE]);
    await waitModuleState(lab, 'node1', MODULE, 'ALONE', 60);
    await lab.exec('node1', ['sh', '-c', `cd ${DATA} && head -c 5000000 /dev/urandom | dd of=d/big bs=1M seek=4 conv=notrunc status=none && echo new > e && rm d/log.1 && sync d/big`], { check: true });
    await stayup('node2', ['start', '-m', MODULE]);
    await waitModuleState(lab, 'node2', MODULE, 'SECOND', 120);
    await waitModuleState(lab, 'node1', MODULE, 'PRIM', 60);
    const st = await stayup('node1', ['state', '-v', '-m', MODULE]);
    const last = /replication\.lastReintegration: .*/.exec(st.stdout)?.[0] ?? '';
    report.push(last);
    assert.match(last, /incremental/, st.stdout);
    await threeConnections();
    await identical('after the reintegration');
  });
});
