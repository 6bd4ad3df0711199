// The bench's "service": a TCP server that answers every connection with this host's name and a newline,
// then closes its side (so TIME_WAIT stays on the server, never on the prober). Plain JavaScript so that
// start_prim starts it without a TypeScript loader.
//
//   node tcp-service.mjs serve PORT            listen on 0.0.0.0:PORT in the foreground
//   node tcp-service.mjs start PORT PIDFILE    start `serve` detached (own session), return once it
//                                              listens, with its PID in PIDFILE (what start_prim runs)
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';

const [mode, portArg, pidFile] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port < 1 || port > 65535 || (mode !== 'serve' && mode !== 'start') || (mode === 'start' && !pidFile)) {
  process.stderr.write('usage: tcp-service.mjs serve PORT | start PORT PIDFILE\n');
  process.exit(2);
}

if (mode === 'serve') {
  const answer = `${hostname()}\n`;
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.end(answer);
  });
  server.on('error', (e) => {
    process.stderr.write(`tcp-service: ${e.message}\n`);
    process.exit(1);
  });
  server.listen({ port, host: '0.0.0.0', backlog: 1024 }, () => {
    if (process.send) process.send('ready', () => process.disconnect());
    else process.stdout.write(`listening on ${port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
} else {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve', String(port)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  const timer = setTimeout(() => {
    child.kill('SIGKILL');
    process.stderr.write('tcp-service: did not listen within 10 s\n');
    process.exit(1);
  }, 10_000);
  child.on('exit', (code) => {
    process.stderr.write(`tcp-service: exited with ${code} before listening\n`);
    process.exit(1);
  });
  child.on('message', (m) => {
    if (m !== 'ready') return;
    clearTimeout(timer);
    writeFileSync(pidFile, `${child.pid}\n`);
    child.removeAllListeners('exit');
    child.unref();
    process.exit(0);
  });
}
