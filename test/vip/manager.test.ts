// VipManager against a recording fake host: the exact command lines of each form, idempotence, the
// gratuitous ARP schedule and its cancellation, tcpreset, one_side routes, checkers and errors.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { VipManager, vipAddresses, routeSpec, type VipEvent } from '../../src/vip/manager.ts';
import { isStayupError, type StayupError } from '../../src/errors/stayup-error.ts';
import { FakeHost, FakeScheduler, oneNic, tick, vipConfig } from './fake-host.ts';
import type { FastVipOps } from '../../src/vip/kernel-ops.ts';

const VIP = '198.18.1.100';
const garp = (mode: string, ip = VIP, dev = 'eth0', count = 3): string => `arping ${mode} -c ${count} -I ${dev} -s ${ip} ${ip}`;

function setup(cfg = vipConfig([{ addr: VIP }]), host = oneNic(), opts: { secondBurstDelayMs?: number } = {}) {
  const sched = new FakeScheduler();
  const events: VipEvent[] = [];
  const m = new VipManager(cfg, { run: host.run, scheduler: sched, onEvent: (e) => events.push(e), ...opts });
  const warnings = (): string[] => events.flatMap((e) => (e.type === 'warning' ? [e.error.message] : []));
  return { m, host, sched, events, warnings };
}

