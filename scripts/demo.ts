// The README's demo: two simulated servers in a lab, a stayupd daemon on each, the cluster configured
// from node1 with -H "*", the demo module installed on both, then the state of both nodes.
// `--keep` leaves the lab running (remove it with `stayup lab down --name demo`).
import { Lab } from '../src/lab/lab.ts';
import { labClusterXml, startDaemons, stayupOn, writeOnServer } from '../src/lab/stayup-cluster.ts';

const keep = process.argv.includes('--keep');
const name = 'demo';
const password = 'demo-admin-password';

function show(title: string, r: { code: number | null; stdout: string; stderr: string }): void {
  process.stdout.write(`\n$ ${title}\n${r.stdout}${r.stderr}`);
  if (r.code !== 0) throw new Error(`"${title}" failed with exit code ${r.code}`);
}

if (Lab.exists(name)) await Lab.down(name);
const lab = await Lab.up({ name, servers: 2 });
let failed = false;
try {
  process.stdout.write(`lab "${name}": ${lab.servers.map((n) => `${n} ${lab.addr(n)}`).join(', ')}; client ${lab.addr('client')}\n`);
  await startDaemons(lab, { password });
  process.stdout.write('stayupd running on every server\n');
  writeOnServer(lab, 'node1', '/srv/cluster.xml', labClusterXml(lab));
  show('[node1] stayup cluster confcheck /srv/cluster.xml', await stayupOn(lab, 'node1', ['cluster', 'confcheck', '/srv/cluster.xml']));
  show('[node1] STAYUP_PASSWORD=… stayup -H "*" cluster config /srv/cluster.xml', await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'config', '/srv/cluster.xml'], { env: { STAYUP_PASSWORD: password } }));
  show('[node1] stayup module template demo /srv/demo.safe', await stayupOn(lab, 'node1', ['module', 'template', 'demo', '/srv/demo.safe']));
  show('[node1] stayup -H "*" module install -m demo /srv/demo.safe', await stayupOn(lab, 'node1', ['-H', '*', 'module', 'install', '-m', 'demo', '/srv/demo.safe']));
  show('[node1] stayup -H "*" cluster confinfo', await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'confinfo']));
  show('[node1] stayup -H "*" state', await stayupOn(lab, 'node1', ['-H', '*', 'state']));
} catch (e) {
  failed = true;
  process.stderr.write(`demo failed: ${(e as Error).message}\n`);
} finally {
  if (keep && !failed) process.stdout.write(`\nlab "${name}" kept: stayup lab exec --name ${name} node1 -- bash; stayup lab down --name ${name}\n`);
  else {
    await Lab.down(name);
    process.stdout.write(`\nlab "${name}" removed\n`);
  }
}
process.exitCode = failed ? 1 : 0;
