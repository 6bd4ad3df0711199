// The VIP manager on real interfaces: a 2-server lab, an HTTP server bound to 0.0.0.0 on both servers,
// the VIP moved from node1 to node2 with tcpreset and gratuitous ARP, as the mirror will do it.
// Needs root (namespaces); every address is in the lab's /24 of 198.18.0.0/15; nothing is left behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.ts';
import { findTool } from '../../src/lab/sys.ts';
import { VipManager, type VipEvent } from '../../src/vip/manager.ts';
import { runCommand, type CommandRunner } from '../../src/vip/runner.ts';
import { vipConfig } from '../vip/fake-host.ts';

const LAB = 'viptest';
const PY = '/usr/bin/python3';
const PORT = 8080;

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the VIP lab test needs root (network namespaces, ip addr add); run the tests as root';
  for (const t of ['ip', 'nft', 'nsenter', 'unshare', 'mount', 'umount'] as const) {
    if (!findTool(t)) return `\`${t}\` is missing (run scripts/setup.sh)`;
  }
  const which = (p: string): boolean => spawnSync('sh', ['-c', `command -v ${p}`], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).status === 0;
  if (!which('arping')) return 'arping (iputils-arping) is not installed';
  if (!which('ss')) return 'ss (iproute2) is not installed';
  if (!which('curl')) return 'curl is not installed';
  if (!existsSync(PY)) return `${PY} is not installed`;
  return false;
}

const skip = skipReason();

function netnsOf(index: number): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`su${index}-`));
}

const ms = (from: bigint, to: bigint = process.hrtime.bigint()): number => Math.round(Number(to - from) / 1e5) / 10;

