// Table-driven tests of the diagnostics of parseUserConfig: each bad input must fail with exactly the
// listed messages (file:line:col: message), all of them, in file order. The cluster given is the fixture
// (lans "default" and "replication", nodes node1-node3); the module being checked is named "me".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseClusterConfig } from '../../src/config/cluster.ts';
import { parseUserConfig } from '../../src/config/userconfig/index.ts';
import { StayupError } from '../../src/errors/stayup-error.ts';

const cluster = parseClusterConfig(readFileSync(new URL('./fixtures/cluster.xml', import.meta.url), 'utf8'));

/** A document whose <service> (line 2) holds `body` from line 3 on. */
const doc = (body: string, service = 'mode="mirror"'): string => `<safe>\n<service ${service}>\n${body}\n</service>\n</safe>`;
const hb = '<heart><heartbeat name="default"/></heart>';
const vipWith = (addr: string, extra = ''): string =>
  `<vip><interface_list><interface><real_interface><virtual_addr addr="${addr}"${extra}/></real_interface></interface></interface_list></vip>`;

interface Case {
  name: string;
  xml: string;
  errors: string[];
  code?: 'CONFIG_INVALID' | 'CONFIG_XML_MALFORMED';
}

const cases: Case[] = [
  {
    name: 'misspelt element, with a hint',
    xml: doc('<heart>\n  <heartbeet name="default"/>\n</heart>'),
    errors: ['userconfig.xml:4:3: <heartbeet>: unknown element in <heart>; did you mean <heartbeat>?'],
  },
  {
    name: 'element in the wrong place',
    xml: doc(`${hb}\n<hart/>\n<lan name="default"/>`),
    errors: [
      'userconfig.xml:4:1: <hart>: unknown element in <service>; did you mean <heart>?',
      'userconfig.xml:5:1: <lan>: not allowed in <service>; it belongs in <farm>',
    ],
  },
  {
    name: 'misspelt attribute, with a hint',
    xml: doc('<heart pluse="700ms"><heartbeat name="default"/></heart>'),
    errors: ['userconfig.xml:3:8: <heart>: unknown attribute "pluse"; did you mean "pulse"?'],
  },
  {
    name: 'integer attribute with a word',
    xml: doc(hb, 'mode="mirror" maxloop="three"'),
    errors: ['userconfig.xml:2:24: <service>: attribute "maxloop" must be an integer, got "three"'],
  },
  {
    name: 'unknown duration unit',
    xml: doc('<heart pulse="700sec"><heartbeat name="default"/></heart>'),
    errors: ['userconfig.xml:3:8: <heart>: attribute "pulse": unknown unit "sec" in "700sec" (use d, h, m, s, ms or us)'],
  },
  {
    name: 'duration that rounds to zero',
    xml: doc('<heart timeout="200us"><heartbeat name="default"/></heart>'),
    errors: ['userconfig.xml:3:8: <heart>: attribute "timeout": "200us" rounds to 0ms, which is not allowed'],
  },
  {
    name: 'keyword typo, with a hint',
    xml: doc(hb, 'mode="miror"'),
    errors: ['userconfig.xml:2:10: <service>: attribute "mode" must be "mirror", "farm" or "light", got "miror"; did you mean "mirror"?'],
  },
  {
    name: 'missing required attribute and element',
    xml: '<safe>\n<service boot="on">\n</service>\n</safe>',
    errors: ['userconfig.xml:2:1: <service>: attribute "mode" is required'],
  },
  {
    name: 'root and cardinality',
    xml: '<safe>\n<service mode="mirror">' + hb + '</service>\n<service mode="farm"/>\n</safe>',
    errors: ['userconfig.xml:3:1: <service>: may appear only once in <safe>'],
  },
  {
    name: 'wrong root element',
    xml: '<config/>',
    errors: ['userconfig.xml:1:1: <config>: the root element must be <safe>'],
  },
  {
    name: 'heartbeat on a lan missing from cluster.xml',
    xml: doc('<heart>\n  <heartbeat name="default"/>\n  <heartbeat name="lan2"/>\n</heart>'),
    errors: ['userconfig.xml:5:14: <heartbeat>: attribute "name" refers to lan "lan2", not in cluster.xml'],
  },
  {
    name: 'farm lan, defaultprim and host missing from cluster.xml',
    xml:
      '<safe>\n<service mode="farm" defaultprim="node9">\n<farm><lan name="backbone"/></farm>\n' +
      '<vip><interface_list><interface><virtual_interface><virtual_addr addr="10.0.0.9"/></virtual_interface></interface></interface_list>\n' +
      '<loadbalancing_list><group name="g"><cluster><host name="node4"/></cluster><rule proto="tcp" filter="on_addr"/></group></loadbalancing_list></vip>\n' +
      '</service>\n</safe>',
    errors: [
      'userconfig.xml:3:12: <lan>: attribute "name" refers to lan "backbone", not in cluster.xml',
      'userconfig.xml:5:52: <host>: attribute "name" refers to node "node4", not in cluster.xml',
    ],
  },
  {
    name: 'mirror defaultprim not a node',
    xml: doc(hb, 'mode="mirror" defaultprim="node9"'),
    errors: [
      'userconfig.xml:2:24: <service>: attribute "defaultprim" refers to node "node9", not in cluster.xml (use "alone", "lastprim" or a node name)',
    ],
  },
  {
    name: 'mode="mirror" forbids <farm> and needs <heart>',
    xml: doc('<farm><lan name="default"/></farm>'),
    errors: [
      'userconfig.xml:2:1: <service>: mode="mirror" requires <heart> (the heartbeats between the two nodes)',
      'userconfig.xml:3:1: <farm>: not allowed when mode="mirror"',
    ],
  },
  {
    name: 'mode="farm" forbids <heart>, <rfs> and mirror-side checkers',
    xml: doc(`<farm><lan name="default"/></farm>\n${hb}\n<rfs><replicated dir="/d"/></rfs>\n<check><ip ident="v" when="prim"><to addr="10.0.0.1"/></ip></check>`, 'mode="farm"'),
    errors: [
      'userconfig.xml:4:1: <heart>: not allowed when mode="farm"',
      'userconfig.xml:5:1: <rfs>: not allowed when mode="farm"',
      'userconfig.xml:6:22: <ip>: when="prim" is not valid when mode="farm" (use "pre" or "both")',
    ],
  },
  {
    name: '<errd> without <user>',
    xml: doc(`${hb}\n<errd><proc name="httpd"/></errd>`),
    errors: ['userconfig.xml:4:1: <errd>: requires <user>: process monitoring restarts the application through the module scripts'],
  },
  {
    name: 'ident="flow" without <rfs>',
    xml: doc('<heart>\n  <heartbeat name="default" ident="flow"/>\n</heart>'),
    errors: [
      'userconfig.xml:4:29: <heartbeat>: ident="flow" carries the replication stream and needs <rfs>; without it the module would block in WAIT',
    ],
  },
  {
    name: 'replicated directories: root, nested, spaces, relative, duplicate',
    xml: doc(
      `${hb}\n<rfs>\n<replicated dir="/"/>\n<replicated dir="/data"/>\n<replicated dir="/data/db"/>\n` +
        '<replicated dir="/my data"/>\n<replicated dir="data"/>\n<replicated dir="/data/"/>\n</rfs>',
    ),
    errors: [
      'userconfig.xml:5:13: <replicated>: the filesystem root "/" cannot be replicated',
      'userconfig.xml:7:13: <replicated>: directory "/data/db" and "/data" (at 6:13) are nested; replicated directories must be disjoint',
      'userconfig.xml:8:13: <replicated>: attribute "dir" must not contain spaces, got "/my data"',
      'userconfig.xml:9:13: <replicated>: attribute "dir" must be an absolute path, got "data"',
      'userconfig.xml:10:13: <replicated>: directory "/data" is already replicated at 6:13',
    ],
  },
  {
    name: 'notreplicated: bad regex, neither or both of path/regexpath, escaping path',
    xml: doc(
      `${hb}\n<rfs><replicated dir="/d">\n<notreplicated regexpath="(tmp"/>\n<notreplicated/>\n` +
        '<notreplicated path="a" regexpath="b"/>\n<notreplicated path="../etc"/>\n</replicated></rfs>',
    ),
    errors: [
      'userconfig.xml:5:16: <notreplicated>: attribute "regexpath" is not a valid regular expression: Unterminated group',
      'userconfig.xml:6:1: <notreplicated>: one of the attributes "path" or "regexpath" is required',
      'userconfig.xml:7:25: <notreplicated>: attributes "path" and "regexpath" cannot be used together',
      'userconfig.xml:8:16: <notreplicated>: attribute "path" must not contain ".." components, got "../etc"',
    ],
  },
  {
    name: 'at most one splitbrain checker',
    xml: doc(`${hb}\n<check>\n<splitbrain ident="a" arg="10.0.0.1"/>\n<splitbrain ident="b" arg="10.0.0.2"/>\n</check>`),
    errors: ['userconfig.xml:6:1: <splitbrain>: may appear only once in <check>'],
  },
  {
    name: 'duplicate checker idents and a port out of range',
    xml: doc(
      `${hb}\n<check>\n<tcp ident="web" when="prim"><to addr="127.0.0.1" port="80"/></tcp>\n` +
        '<tcp ident="web" when="prim"><to addr="127.0.0.1" port="70000"/></tcp>\n</check>',
    ),
    errors: [
      'userconfig.xml:6:6: <tcp>: ident "web" is already used at 5:6',
      'userconfig.xml:6:51: <to>: attribute "port" must be between 1 and 65535, got "70000"',
    ],
  },
  {
    name: 'invalid VIP address',
    xml: doc(`${hb}\n${vipWith('10.0.0.300')}`),
    errors: ['userconfig.xml:4:63: <virtual_addr>: attribute "addr" must be an IPv4 or IPv6 address or a host name, got "10.0.0.300"'],
  },
  {
    name: 'a VIP used twice, and a farm "where" in a mirror',
    xml: doc(
      `${hb}\n<vip><interface_list>\n<interface><real_interface><virtual_addr addr="10.0.0.5"/></real_interface></interface>\n` +
        '<interface><real_interface><virtual_addr addr="10.0.0.5" where="alias"/></real_interface></interface>\n</interface_list></vip>',
    ),
    errors: [
      'userconfig.xml:6:42: <virtual_addr>: address "10.0.0.5" is already used at 5:42',
      'userconfig.xml:6:58: <virtual_addr>: where="alias" is not valid when mode="mirror" (use "one_side_alias" or "one_side")',
    ],
  },
  {
    name: 'empty value from an unset macro names the macro',
    xml: `<safe>\n<macro name="VIP" value=""/>\n<service mode="mirror">${hb}\n${vipWith('%VIP%')}\n</service>\n</safe>`,
    errors: ['userconfig.xml:4:63: <virtual_addr>: attribute "addr" must not be empty (expanded from "%VIP%")'],
  },
  {
    name: 'checker action and when keywords',
    xml: doc(`${hb}\n<check><custom ident="c" exec="x" action="stopstrat" when="always"/></check>`),
    errors: [
      'userconfig.xml:4:35: <custom>: attribute "action" must be "wait", "restart", "stopstart", "stop" or "noaction", got "stopstrat"; did you mean "stopstart"?',
      'userconfig.xml:4:54: <custom>: attribute "when" must be "pre", "prim", "second" or "both", got "always"',
    ],
  },
  {
    name: 'errd process rules',
    xml: doc(
      `${hb}\n<user/>\n<errd>\n<proc name="averyveryverylongname" atleast="2" atmax="1" class="prin" action="restrat"/>\n</errd>`,
    ),
    errors: [
      'userconfig.xml:6:7: <proc>: process name "averyveryverylongname" is longer than 15 characters, which Linux truncates; use nameregex or service="yes"',
      'userconfig.xml:6:48: <proc>: atmax (1) is below atleast (2); the condition can never hold',
      'userconfig.xml:6:58: <proc>: attribute "class": "prin" is not prim, both, pre, second, sec or a custom class name; did you mean "prim"?',
      'userconfig.xml:6:71: <proc>: attribute "action": "restrat" is not restart, stopstart, stop, noaction or a handler executable; did you mean "restart"?',
    ],
  },
  {
    name: 'script variables',
    xml: doc(`${hb}\n<user>\n<var name="SAFEMODULE" value="x"/>\n<var name="bad name" value="x"/>\n<var name="A"/>\n</user>`),
    errors: [
      'userconfig.xml:5:6: <var>: name "SAFEMODULE" is reserved (SAFE* variables are set by stayup for every script)',
      'userconfig.xml:6:6: <var>: attribute "name" must be a variable name of letters, digits and "_", got "bad name"',
      'userconfig.xml:7:1: <var>: attribute "value" is required',
    ],
  },
  {
    name: 'failover rules: class, value, action and syntax errors, all reported',
    xml: doc(
      `${hb}\n<failover><![CDATA[\n  r1: if (heartbet.* == down) then stopstart();\n  r2: if (ip.? == dwn) then stop();\n` +
        '  r3: if (tcp.x == down) then reboot();\n  r4: if (tcp.x == down) tehn stop();\n  r1: if (tcp.x == up) then wait();\n]]></failover>',
    ),
    errors: [
      'userconfig.xml:5:11: <failover>: unknown resource class "heartbet" in "heartbet.*"; did you mean "heartbeat"?',
      'userconfig.xml:6:19: <failover>: "dwn" is neither a resource (class.id) nor a value (init, up, down, unknown, on, off); did you mean "down"?',
      'userconfig.xml:7:31: <failover>: unknown action "reboot()" (use stop(), stopstart(), wait(), restart(), swap())',
      'userconfig.xml:8:26: <failover>: expected "then", got "tehn"',
      'userconfig.xml:9:3: <failover>: rule "r1" is defined twice (first at 5:3)',
    ],
  },
  {
    name: 'failover rules: remote resources and swap() in a farm, missing ";"',
    xml: doc(
      '<farm><lan name="default"/></farm>\n<failover><![CDATA[a: if (remote.proc.x == down) then swap();\nb: if (proc.x == down) then stop()]]></failover>',
      'mode="farm"',
    ),
    errors: [
      'userconfig.xml:4:27: <failover>: "remote.proc.x": remote resources exist only in a mirror module',
      'userconfig.xml:4:55: <failover>: action "swap()" exists only in a mirror module',
      'userconfig.xml:5:35: <failover>: expected ";" after the action, got the end of the rules',
    ],
  },
  {
    name: 'failover timing',
    xml: doc(`${hb}\n<failover period="5s" handle_time="7s"/>`),
    errors: ['userconfig.xml:4:23: <failover>: handle_time (7000ms) must be a multiple of period (5000ms)'],
  },
  {
    name: 'heartbeat timeout not above pulse',
    xml: doc('<heart pulse="2s">\n<heartbeat name="default" timeout="1s"/>\n</heart>'),
    errors: ['userconfig.xml:4:27: <heartbeat>: timeout (1000ms) must be longer than pulse (2000ms), or every pulse is a loss'],
  },
  {
    name: 'the 7.1 <server> heartbeat syntax',
    xml: doc('<heart><heartbeat name="default"/><server addr="10.0.0.1"/></heart>'),
    errors: [
      'userconfig.xml:3:35: <server>: the <server addr> heartbeat syntax of SafeKit 7.1 and older is not supported; write <heartbeat name="<lan of cluster.xml>"/>',
    ],
  },
  {
    name: 'stray text',
    xml: doc(`${hb} hello world`),
    errors: ['userconfig.xml:3:44: <service>: unexpected text "hello world"'],
  },
  {
    name: 'interface forms',
    xml: doc(
      `${hb}\n<vip><interface_list><interface>\n<real_interface><virtual_addr addr="10.0.0.1"/></real_interface>\n` +
        '<virtual_interface type="vmac_directed" addr="5A:FE:00"><virtual_addr addr="10.0.0.2"/></virtual_interface>\n' +
        '</interface></interface_list></vip>',
    ),
    errors: [
      'userconfig.xml:6:1: <interface>: <real_interface> and <virtual_interface> cannot be used together',
      'userconfig.xml:6:20: <virtual_interface>: a mirror can only use type="vmac_invisible" (transparent rerouting); vmac_directed is for farms',
      'userconfig.xml:6:41: <virtual_interface>: attribute "addr" must be a MAC address such as "5A:FE:C0:A8:01:0A", got "5A:FE:00"',
    ],
  },
  {
    name: 'a module checker watching its own module',
    xml: doc(`${hb}\n<check><module name="me"/></check>`),
    errors: ['userconfig.xml:4:16: <module>: module "me" cannot depend on itself'],
  },
  {
    name: 'malformed XML',
    xml: doc(`${hb}\n<rfs>\n<replicated dir="/d">\n</rfs>`),
    code: 'CONFIG_XML_MALFORMED',
    errors: ['userconfig.xml:6:6: unexpected close tag'],
  },
];

