// The resident VIP helper (vip-helper.py): one process per mirror engine that adds IPv4 addresses over
// netlink and sends gratuitous ARP over a packet socket, so a takeover starts no process (each `ip` or
// `arping` costs ~9 ms on a small machine, on the critical path of the client's outage). The VipManager
// falls back to `ip`/`arping` whenever the helper is absent, dead or answers an error.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { installDir } from '../util/paths.ts';

/** What addAddress did besides adding the address. */
export interface AddResult {
  /** The gratuitous ARP asked for left right after the add. */
  announced: boolean;
  /** Why it did not, when it was asked for (the address is there all the same). */
  garpError?: string;
}

export interface FastVipOps {
  /**
   * Adds ip/prefix on iface with the label, then sends `garpCount` gratuitous ARP request+reply pairs at
   * once, in the same request: a takeover's first announcement waits for no second round trip. Rejects
   * with the kernel's error (e.g. EEXIST), in which case nothing was announced.
   */
  addAddress(ip: string, prefixLen: number, iface: string, label: string, garpCount?: number): Promise<AddResult>;
  /** Sends `count` gratuitous ARP request+reply pairs for ip on iface. */
  garp(ip: string, iface: string, count: number): Promise<void>;
  /** Prepares what a later garp on iface needs (its packet socket), so the first one is quick. */
  warm(iface: string): Promise<void>;
  close(): void;
}

/** A successful answer's extras. */
interface HelperAnswer {
  garpError?: string;
}

export class ResidentVipHelper implements FastVipOps {
  #child: ChildProcessWithoutNullStreams | null = null;
  #seq = 0;
  readonly #pending = new Map<number, { resolve: (a: HelperAnswer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #closed = false;

  constructor(
    private readonly python = 'python3',
    private readonly script = join(installDir, 'src', 'vip', 'vip-helper.py'),
    private readonly timeoutMs = 2000,
  ) {}

  /** Starts the process now, so the first failover does not pay for the interpreter's start. */
  start(): void {
    this.#ensure();
  }

  async addAddress(ip: string, prefixLen: number, iface: string, label: string, garpCount = 0): Promise<AddResult> {
    const a = await this.#call({ op: 'add', ip, prefix: prefixLen, iface, label, ...(garpCount > 0 ? { garp: garpCount } : {}) });
    if (garpCount <= 0) return { announced: false };
    return a.garpError === undefined ? { announced: true } : { announced: false, garpError: a.garpError };
  }

  async garp(ip: string, iface: string, count: number): Promise<void> {
    await this.#call({ op: 'garp', ip, iface, count });
  }

  async warm(iface: string): Promise<void> {
    await this.#call({ op: 'warm', iface });
  }

  close(): void {
    this.#closed = true;
    this.#child?.kill('SIGTERM');
    this.#child = null;
    this.#failAll(new Error('the VIP helper was closed'));
  }

  #ensure(): ChildProcessWithoutNullStreams | null {
    if (this.#closed) return null;
    if (this.#child && this.#child.exitCode === null && !this.#child.killed) return this.#child;
    const child = spawn(this.python, ['-u', this.script], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.on('error', (e) => this.#failAll(e));
    child.on('exit', () => {
      if (this.#child === child) this.#child = null;
      this.#failAll(new Error('the VIP helper exited'));
    });
    child.stderr.resume();
    createInterface({ input: child.stdout }).on('line', (line) => {
      let m: { id?: number; ok?: boolean; errno?: number; error?: string; garpError?: string };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        return;
      }
      const p = typeof m.id === 'number' ? this.#pending.get(m.id) : undefined;
      if (!p) return;
      this.#pending.delete(m.id!);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(typeof m.garpError === 'string' ? { garpError: m.garpError } : {});
      else p.reject(Object.assign(new Error(m.error ?? 'VIP helper error'), { errno: m.errno ?? 0 }));
    });
    this.#child = child;
    return child;
  }

  #call(req: Record<string, unknown>): Promise<HelperAnswer> {
    const child = this.#ensure();
    if (!child) return Promise.reject(new Error('the VIP helper is closed'));
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the VIP helper did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      child.stdin.write(JSON.stringify({ id, ...req }) + '\n');
    });
  }

  #failAll(e: Error): void {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.#pending.delete(id);
    }
  }
}
