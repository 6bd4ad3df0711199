// The lab client's view of a service: opens a NEW TCP connection to ADDR:PORT every INTERVAL ms and
// prints one JSON line per attempt: {"t": ms since epoch (float), "ok": bool, "from": "<server name>",
// "ms": connect-to-answer time, "err": code}. Plain JavaScript so it starts fast in a lab namespace.
// Usage: node tcp-prober.mjs ADDR PORT [INTERVAL_MS=10] [TIMEOUT_MS=200]
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';

const [addr, portText, intervalText = '10', timeoutText = '200'] = process.argv.slice(2);
const port = Number(portText);
const intervalMs = Number(intervalText);
const timeoutMs = Number(timeoutText);
if (!addr || !(port > 0) || !(intervalMs > 0) || !(timeoutMs > 0)) {
  process.stderr.write('usage: tcp-prober.mjs ADDR PORT [INTERVAL_MS] [TIMEOUT_MS]\n');
  process.exit(2);
}
const origin = Date.now() - performance.now();
const now = () => origin + performance.now();

function attempt() {
  const t = now();
  let done = false;
  let data = '';
  const sock = connect({ host: addr, port });
  const finish = (ok, err) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    const rec = { t: Math.round(t * 10) / 10, ok, ms: Math.round((now() - t) * 10) / 10 };
    if (ok) rec.from = data.trim();
    else rec.err = err;
    process.stdout.write(JSON.stringify(rec) + '\n');
  };
  const timer = setTimeout(() => finish(false, 'TIMEOUT'), timeoutMs);
  sock.setEncoding('utf8');
  sock.on('data', (d) => (data += d));
  sock.on('end', () => finish(data.length > 0, data.length > 0 ? undefined : 'EMPTY'));
  sock.on('error', (e) => finish(false, e.code ?? 'ERROR'));
}

setInterval(attempt, intervalMs);
attempt();
process.on('SIGTERM', () => process.exit(0));
