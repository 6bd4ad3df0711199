// The README's demo: two simulated servers in a lab, a stayupd daemon on each, the cluster configured
// from node1 with -H "*", a mirror module (a virtual IP and a TCP service) installed and started on both,
// a client polling the virtual IP, then node1 crashes and node2 takes over: the client's outage is shown.
// `--keep` leaves the lab running (remove it with `stayup lab down --name demo`).
import { Lab } from '../src/lab/lab.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { labClusterXml, startDaemons, stayupOn, writeOnServer } from '../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../src/lab/mirror-module.ts';
import { outages, readProbeLog } from '../src/lab/outage.ts';
import { installDir } from '../src/util/paths.ts';

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
  const vip = lab.ip(100);
  writeOnServer(lab, 'node1', '/srv/demo.safe', await labMirrorPackage({ vip, servicePort: 7000, pulseMs: 100, timeoutMs: 1000, errdPolltimer: '1s' }));
  process.stdout.write(`\nmodule "demo": virtual IP ${vip}, a TCP service on port 7000 started by start_prim (it answers with the server's name), heartbeat pulse 100 ms, timeout 1000 ms\n`);
  show('[node1] stayup -H "*" module install -m demo /srv/demo.safe', await stayupOn(lab, 'node1', ['-H', '*', 'module', 'install', '-m', 'demo', '/srv/demo.safe']));
  show('[node1] stayup -H "*" cluster confinfo', await stayupOn(lab, 'node1', ['-H', '*', 'cluster', 'confinfo']));
  show('[node1] stayup -H "*" start -m demo', await stayupOn(lab, 'node1', ['-H', '*', 'start', '-m', 'demo']));
  show('[node1] stayup waitstate -m demo PRIM', await stayupOn(lab, 'node1', ['waitstate', '-m', 'demo', '-t', '60', 'PRIM']));
  show('[node2] stayup waitstate -m demo SECOND', await stayupOn(lab, 'node2', ['waitstate', '-m', 'demo', '-t', '60', 'SECOND']));
  show('[node1] stayup -H "*" state', await stayupOn(lab, 'node1', ['-H', '*', 'state']));
  const probeLog = join(lab.stateDir, 'logs', 'client-prober.jsonl');
  await lab.spawn('client', [process.execPath, join(installDir, 'src', 'lab', 'tcp-prober.mjs'), vip, '7000', '10', '200'], { logFile: probeLog });
  await sleep(1500);
  const seen = readProbeLog(probeLog);
  process.stdout.write(`\nclient: a new connection to ${vip}:7000 every 10 ms: ${seen.filter((r) => r.ok).length} answers from ${[...new Set(seen.map((r) => r.from))].join(', ')}\n`);
  process.stdout.write('\n# node1 crashes (every process killed, link down)\n');
  const t0 = Date.now();
  await lab.killServer('node1');
  show('[node2] stayup waitstate -m demo ALONE', await stayupOn(lab, 'node2', ['waitstate', '-m', 'demo', '-t', '60', 'ALONE']));
  await sleep(1000);
  const o = outages(readProbeLog(probeLog), t0 - 500);
  for (const x of o) process.stdout.write(`client: answers moved from ${x.before} to ${x.after}; outage ${x.outageMs} ms (${x.failedAttempts} failed connections)\n`);
  show('[node2] stayup state -m demo -v', await stayupOn(lab, 'node2', ['state', '-m', 'demo', '-v']));
  show('[node2] stayup log -m demo -s 12', await stayupOn(lab, 'node2', ['log', '-m', 'demo', '-s', '12']));
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