for (const c of cases) {
  test(`bad userconfig: ${c.name}`, () => {
    let error: unknown;
    try {
      parseUserConfig(c.xml, { file: 'userconfig.xml', cluster, moduleName: 'me' });
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof StayupError, 'parseUserConfig must throw a StayupError');
    assert.equal(error.code, c.code ?? 'CONFIG_INVALID');
    assert.deepEqual(error.message.split('\n'), c.errors);
    assert.deepEqual(
      error.diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`),
      c.errors,
    );
  });
}

test('the table holds at least 20 bad inputs', () => {
  assert.ok(cases.length >= 20);
});

test('rule positions are exact through CR LF, escaped text and macro expansion', () => {
  const fail = (xml: string): string => {
    try {
      parseUserConfig(xml, { file: 'u.xml', env: {} });
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  const crlf = `<safe>\r\n<service mode="mirror">${hb}\r\n<failover><![CDATA[\r\n  ok: if (tcp.a == up) then wait();\r\n  bad: if (tcp.a === up) then wait();\r\n]]></failover></service></safe>`;
  assert.equal(fail(crlf), 'u.xml:5:20: <failover>: expected a resource, a value or a function call, got "="');
  const escaped = `<safe><service mode="mirror">${hb}<failover>\n  a: if (tcp.a == up &amp;&amp; tcp.b == up) then wat();\n</failover></service></safe>`;
  assert.equal(fail(escaped), 'u.xml:2:51: <failover>: unknown action "wat()"; did you mean "wait()"?');
  const macro = `<safe><macro name="C" value="custom.checker_with_long_name"/><service mode="mirror">${hb}<failover><![CDATA[\n  a: if (%C% == down) then bogus();\n]]></failover></service></safe>`;
  assert.equal(fail(macro), 'u.xml:2:28: <failover>: unknown action "bogus()" (use stop(), stopstart(), wait(), restart(), swap())');
  const lua = `<safe><service mode="mirror">${hb}<failover><![CDATA[\n--Lua Rules\nRules.disable("ip_failure")\n]]></failover></service></safe>`;
  assert.equal(fail(lua), 'u.xml:2:1: <failover>: Lua rules are not supported; write rules as `label: if (condition) then action();`');
});
