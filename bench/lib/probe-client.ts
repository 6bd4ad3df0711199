// Runs bench/lib/prober.ts inside the lab's client namespace and collects its JSON lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../../src/lab/lab.ts';
import { toolEnv } from '../../src/lab/sys.ts';
import { monoMs, type ProbeLine } from './prober.ts';

export { monoMs };

export interface ProbeRecord {
  seq: number;
  /** Start, monotonic ms. */
  t0: number;
  /** End, monotonic ms (answer received, or the failure). */
  t1: number;
  ok: boolean;
  /** Server that answered. */
  srv?: string;
  err?: string;
}

interface Waiter {
  pred: (r: ProbeRecord) => boolean;
  resolve: (r: ProbeRecord | undefined) => void;
  timer: NodeJS.Timeout;
}

export interface ProberOptions {
  host: string;
  port: number;
  intervalMs?: number;
  timeoutMs?: number;
  /** Name in messages. */
  label?: string;
}

const PROBER = fileURLToPath(new URL('./prober.ts', import.meta.url));

export class Prober {
  /** Every attempt, in the order they ended. */
  readonly records: ProbeRecord[] = [];
  readonly label: string;
  #child: ChildProcess;
  #waiters = new Set<Waiter>();
  #stderr = '';
  #exited: Promise<void>;
  #gone = false;
  /** Consecutive successes answered by the same server, ending with the last record. */
  streakSrv: string | undefined;
  streakLen = 0;

  private constructor(child: ChildProcess, label: string) {
    this.#child = child;
    this.label = label;
    this.#exited = new Promise((res) => child.once('exit', () => res()));
    child.once('exit', () => {
      this.#gone = true;
      for (const w of this.#waiters) {
        clearTimeout(w.timer);
        w.resolve(undefined);
      }
      this.#waiters.clear();
    });
  }

  /** Starts the prober in the client namespace and waits for its first line. */
  static async start(lab: Lab, o: ProberOptions): Promise<Prober> {
    const tsx = import.meta.resolve('tsx');
    const argv = [process.execPath, '--import', tsx, PROBER, '--host', o.host, '--port', String(o.port), '--interval-ms', String(o.intervalMs ?? 10), '--timeout-ms', String(o.timeoutMs ?? 50)];
    const [cmd, ...args] = lab.commandFor('client', argv);
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: toolEnv() });
    const p = new Prober(child, o.label ?? `${o.host}:${o.port}`);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      p.#stderr = (p.#stderr + d).slice(-2000);
    });
    child.stdin!.on('error', () => undefined);
    const ready = new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`prober ${p.label} did not start within 20 s: ${p.#stderr.trim()}`)), 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        rej(new Error(`prober ${p.label} exited with ${code}: ${p.#stderr.trim()}`));
      });
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (line) => {
        let o: Partial<ProbeLine> & { ready?: number };
        try {
          o = JSON.parse(line) as typeof o;
        } catch {
          return;
        }
        if (o.ready) {
          clearTimeout(timer);
          res();
          return;
        }
        p.#add({ seq: o.s!, t0: o.a!, t1: o.b!, ok: o.ok === 1, ...(o.n === undefined ? {} : { srv: o.n }), ...(o.e === undefined ? {} : { err: o.e }) });
      });
    });
    await ready;
    return p;
  }

  #add(r: ProbeRecord): void {
    this.records.push(r);
    if (r.ok && r.srv === this.streakSrv) this.streakLen++;
    else if (r.ok) {
      this.streakSrv = r.srv;
      this.streakLen = 1;
    } else {
      this.streakSrv = undefined;
      this.streakLen = 0;
    }
    for (const w of this.#waiters) {
      if (w.pred(r)) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve(r);
      }
    }
  }

  /** The first record from now on that satisfies pred, or undefined after timeoutMs. */
  waitFor(pred: (r: ProbeRecord) => boolean, timeoutMs: number): Promise<ProbeRecord | undefined> {
    if (this.#gone) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const w: Waiter = {
        pred,
        resolve,
        timer: setTimeout(() => {
          this.#waiters.delete(w);
          resolve(undefined);
        }, timeoutMs),
      };
      this.#waiters.add(w);
    });
  }

  /** Waits until the last `n` attempts all succeeded, answered by `srv` (any server if undefined). Returns that server. */
  async waitStreak(n: number, timeoutMs: number, srv?: string): Promise<string | undefined> {
    const ok = (): boolean => this.streakLen >= n && (srv === undefined || this.streakSrv === srv);
    if (ok()) return this.streakSrv;
    const r = await this.waitFor(() => ok(), timeoutMs);
    return r ? this.streakSrv : undefined;
  }

  /** Records that ended in [from, to]. */
  between(from: number, to: number): ProbeRecord[] {
    return this.records.filter((r) => r.t1 >= from && r.t1 <= to);
  }

  get alive(): boolean {
    return !this.#gone;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Closes its stdin (it exits), then SIGKILLs it by PID if it lingers. */
  async stop(): Promise<void> {
    if (this.#gone) return;
    this.#child.stdin?.end();
    const t = setTimeout(() => {
      if (!this.#gone && this.#child.pid) {
        try {
          process.kill(this.#child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }, 2000);
    await this.#exited;
    clearTimeout(t);
  }
}
