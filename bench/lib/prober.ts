// The prober process, run inside the lab's client namespace: every INTERVAL ms it opens a NEW TCP
// connection to HOST:PORT and reads the answer (the server's host name). Attempts overlap; each one gets
// TIMEOUT ms for connect + answer. One JSON line per attempt on stdout, when it ends:
//
//   {"s":SEQ,"a":START_MS,"b":END_MS,"ok":1,"n":"node2"}      success, answered by node2
//   {"s":SEQ,"a":START_MS,"b":END_MS,"ok":0,"e":"timeout"}     failure (timeout, ECONNREFUSED, …)
//
// Times are CLOCK_MONOTONIC in ms (process.hrtime), the same clock as the bench process that freezes
// nodes, so both can be compared directly. The first line is {"ready":1,"t":NOW}. The prober exits when
// its stdin closes (its parent is gone) or on SIGTERM/SIGINT.
//
//   node --import tsx bench/lib/prober.ts --host H --port P [--interval-ms 10] [--timeout-ms 50]
import { connect } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface ProbeLine {
  /** Sequence number of the attempt. */
  s: number;
  /** Start (monotonic ms). */
  a: number;
  /** End: answer received or failure (monotonic ms). */
  b: number;
  ok: 0 | 1;
  /** Who answered. */
  n?: string;
  /** Why it failed. */
  e?: string;
}

export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

function arg(argv: string[], name: string, dflt?: string): string {
  const i = argv.indexOf(name);
  const v = i >= 0 ? argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`prober: ${name} is required`);
  return v;
}

function main(argv: string[]): void {
  const host = arg(argv, '--host');
  const port = Number(arg(argv, '--port'));
  const intervalMs = Number(arg(argv, '--interval-ms', '10'));
  const timeoutMs = Number(arg(argv, '--timeout-ms', '50'));
  if (!Number.isInteger(port) || !(intervalMs > 0) || !(timeoutMs > 0)) throw new Error('prober: bad --port, --interval-ms or --timeout-ms');

  const out = (o: object): void => {
    process.stdout.write(`${JSON.stringify(o)}\n`);
  };

  let seq = 0;
  const attempt = (): void => {
    const s = seq++;
    const a = monoMs();
    let buf = '';
    let done = false;
    const sock = connect({ host, port });
    const finish = (ok: boolean, e?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const line: ProbeLine = { s, a, b: monoMs(), ok: ok ? 1 : 0 };
      if (ok) line.n = buf.trim();
      else line.e = e ?? 'error';
      out(line);
    };
    const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
    sock.setNoDelay(true);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) finish(true);
    });
    sock.on('end', () => finish(buf.length > 0, 'eof'));
    sock.on('error', (err: NodeJS.ErrnoException) => finish(false, err.code ?? err.message));
  };

  // A fixed schedule (start + i * interval), so a slow tick does not shift every later attempt.
  const t0 = monoMs();
  let i = 0;
  const tick = (): void => {
    attempt();
    i++;
    const next = t0 + i * intervalMs;
    setTimeout(tick, Math.max(0, next - monoMs()));
  };
  out({ ready: 1, t: t0 });
  tick();

  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
  process.stdout.on('error', () => process.exit(0));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(2);
  }
}