async function rejects(p: Promise<unknown>, code: string, message: string | RegExp): Promise<StayupError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isStayupError(e), `a StayupError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('VipManager.up: one_side_alias', () => {
  it('finds the interface by subnet, adds a labelled secondary address and sends both GARP bursts', async () => {
    const { m, host } = setup();
    const placed = await m.up();
    assert.deepEqual(placed, [{ addr: VIP, ip: VIP, iface: 'eth0', prefixLen: 24, added: true }]);
    assert.deepEqual(host.calls, ['ip -j addr show', `ip addr add ${VIP}/24 dev eth0 label eth0:vip`, garp('-U'), garp('-A')]);
    assert.deepEqual(host.holders(VIP), ['eth0']);
    assert.deepEqual(host.routes[1]?.prefsrc, '198.18.1.1', 'alias form leaves the routes alone');
  });

  it('is idempotent: a second up adds nothing and announces again', async () => {
    const { m, host, events } = setup();
    await m.up();
    host.clear();
    const placed = await m.up();
    assert.equal(placed[0]?.added, false);
    assert.deepEqual(host.calls, ['ip -j addr show', garp('-U'), garp('-A')]);
    assert.ok(events.some((e) => e.type === 'present' && e.iface === 'eth0'));
    assert.equal(host.links[1]!.addrs.filter((a) => a.local === VIP).length, 1);
  });

  it('takes "Address already assigned" from a racing add as success', async () => {
    const { m, host } = setup();
    host.override = (l) => (l.startsWith('ip addr add') ? { code: 2, stdout: '', stderr: 'Error: ipv4: Address already assigned.\n' } : undefined);
    const placed = await m.up();
    assert.equal(placed[0]?.added, false);
  });

  it('uses the configured interface and netmask (dotted or prefix), and drops a label longer than 15 characters', async () => {
    const host = new FakeHost([
      { ifname: 'lo', addrs: [{ local: '127.0.0.1', prefixlen: 8 }] },
      { ifname: 'enp0s31f6long', addrs: [{ local: '198.18.1.1', prefixlen: 24 }] },
      { ifname: 'eth1', addrs: [{ local: '198.18.2.1', prefixlen: 24 }] },
    ]);
    const { m } = setup(vipConfig([{ addr: VIP, netmask: '255.255.255.128' }, { addr: '198.18.9.9' }], { name: 'enp0s31f6long' }), host);
    await m.up();
    assert.deepEqual(host.actions.filter((c) => c.startsWith('ip addr')), [
      `ip addr add ${VIP}/25 dev enp0s31f6long`,
      // Outside every subnet of the named interface and no netmask: a host address.
      'ip addr add 198.18.9.9/32 dev enp0s31f6long',
    ]);
  });

  it('honours labelSuffix ("" = no label)', async () => {
    const host = oneNic();
    const m = new VipManager(vipConfig([{ addr: VIP }]), { run: host.run, scheduler: new FakeScheduler(), labelSuffix: '' });
    await m.up();
    assert.equal(host.actions[0], `ip addr add ${VIP}/24 dev eth0`);
  });

  it('resolves a host-name VIP once, with the injected resolver', async () => {
    const host = oneNic();
    let lookups = 0;
    const m = new VipManager(vipConfig([{ addr: 'vip.example' }]), {
      run: host.run,
      scheduler: new FakeScheduler(),
      resolveHost: async () => (lookups++, '198.18.1.120'),
    });
    await m.up();
    await m.down();
    assert.equal(lookups, 1);
    assert.ok(host.calls.includes('ip addr add 198.18.1.120/24 dev eth0 label eth0:vip'));
    assert.ok(host.calls.includes('ip addr del 198.18.1.120/24 dev eth0'));
  });

  it('adds an IPv6 VIP with nodad and sends no ARP', async () => {
    const host = new FakeHost([{ ifname: 'eth0', addrs: [{ local: '2001:db8::1', prefixlen: 64 }] }]);
    const { m } = setup(vipConfig([{ addr: '2001:db8::5' }]), host);
    await m.up();
    assert.deepEqual(host.actions, ['ip addr add 2001:db8::5/64 dev eth0 nodad']);
    await m.down();
    assert.deepEqual(host.actions.slice(1), ['ss -K -H -t -n src [2001:db8::5]', 'ss -H -t -n state established src [2001:db8::5]', 'ip addr del 2001:db8::5/64 dev eth0', 'ss -K -H -t -n src [2001:db8::5]']);
  });
});

describe('VipManager: with the in-process kernel calls', () => {
  /** A FastVipOps that records its calls and adds on the fake host; `garpError` fails only the ARP. */
  function fastOps(host: FakeHost, o: { garpError?: string } = {}): FastVipOps & { calls: string[] } {
    const calls: string[] = [];
    return {
      calls,
      async addAddress(ip, prefixLen, iface, label, garpCount = 0) {
        calls.push(`add ${ip}/${prefixLen} ${iface} ${label} garp=${garpCount}`);
        const r = await host.run(['ip', 'addr', 'add', `${ip}/${prefixLen}`, 'dev', iface, 'label', label], {});
        if (r.code !== 0) throw Object.assign(new Error(r.stderr), { errno: 17 });
        return o.garpError === undefined ? { announced: garpCount > 0 } : { announced: false, garpError: o.garpError };
      },
      async garp(ip, iface, count) {
        calls.push(`garp ${ip} ${iface} ${count}`);
      },
      async warm() {},
    };
  }

  it('adds the address and sends its first gratuitous ARP in the same call; the arping burst follows', async () => {
    const host = oneNic();
    const fast = fastOps(host);
    const sched = new FakeScheduler();
    const m = new VipManager(vipConfig([{ addr: VIP }]), { run: host.run, scheduler: sched, fastOps: fast });
    const placed = await m.up();
    assert.equal(placed[0]?.added, true);
    assert.deepEqual(fast.calls, [`add ${VIP}/24 eth0 eth0:vip garp=1`], 'no second call for the first announcement');
    host.clear();
    sched.advance(200);
    assert.deepEqual(host.calls, [garp('-U'), garp('-A')]);
  });

  it('announces with a separate call when the address was already there, and warns when only the ARP failed', async () => {
    const host = oneNic();
    const fast = fastOps(host);
    const m = new VipManager(vipConfig([{ addr: VIP }]), { run: host.run, scheduler: new FakeScheduler(), fastOps: fast });
    await m.up();
    fast.calls.length = 0;
    await m.up();
    assert.deepEqual(fast.calls, [`garp ${VIP} eth0 1`]);

    const host2 = oneNic();
    const events: VipEvent[] = [];
    const m2 = new VipManager(vipConfig([{ addr: VIP }]), { run: host2.run, scheduler: new FakeScheduler(), fastOps: fastOps(host2, { garpError: 'Network is down' }), onEvent: (e) => events.push(e) });
    const placed = await m2.up();
    assert.equal(placed[0]?.added, true, 'the address is there all the same');
    assert.deepEqual(
      events.flatMap((e) => (e.type === 'warning' ? [e.error.message] : [])),
      [`VIP ${VIP} on eth0: gratuitous ARP (in process): Network is down`],
    );
  });
});

describe('VipManager: gratuitous ARP schedule', () => {
  it('sends the second burst after secondBurstDelayMs (default 5 s)', async () => {
    const { m, host, sched } = setup();
    await m.up();
    host.clear();
    sched.advance(4999);
    assert.deepEqual(host.calls, []);
    sched.advance(1);
    assert.deepEqual(host.calls, [garp('-U'), garp('-A')]);
    assert.equal(sched.pending, 0);
  });

  it('with arpreroute sends one GARP every arpinterval for arpelapse', async () => {
    const { m, host, sched } = setup(vipConfig([{ addr: VIP }], { arpreroute: true, arpIntervalMs: 60_000, arpElapseMs: 1_200_000 }), oneNic(), { secondBurstDelayMs: 0 });
    await m.up();
    host.clear();
    sched.advance(60_000);
    assert.deepEqual(host.calls, [garp('-U', VIP, 'eth0', 1)]);
    sched.advance(2_000_000);
    assert.equal(host.calls.length, 20, '1200 s / 60 s = 20 refreshes');
    assert.equal(sched.pending, 0);
  });

  it('down() cancels the pending timers: nothing is sent afterwards', async () => {
    const { m, host, sched } = setup(vipConfig([{ addr: VIP }], { arpreroute: true, arpIntervalMs: 1000, arpElapseMs: 10_000 }));
    await m.up();
    assert.equal(sched.pending, 2);
    await m.down();
    assert.equal(sched.pending, 0);
    assert.equal(m.pendingAnnouncements, 0);
    host.clear();
    sched.advance(60_000);
    assert.deepEqual(host.calls, []);
  });

  it('down() kills a running arping and waits for it before touching the address', async () => {
    const { m, host } = setup();
    host.arpingHangs = true;
    await m.up();
    assert.equal(host.running, 2);
    host.clear();
    await m.down();
    assert.equal(host.running, 0);
    assert.deepEqual(host.calls.slice(0, 2), [`ABORT ${garp('-U')}`, `ABORT ${garp('-A')}`]);
    assert.ok(host.calls.indexOf(`ip addr del ${VIP}/24 dev eth0`) > 1);
  });

  it('a second up() restarts the schedule instead of stacking it', async () => {
    const { m, sched } = setup(vipConfig([{ addr: VIP }], { arpreroute: true, arpIntervalMs: 1000, arpElapseMs: 10_000 }));
    await m.up();
    await m.up();
    assert.equal(sched.pending, 2);
  });

  it('reports a failing or missing arping as a warning, not as an up() failure', async () => {
    const { m, host, warnings } = setup();
    host.override = (l) => (l.startsWith('arping -U') ? { code: 2, stdout: '', stderr: 'arping: socket: Operation not permitted\n' } : undefined);
    host.missing.add('nothing');
    await m.up();
    await tick();
    assert.deepEqual(warnings(), [`VIP ${VIP} on eth0: gratuitous ARP \`${garp('-U')}\` exited 2: arping: socket: Operation not permitted`]);
    const b = setup();
    b.host.missing.add('arping');
    await b.m.up();
    await tick();
    assert.deepEqual(b.warnings(), [
      `VIP ${VIP} on eth0: gratuitous ARP: cannot run \`${garp('-U')}\`: arping is not installed (package iputils-arping)`,
      `VIP ${VIP} on eth0: gratuitous ARP: cannot run \`${garp('-A')}\`: arping is not installed (package iputils-arping)`,
    ]);
  });
});