describe('VIP manager in the lab', { skip }, () => {
  let lab: Lab;
  let index = 0;
  let VIP = '';
  let mac1 = '';
  let mac2 = '';
  const timings: Record<string, number> = {};
  const events: VipEvent[] = [];
  const on = (node: string): CommandRunner => (argv, o) => runCommand(lab.commandFor(node, argv), o);
  const cfg = (): ReturnType<typeof vipConfig> => vipConfig([{ addr: VIP }], { arpreroute: true, arpIntervalMs: 1000, arpElapseMs: 10_000 });
  let m1: VipManager;
  let m2: VipManager;
  let node1UpAt = 0n;

  const curl = async (addr: string): Promise<string> => {
    const r = await lab.exec('client', ['curl', '-s', '--max-time', '2', `http://${addr}:${PORT}/whoami.txt`], { timeoutMs: 5000 });
    return r.code === 0 ? r.stdout.trim() : `curl exit ${r.code}`;
  };
  const clientNeigh = async (): Promise<string | undefined> => {
    const r = await lab.exec('client', ['ip', '-j', 'neigh', 'show', VIP, 'dev', 'eth0'], { check: true });
    return (JSON.parse(r.stdout || '[]') as Array<{ lladdr?: string }>)[0]?.lladdr;
  };
  const macOf = async (node: string): Promise<string> => {
    const r = await lab.exec(node, ['ip', '-j', 'link', 'show', 'dev', 'eth0'], { check: true });
    return (JSON.parse(r.stdout) as Array<{ address: string }>)[0]!.address;
  };
  const warnings = (): string[] => events.flatMap((e) => (e.type === 'warning' ? [e.error.message] : []));

  before(async () => {
    await Lab.down(LAB); // a run killed half-way left it behind
    lab = await Lab.up({ name: LAB, servers: 2 });
    index = lab.index;
    VIP = lab.ip(100);
    for (const n of ['node1', 'node2']) {
      writeFileSync(lab.hostPath(n, '/srv/whoami.txt'), `${n}\n`);
      await lab.spawn(n, [PY, '-m', 'http.server', String(PORT), '--bind', '0.0.0.0', '--directory', '/srv'], {
        logFile: `${lab.stateDir}/logs/${n}-http.log`,
      });
    }
    for (const n of ['node1', 'node2']) {
      const deadline = Date.now() + 10_000;
      while ((await curl(lab.addr(n))) !== n) {
        if (Date.now() > deadline) throw new Error(`the HTTP server on ${n} did not start`);
        await sleep(50);
      }
    }
    mac1 = await macOf('node1');
    mac2 = await macOf('node2');
    const opts = { secondBurstDelayMs: 3000, onEvent: (e: VipEvent) => events.push(e) };
    m1 = new VipManager(cfg(), { ...opts, run: on('node1') });
    m2 = new VipManager(cfg(), { ...opts, run: on('node2') });
  });

  after(async () => {
    try {
      await m1?.down().catch(() => undefined);
      await m2?.down().catch(() => undefined);
    } finally {
      const report = await Lab.down(LAB);
      assert.deepEqual(report.warnings, []);
      if (index) assert.deepEqual(netnsOf(index), [], 'no namespace of the lab is left');
      console.log(`# vip lab timings (ms): ${JSON.stringify(timings)}`);
    }
  });

  it('up on node1: the address is added, the checkers see it, and the client is answered by node1', async (t) => {
    node1UpAt = process.hrtime.bigint();
    const placed = await m1.up();
    timings.up_node1 = ms(node1UpAt);
    assert.deepEqual(placed, [{ addr: VIP, ip: VIP, iface: 'eth0', prefixLen: 24, added: true }]);
    const t1 = process.hrtime.bigint();
    assert.equal(await curl(VIP), 'node1');
    timings.first_answer_node1 = ms(t1);
    const st = await m1.status();
    assert.deepEqual(st[0]?.on, [{ iface: 'eth0', prefixLen: 24, label: 'eth0:vip' }]);
    assert.deepEqual(await m1.checkAddress(VIP), { state: 'up', reason: `VIP ${VIP} is on eth0` });
    assert.deepEqual(await m2.checkAddress(VIP), { state: 'down', reason: `VIP ${VIP} is not on any interface (expected on eth0)` });
    const checkers = await m1.checkers();
    assert.deepEqual(checkers.map((c) => c.resource), [`intf.${lab.subnet.split('/')[0]}`, `ip.${VIP}`]);
    assert.equal((await checkers[0]!.check()).state, 'up');
    assert.equal(await clientNeigh(), mac1);
    assert.equal(m1.pendingAnnouncements, 4, 'two arping running, the second burst and the first reroute pending');
    t.diagnostic(`up ${timings.up_node1} ms; first answer from the VIP ${timings.first_answer_node1} ms`);
  });

  it('down on node1 with tcpreset: a client holding an established connection gets a reset, not a hang', async (t) => {
    const py = [
      'import socket, time',
      `s = socket.create_connection(("${VIP}", ${PORT}), timeout=8)`,
      'try:',
      '    d = s.recv(1)',
      '    print("closed", time.monotonic_ns(), flush=True)',
      'except ConnectionResetError:',
      '    print("reset", time.monotonic_ns(), flush=True)',
      'except socket.timeout:',
      '    print("timeout", time.monotonic_ns(), flush=True)',
    ].join('\n');
    const client = lab.exec('client', [PY, '-c', py], { timeoutMs: 15_000 });
    const deadline = Date.now() + 5000;
    while ((await m1.connectionCount(VIP)) < 1) {
      if (Date.now() > deadline) throw new Error('the client never connected to the VIP');
      await sleep(20);
    }
    const t0 = process.hrtime.bigint();
    const removed = await m1.down();
    timings.down_node1 = ms(t0);
    const r = await client;
    const [what, at] = r.stdout.trim().split(' ');
    assert.equal(what, 'reset', `client saw: ${r.stdout} ${r.stderr}`);
    timings.client_reset_after_down_call = ms(t0, BigInt(at!));
    assert.equal(removed[0]?.removedFrom.join(), 'eth0');
    assert.ok(removed[0]!.reset >= 1, `ss -K reset ${removed[0]!.reset} connection(s)`);
    assert.equal(m1.pendingAnnouncements, 0, 'timers cancelled and arping stopped');
    assert.deepEqual(await m1.checkAddress(VIP), { state: 'down', reason: `VIP ${VIP} is not on any interface (expected on eth0)` });
    assert.deepEqual((await m1.down())[0]?.removedFrom, [], 'down again is a no-op');
    t.diagnostic(`down ${timings.down_node1} ms; client reset ${timings.client_reset_after_down_call} ms after down() was called`);
  });

  it('up on node2: its GARP moves the client to node2 within a second, without touching the client ARP cache', async (t) => {
    assert.equal(await clientNeigh(), mac1, 'the client still points at node1');
    const t0 = process.hrtime.bigint();
    await m2.up();
    timings.up_node2 = ms(t0);
    let mac = await clientNeigh();
    while (mac !== mac2 && ms(t0) < 1000) {
      await sleep(5);
      mac = await clientNeigh();
    }
    timings.client_neighbour_switched = ms(t0);
    assert.equal(mac, mac2, 'the client neighbour entry follows the gratuitous ARP within 1 s');
    assert.equal(await curl(VIP), 'node2');
    timings.first_answer_node2 = ms(t0);
    // node1's cancelled schedule (second burst 3 s after its up, reroute every 1 s) must not pull the client back.
    const wait = 3500 - ms(node1UpAt);
    if (wait > 0) await sleep(wait);
    assert.equal(await clientNeigh(), mac2, 'no late GARP from node1');
    assert.equal(await curl(VIP), 'node2');
    assert.deepEqual(warnings(), []);
    t.diagnostic(
      `up ${timings.up_node2} ms; client neighbour on node2's MAC after ${timings.client_neighbour_switched} ms; answered by node2 after ${timings.first_answer_node2} ms`,
    );
  });

  it('the interface checker sees a pulled cable and an administratively down NIC', async () => {
    assert.deepEqual(await m2.checkInterface('eth0'), { state: 'up', reason: 'interface eth0 is up with carrier' });
    try {
      await lab.linkDown('node2', 'switch');
      assert.deepEqual(await m2.checkInterface('eth0'), { state: 'down', reason: 'interface eth0 has no carrier (operstate DOWN)' });
      await lab.linkUp('node2');
      await lab.linkDown('node2', 'node');
      assert.deepEqual(await m2.checkInterface('eth0'), { state: 'down', reason: 'interface eth0 is administratively down' });
    } finally {
      await lab.linkUp('node2');
    }
    assert.equal((await m2.checkInterface('eth0')).state, 'up');
    await m2.down();
  });

  it('one_side: outbound connections from node1 leave from the VIP, and down gives the routes back', async () => {
    const vip2 = lab.ip(101);
    const m = new VipManager(vipConfig([{ addr: vip2, where: 'one_side' }]), { run: on('node1'), secondBurstDelayMs: 0 });
    const routes = async (): Promise<unknown> => JSON.parse((await lab.exec('node1', ['ip', '-j', '-4', 'route', 'show', 'table', 'main'], { check: true })).stdout);
    const srcTo = async (dst: string): Promise<string> =>
      (JSON.parse((await lab.exec('node1', ['ip', '-j', 'route', 'get', dst], { check: true })).stdout) as Array<{ prefsrc: string }>)[0]!.prefsrc;
    const before = await routes();
    assert.equal(await srcTo(lab.addr('client')), lab.addr('node1'));
    await m.up();
    try {
      assert.equal(await srcTo(lab.addr('client')), vip2);
      const r = await lab.exec('node1', ['curl', '-sS', '--max-time', '2', `http://${lab.addr('node2')}:${PORT}/whoami.txt`], { timeoutMs: 5000 });
      assert.equal(r.stdout.trim(), 'node2', `curl from node1 exited ${r.code}: ${r.stderr}`);
      const log = readFileSync(`${lab.stateDir}/logs/node2-http.log`, 'utf8');
      assert.match(log, new RegExp(`^${vip2.replace(/\./g, '\\.')} - - .*GET /whoami.txt`, 'm'), 'node2 saw the connection come from the VIP');
    } finally {
      await m.down();
    }
    assert.deepEqual(await routes(), before, 'the routes are as before');
    assert.equal(await srcTo(lab.addr('client')), lab.addr('node1'));
  });
});
