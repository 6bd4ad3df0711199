// Tests cluster.xml: parsing with defaults, the command lan, node list, signature stability, and the
// exact diagnostics for schema and symmetry errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  clusterNodes,
  clusterSignature,
  commandLan,
  parseClusterConfig,
  printClusterConfig,
} from '../../src/config/cluster.ts';
import { StayupError } from '../../src/errors/stayup-error.ts';

const fixture = readFileSync(new URL('./fixtures/cluster.xml', import.meta.url), 'utf8');

function errors(text: string): string[] {
  try {
    parseClusterConfig(text);
  } catch (e) {
    assert.ok(e instanceof StayupError);
    assert.equal(e.code, 'CONFIG_INVALID');
    return e.message.split('\n');
  }
  assert.fail('expected CONFIG_INVALID');
}

test('the fixture parses into a typed configuration', () => {
  const c = parseClusterConfig(fixture);
  assert.deepEqual(c, {
    port: 4800,
    pulseMs: 100,
    mlostCount: 20,
    slostCount: 10,
    lans: [
      {
        name: 'default',
        command: true,
        nodes: [
          { name: 'node1', addr: '192.168.10.11' },
          { name: 'node2', addr: '192.168.10.12' },
          { name: 'node3', addr: '192.168.10.13' },
        ],
      },
      {
        name: 'replication',
        command: false,
        nodes: [
          { name: 'node1', addr: '10.20.0.11' },
          { name: 'node2', addr: '10.20.0.12' },
          { name: 'node3', addr: 'fd00:20::13' },
        ],
      },
    ],
  });
  assert.equal(commandLan(c).name, 'default');
  assert.deepEqual(clusterNodes(c).map((n) => `${n.name}=${n.addr}`), [
    'node1=192.168.10.11',
    'node2=192.168.10.12',
    'node3=192.168.10.13',
  ]);
});

test('defaults are filled in and the command lan falls back to the first', () => {
  const c = parseClusterConfig(
    '<cluster><lans><lan name="a"><node name="n1" addr="h1" laddr="10.0.0.1"/></lan>' +
      '<lan name="b"><node name="n1" addr="h2"/></lan></lans></cluster>',
  );
  assert.deepEqual([c.port, c.pulseMs, c.mlostCount, c.slostCount], [4800, 100, 20, 10]);
  assert.equal(commandLan(c).name, 'a');
  assert.deepEqual(c.lans[0]!.nodes[0], { name: 'n1', addr: 'h1', laddr: '10.0.0.1' });
  assert.deepEqual(c.lans[1]!.nodes[0], { name: 'n1', addr: 'h2' });
});

test('the canonical form re-parses to the same configuration', () => {
  const c = parseClusterConfig(fixture);
  const printed = printClusterConfig(c);
  assert.deepEqual(parseClusterConfig(printed), c);
  assert.equal(printClusterConfig(parseClusterConfig(printed)), printed);
});

test('the signature ignores layout and implicit defaults but not real changes', () => {
  const base = clusterSignature(fixture);
  assert.match(base, /^[0-9a-f]{64}$/);
  const relaid = fixture
    .replace(/<!--.*-->\n/, '')
    .replace(/\n\s*/g, ' ')
    .replace(' port="4800"', '')
    .replace('pulse="100ms"', "pulse='100'")
    .replace('[fd00:20::13]', 'fd00:20::13');
  assert.notEqual(relaid, fixture);
  assert.equal(clusterSignature(relaid), base);
  assert.notEqual(clusterSignature(fixture.replace('192.168.10.13', '192.168.10.14')), base);
  assert.notEqual(clusterSignature(fixture.replace(' command="on"', '')), base);
});

test('schema errors are all reported, with positions', () => {
  const text = [
    '<cluster>',
    '  <lans port="70000" pulse="1sec" mlostcount="3">',
    '    <lan name="default">',
    '      <node name="node1" addr="10.0.0.300"/>',
    '      <node name="node1" addr="10.0.0.2"/>',
    '      <nod name="node3" addr="10.0.0.3"/>',
    '      <node addr="10.0.0.4"/>',
    '    </lan>',
    '    <lan name="default"><node name="node1" addr="10.0.0.1"/></lan>',
    '    <lan name="bad name"><node name="node1" addr="10.0.0.1"/></lan>',
    '  </lans>',
    '</cluster>',
  ].join('\n');
  assert.deepEqual(errors(text), [
    'cluster.xml:2:9: <lans>: attribute "port" must be between 1 and 65535, got "70000"',
    'cluster.xml:2:22: <lans>: attribute "pulse": unknown unit "sec" in "1sec" (use d, h, m, s, ms or us)',
    'cluster.xml:2:35: <lans>: unknown attribute "mlostcount"; did you mean "mlost_count"?',
    'cluster.xml:4:26: <node>: attribute "addr" must be an IPv4 or IPv6 address or a host name, got "10.0.0.300"',
    'cluster.xml:5:13: <node>: name "node1" is already used at 4:13',
    'cluster.xml:6:7: <nod>: unknown element in <lan>; did you mean <node>?',
    'cluster.xml:7:7: <node>: attribute "name" is required',
    'cluster.xml:9:10: <lan>: name "default" is already used at 3:10',
    'cluster.xml:10:10: <lan>: attribute "name" must be a name of letters, digits, "_" or "-" (at most 64, starting with a letter or digit), got "bad name"',
  ]);
});

test('every lan must list the same nodes, and one lan at most is the command lan', () => {
  const text = [
    '<cluster><lans>',
    '  <lan name="a" command="on"><node name="n1" addr="h1"/><node name="n2" addr="h2"/></lan>',
    '  <lan name="b" command="on"><node name="n1" addr="h1"/><node name="n3" addr="h3"/></lan>',
    '</lans></cluster>',
  ].join('\n');
  assert.deepEqual(errors(text), [
    'cluster.xml:3:3: <lan>: lan "b" lacks node "n2" of lan "a"; every lan must list the same nodes',
    'cluster.xml:3:17: <lan>: only one lan may have command="on"; lan "a" at 2:17 already has it',
    'cluster.xml:3:57: <node>: node "n3" is not in lan "a"; every lan must list the same nodes',
  ]);
  assert.deepEqual(errors('<cluster><lans/></cluster>'), ['cluster.xml:1:10: <lans>: at least one <lan> is required']);
  assert.deepEqual(errors('<clusters/>'), ['cluster.xml:1:1: <clusters>: the root element must be <cluster>']);
});
