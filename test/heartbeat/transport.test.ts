// Two real UDP transports on 127.0.0.1 (each "lan" on its own ports), plus hostile datagrams, bind
// failures and the cluster.xml mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeartbeatTransport, type UdpLan } from '../../src/heartbeat/transport.ts';
import { heartbeatPort, heartbeatUdpLans, lossDetectorLans } from '../../src/heartbeat/config.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { parseClusterConfig } from '../../src/config/cluster.ts';
import type { Heart } from '../../src/config/userconfig/types.ts';
import type { FrameEvent, RejectEvent } from '../../src/heartbeat/channel.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';

const moduleKey = generateModuleKey();

async function freePorts(n: number): Promise<number[]> {
  const socks = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createSocket>>((res) => {
      const s = createSocket('udp4');
      s.bind(0, '127.0.0.1', () => res(s));
    })),
  );
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((res) => s.close(() => res()))));
  return ports;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function openPair() {
  const [a1, a2, b1, b2] = await freePorts(4);
  const lans1: UdpLan[] = [
    { lan: 'a', bindAddr: '127.0.0.1', port: a1!, peerAddr: '127.0.0.1', peerPort: a2! },
    { lan: 'b', bindAddr: '127.0.0.1', port: b1!, peerAddr: '127.0.0.1', peerPort: b2! },
  ];
  const lans2: UdpLan[] = [
    { lan: 'a', bindAddr: '127.0.0.1', port: a2!, peerAddr: '127.0.0.1', peerPort: a1! },
    { lan: 'b', bindAddr: '127.0.0.1', port: b2!, peerAddr: '127.0.0.1', peerPort: b1! },
  ];
  const n1 = await HeartbeatTransport.open({ moduleId: 2, moduleKey, node: 'node1', peer: 'node2', lans: lans1 });
  const n2 = await HeartbeatTransport.open({ moduleId: 2, moduleKey, node: 'node2', peer: 'node1', lans: lans2 });
  return { n1, n2, ports: { a1: a1!, a2: a2!, b1: b1!, b2: b2! } };
}

test('two UDP transports exchange frames on both lans, with counters', async (t) => {
  const { n1, n2, ports } = await openPair();
  t.after(() => Promise.all([n1.close(), n2.close()]));
  assert.deepEqual(n1.localAddresses(), { a: { address: '127.0.0.1', port: ports.a1 }, b: { address: '127.0.0.1', port: ports.b1 } });
  const got1: FrameEvent[] = [];
  const got2: FrameEvent[] = [];
  n1.on('frame', (f) => got1.push(f));
  n2.on('frame', (f) => got2.push(f));
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) {
    n1.send(Buffer.from(JSON.stringify({ n: i, from: 'node1' })));
    n2.send(Buffer.from(JSON.stringify({ n: i, from: 'node2' })));
    await sleep(2);
  }
  // UDP on loopback does not lose datagrams in practice; wait for all, generously.
  await waitFor('10 frames each way', () => got1.length === 10 && got2.length === 10);
  t.diagnostic(`20 frames exchanged in ${(performance.now() - t0).toFixed(1)} ms`);
  assert.deepEqual(got2.filter((f) => f.lan === 'a').map((f) => JSON.parse(f.payload.toString()).n), [0, 1, 2, 3, 4]);
  assert.deepEqual(got2.filter((f) => f.lan === 'b').map((f) => JSON.parse(f.payload.toString()).n), [0, 1, 2, 3, 4]);
  const f = got2[0]!;
  assert.equal(f.from, 'node1');
  assert.equal(f.bootId, n1.bootId);
  assert.equal(f.source, `127.0.0.1:${f.lan === 'a' ? ports.a1 : ports.b1}`);
  assert.ok(f.receivedAtMs >= t0 && Math.abs(f.sentAtMs - Date.now()) < 60_000);
  await waitFor('send callbacks', () => n1.counters().a!.sent === 5 && n1.counters().b!.sent === 5);
  const c = n2.counters();
  assert.equal(c.a!.received, 5);
  assert.equal(c.b!.received, 5);
  assert.equal(Object.values(c.a!.rejected).reduce((x, y) => x + y, 0), 0);
  assert.deepEqual([n1.node, n1.peer, [...n1.lans]], ['node1', 'node2', ['a', 'b']]);
});

test('hostile datagrams are counted by reason and never break the socket', async (t) => {
  const { n1, n2, ports } = await openPair();
  const raw = createSocket('udp4');
  t.after(() => Promise.all([n1.close(), n2.close(), new Promise<void>((r) => raw.close(() => r()))]));
  const rejects: RejectEvent[] = [];
  const frames: FrameEvent[] = [];
  n2.on('rejected', (r) => rejects.push(r));
  n2.on('frame', (f) => frames.push(f));
  const sendRaw = (b: Buffer, port: number) => new Promise<void>((res) => raw.send(b, port, '127.0.0.1', () => res()));
  await sendRaw(Buffer.from('hello'), ports.a2);
  await sendRaw(Buffer.alloc(3000, 0x53), ports.a2);
  await sendRaw(Buffer.from([0x53, 0x48, 0x01, 0x02]), ports.a2);
  await sendRaw(Buffer.alloc(0), ports.b2);
  await waitFor('4 rejections', () => rejects.length === 4);
  assert.deepEqual(rejects.map((r) => [r.lan, r.reason]).sort(), [
    ['a', 'bad-magic'],
    ['a', 'oversize'],
    ['a', 'truncated'],
    ['b', 'truncated'],
  ]);
  assert.match(rejects[0]!.source, /^127\.0\.0\.1:\d+$/);
  // Still working.
  n1.send(Buffer.from('after'));
  await waitFor('frames after the garbage', () => frames.length === 2);
  const c = n2.counters();
  assert.equal(c.a!.rejected['bad-magic'] + c.a!.rejected.oversize + c.a!.rejected.truncated, 3);
});

