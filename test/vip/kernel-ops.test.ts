import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureNativeBuilt } from '../../src/util/native-addons.ts';
import { installDir } from '../../src/util/paths.ts';

// The virtual IP's in-process kernel calls for real (native/stayup_net.c): in a network namespace of its
// own (a veth pair, 198.18.250.0/24), a Node process adds an address over rtnetlink and sends gratuitous
// ARP over a packet socket; `ip` and the peer end's counters check what the kernel did.

const ns = `suko${process.pid % 100000}`;
const skip = process.getuid?.() !== 0 ? 'needs root (a network namespace)' : false;
const sh = (args: string[]): string => execFileSync(args[0]!, args.slice(1), { encoding: 'utf8' });
const inNs = (args: string[]): string => sh(['ip', 'netns', 'exec', ns, ...args]);
const rxPackets = (dev: string): number => {
  const j = JSON.parse(inNs(['ip', '-j', '-s', 'link', 'show', 'dev', dev])) as Array<{ stats64: { rx: { packets: number } } }>;
  return j[0]!.stats64.rx.packets;
};

interface Answer {
  ok: boolean;
  announced?: boolean;
  garpError?: string;
  errno?: number;
  code?: string;
  error?: string;
}

/** Runs the calls in a Node process inside the namespace, one answer per request. */
function session(requests: object[]): Answer[] {
  const input = requests.map((r) => JSON.stringify(r)).join('\n') + '\n';
  const script = join(installDir, 'test', 'vip', 'kernel-ops-session.ts');
  const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', script], { input, encoding: 'utf8', timeout: 20_000, cwd: installDir });
  return out.trim().split('\n').map((l) => JSON.parse(l) as Answer);
}

describe('VIP kernel calls in process (rtnetlink add, packet-socket gratuitous ARP)', { skip }, () => {
  before(() => {
    ensureNativeBuilt();
    sh(['ip', 'netns', 'add', ns]);
    // No IPv6 in the namespace: the only frames on the wire are the ones the calls send.
    inNs(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    inNs(['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
    inNs(['ip', 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']);
    inNs(['ip', 'link', 'set', 'va', 'up']);
    inNs(['ip', 'link', 'set', 'vb', 'up']);
    inNs(['ip', 'addr', 'add', '198.18.250.1/24', 'dev', 'va']);
  });
  after(() => {
    sh(['ip', 'netns', 'del', ns]);
  });

  it('adds an address with its label, reports EEXIST the second time, and refuses an unknown interface', () => {
    const r = session([
      { op: 'add', ip: '198.18.250.100', prefix: 24, iface: 'va', label: 'va:vip' },
      { op: 'add', ip: '198.18.250.100', prefix: 24, iface: 'va', label: 'va:vip' },
      { op: 'add', ip: '198.18.250.101', prefix: 24, iface: 'nope0', label: '' },
      { op: 'add', ip: '198.18.250.300', prefix: 24, iface: 'va', label: '' },
    ]);
    assert.deepEqual(r[0], { ok: true, announced: false });
    assert.equal(r[1]!.ok, false);
    assert.equal(r[1]!.errno, 17);
    assert.equal(r[1]!.code, 'EEXIST');
    assert.equal(r[2]!.code, 'ENODEV');
    assert.match(r[2]!.error ?? '', /nope0/);
    assert.equal(r[3]!.ok, false);
    assert.match(r[3]!.error ?? '', /IPv4 address/);
    const shown = inNs(['ip', '-4', 'addr', 'show', 'dev', 'va']);
    assert.match(shown, /inet 198\.18\.250\.100\/24 .*va:vip/);
    assert.doesNotMatch(shown, /198\.18\.250\.101/);
  });

  it('sends the gratuitous ARP asked for with an add as soon as the address is there, and none when the add fails', () => {
    const before = rxPackets('vb');
    const r = session([
      { op: 'add', ip: '198.18.250.102', prefix: 24, iface: 'va', label: 'va:vip', garp: 1 },
      { op: 'add', ip: '198.18.250.102', prefix: 24, iface: 'va', label: 'va:vip', garp: 1 },
    ]);
    assert.deepEqual(r[0], { ok: true, announced: true });
    assert.equal(r[1]!.errno, 17, 'an add that fails announces nothing');
    assert.equal(rxPackets('vb') - before, 2, 'one request+reply pair reached the other end');
  });

  it('sends a gratuitous ARP request and reply per count on the interface', () => {
    const before = rxPackets('vb');
    const r = session([
      { op: 'warm', iface: 'va' },
      { op: 'garp', ip: '198.18.250.100', iface: 'va', count: 2 },
    ]);
    assert.deepEqual(r, [{ ok: true }, { ok: true }]);
    assert.equal(rxPackets('vb') - before, 4, 'two request+reply pairs reached the other end');
  });
});
