import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { badInputs, makeEnv, closeEnv, nodeSnapshot, type Env } from './bad-inputs.cases.ts';

// Each bad input gets exactly this answer and changes nothing on the node. docs/bad-inputs.md is this
// table in prose; keep both in step.
const expected: Record<string, [code: string, message: string | RegExp]> = {
  'userconfig: malformed XML (unclosed tag)': ['CONFIG_XML_MALFORMED', 'userconfig.xml:4:10: unexpected close tag'],
  'userconfig: wrong type (maxloop="three")': ['CONFIG_INVALID', 'userconfig.xml:2:24: <service>: attribute "maxloop" must be an integer, got "three"'],
  'userconfig: bad unit (pulse="700sec")': ['CONFIG_INVALID', 'userconfig.xml:3:8: <heart>: attribute "pulse": unknown unit "sec" in "700sec" (use d, h, m, s, ms or us)'],
  'userconfig: heartbeat on a lan not in cluster.xml': ['CONFIG_INVALID', 'userconfig.xml:4:14: <heartbeat>: attribute "name" refers to lan "lan2", not in cluster.xml'],
  'userconfig: unknown element, did-you-mean': ['CONFIG_INVALID', 'userconfig.xml:4:3: <heartbeet>: unknown element in <heart>; did you mean <heartbeat>?'],
  'userconfig: unknown attribute, did-you-mean': ['CONFIG_INVALID', 'userconfig.xml:3:8: <heart>: unknown attribute "puls"; did you mean "pulse"?'],
  'userconfig: <errd> without <user>': ['CONFIG_INVALID', 'userconfig.xml:4:1: <errd>: requires <user>: process monitoring restarts the application through the module scripts'],
  'userconfig: relative replicated dir': ['CONFIG_INVALID', 'userconfig.xml:4:18: <replicated>: attribute "dir" must be an absolute path, got "var/lib/app"'],
  'userconfig: failover rule with an unknown action': ['CONFIG_INVALID', 'userconfig.xml:5:32: <failover>: unknown action "explode()" (use stop(), stopstart(), wait(), restart(), swap())'],
  'cluster.xml: malformed XML': ['CONFIG_XML_MALFORMED', 'cluster.xml:1:36: unexpected close tag'],
  'cluster.xml: duplicate node name': ['CONFIG_INVALID', 'cluster.xml:3:7: <node>: name "n1" is already used at 2:7'],
  'cluster.xml: bad port': ['CONFIG_INVALID', 'cluster.xml:1:16: <lans>: attribute "port" must be between 1 and 65535, got "70000"'],
  'CLI: confcheck --file of an invalid userconfig exits 2': [
    'exit 2',
    /^\/\S+\/bad-userconfig\.xml:2:1: <service>: mode="mirror" requires <heart> \(the heartbeats between the two nodes\)\n\/\S+\/bad-userconfig\.xml:2:24: <service>: attribute "maxloop" must be an integer, got "three"$/,
  ],
  'CLI: -H names a node that is not in cluster.xml': ['exit 2', 'stayup: -H: "node9" is not a node of cluster.xml (node1, node2)'],
  'CLI: -H "*" on a node without cluster configuration': ['exit 1', 'stayup: -H "*" needs a cluster configuration on this node'],
  'CLI: module install -M with a non-number': ['exit 2', 'stayup: -M: module id must be an integer from 1 to 32, got "two"'],
  'package: "../" entry (zip slip)': ['PACKAGE_HOSTILE', 'module package evil.safe: entry "../evil.sh" escapes the module directory'],
  'package: absolute entry name': ['PACKAGE_HOSTILE', 'module package evil.safe: entry "/etc/cron.d/evil" is an absolute path'],
  'package: symlink entry': ['PACKAGE_HOSTILE', 'module package evil.safe: entry "bin/link" is a symbolic link'],
  'package: device file entry': ['PACKAGE_HOSTILE', 'module package evil.safe: entry "bin/dev" is a character device'],
  'package: entry over the size cap': ['PACKAGE_TOO_LARGE', 'module package evil.safe: entry "bin/big" is 68157440 bytes, over the cap of 67108864 bytes per entry'],
  'package: zip bomb (compression ratio)': ['PACKAGE_HOSTILE', 'module package evil.safe: entry "bin/bomb" has a compression ratio of 1028:1, over the cap of 200:1 (zip bomb)'],
  'package: missing conf/userconfig.xml': ['PACKAGE_MISSING_CONFIG', 'module package evil.safe: conf/userconfig.xml is missing'],
  'package: invalid conf/userconfig.xml': ['CONFIG_INVALID', 'evil.safe/conf/userconfig.xml:5:3: <usr>: unknown element in <service>; did you mean <user>?'],
  'package: not a zip': ['PACKAGE_INVALID', 'module package evil.safe: not a zip file'],
  'package: duplicate module id (-M 1 taken)': ['MODULE_ID_TAKEN', 'module id 1 is already used by module "base"'],
  'package: invalid module name': ['MODULE_NAME_INVALID', 'module name "bad name" is invalid: use 1-32 letters, digits, _ or -'],
  'login: wrong password': ['AUTH_FAILED', 'wrong user name or password'],
  'API: no credentials': ['AUTH_REQUIRED', 'login required: use a session (POST /login) or an API token'],
  'API: unknown API token': ['AUTH_TOKEN_INVALID', 'the API token is invalid or was revoked'],
  'API: Monitor role tries an Admin action': ['AUTH_FORBIDDEN', 'user "watcher" has role Monitor; this needs Admin'],
  'relay: request sealed with a forged cluster key': ['CLUSTER_AUTH_FAILED', /^request from "mallory" is sealed with cluster key [0-9a-f]{16}, this node has [0-9a-f]{16}: push the cluster configuration again$/],
  'relay: forged key presented under the real key id': ['CLUSTER_AUTH_FAILED', /^sealed request from "mallory" does not authenticate with key cluster:[0-9a-f]{16}$/],
  'relay: replayed sealed request': ['CLUSTER_AUTH_REPLAY', 'sealed request from "node2" is a replay'],
  'relay: sealed request from a clock 10 minutes off': ['CLUSTER_AUTH_REPLAY', 'sealed request from "node2" is 600 s off this node\'s clock (limit 120 s): check NTP'],
  'relay: malformed envelope': ['BAD_REQUEST', 'sealed envelope: missing or malformed fields'],
  'cluster config: a key that is not 32 bytes': ['BAD_ARGUMENT', 'key: a cluster key is 32 bytes in base64'],
  'cluster config: invalid cluster.xml pushed': ['CONFIG_INVALID', 'cluster.xml:1:10: <lans>: at least one <lan> is required'],
  'module command: unknown command': ['BAD_REQUEST', 'POST /api/v1/modules/base/command: body/command must be equal to one of the allowed values (start, stop, restart, stopstart, forcestop, swap, prim, second, primforce)'],
  'module command: nosync on something else than swap': ['BAD_ARGUMENT', 'nosync applies to swap only'],
  'module command: fullsync on something else than second': ['BAD_ARGUMENT', 'fullsync applies to second only'],
  'module command: identity with a shell metacharacter': ['BAD_REQUEST', 'POST /api/v1/modules/base/command: body/identity must match pattern "^[A-Za-z0-9_.:-]+$"'],
  'module command: start on a node that is not in cluster.xml': ['CLUSTER_NOT_CONFIGURED', 'none of the addresses of cluster.xml is an address of this node'],
  'module wait: unknown state': ['BAD_ARGUMENT', 'states: "MASTER" is not one of STOP, WAIT, ALONE, PRIM, SECOND, UP'],
  'module genkey: a key that is not 32 bytes': ['MODULE_KEY_INVALID', 'body.moduleKey: a module key is 32 bytes in base64'],
  'module install: a module key that is not base64': ['MODULE_KEY_INVALID', 'body.moduleKey: a module key is 32 bytes in base64'],
  'CLI: swap with an unknown argument': ['exit 2', 'stayup: swap: unknown argument "now" (only "nosync")'],
  'CLI: second with an unknown argument': ['exit 2', 'stayup: second: unknown argument "full" (only "fullsync")'],
  'CLI: waitstate with a timeout that is not a number': ['exit 2', 'stayup: -t: a number of seconds, got "soon"'],
};

let env: Env;
before(async () => {
  env = await makeEnv();
});
after(async () => {
  await closeEnv(env);
});

test('the table covers at least 25 bad inputs, each with an expected answer', () => {
  assert.ok(badInputs.length >= 25, `${badInputs.length} cases`);
  assert.deepEqual(badInputs.map((c) => c.name).sort(), Object.keys(expected).sort());
});

for (const c of badInputs) {
  test(`bad input: ${c.name}`, async () => {
    const before = nodeSnapshot(env);
    const got = await c.run(env);
    const [code, message] = expected[c.name]!;
    assert.equal(got.code, code);
    if (typeof message === 'string') assert.equal(got.message, message);
    else assert.match(got.message, message);
    assert.equal(nodeSnapshot(env), before, 'the node state must not change');
  });
}