describe('VipManager.down', () => {
  it('resets the connections sourced from the VIP, removes it and sweeps again (tcpreset on)', async () => {
    const { m, host, events } = setup();
    await m.up();
    host.sockets = [
      { src: VIP, state: 'ESTAB' },
      { src: VIP, state: 'ESTAB' },
      { src: '198.18.1.1', state: 'ESTAB' },
    ];
    host.clear();
    const removed = await m.down();
    assert.deepEqual(removed, [{ addr: VIP, ip: VIP, removedFrom: ['eth0'], reset: 2 }]);
    assert.deepEqual(host.calls, [
      'ip -j addr show',
      `ss -K -H -t -n src ${VIP}`,
      `ss -H -t -n state established src ${VIP}`,
      `ip addr del ${VIP}/24 dev eth0`,
      `ss -K -H -t -n src ${VIP}`,
    ]);
    assert.deepEqual(host.sockets, [{ src: '198.18.1.1', state: 'ESTAB' }]);
    assert.deepEqual(host.holders(VIP), []);
    assert.ok(events.some((e) => e.type === 'tcpreset' && e.reset === 2 && e.remaining === 0));
  });

  it('is idempotent: with the VIP absent it only lists the addresses', async () => {
    const { m, host } = setup();
    assert.deepEqual(await m.down(), [{ addr: VIP, ip: VIP, removedFrom: [], reset: 0 }]);
    assert.deepEqual(host.calls, ['ip -j addr show']);
    host.override = (l) => (l.startsWith('ip addr del') ? { code: 2, stdout: '', stderr: 'Error: ipv4: Address not found.\n' } : undefined);
    host.links[1]!.addrs.push({ local: VIP, prefixlen: 24 });
    await m.down(); // removed by someone else between the listing and the del: fine
  });

  it('removes the VIP with the prefix it actually has, wherever it is', async () => {
    const { m, host } = setup();
    host.links[1]!.addrs.push({ local: VIP, prefixlen: 32 });
    await m.down();
    assert.ok(host.calls.includes(`ip addr del ${VIP}/32 dev eth0`));
  });

  it('with tcpreset off, runs no ss', async () => {
    const { m, host } = setup(vipConfig([{ addr: VIP }], {}, { tcpreset: false }));
    await m.up();
    host.clear();
    await m.down();
    assert.deepEqual(host.calls, ['ip -j addr show', `ip addr del ${VIP}/24 dev eth0`]);
  });

  it('warns when ss -K cannot destroy sockets (no CONFIG_INET_DIAG_DESTROY) and still removes the VIP', async () => {
    const { m, host, warnings } = setup();
    await m.up();
    host.destroySupported = false;
    host.sockets = [{ src: VIP, state: 'ESTAB' }];
    await m.down();
    assert.deepEqual(host.holders(VIP), []);
    assert.equal(warnings().length, 1);
    assert.match(warnings()[0]!, /^VIP 198\.18\.1\.100 on eth0: tcpreset: 1 established connection\(s\) survived `ss -K`; the kernel may lack CONFIG_INET_DIAG_DESTROY/);
  });

  it('reports a refused ss -K (exit 0, "SOCK_DESTROY answers" on stderr) as itself', async () => {
    const { m, host, warnings } = setup();
    await m.up();
    host.sockets = [{ src: VIP, state: 'ESTAB' }];
    host.override = (l) =>
      l.startsWith('ss -K') ? { code: 0, stdout: '', stderr: 'SOCK_DESTROY answers: Operation not permitted\n' } : undefined;
    await m.down();
    assert.deepEqual(host.holders(VIP), []);
    assert.deepEqual(warnings(), [
      `VIP ${VIP} on eth0: tcpreset: 1 established connection(s) survived \`ss -K\`; the kernel refused: Operation not permitted (stayup needs CAP_NET_ADMIN). ` +
        'They are not reset here: their peers get a reset from the new owner of the VIP on their next packet',
    ]);
  });

  it('attempts every VIP and throws the failures together', async () => {
    const { m, host } = setup(vipConfig([{ addr: VIP }, { addr: '198.18.1.101' }, { addr: '198.18.1.102' }], {}, { tcpreset: false }));
    await m.up();
    host.override = (l) => (l.startsWith('ip addr del 198.18.1.10') && !l.includes('.102/') ? { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\n' } : undefined);
    await rejects(
      m.down(),
      'VIP_FAILED',
      `VIP ${VIP} on eth0: \`ip addr del ${VIP}/24 dev eth0\` exited 2: RTNETLINK answers: Operation not permitted; ` +
        'VIP 198.18.1.101 on eth0: `ip addr del 198.18.1.101/24 dev eth0` exited 2: RTNETLINK answers: Operation not permitted',
    );
    assert.deepEqual(host.holders('198.18.1.102'), [], 'the third VIP was still removed');
  });

  it('serialises up and down: down called during up ends with the VIP removed', async () => {
    const { m, host } = setup();
    const u = m.up();
    const d = m.down();
    await Promise.all([u, d]);
    assert.deepEqual(host.holders(VIP), []);
    assert.equal(m.pendingAnnouncements, 0);
  });
});

describe('VipManager: one_side (the VIP as source address)', () => {
  const cfg = (): ReturnType<typeof vipConfig> => vipConfig([{ addr: VIP, where: 'one_side' }], {}, { tcpreset: false });

  it('up rewrites the routes out of the interface with src VIP; down gives them back before removing it', async () => {
    const { m, host } = setup(cfg());
    const before = structuredClone(host.routes);
    await m.up();
    assert.deepEqual(host.actions.filter((c) => c.startsWith('ip ')), [
      `ip addr add ${VIP}/24 dev eth0 label eth0:vip`,
      `ip route replace default via 198.18.1.254 dev eth0 src ${VIP}`,
      `ip route replace 198.18.1.0/24 dev eth0 proto kernel scope link src ${VIP}`,
    ]);
    assert.ok(host.routes.every((r) => r.prefsrc === VIP));
    host.clear();
    await m.up();
    assert.deepEqual(host.actions.filter((c) => c.startsWith('ip ')), [], 'idempotent: nothing rewritten twice');
    host.clear();
    await m.down();
    assert.deepEqual(host.calls, [
      'ip -j addr show',
      'ip -j -4 route show table main',
      'ip route replace default via 198.18.1.254 dev eth0',
      'ip route replace 198.18.1.0/24 dev eth0 proto kernel scope link src 198.18.1.1',
      `ip addr del ${VIP}/24 dev eth0`,
    ]);
    assert.deepEqual(host.routes, before, 'the routes survive the removal unchanged');
  });

  it('a fresh manager (after a daemon restart) restores the routes from the interface address', async () => {
    const host = oneNic();
    const before = structuredClone(host.routes);
    await setup(cfg(), host).m.up();
    await setup(cfg(), host).m.down();
    assert.deepEqual(host.routes, before);
  });

  it('leaves routes it cannot rewrite faithfully alone, with a warning', async () => {
    const { m, host, warnings } = setup(cfg());
    host.routes.push({ dst: '10.0.0.0/8', gateway: '198.18.1.254', dev: 'eth0', metrics: [{ mtu: 1400 }], flags: [] });
    await m.up();
    assert.ok(!host.calls.some((c) => c.includes('10.0.0.0/8')));
    assert.deepEqual(warnings(), [`VIP ${VIP} on eth0: route "10.0.0.0/8" has attributes stayup does not rewrite; it keeps its source address`]);
  });

  it('refuses one_side for IPv6 and the farm forms at construction', () => {
    assert.throws(
      () => new VipManager(vipConfig([{ addr: '2001:db8::5', where: 'one_side' }])),
      (e: unknown) => isStayupError(e) && e.code === 'VIP_UNSUPPORTED' && e.message === 'VIP 2001:db8::5: where="one_side" (VIP as source address) is implemented for IPv4 only',
    );
    const farm = vipConfig([{ addr: VIP }]);
    farm.interfaces[0] = { ...farm.interfaces[0]!, realInterface: undefined, virtualInterface: { type: 'vmac_directed', virtualAddrs: [] } };
    assert.throws(() => vipAddresses(farm), (e: unknown) => isStayupError(e) && e.code === 'VIP_UNSUPPORTED' && /virtual MAC/.test(e.message));
    assert.throws(() => vipAddresses(vipConfig([{ addr: VIP, where: 'alias' }])), (e: unknown) => isStayupError(e) && e.code === 'VIP_UNSUPPORTED');
  });

  it('routeSpec rebuilds the arguments of a route', () => {
    assert.deepEqual(routeSpec({ dst: 'default', gateway: '198.18.1.254', dev: 'eth0', protocol: 'static', metric: 100, flags: ['onlink'] }), [
      'default', 'via', '198.18.1.254', 'dev', 'eth0', 'proto', 'static', 'metric', '100', 'onlink',
    ]);
    assert.equal(routeSpec({ dst: 'default', dev: 'eth0', nexthops: [], flags: [] }), undefined);
  });
});

describe('VipManager: errors name the VIP and the interface', () => {
  it('VIP_NO_INTERFACE when no interface holds the subnet', async () => {
    const { m } = setup(vipConfig([{ addr: '198.18.7.7' }]));
    await rejects(
      m.up(),
      'VIP_NO_INTERFACE',
      'VIP 198.18.7.7: no interface has an address in its subnet (eth0 198.18.1.1/24); set <interface name="..."> or add an address in the VIP\'s subnet',
    );
  });

  it('VIP_NO_INTERFACE when the configured interface does not exist', async () => {
    const { m } = setup(vipConfig([{ addr: VIP }], { name: 'eth9' }));
    await rejects(m.up(), 'VIP_NO_INTERFACE', `VIP ${VIP}: interface eth9 does not exist on this node`);
  });

  it('VIP_NO_INTERFACE when two interfaces hold the subnet equally', async () => {
    const host = new FakeHost([
      { ifname: 'eth0', addrs: [{ local: '198.18.1.1', prefixlen: 24 }] },
      { ifname: 'eth1', addrs: [{ local: '198.18.1.2', prefixlen: 24 }] },
    ]);
    const { m } = setup(undefined, host);
    await rejects(m.up(), 'VIP_NO_INTERFACE', `VIP ${VIP}: both eth0 (198.18.1.1/24) and eth1 (198.18.1.2/24) hold its subnet; set <interface name="...">`);
  });

  it('VIP_FAILED when ip addr add fails, with its message', async () => {
    const { m, host } = setup();
    host.override = (l) => (l.startsWith('ip addr add') ? { code: 2, stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\n' } : undefined);
    await rejects(m.up(), 'VIP_FAILED', `VIP ${VIP} on eth0: \`ip addr add ${VIP}/24 dev eth0 label eth0:vip\` exited 2: RTNETLINK answers: Operation not permitted`);
  });

  it('VIP_FAILED when the VIP is already on another interface', async () => {
    const host = oneNic();
    host.links.push({ ifname: 'eth1', addrs: [{ local: VIP, prefixlen: 32 }] });
    const { m } = setup(vipConfig([{ addr: VIP }], { name: 'eth0' }), host);
    await rejects(m.up(), 'VIP_FAILED', `VIP ${VIP} is already on eth1, not on eth0: remove it there first`);
  });

  it('VIP_FAILED when ip is not installed', async () => {
    const { m, host } = setup();
    host.missing.add('ip');
    await rejects(m.up(), 'VIP_FAILED', 'listing the addresses: cannot run `ip -j addr show`: ip is not installed (package iproute2)');
  });

  it('VIP_FAILED when the host name does not resolve', async () => {
    const host = oneNic();
    const m = new VipManager(vipConfig([{ addr: 'nope.example' }]), {
      run: host.run,
      resolveHost: async () => {
        throw new Error('getaddrinfo ENOTFOUND nope.example');
      },
    });
    await rejects(m.up(), 'VIP_FAILED', 'VIP nope.example: cannot resolve the host name: getaddrinfo ENOTFOUND nope.example');
  });
});

describe('VipManager: status and the generated checkers', () => {
  it('status says where each VIP is', async () => {
    const { m } = setup(vipConfig([{ addr: VIP }, { addr: '198.18.9.9' }]));
    assert.deepEqual(await m.status(), [
      { addr: VIP, where: 'one_side_alias', present: false, on: [], ip: VIP, interface: 'eth0' },
      {
        addr: '198.18.9.9',
        where: 'one_side_alias',
        present: false,
        on: [],
        ip: '198.18.9.9',
        error: 'VIP 198.18.9.9: no interface has an address in its subnet (eth0 198.18.1.1/24); set <interface name="..."> or add an address in the VIP\'s subnet',
      },
    ]);
    const { m: m2 } = setup();
    await m2.up();
    assert.deepEqual(await m2.status(), [
      { addr: VIP, where: 'one_side_alias', present: true, on: [{ iface: 'eth0', prefixLen: 24, label: 'eth0:vip' }], ip: VIP, interface: 'eth0' },
    ]);
  });

  it('checkInterface: up with carrier, administratively down, no carrier, missing', async () => {
    const { m, host } = setup();
    assert.deepEqual(await m.checkInterface('eth0'), { state: 'up', reason: 'interface eth0 is up with carrier' });
    host.links[1]!.carrier = false;
    assert.deepEqual(await m.checkInterface('eth0'), { state: 'down', reason: 'interface eth0 has no carrier (operstate DOWN)' });
    host.links[1]!.up = false;
    assert.deepEqual(await m.checkInterface('eth0'), { state: 'down', reason: 'interface eth0 is administratively down' });
    assert.deepEqual(await m.checkInterface('eth7'), { state: 'down', reason: 'interface eth7 does not exist' });
  });

  it('checkAddress: present, missing, on the wrong interface, duplicate', async () => {
    const { m, host } = setup();
    assert.deepEqual(await m.checkAddress(VIP), { state: 'down', reason: `VIP ${VIP} is not on any interface (expected on eth0)` });
    await m.up();
    assert.deepEqual(await m.checkAddress(VIP), { state: 'up', reason: `VIP ${VIP} is on eth0` });
    host.links[1]!.addrs.find((a) => a.local === VIP)!.dadfailed = true;
    assert.deepEqual(await m.checkAddress(VIP), { state: 'down', reason: `VIP ${VIP} on eth0 failed duplicate address detection` });
    host.links[1]!.addrs = host.links[1]!.addrs.filter((a) => a.local !== VIP);
    host.links.push({ ifname: 'eth1', addrs: [{ local: VIP, prefixlen: 32 }] });
    assert.deepEqual(await m.checkAddress(VIP), { state: 'down', reason: `VIP ${VIP} is on eth1, expected on eth0` });
  });

  it('checkers(): intf.<network> (wait, pre) and ip.<addr> (stopstart), as configured', async () => {
    const { m } = setup(vipConfig([{ addr: VIP }, { addr: '198.18.1.101', check: false }]));
    const cs = await m.checkers();
    assert.deepEqual(
      cs.map(({ check, ...c }) => c),
      [
        { resource: 'intf.198.18.1.0', kind: 'intf', action: 'wait', when: 'pre', target: 'eth0' },
        { resource: `ip.${VIP}`, kind: 'ip', action: 'stopstart', when: 'prim', target: VIP },
      ],
    );
    assert.equal((await cs[0]!.check()).state, 'up');
    assert.equal((await cs[1]!.check()).state, 'down');
    const { m: none } = setup(vipConfig([{ addr: VIP, check: false }], { check: false }));
    assert.deepEqual(await none.checkers(), []);
  });

  it('connectionCount counts the established connections sourced from the VIP', async () => {
    const { m, host } = setup();
    host.sockets = [
      { src: VIP, state: 'ESTAB' },
      { src: VIP, state: 'TIME-WAIT' },
      { src: '198.18.1.1', state: 'ESTAB' },
    ];
    assert.equal(await m.connectionCount(VIP), 1);
    assert.equal(host.calls.at(-1), `ss -H -t -n state established src ${VIP}`);
  });
});