test('bind failures: HEARTBEAT_BIND_FAILED with a hint, and no socket is left open', async (t) => {
  const [p1, p2] = await freePorts(2);
  const held = await HeartbeatTransport.open({
    moduleId: 1,
    moduleKey,
    node: 'node1',
    peer: 'node2',
    lans: [{ lan: 'a', bindAddr: '127.0.0.1', port: p1!, peerAddr: '127.0.0.1', peerPort: p2! }],
  });
  t.after(() => held.close());
  await assert.rejects(
    HeartbeatTransport.open({
      moduleId: 1,
      moduleKey,
      node: 'node1',
      peer: 'node2',
      lans: [{ lan: 'a', bindAddr: '127.0.0.1', port: p1!, peerAddr: '127.0.0.1', peerPort: p2! }],
    }),
    (e) => isStayupError(e) && e.code === 'HEARTBEAT_BIND_FAILED' && /EADDRINUSE/.test(e.message) && /another process/.test(e.message),
  );
  // Second lan cannot bind (an address this machine does not have): the first lan's socket is closed again.
  await assert.rejects(
    HeartbeatTransport.open({
      moduleId: 1,
      moduleKey,
      node: 'node1',
      peer: 'node2',
      lans: [
        { lan: 'a', bindAddr: '127.0.0.1', port: p2!, peerAddr: '127.0.0.1', peerPort: p1! },
        { lan: 'b', bindAddr: '198.19.255.253', port: p2!, peerAddr: '198.19.255.254', peerPort: p1! },
      ],
    }),
    (e) => isStayupError(e) && e.code === 'HEARTBEAT_BIND_FAILED' && e.message.includes('heartbeat lan "b": cannot bind udp 198.19.255.253:') && /not an address of this node/.test(e.message),
  );
  const again = await HeartbeatTransport.open({
    moduleId: 1,
    moduleKey,
    node: 'node1',
    peer: 'node2',
    lans: [{ lan: 'a', bindAddr: '127.0.0.1', port: p2!, peerAddr: '127.0.0.1', peerPort: p1! }],
  });
  await again.close();
  await assert.rejects(
    HeartbeatTransport.open({ moduleId: 1, moduleKey, node: 'node1', peer: 'node1', lans: [] }),
    (e) => isStayupError(e) && e.code === 'BAD_ARGUMENT',
  );
});

test('cluster.xml and <heart> give each lan its bind address (laddr first), peer address and port', () => {
  const cluster = parseClusterConfig(`<cluster><lans>
    <lan name="net1"><node name="n1" addr="198.18.0.1"/><node name="n2" addr="198.18.0.2"/><node name="n3" addr="198.18.0.3"/></lan>
    <lan name="net2"><node name="n1" addr="198.19.0.1" laddr="198.18.9.1"/><node name="n2" addr="198.19.0.2"/><node name="n3" addr="198.19.0.3"/></lan>
  </lans></cluster>`);
  const heart: Heart = {
    pulseMs: 700,
    timeoutMs: 30_000,
    permanentArp: false,
    heartbeats: [
      { name: 'net1', ident: 'net1', pulseMs: 700, timeoutMs: 30_000 },
      { name: 'net2', ident: 'flow', pulseMs: 100, timeoutMs: 2_000 },
    ],
  };
  assert.equal(heartbeatPort(heart, 3), 8890);
  assert.equal(heartbeatPort({ port: 9999 }, 3), 9999);
  assert.deepEqual(heartbeatUdpLans(cluster, heart, { node: 'n1', peer: 'n3', moduleId: 3 }), [
    { lan: 'net1', bindAddr: '198.18.0.1', port: 8890, peerAddr: '198.18.0.3', peerPort: 8890 },
    { lan: 'net2', bindAddr: '198.18.9.1', port: 8890, peerAddr: '198.19.0.3', peerPort: 8890 },
  ]);
  assert.deepEqual(lossDetectorLans(heart), [
    { lan: 'net1', timeoutMs: 30_000 },
    { lan: 'net2', timeoutMs: 2_000 },
  ]);
  assert.throws(() => heartbeatUdpLans(cluster, { ...heart, heartbeats: [{ ...heart.heartbeats[0]!, name: 'nope' }] }, { node: 'n1', peer: 'n2', moduleId: 1 }), (e) =>
    isStayupError(e) && e.code === 'CONFIG_INVALID' && e.message === '<heartbeat name="nope">: cluster.xml has no lan "nope"');
  assert.throws(() => heartbeatUdpLans(cluster, heart, { node: 'n9', peer: 'n2', moduleId: 1 }), /this node "n9" is not on lan "net1"/);
  assert.throws(() => heartbeatUdpLans(cluster, heart, { node: 'n1', peer: 'n9', moduleId: 1 }), /the peer "n9" is not on lan "net1"/);
});
