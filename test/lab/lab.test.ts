// End-to-end test of the lab itself: builds real namespaces, so it needs root (skipped otherwise).
// Every address is in 198.18.0.0/15 and every packet stays inside namespaces this test creates.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Lab } from '../../src/lab/lab.ts';
import { bridgeName, endpointNames, hostAddr, subnetCidr, switchNetns, MAX_INDEX, MAX_SERVERS } from '../../src/lab/names.ts';
import { findTool, isAlive, procStat } from '../../src/lab/sys.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the lab needs root (network and mount namespaces); run the tests as root';
  for (const t of ['ip', 'nft', 'nsenter', 'unshare', 'mount', 'umount'] as const) {
    if (!findTool(t)) return `\`${t}\` is missing (run scripts/setup.sh)`;
  }
  if (!findPing() && !existsSync('/usr/sbin/arping') && !existsSync('/usr/bin/arping')) return 'neither ping (iputils-ping) nor arping (iputils-arping) is installed';
  return false;
}

function findPing(): string | undefined {
  return ['/usr/bin/ping', '/bin/ping', '/usr/sbin/ping'].find((p) => existsSync(p));
}

/** One probe from `from` to `addr`: ping -c1 -W1 (arping when ping is not installed). */
async function probe(lab: Lab, from: string, addr: string): Promise<boolean> {
  const argv = findPing() ? ['ping', '-c1', '-W1', '-q', addr] : ['arping', '-c1', '-w1', '-I', 'eth0', addr];
  return (await lab.exec(from, argv, { timeoutMs: 5000 })).code === 0;
}

/** Reachable: a success within a few tries (the first probe after a heal may still wait for ARP). */
async function reachable(lab: Lab, from: string, addr: string, tries = 3): Promise<boolean> {
  for (let i = 0; i < tries; i++) if (await probe(lab, from, addr)) return true;
  return false;
}

async function assertReach(lab: Lab, pairs: Array<[string, string, boolean]>): Promise<void> {
  const got = await Promise.all(pairs.map(async ([a, b, want]) => (want ? reachable(lab, a, lab.addr(b)) : probe(lab, a, lab.addr(b)))));
  pairs.forEach(([a, b, want], i) => assert.equal(got[i], want, `${a} -> ${b} should be ${want ? 'reachable' : 'blocked'}`));
}

