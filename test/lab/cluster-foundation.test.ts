import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Lab } from '../../src/lab/lab.ts';
import { labClusterXml, startDaemons, stayupOn, writeOnServer } from '../../src/lab/stayup-cluster.ts';
import { generateClusterKey, encodeKey } from '../../src/crypto/cluster-key.ts';

// End to end, real daemons in two lab servers: node1 pushes cluster.xml (bootstrapped with the admin
// password) and a module (sealed with the cluster key) to both nodes with -H "*", and both show it STOP.
const labName = `e2e${process.pid % 10000}`;
const password = 'lab-admin-password';
let lab: Lab;
const isRoot = process.getuid?.() === 0;

function hasNetns(): boolean {
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip = !isRoot || !hasNetns() ? 'needs root and network namespaces (run scripts/setup.sh as root)' : false;

before(async () => {
  if (skip) return;
  lab = await Lab.up({ name: labName, servers: 2 });
  await startDaemons(lab, { password });
});

after(async () => {
  if (skip) return;
  await Lab.down(labName);
});

test('node1 pushes cluster.xml to both nodes with the admin password; both report the same signature', { skip }, async () => {
  writeOnServer(lab, 'node1', '/srv/cluster.xml', labClusterXml(lab));
  const r = await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'config', '/srv/cluster.xml'], { env: { STAYUP_PASSWORD: password } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /--- node1 \(198\.18\.\d+\.1:9010\): OK\n {4}cluster configured on node1/);
  assert.match(r.stdout, /--- node2 \(198\.18\.\d+\.2:9010\): OK\n {4}cluster configured on node2/);
  const info = await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'confinfo']);
  assert.equal(info.code, 0, info.stderr);
  const sigs = [...info.stdout.matchAll(/^\s+(node[12])\s+\S+\s+([0-9a-f]{64})\s+([0-9a-f]{16})\s+0$/gm)];
  assert.equal(sigs.length, 2, info.stdout);
  assert.equal(sigs[0]![2], sigs[1]![2]);
  assert.equal(sigs[0]![3], sigs[1]![3], 'same cluster key on both nodes');
});

test('node1 installs the demo module on both nodes with the cluster key; state shows both STOP', { skip }, async (t) => {
  const tpl = await stayupOn(lab, 'node1', ['module', 'template', 'demo', '/srv/demo.safe']);
  assert.equal(tpl.code, 0, tpl.stderr);
  const inst = await stayupOn(lab, 'node1', ['-H', '*', 'module', 'install', '-m', 'demo', '/srv/demo.safe']);
  assert.equal(inst.code, 0, inst.stdout + inst.stderr);
  assert.match(inst.stdout, /node1 .*OK\n {4}module demo installed with id 1/);
  assert.match(inst.stdout, /node2 .*OK\n {4}module demo installed with id 1/);
  const st = await stayupOn(lab, 'node1', ['-H', '*', 'state']);
  assert.equal(st.code, 0, st.stderr);
  t.diagnostic(`stayup -H "*" state\n${st.stdout}`);
  assert.match(st.stdout, /^\s+node1\s+demo\s+STOP\s+NotReady\s+1\s+mirror$/m);
  assert.match(st.stdout, /^\s+node2\s+demo\s+STOP\s+NotReady\s+1\s+mirror$/m);
  const lq = await stayupOn(lab, 'node2', ['state', '-m', 'demo', '-lq']);
  assert.equal(lq.code, 0, 'STOP exits 0');
  assert.equal(lq.stdout.trim(), 'demo STOP');
  const ports = await stayupOn(lab, 'node2', ['module', 'getports', '-m', 'demo']);
  assert.match(ports.stdout, /heartbeat \(mirror\)\s+udp\s+8888/);
});

test('the health check answers 404 without login while the module is stopped', { skip }, async () => {
  const url = `http://${lab.addr('node1')}:9010/var/modules/demo/ready.txt`;
  const r = await lab.exec('client', [process.execPath, '-e', `fetch(${JSON.stringify(url)}).then(r => console.log(r.status))`]);
  assert.equal(r.stdout.trim(), '404', r.stderr);
});

test('a wrong admin password is refused and changes nothing', { skip }, async () => {
  const r = await stayupOn(lab, 'node1', ['-H', 'node2', 'webservercfg', '--user', 'mallory', '--passwd', 'mallory-pass'], { env: { STAYUP_PASSWORD: 'not the password' } });
  assert.equal(r.code, 3);
  assert.match(r.stdout, /--- node2 \(.*\): ERROR AUTH_FAILED\n {4}sealed request for user "admin": wrong user name or password/);
  const users = await stayupOn(lab, 'node2', ['cmdlog']);
  assert.doesNotMatch(users.stdout, /mallory/);
});

test('a request sealed with a forged cluster key is refused', { skip }, async () => {
  // An impostor with the right cluster.xml but its own key, on node2's network.
  writeOnServer(lab, 'node2', '/srv/impostor/cluster/cluster.xml', labClusterXml(lab));
  writeOnServer(lab, 'node2', '/srv/impostor/cluster/cluster.key', encodeKey(generateClusterKey()), 0o600);
  const r = await stayupOn(lab, 'node2', ['-H', 'node1', 'module', 'uninstall', '-m', 'demo'], { env: { STAYUP_VAR: '/srv/impostor' } });
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stdout, /ERROR CLUSTER_AUTH_FAILED\n {4}request from "cli@node2" is sealed with cluster key [0-9a-f]{16}, this node has [0-9a-f]{16}: push the cluster configuration again/);
  const st = await stayupOn(lab, 'node1', ['module', 'list']);
  assert.equal(st.stdout.trim(), 'demo', 'the module is still installed');
});

test('the audit log says who ran what', { skip }, async () => {
  const r = await stayupOn(lab, 'node2', ['cmdlog']);
  assert.match(r.stdout, /admin\s+cli@node1@198\.18\.\d+\.1\s+cluster config\s+-\s+ok/);
  assert.match(r.stdout, /cluster:cli@node1\s+cli@node1@198\.18\.\d+\.1\s+module install\s+demo\s+ok/);
});
