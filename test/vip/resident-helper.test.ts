import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { installDir } from '../../src/util/paths.ts';

// The resident VIP helper for real: in a network namespace of its own (a veth pair, 198.18.250.0/24),
// the helper process adds an address over netlink and sends gratuitous ARP over a packet socket.

const ns = `suvh${process.pid % 100000}`;
const skip = process.getuid?.() !== 0 ? 'needs root (a network namespace)' : false;
const sh = (args: string[]): string => execFileSync(args[0]!, args.slice(1), { encoding: 'utf8' });
const inNs = (args: string[]): string => sh(['ip', 'netns', 'exec', ns, ...args]);
const rxPackets = (dev: string): number => {
  const j = JSON.parse(inNs(['ip', '-j', '-s', 'link', 'show', 'dev', dev])) as Array<{ stats64: { rx: { packets: number } } }>;
  return j[0]!.stats64.rx.packets;
};

/** Runs the helper inside the namespace and sends it requests, one answer line per request. */
function helperSession(requests: object[]): Array<{ id: number; ok: boolean; errno?: number; error?: string }> {
  const input = requests.map((r) => JSON.stringify(r)).join('\n') + '\n';
  const out = execFileSync('ip', ['netns', 'exec', ns, 'python3', join(installDir, 'src', 'vip', 'vip-helper.py')], { input, encoding: 'utf8', timeout: 10_000 });
  return out.trim().split('\n').map((l) => JSON.parse(l) as { id: number; ok: boolean; errno?: number; error?: string });
}

describe('resident VIP helper (netlink add, packet-socket gratuitous ARP)', { skip }, () => {
  before(() => {
    sh(['ip', 'netns', 'add', ns]);
    // No IPv6 in the namespace: the only frames on the wire are the ones the helper sends.
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
    const r = helperSession([
      { id: 1, op: 'add', ip: '198.18.250.100', prefix: 24, iface: 'va', label: 'va:vip' },
      { id: 2, op: 'add', ip: '198.18.250.100', prefix: 24, iface: 'va', label: 'va:vip' },
      { id: 3, op: 'add', ip: '198.18.250.101', prefix: 24, iface: 'nope0', label: '' },
      { id: 4, op: 'explode' },
    ]);
    assert.deepEqual(r[0], { id: 1, ok: true });
    assert.equal(r[1]!.ok, false);
    assert.equal(r[1]!.errno, 17);
    assert.equal(r[2]!.ok, false);
    assert.match(r[2]!.error ?? '', /no interface/);
    assert.equal(r[3]!.ok, false);
    const shown = inNs(['ip', '-4', 'addr', 'show', 'dev', 'va']);
    assert.match(shown, /inet 198\.18\.250\.100\/24 .*va:vip/);
  });

  it('sends the gratuitous ARP asked for with an add as soon as the address is there', () => {
    const before = rxPackets('vb');
    const r = helperSession([
      { id: 1, op: 'add', ip: '198.18.250.102', prefix: 24, iface: 'va', label: 'va:vip', garp: 1 },
      { id: 2, op: 'add', ip: '198.18.250.102', prefix: 24, iface: 'va', label: 'va:vip', garp: 1 },
    ]);
    assert.deepEqual(r[0], { id: 1, ok: true });
    assert.equal(r[1]!.errno, 17, 'an add that fails announces nothing');
    assert.equal(rxPackets('vb') - before, 2, 'one request+reply pair reached the other end');
  });

  it('sends a gratuitous ARP request and reply per count on the interface', () => {
    const before = rxPackets('vb');
    const r = helperSession([
      { id: 1, op: 'warm', iface: 'va' },
      { id: 2, op: 'garp', ip: '198.18.250.100', iface: 'va', count: 2 },
    ]);
    assert.deepEqual(r, [
      { id: 1, ok: true },
      { id: 2, ok: true },
    ]);
    assert.equal(rxPackets('vb') - before, 4, 'two request+reply pairs reached the other end');
  });
});
