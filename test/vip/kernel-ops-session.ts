// Runs inside a test's network namespace (kernel-ops.test.ts): reads requests as JSON lines on stdin,
// calls the in-process VIP kernel calls for each, and prints one JSON answer per request.
import { createInterface } from 'node:readline';
import { kernelVipOps } from '../../src/vip/kernel-ops.ts';

const ops = kernelVipOps();
if (!ops) {
  process.stderr.write('the stayup_net addon is not built\n');
  process.exit(3);
}
for await (const line of createInterface({ input: process.stdin })) {
  const r = JSON.parse(line) as { op: string; ip: string; prefix: number; iface: string; label: string; garp?: number; count?: number };
  try {
    const out =
      r.op === 'add'
        ? await ops.addAddress(r.ip, r.prefix, r.iface, r.label, r.garp ?? 0)
        : r.op === 'garp'
          ? await ops.garp(r.ip, r.iface, r.count ?? 1)
          : await ops.warm(r.iface);
    process.stdout.write(JSON.stringify({ ok: true, ...(out ?? {}) }) + '\n');
  } catch (e) {
    const err = e as Error & { errno?: number; code?: string };
    process.stdout.write(JSON.stringify({ ok: false, errno: err.errno, code: err.code, error: err.message }) + '\n');
  }
}
