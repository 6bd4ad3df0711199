// Tests parseUserConfig and printEffectiveUserConfig on realistic files: the mirror and farm fixtures,
// the templates shipped in modules/, a legacy 7.x file, and macro expansion. Every parse is followed by a
// round trip: printing the effective form and parsing it again must give a deep-equal configuration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { parseClusterConfig } from '../../src/config/cluster.ts';
import { parseUserConfig, printEffectiveUserConfig, type UserConfig } from '../../src/config/userconfig/index.ts';

const read = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const cluster = parseClusterConfig(read('cluster.xml'));

function roundTrip(cfg: UserConfig, env: Record<string, string> = {}): string {
  const printed = printEffectiveUserConfig(cfg);
  const again = parseUserConfig(printed, { file: 'effective.xml', cluster, env });
  assert.deepEqual(again, cfg);
  assert.equal(printEffectiveUserConfig(again), printed, 'the effective form is a fixed point');
  return printed;
}

test('the mirror fixture: every section, legacy units, defaults', () => {
  const cfg = parseUserConfig(read('mirror.userconfig.xml'), { file: 'userconfig.xml', cluster, moduleName: 'pg' });
  const s = cfg.service;
  assert.equal(s.mode, 'mirror');
  assert.deepEqual(
    [s.boot, s.bootDelayMs, s.failover, s.defaultPrim, s.maxLoop, s.loopIntervalMs, s.automaticReboot],
    ['auto', 30_000, true, 'node1', 3, 86_400_000, false],
  );
  assert.deepEqual(s.heart, {
    pulseMs: 700,
    timeoutMs: 30_000,
    permanentArp: true,
    heartbeats: [
      { name: 'default', ident: 'default', pulseMs: 700, timeoutMs: 30_000 },
      { name: 'replication', ident: 'flow', pulseMs: 700, timeoutMs: 20_000 },
    ],
  });
  assert.deepEqual(s.vip, {
    tcpreset: true,
    scriptcontrol: false,
    interfaces: [
      {
        check: true,
        arpreroute: true,
        arpIntervalMs: 60_000,
        arpElapseMs: 1_200_000,
        realInterface: {
          virtualAddrs: [{ addr: '192.168.10.100', where: 'one_side_alias', check: true, connections: true, netmask: '24' }],
        },
      },
    ],
    groups: [],
  });
  const rfs = s.rfs!;
  assert.equal(rfs.async, 'none');
  assert.equal(rfs.locktimeoutMs, 200_000, 'a bare locktimeout is in seconds');
  assert.equal(rfs.syncdeltaMs, 15 * 60_000, 'a bare syncdelta is in minutes');
  assert.equal(rfs.checktimeMs, 220_000);
  assert.equal(rfs.namespacepolicy, '4');
  assert.equal(rfs.reiallowedbwKbps, 102_400);
  assert.ok(!('mountover' in rfs), 'the legacy mountover attribute is accepted and dropped');
  assert.deepEqual(rfs.replicated, [
    {
      dir: '/var/lib/pgsql/16/data',
      mode: 'read_only',
      toCheck: [{ path: 'PG_VERSION' }],
      notReplicated: [{ path: 'pg_stat_tmp' }, { regexpath: '.*\\.tmp$' }],
    },
    { dir: '/var/lib/pgsql/16/archive', toCheck: [], notReplicated: [] },
  ]);
  assert.deepEqual(s.user!.vars, [
    { name: 'SERVICES', value: 'postgresql-16' },
    { name: 'PGPORT', value: '5432' },
    { name: 'EXTRA_OPTS', value: '' },
  ]);
  assert.deepEqual(s.vhost, { hostnames: [{ name: 'pgcluster', envfile: '/etc/stayup/vhost_pg.env', when: 'prim' }] });
  assert.equal(s.errd!.polltimerMs, 10_000);
  assert.deepEqual(s.errd!.procs[1], {
    name: 'postgresql-16',
    service: true,
    atleast: 1,
    atmax: -1,
    action: 'restart',
    restartServices: ['postgresql-16', 'pgbouncer'],
    class: 'prim',
    startAfter: 1,
  });
  assert.equal(s.errd!.procs[2]!.action, 'bin/on_archiver_failure');
  assert.equal(s.errd!.procs[2]!.class, 'archivers');
  assert.deepEqual(s.check.tcp, [
    { ident: 'postgres', when: 'prim', action: 'restart', to: { addr: '127.0.0.1', port: 5432, intervalMs: 10_000, timeoutMs: 5_000 } },
  ]);
  assert.deepEqual(s.check.ping, [
    { ident: 'gateway', when: 'pre', action: 'wait', to: [{ addr: '192.168.10.1', intervalMs: 5_000, timeoutMs: 2_000 }] },
  ]);
  assert.deepEqual(s.check.custom, [
    { ident: 'replication_lag', when: 'second', exec: 'lagcheck', arg: '--max-lag 30', action: 'restart' },
  ]);
  assert.deepEqual(s.check.module, [
    { name: 'ldap', to: { addr: '127.0.0.1', secure: false, port: 9010 } },
    { name: 'backup', ident: 'backup_remote', to: { addr: 'backup.example.com', secure: true, port: 9453 } },
  ]);
  assert.deepEqual(s.check.splitbrain, { ident: 'witness', exec: 'ping', witnesses: ['192.168.10.1', '192.168.10.2'] });
  const f = s.failoverMachine;
  assert.deepEqual([f.extends, f.periodMs, f.handleTimeMs], [true, 5_000, 15_000]);
  assert.deepEqual(
    f.rules.map((r) => r.label),
    ['lag_restart', 'gateway_lost', 'rfs_forceuptodate', 'prefer_node1'],
  );
  assert.deepEqual(f.rules[2]!.action, { kind: 'set', target: { kind: 'resource', class: 'rfs', id: 'uptodate' }, value: 'up' });
  roundTrip(cfg);
});