function netnsList(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

function labNetns(index: number): string[] {
  return netnsList().filter((n) => n.startsWith(`su${index}-`));
}

function mountinfo(): string {
  return readFileSync('/proc/self/mountinfo', 'utf8');
}

function assertGone(index: number, stateDir: string, pids: Array<{ pid: number; startTime: number }>): void {
  assert.deepEqual(labNetns(index), [], 'no namespace of the lab is left');
  const mi = mountinfo();
  assert.ok(!mi.includes(stateDir), `no mount under ${stateDir} is left`);
  assert.ok(!mi.includes(`/run/netns/su${index}-`), 'no netns file of the lab is mounted');
  for (const p of pids) assert.ok(!isAlive(p.pid, p.startTime), `process ${p.pid} was killed`);
  assert.ok(!existsSync(stateDir), 'state dir removed');
}

// ------------------------------------------------------------------------------------------- pure parts

describe('lab naming and addressing', () => {
  it('gives every lab its own /24 in 198.18.0.0/15', () => {
    assert.equal(subnetCidr(1), '198.18.1.0/24');
    assert.equal(subnetCidr(255), '198.18.255.0/24');
    assert.equal(subnetCidr(256), '198.19.0.0/24');
    assert.equal(subnetCidr(MAX_INDEX), '198.19.255.0/24');
    assert.equal(hostAddr(3, 2), '198.18.3.2');
    assert.throws(() => subnetCidr(0));
    assert.throws(() => subnetCidr(MAX_INDEX + 1));
  });

  it('keeps link names within IFNAMSIZ for the largest lab', () => {
    const links = [bridgeName(MAX_INDEX), endpointNames(MAX_INDEX, MAX_SERVERS).port, endpointNames(MAX_INDEX, 'client').port];
    for (const l of links) assert.ok(l.length <= 15, `${l} fits in 15 characters`);
    assert.equal(switchNetns(7), 'su7-sw');
    assert.equal(endpointNames(7, 2).netns, 'su7-node2');
  });
});

// ------------------------------------------------------------------------------------------- real lab

const skip = skipReason();

describe('lab on this machine', { skip }, () => {
  const baseDir = skip ? '' : mkdtempSync(join(tmpdir(), 'stayup-labtest-'));
  const name = `t${process.pid}`;
  let lab: Lab;
  const t0 = Date.now();

  before(async () => {
    lab = await Lab.up({ name, servers: 2, baseDir });
    process.stderr.write(`# lab ${name} up in ${Date.now() - t0} ms (${lab.subnet})\n`);
  });

  after(async () => {
    // Always clean, whatever failed.
    for (const n of [name, `${name}b`, `${name}k`]) await Lab.down(n, { baseDir }).catch(() => {});
    rmSync(baseDir, { recursive: true, force: true });
  });

  it('records the lab so another process can open it', async () => {
    const again = Lab.open(name, { baseDir });
    assert.deepEqual(again.servers, ['node1', 'node2']);
    assert.equal(again.addr('node2'), hostAddr(again.index, 2));
    assert.equal(again.addr('client'), hostAddr(again.index, 250));
    assert.ok(Lab.list({ baseDir }).some((l) => l.name === name && l.running && l.phase === 'up'));
    const st = await again.status();
    assert.deepEqual(
      st.nodes.map((n) => [n.name, n.addr, n.up]),
      [
        ['node1', lab.addr('node1'), true],
        ['node2', lab.addr('node2'), true],
        ['client', lab.addr('client'), true],
      ],
    );
    // A CLI in a later process sees it too.
    const cli = runCli(['lab', 'status', '--name', name, '--base-dir', baseDir]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`node1 +${lab.addr('node1').replace(/\./g, '\\.')} +up`));
    assert.match(cli.stdout, new RegExp(`client +${lab.addr('client').replace(/\./g, '\\.')}`));
  });

  it('refuses a second lab of the same name without harming the first', async () => {
    await assert.rejects(Lab.up({ name, baseDir }), (e) => isStayupError(e) && e.code === 'LAB_EXISTS');
    assert.ok(await reachable(lab, 'client', lab.addr('node1')));
  });

  it('names unknown nodes clearly', async () => {
    await assert.rejects(lab.exec('node7', ['true']), (e) => isStayupError(e) && e.code === 'LAB_NODE_UNKNOWN' && /node1, node2, client/.test(e.message));
    const cli = runCli(['lab', 'exec', '--name', name, '--base-dir', baseDir, 'node7', '--', 'true']);
    assert.equal(cli.status, 2);
    assert.match(cli.stderr, /^stayup: lab .* has no node "node7"/);
  });

  it('gives every server its own hostname, /var/lib/app, /run and sysfs', async () => {
    writeFileSync(lab.hostPath('node1', '/var/lib/app/who'), 'one\n');
    writeFileSync(lab.hostPath('node2', '/var/lib/app/who'), 'two\n');
    for (const [node, who] of [
      ['node1', 'one'],
      ['node2', 'two'],
    ] as const) {
      const r = await lab.exec(node, ['sh', '-c', 'hostname; cat /var/lib/app/who; ls /sys/class/net | tr "\\n" " "; echo; touch /run/mine /srv/mine; ls /run/mine /srv/mine'], {
        check: true,
      });
      const [h, w, nets] = r.stdout.split('\n');
      assert.equal(h, node);
      assert.equal(w, who);
      assert.deepEqual(nets!.trim().split(' ').sort(), ['eth0', 'lo']);
    }
    // node1's files are not node2's, and the host sees neither.
    assert.ok(existsSync(lab.hostPath('node1', '/srv/mine')));
    const r2 = await lab.exec('node2', ['sh', '-c', 'rm /srv/mine && ls /srv']);
    assert.equal(r2.stdout.trim(), '');
    assert.ok(existsSync(lab.hostPath('node1', '/srv/mine')), "removing node2's file kept node1's");
    assert.ok(!existsSync('/srv/mine') && !existsSync('/run/mine') && !existsSync('/var/lib/app/who'), 'the host view is untouched');
    assert.equal(hostname(), readFileSync('/proc/sys/kernel/hostname', 'utf8').trim());
    assert.notEqual(hostname(), 'node1');
    // The client shares the host's files but has its own network.
    const c = await lab.exec('client', ['ip', '-br', '-4', 'addr', 'show', 'dev', 'eth0'], { check: true });
    assert.match(c.stdout, new RegExp(`${lab.addr('client').replace(/\./g, '\\.')}/24`));
    // IPv6 is off: no link-local address.
    const v6 = await lab.exec('node1', ['ip', '-6', 'addr'], { check: true });
    assert.equal(v6.stdout.trim(), '');
  });

  it('exec passes input, env and exit codes, and times out', async () => {
    const r = await lab.exec('node1', ['sh', '-c', 'cat; echo "$FOO"; exit 3'], { input: 'in\n', env: { FOO: 'bar' } });
    assert.deepEqual([r.code, r.stdout], [3, 'in\nbar\n']);
    const t = Date.now();
    const slow = await lab.exec('node1', ['sleep', '30'], { timeoutMs: 200 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.code, 124);
    assert.ok(Date.now() - t < 5000);
    const cwd = await lab.exec('node2', ['pwd'], { cwd: '/var/lib/app' });
    assert.equal(cwd.stdout.trim(), '/var/lib/app');
    const cli = runCli(['lab', 'exec', '--name', name, '--base-dir', baseDir, 'node2', '--', 'sh', '-c', 'hostname; exit 5']);
    assert.equal(cli.status, 5);
    assert.equal(cli.stdout.trim(), 'node2');
  });

  it('servers reach each other and the client reaches them', async () => {
    await assertReach(lab, [
      ['node1', 'node2', true],
      ['node2', 'node1', true],
      ['client', 'node1', true],
      ['client', 'node2', true],
    ]);
  });

  it('cut blocks node1<->node2 only, restore heals', async () => {
    await lab.cut('node1', 'node2');
    const st = await lab.status();
    assert.deepEqual(st.nodes.find((n) => n.name === 'node1')?.cutFrom, ['node2']);
    await assertReach(lab, [
      ['node1', 'node2', false],
      ['node2', 'node1', false],
      ['client', 'node1', true],
      ['client', 'node2', true],
    ]);
    await lab.restore('node1', 'node2');
    await lab.restore('node1', 'node2'); // idempotent
    await assertReach(lab, [
      ['node1', 'node2', true],
      ['node2', 'node1', true],
    ]);
  });

  it('isolate cuts a node from everyone, unisolate heals', async () => {
    await lab.isolate('node2');
    await assertReach(lab, [
      ['client', 'node2', false],
      ['node1', 'node2', false],
      ['client', 'node1', true],
    ]);
    await lab.unisolate('node2');
    await assertReach(lab, [['client', 'node2', true]]);
  });

  it('freeze drops every frame in and out of the node, ARP included; thaw heals', async () => {
    await lab.freeze('node1');
    await lab.freeze('node1'); // idempotent
    assert.equal((await lab.status()).nodes.find((n) => n.name === 'node1')?.frozen, true);
    const arp = (from: string, to: string) => lab.exec(from, ['arping', '-c1', '-w1', '-I', 'eth0', lab.addr(to)], { timeoutMs: 5000 });
    const [a, b, c, d, e] = await Promise.all([
      probe(lab, 'client', lab.addr('node1')),
      probe(lab, 'node2', lab.addr('node1')),
      probe(lab, 'node1', lab.addr('node2')),
      arp('client', 'node1'),
      arp('node1', 'client'),
    ]);
    assert.deepEqual([a, b, c, d.code === 0, e.code === 0], [false, false, false, false, false]);
    await assertReach(lab, [['client', 'node2', true]]);
    await lab.thaw('node1');
    await assertReach(lab, [
      ['client', 'node1', true],
      ['node1', 'node2', true],
    ]);
  });

  it('linkDown/linkUp pull and replug the cable', async () => {
    await lab.linkDown('node2');
    assert.equal((await lab.status()).nodes.find((n) => n.name === 'node2')?.portUp, false);
    await assertReach(lab, [['client', 'node2', false]]);
    await lab.linkUp('node2');
    await assertReach(lab, [['client', 'node2', true]]);
  });

  it('stopProcesses / contProcesses SIGSTOP and SIGCONT the spawned processes', async () => {
    const p = await lab.spawn('node2', ['sleep', '1000']);
    await lab.stopProcesses('node2');
    await waitFor(() => procStat(p.pid)?.state === 'T');
    assert.equal((await lab.status()).nodes.find((n) => n.name === 'node2')?.processes.find((x) => x.pid === p.pid)?.state, 'stopped');
    await lab.contProcesses('node2');
    await waitFor(() => procStat(p.pid)?.state === 'S');
    assert.equal(await lab.kill(p.pid), true);
    assert.ok(!isAlive(p.pid, p.startTime));
    assert.equal(lab.processes('node2').length, 0);
  });

  it('killServer kills what runs on the server (even daemons that left the group); startServer boots it', async () => {
    const log = join(lab.stateDir, 'logs', 'n1.log');
    // The child leaves the process group (setsid) like a daemon would; killServer still finds it by namespace.
    const p = await lab.spawn('node1', ['sh', '-c', 'setsid sh -c "echo \\$\\$ > /run/daemon.pid; exec sleep 1001" & echo started; exec sleep 1000'], { logFile: log });
    assert.equal(p.node, 'node1');
    assert.ok(lab.processes('node1').some((x) => x.pid === p.pid));
    await waitFor(async () => (await lab.exec('node1', ['cat', '/run/daemon.pid'])).code === 0);
    const daemonPid = Number((await lab.exec('node1', ['cat', '/run/daemon.pid'])).stdout);
    const daemonStart = procStat(daemonPid)!.startTime;
    assert.notEqual(procStat(daemonPid)!.pgid, p.pid);
    await waitFor(() => readFileSync(log, 'utf8').includes('started'));

    const killed = await lab.killServer('node1');
    assert.ok(killed.includes(p.pid) && killed.includes(daemonPid), `killed ${killed.join(',')}`);
    assert.ok(!isAlive(p.pid, p.startTime) && !isAlive(daemonPid, daemonStart));
    assert.equal((await p.exited).signal, 'SIGKILL');
    const st = (await lab.status()).nodes.find((n) => n.name === 'node1')!;
    assert.deepEqual([st.up, st.killed], [false, true]);
    await assertReach(lab, [['client', 'node1', false]]);

    await lab.startServer('node1');
    await assertReach(lab, [
      ['client', 'node1', true],
      ['node1', 'node2', true],
    ]);
    const after = await lab.exec('node1', ['sh', '-c', 'ls /run | grep -c daemon.pid; cat /var/lib/app/who'], {});
    assert.equal(after.stdout, '0\none\n', 'fresh /run after the reboot, /var/lib/app kept');
  });

  it('two labs side by side do not interfere', async () => {
    const t = Date.now();
    const b = await Lab.up({ name: `${name}b`, servers: 1, baseDir });
    try {
      process.stderr.write(`# second lab up in ${Date.now() - t} ms (${b.subnet})\n`);
      assert.notEqual(b.index, lab.index);
      assert.notEqual(b.subnet, lab.subnet);
      writeFileSync(b.hostPath('node1', '/var/lib/app/who'), 'b-one\n');
      assert.equal((await b.exec('node1', ['cat', '/var/lib/app/who'])).stdout, 'b-one\n');
      assert.equal((await lab.exec('node1', ['cat', '/var/lib/app/who'])).stdout, 'one\n');
      await lab.cut('client', 'node1');
      await lab.freeze('node2');
      await assertReach(b, [['client', 'node1', true]]);
      // Separate switches: lab b cannot reach lab a's address.
      assert.equal(await probe(b, 'client', lab.addr('node1')), false);
      await lab.restore('client', 'node1');
      await lab.thaw('node2');
    } finally {
      const r = await b.down();
      assert.deepEqual(r.warnings, []);
    }
    assert.deepEqual(labNetns(b.index), []);
    // Lab a keeps working, its servers keep their mounts (the host mount points stayed).
    await assertReach(lab, [
      ['client', 'node1', true],
      ['node2', 'node1', true],
    ]);
    assert.equal((await lab.exec('node1', ['cat', '/var/lib/app/who'])).stdout, 'one\n');
  });

  it('down of a lab whose `up` was killed midway cleans everything', async () => {
    const kname = `${name}k`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import { Lab } from './src/lab/lab.ts'; await Lab.up({ name: '${kname}', servers: 3, baseDir: ${JSON.stringify(baseDir)} });`], {
      cwd: repo,
      stdio: 'ignore',
    });
    const stateFile = join(baseDir, kname, 'lab.json');
    // Kill it once it has started building (or finished, on a fast machine).
    await waitFor(() => {
      try {
        const s = JSON.parse(readFileSync(stateFile, 'utf8')) as { switch: { netnsIno?: number } };
        return s.switch.netnsIno !== undefined;
      } catch {
        return false;
      }
    }, 20_000);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const s = JSON.parse(readFileSync(stateFile, 'utf8')) as { index: number; stateDir: string };
    const r = await Lab.down(kname, { baseDir });
    assert.equal(r.found, true);
    assert.deepEqual(r.warnings, []);
    assertGone(s.index, s.stateDir, []);
    assert.equal((await Lab.down(kname, { baseDir })).found, false, 'down is idempotent');
  });

  it('down kills spawned processes and leaves no namespace, mount or process behind', async () => {
    const p1 = await lab.spawn('node2', ['sleep', '1000']);
    const p2 = await lab.spawn('client', ['sleep', '1000']);
    const { index, stateDir } = lab;
    const t = Date.now();
    const r = await Lab.down(name, { baseDir });
    process.stderr.write(`# lab down in ${Date.now() - t} ms\n`);
    assert.deepEqual(r.warnings, []);
    assert.ok(r.killed.includes(p1.pid) && r.killed.includes(p2.pid));
    assert.equal(r.netnsDeleted.length, 4);
    assertGone(index, stateDir, [p1, p2]);
    assert.ok(!Lab.list({ baseDir }).some((l) => l.name === name));
    assert.ok(!existsSync(baseDir) || readdirSync(baseDir).length === 0, 'nothing left in the base dir');
    await assert.rejects(async () => Lab.open(name, { baseDir }), (e) => isStayupError(e) && e.code === 'LAB_NOT_FOUND');
  });
});

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const script = `import { Command } from 'commander'; import { registerLabCommands } from './src/cli/commands/lab.ts';
const p = new Command('stayup'); registerLabCommands(p); await p.parseAsync(${JSON.stringify(args)}, { from: 'user' });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repo, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}
