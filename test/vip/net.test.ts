// Address arithmetic of the VIP manager, and its execFile runner (harmless commands, no root needed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bigIntToIp, holdersOf, inSubnet, ipToBigInt, netmaskToPrefix, networkOf, parseIpJson, subnetMatches, type IpLink } from '../../src/vip/net.ts';
import { commandPath, runCommand } from '../../src/vip/runner.ts';

describe('vip address arithmetic', () => {
  it('network addresses and subnet membership, IPv4 and IPv6', () => {
    assert.equal(networkOf('198.18.1.100', 24), '198.18.1.0');
    assert.equal(networkOf('198.18.1.200', 25), '198.18.1.128');
    assert.equal(networkOf('198.19.3.4', 15), '198.18.0.0');
    assert.equal(networkOf('2001:db8::5', 64), '2001:db8:0:0:0:0:0:0');
    assert.ok(inSubnet('198.18.1.100', '198.18.1.1', 24));
    assert.ok(!inSubnet('198.18.2.100', '198.18.1.1', 24));
    assert.ok(inSubnet('2001:db8::5', '2001:db8::1', 64));
    assert.ok(!inSubnet('2001:db9::5', '2001:db8::1', 64));
    assert.ok(!inSubnet('198.18.1.1', '2001:db8::1', 0), 'families never mix');
    assert.equal(ipToBigInt('::ffff:198.18.1.1'), ipToBigInt('::ffff:c612:101'));
    assert.equal(bigIntToIp(ipToBigInt('198.18.1.100'), 4), '198.18.1.100');
  });

  it('netmasks: prefix lengths and contiguous dotted masks', () => {
    assert.equal(netmaskToPrefix('24', 4), 24);
    assert.equal(netmaskToPrefix('/26', 4), 26);
    assert.equal(netmaskToPrefix('255.255.255.0', 4), 24);
    assert.equal(netmaskToPrefix('255.255.255.255', 4), 32);
    assert.equal(netmaskToPrefix('0.0.0.0', 4), 0);
    assert.equal(netmaskToPrefix('255.0.255.0', 4), undefined);
    assert.equal(netmaskToPrefix('33', 4), undefined);
    assert.equal(netmaskToPrefix('64', 6), 64);
  });

  it('reads ip -j addr: holders and subnet matches, longest prefix first, never the VIP itself', () => {
    const links = parseIpJson<IpLink>(
      JSON.stringify([
        { ifindex: 1, ifname: 'lo', flags: [], addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
        {
          ifindex: 2,
          ifname: 'eth0',
          flags: [],
          addr_info: [
            { family: 'inet', local: '198.18.0.1', prefixlen: 16 },
            { family: 'inet', local: '198.18.1.100', prefixlen: 24, label: 'eth0:vip' },
          ],
        },
        { ifindex: 3, ifname: 'eth1', flags: [], addr_info: [{ family: 'inet', local: '198.18.1.2', prefixlen: 24 }] },
        {},
      ]),
    );
    assert.equal(links.length, 3);
    assert.deepEqual(holdersOf(links, '198.18.1.100').map((h) => [h.ifname, h.prefixLen]), [['eth0', 24]]);
    assert.deepEqual(subnetMatches(links, '198.18.1.100').map((m) => m.ifname), ['eth1', 'eth0']);
    assert.deepEqual(parseIpJson(''), []);
    assert.throws(() => parseIpJson('{}'), /JSON array/);
  });
});

describe('vip command runner (execFile, no shell)', () => {
  it('resolves with the exit code and output for any exit', async () => {
    assert.deepEqual(await runCommand(['sh', '-c', 'echo out; echo err >&2; exit 3']), { code: 3, stdout: 'out\n', stderr: 'err\n' });
    assert.equal((await runCommand(['true'])).code, 0);
    assert.equal((await runCommand(['echo', '$HOME;', 'x'])).stdout, '$HOME; x\n', 'arguments are not interpreted by a shell');
  });

  it('rejects when the program is missing, and on abort; a timeout gives 124', async () => {
    await assert.rejects(runCommand(['/nonexistent/prog']), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    const ac = new AbortController();
    const p = runCommand(['sleep', '5'], { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, (e: Error) => e.name === 'AbortError');
    const t0 = Date.now();
    assert.equal((await runCommand(['sleep', '5'], { timeoutMs: 50 })).code, 124);
    assert.ok(Date.now() - t0 < 2000);
  });

  it('puts the sbin directories on PATH', () => {
    assert.deepEqual(commandPath('/bin').split(':').slice(0, 3), ['/bin', '/usr/local/sbin', '/usr/local/bin']);
    assert.ok(commandPath('').split(':').includes('/usr/sbin'));
  });
});