test('the farm fixture: farm membership, farm VIP form and load balancing', () => {
  const cfg = parseUserConfig(read('farm.userconfig.xml'), { file: 'userconfig.xml', cluster });
  const s = cfg.service;
  assert.equal(s.mode, 'farm');
  assert.equal(s.heart, undefined);
  assert.equal(s.rfs, undefined);
  assert.deepEqual(s.farm, {
    pulseMs: 100,
    mlostCount: 80,
    slostCount: 40,
    lans: [{ name: 'default' }, { name: 'replication' }],
  });
  const intf = s.vip!.interfaces[0]!;
  assert.equal(intf.name, 'eth0');
  assert.equal(intf.realInterface, undefined);
  assert.deepEqual(intf.virtualInterface, {
    type: 'vmac_directed',
    addr: '5A:FE:C0:A8:0A:C8',
    virtualAddrs: [{ addr: '192.168.10.200', where: 'alias', check: true, connections: true }],
  });
  assert.deepEqual(s.vip!.groups, [
    {
      name: 'web',
      hosts: [
        { name: 'node1', power: 1 },
        { name: 'node2', power: 1 },
        { name: 'node3', power: 2 },
      ],
      rules: [
        { virtualAddr: '192.168.10.200', port: 80, proto: 'tcp', filter: 'on_addr' },
        { virtualAddr: '192.168.10.200', port: 443, proto: 'tcp', filter: 'on_addr' },
      ],
    },
    {
      name: 'dns',
      hosts: [],
      rules: [
        { virtualAddr: '*', port: 53, proto: 'udp', filter: 'on_port' },
        { virtualAddr: '*', port: '*', proto: 'arp', filter: 'on_addr' },
      ],
    },
  ]);
  assert.deepEqual(s.check.ip, [{ ident: 'vip', when: 'both', to: { addr: '192.168.10.200', intervalMs: 10_000 } }]);
  assert.deepEqual(s.check.intf, [{ ident: 'eth0', when: 'pre', to: { localAddr: '192.168.10.11' } }]);
  assert.deepEqual([s.failoverMachine.periodMs, s.failoverMachine.handleTimeMs], [2_000, 6_000]);
  assert.equal(s.loopIntervalMs, 12 * 3_600_000);
  roundTrip(cfg);
});

test('a minimal mirror gets every documented default', () => {
  const cfg = parseUserConfig('<safe><service mode="mirror"><heart><heartbeat name="default"/></heart></service></safe>', {
    file: 'userconfig.xml',
  });
  assert.deepEqual(cfg, {
    macros: [],
    service: {
      mode: 'mirror',
      boot: 'ignore',
      bootDelayMs: 0,
      failover: true,
      defaultPrim: 'alone',
      maxLoop: 3,
      loopIntervalMs: 86_400_000,
      automaticReboot: false,
      heart: {
        pulseMs: 700,
        timeoutMs: 30_000,
        permanentArp: true,
        heartbeats: [{ name: 'default', ident: 'default', pulseMs: 700, timeoutMs: 30_000 }],
      },
      check: { tcp: [], ping: [], intf: [], ip: [], custom: [], module: [] },
      failoverMachine: { extends: true, periodMs: 5_000, handleTimeMs: 15_000, rules: [] },
    },
  });
  assert.equal(
    printEffectiveUserConfig(cfg),
    [
      '<safe>',
      '  <service mode="mirror" boot="ignore" boot_delay="0s" failover="on" defaultprim="alone" maxloop="3" loop_interval="24h" automatic_reboot="off">',
      '    <heart pulse="700ms" timeout="30s" permanent_arp="on">',
      '      <heartbeat name="default" ident="default" pulse="700ms" timeout="30s"/>',
      '    </heart>',
      '    <check/>',
      '    <failover extends="yes" period="5s" handle_time="15s"/>',
      '  </service>',
      '</safe>',
      '',
    ].join('\n'),
  );
  roundTrip(cfg);
});

