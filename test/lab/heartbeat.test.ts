// Mirror heartbeats over real UDP between two lab servers, with TWO heartbeat lans.
//
// The lab has one bridge, so the two "lans" are two address pairs on it: lan "a" is each server's lab
// address (198.18.k.i), lan "b" a second address added to the same NIC (198.18.k.(20+i)). cluster.xml
// lists both, so each transport binds one socket per lan to that lan's address (same port, as in
// production) and sends to the peer's address on that lan. Cutting lan "b" is an nft rule in the
// switch namespace that drops every IPv4 packet from or to a lan-b address, both directions: lan a's
// packets cross the same bridge untouched. What this does test: the two lans are independent paths end
// to end in the transport (sockets, addresses, per-lan counters, per-lan loss detection), and losing one
// path keeps the peer up while losing both loses it. What it does not: a NIC or cable failing on one
// interface only (routing, carrier), which two bridges would show; the transport does not see the NIC.
//
// Every address is in 198.18.0.0/15 and every packet stays inside namespaces this test creates.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, type SpawnedProcess } from '../../src/lab/lab.ts';
import { findTool, mustRun, tool } from '../../src/lab/sys.ts';
import { writeOnServer } from '../../src/lab/stayup-cluster.ts';
import { generateModuleKey, writeModuleKey } from '../../src/heartbeat/module-key.ts';
import { nodePaths, installDir } from '../../src/util/paths.ts';
import { modulePorts } from '../../src/packages/module-store.ts';

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the lab needs root (network and mount namespaces); run the tests as root';
  for (const t of ['ip', 'nft', 'nsenter', 'unshare', 'mount', 'umount'] as const) {
    if (!findTool(t)) return `\`${t}\` is missing (run scripts/setup.sh)`;
  }
  return false;
}

const skip = skipReason();
const PULSE_MS = 50;
const TIMEOUT_MS = 1000;
const MODULE = 'hb';
const MODULE_ID = 1;
const PORT = modulePorts(MODULE_ID).heartbeatUdp;
const CUT_TABLE = 'stayup_hbtest';

interface Line {
  t: number;
  ev: string;
  lan?: string;
  state?: string;
  from?: string;
  seq?: number;
  reason?: string;
  counters?: Record<string, { sent: number; received: number; rejected: Record<string, number> }>;
}