test('a 7.x file: numbers without units in their legacy units, mountover accepted', () => {
  const legacy = `<!DOCTYPE safe>
<safe>
 <service mode="mirror" defaultprim="alone" maxloop="3" loop_interval="24" failover="on">
  <heart pulse="700" timeout="30000">
    <heartbeat name="default" ident="flow">
    </heartbeat></heart>
 <user>
 </user>
 <rfs mountover="off" async="second" locktimeout="200" nbrei="3" nbremconn="4">
	<replicated dir="/var/replicated" mode="read_only"/>
  </rfs></service>
</safe>`;
  const cfg = parseUserConfig(legacy, { file: 'userconfig.xml', cluster });
  assert.equal(cfg.service.loopIntervalMs, 24 * 3_600_000);
  assert.deepEqual([cfg.service.heart!.pulseMs, cfg.service.heart!.timeoutMs], [700, 30_000]);
  assert.deepEqual([cfg.service.rfs!.locktimeoutMs, cfg.service.rfs!.nbrei, cfg.service.rfs!.nbremconn], [200_000, 3, 4]);
  assert.deepEqual(cfg.service.user, { nicestoptimeoutMs: 300_000, forcestoptimeoutMs: 300_000, logging: 'userlog', userlogSizeKb: 2048, vars: [] });
  roundTrip(cfg);
});

test('the templates shipped in modules/ are valid and round-trip', () => {
  const dir = new URL('../../modules/', import.meta.url);
  if (!existsSync(dir)) return;
  const names = readdirSync(dir).filter((n) => existsSync(new URL(`${n}/conf/userconfig.xml`, dir)));
  assert.ok(names.length > 0);
  for (const name of names) {
    const text = readFileSync(new URL(`${name}/conf/userconfig.xml`, dir), 'utf8');
    const cfg = parseUserConfig(text, { file: `${name}/conf/userconfig.xml`, cluster, moduleName: name });
    roundTrip(cfg);
  }
});

test('macros: expanded everywhere, from the environment too, macro wins, unknown ones left as written', () => {
  const text = `<safe>
  <macro name="BASE" value="/srv/%APP%"/>
  <macro name="APP" value="shop"/>
  <macro name="HOME" value="/home/shop"/>
  <macro name="LAN" value="default"/>
  <service mode="mirror">
    <heart><heartbeat name="%LAN%"/></heart>
    <rfs><replicated dir="%BASE%/data"/></rfs>
    <user>
      <var name="A" value="%APP%-%HOME%-%REGION%-%NOPE%-100%"/>
    </user>
    <failover><![CDATA[ r: if (custom.%APP% == down) then restart(); ]]></failover>
  </service>
</safe>`;
  const env = { APP: 'from-env', HOME: '/root', REGION: 'eu-west' };
  const cfg = parseUserConfig(text, { file: 'userconfig.xml', cluster, env });
  // BASE is expanded where it is defined: APP is not a macro yet there, so the environment's APP is used.
  assert.deepEqual(cfg.macros, [
    { name: 'BASE', value: '/srv/from-env' },
    { name: 'APP', value: 'shop' },
    { name: 'HOME', value: '/home/shop' },
    { name: 'LAN', value: 'default' },
  ]);
  assert.equal(cfg.service.heart!.heartbeats[0]!.name, 'default');
  assert.equal(cfg.service.rfs!.replicated[0]!.dir, '/srv/from-env/data');
  assert.equal(cfg.service.user!.vars[0]!.value, 'shop-/home/shop-eu-west-%NOPE%-100%');
  assert.deepEqual(cfg.service.failoverMachine.rules[0]!.condition, {
    kind: 'compare',
    op: '==',
    left: { kind: 'resource', class: 'custom', id: 'shop' },
    right: { kind: 'value', value: 'down' },
  });
  roundTrip(cfg, env);
});

test('the environment is only what the caller injects', () => {
  const text =
    '<safe><service mode="mirror"><heart><heartbeat name="default"/></heart>' +
    '<user><var name="P" value="%PATH%"/></user></service></safe>';
  assert.equal(parseUserConfig(text, { file: 'u.xml' }).service.user!.vars[0]!.value, '%PATH%');
  assert.equal(parseUserConfig(text, { file: 'u.xml', env: { PATH: '/bin' } }).service.user!.vars[0]!.value, '/bin');
});

test('values with XML special characters and line breaks survive the effective form', () => {
  const text =
    '<safe><service mode="mirror"><heart><heartbeat name="default"/></heart><user>' +
    '<var name="Q" value="a &quot;b&quot; &amp; &lt;c&gt; \'d\'&#10;e&#9;f"/></user>' +
    '<errd><proc name="java" argregex="-jar (app|svc)\\.jar &amp;&amp; [[:digit:]]+"/></errd></service></safe>';
  const cfg = parseUserConfig(text, { file: 'u.xml' });
  assert.equal(cfg.service.user!.vars[0]!.value, 'a "b" & <c> \'d\'\ne\tf');
  assert.equal(cfg.service.errd!.procs[0]!.argregex, '-jar (app|svc)\\.jar && [[:digit:]]+');
  roundTrip(cfg);
});