describe('heartbeats between two lab servers on two lans', { skip }, () => {
  const baseDir = skip ? '' : mkdtempSync(join(tmpdir(), 'stayup-hblab-'));
  const name = `hb${process.pid % 100000}`;
  let lab: Lab;
  const procs = new Map<string, SpawnedProcess>();
  const logs = new Map<string, string>();
  const lanB = (node: string): string => lab.ip(20 + Number(node.replace('node', '')));
  const timings: string[] = [];

  const read = (node: string): Line[] => {
    let text = '';
    try {
      text = readFileSync(logs.get(node)!, 'utf8');
    } catch {
      return [];
    }
    const out: Line[] = [];
    for (const l of text.split('\n')) {
      if (!l.startsWith('{')) continue;
      try {
        out.push(JSON.parse(l) as Line);
      } catch {
        /* a line being written */
      }
    }
    return out;
  };
  const since = (node: string, t: number, pred: (l: Line) => boolean): Line[] => read(node).filter((l) => l.t >= t && pred(l));
  const waitLine = async (node: string, what: string, t: number, pred: (l: Line) => boolean, timeoutMs: number): Promise<Line> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = since(node, t, pred)[0];
      if (hit) return hit;
      if (Date.now() > end) assert.fail(`${node}: no ${what} within ${timeoutMs} ms; log tail:\n${readFileSync(logs.get(node)!, 'utf8').split('\n').slice(-15).join('\n')}`);
      await sleep(20);
    }
  };
  const switchNft = (script: string) => mustRun(tool('nsenter'), [`--net=/run/netns/${lab.switchNetns}`, '--', tool('nft'), '-f', '-'], { input: script });

  before(async () => {
    const t0 = Date.now();
    lab = await Lab.up({ name, servers: 2, baseDir });
    timings.push(`lab up ${Date.now() - t0} ms`);
    const key = generateModuleKey();
    const xmlNodes = (addr: (n: string) => string) => lab.servers.map((n) => `      <node name="${n}" addr="${addr(n)}"/>`).join('\n');
    const clusterXml = `<cluster>\n  <lans>\n    <lan name="a">\n${xmlNodes((n) => lab.addr(n))}\n    </lan>\n    <lan name="b">\n${xmlNodes(lanB)}\n    </lan>\n  </lans>\n</cluster>\n`;
    for (const n of lab.servers) {
      await lab.exec(n, ['ip', 'addr', 'add', `${lanB(n)}/24`, 'dev', 'eth0'], { check: true });
      writeOnServer(lab, n, '/var/lib/stayup/cluster/cluster.xml', clusterXml);
      const paths = nodePaths({ STAYUP_VAR: lab.hostPath(n, '/var/lib/stayup') });
      mkdirSync(join(paths.modulesDir, MODULE, 'conf'), { recursive: true });
      writeModuleKey(paths, MODULE, key);
    }
    for (const n of lab.servers) {
      const peer = lab.servers.find((x) => x !== n)!;
      const logFile = join(lab.stateDir, 'logs', `${n}-hb-node.log`);
      logs.set(n, logFile);
      const args = { node: n, peer, module: MODULE, moduleId: MODULE_ID, pulseMs: PULSE_MS, timeoutMs: TIMEOUT_MS, lans: ['a', 'b'] };
      procs.set(n, await lab.spawn(n, [process.execPath, '--import', 'tsx', join(installDir, 'test/heartbeat/fixtures/hb-node.ts'), JSON.stringify(args)], { logFile, cwd: installDir }));
    }
  });

  after(async () => {
    process.stderr.write(`# heartbeat lab timings (pulse ${PULSE_MS} ms, timeout ${TIMEOUT_MS} ms): ${timings.join('; ')}\n`);
    for (const p of procs.values()) await lab?.kill(p.pid).catch(() => false);
    await Lab.down(name, { baseDir }).catch(() => {});
    rmSync(baseDir, { recursive: true, force: true });
  });

  it('both nodes hear each other on both lans, each bound to its lan address', async () => {
    const t0 = Date.now();
    for (const n of lab.servers) {
      const ready = await waitLine(n, 'ready line', 0, (l) => l.ev === 'ready', 20_000);
      assert.deepEqual((ready as unknown as { local: unknown }).local, { a: { address: lab.addr(n), port: PORT }, b: { address: lanB(n), port: PORT } });
    }
    for (const n of lab.servers) {
      for (const lan of ['a', 'b']) await waitLine(n, `frame on lan ${lan}`, 0, (l) => l.ev === 'frame' && l.lan === lan, 10_000);
      await waitLine(n, 'peer up', 0, (l) => l.ev === 'peer' && l.state === 'up', 5000);
    }
    timings.push(`both lans up ${Date.now() - t0} ms after the processes were ready`);
  });

  it('lan b cut: frames keep arriving on lan a, lan b goes down, the peer stays up', async () => {
    const cutAt = Date.now();
    await switchNft(
      [
        `table bridge ${CUT_TABLE} {`,
        `  chain forward {`,
        `    type filter hook forward priority -50; policy accept;`,
        `    ip saddr { ${lab.servers.map(lanB).join(', ')} } drop`,
        `    ip daddr { ${lab.servers.map(lanB).join(', ')} } drop`,
        `  }`,
        `}`,
        '',
      ].join('\n'),
    );
    const cutDone = Date.now();
    for (const n of lab.servers) {
      const down = await waitLine(n, 'lan b down', cutAt, (l) => l.ev === 'lan' && l.lan === 'b' && l.state === 'down', TIMEOUT_MS + 3000);
      timings.push(`${n}: lan b down ${down.t - cutAt} ms after the cut`);
    }
    await sleep(TIMEOUT_MS);
    const settled = cutDone + 100; // frames already in flight when the rule went in
    for (const n of lab.servers) {
      const onA = since(n, settled, (l) => l.ev === 'frame' && l.lan === 'a').length;
      const onB = since(n, settled, (l) => l.ev === 'frame' && l.lan === 'b').length;
      assert.ok(onA >= 5, `${n}: frames still arrive on lan a (${onA})`);
      assert.equal(onB, 0, `${n}: nothing arrives on lan b`);
      assert.deepEqual(since(n, cutAt, (l) => l.ev === 'peer'), [], `${n}: the peer is never lost`);
      assert.deepEqual(since(n, cutAt, (l) => l.ev === 'lan' && l.lan === 'a'), [], `${n}: lan a never goes down`);
    }
  });

  it('both lans cut: no frame arrives and both nodes lose the peer; restore: frames and the peer come back', async () => {
    const cutAt = Date.now();
    await lab.cut('node1', 'node2');
    const cutDone = Date.now();
    for (const n of lab.servers) {
      const lost = await waitLine(n, 'peer lost', cutAt, (l) => l.ev === 'peer' && l.state === 'lost', TIMEOUT_MS + 3000);
      timings.push(`${n}: peer lost ${lost.t - cutAt} ms after cutting both lans`);
    }
    const quietFrom = Date.now();
    await sleep(500);
    for (const n of lab.servers) {
      assert.deepEqual(since(n, cutDone + 100, (l) => l.ev === 'frame'), [], `${n}: no frame once both lans are cut`);
      assert.deepEqual(since(n, quietFrom, (l) => l.ev === 'peer'), [], `${n}: the loss is reported once`);
    }

    const restoreAt = Date.now();
    await lab.restore('node1', 'node2');
    await switchNft(`delete table bridge ${CUT_TABLE}\n`);
    for (const n of lab.servers) {
      for (const lan of ['a', 'b']) {
        const f = await waitLine(n, `frame on lan ${lan} after restore`, restoreAt, (l) => l.ev === 'frame' && l.lan === lan, 5000);
        timings.push(`${n}: first frame on lan ${lan} ${f.t - restoreAt} ms after restore`);
      }
      const up = await waitLine(n, 'peer up after restore', restoreAt, (l) => l.ev === 'peer' && l.state === 'up', 5000);
      timings.push(`${n}: peer up ${up.t - restoreAt} ms after restore`);
    }
  });

  it('no frame was ever rejected, and the counters add up', async () => {
    // Counters are written once a second: wait (bounded) until lan b, restored a moment ago, has heard a
    // few frames again on both nodes, rather than trusting one fixed sleep on a loaded 2-core machine.
    const latest = (n: string) => read(n).filter((l) => l.ev === 'counters').pop()?.counters;
    for (let i = 0; i < 50; i++) {
      if (lab.servers.every((n) => (latest(n)?.b?.received ?? 0) > 5)) break;
      await sleep(200);
    }
    for (const n of lab.servers) {
      assert.deepEqual(read(n).filter((l) => l.ev === 'rejected' || l.ev === 'warning'), [], `${n}: nothing rejected, no socket warning`);
      const c = read(n).filter((l) => l.ev === 'counters').pop()!.counters!;
      for (const lan of ['a', 'b']) {
        assert.ok(c[lan]!.sent > 20 && c[lan]!.received > 5 && c[lan]!.received <= c[lan]!.sent + 5, `${n} lan ${lan}: ${JSON.stringify(c[lan])}`);
        assert.equal(Object.values(c[lan]!.rejected).reduce((x, y) => x + y, 0), 0);
      }
      assert.ok(c.a!.received > c.b!.received, `${n}: lan a heard more than lan b, which was cut longer`);
    }
  });
});
