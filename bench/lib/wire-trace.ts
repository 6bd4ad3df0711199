// Runs bench/lib/wire-trace.py in the lab's switch namespace (every frame a lab host sends, stamped by
// the kernel on the bench's monotonic clock) and splits one failover into phases seen on the wire, the
// same way for both products. See bench/README.md, "Where the time goes".
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Lab } from '../../src/lab/lab.ts';
import { endpointNames } from '../../src/lab/names.ts';
import { toolEnv } from '../../src/lab/sys.ts';
import type { ProbeRecord } from './probe-client.ts';
import { round1 } from './stats.ts';

const SCRIPT = fileURLToPath(new URL('./wire-trace.py', import.meta.url));

export interface WireRecord {
  /** Monotonic ms when the frame entered the switch. */
  t: number;
  /** Switch port it came in on. */
  p: string;
  k: 'hb' | 'vrrp' | 'arp' | 'syn' | 'synack';
  ip?: string;
  tip?: string;
  mac?: string;
  op?: number;
  d?: number;
}

export class WireTrace {
  readonly records: WireRecord[] = [];
  /** Switch port -> lab node (node1, node2, client). */
  readonly nodeOfPort = new Map<string, string>();
  #child: ChildProcess;
  #exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((res) => child.once('exit', () => res()));
  }

  static async start(lab: Lab): Promise<WireTrace> {
    const index = lab.state.index;
    const ports = new Map<string, string>();
    for (const n of lab.nodes) ports.set(n.port, n.name);
    ports.set(endpointNames(index, 'client').port, 'client');
    const child = spawn('nsenter', [`--net=/run/netns/${lab.switchNetns}`, '--', 'python3', '-u', SCRIPT, ...ports.keys()], { stdio: ['pipe', 'pipe', 'pipe'], env: toolEnv() });
    const w = new WireTrace(child);
    for (const [p, n] of ports) w.nodeOfPort.set(p, n);
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    child.stdin!.on('error', () => undefined);
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`wire trace did not start within 10 s: ${stderr.trim()}`)), 10_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        rej(new Error(`wire trace exited with ${code}: ${stderr.trim()}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let o: WireRecord & { ready?: number };
        try {
          o = JSON.parse(line) as typeof o;
        } catch {
          return;
        }
        if (o.ready) {
          clearTimeout(timer);
          res();
        } else w.records.push(o);
      });
    });
    return w;
  }

  /** Drops what is older than `beforeMs` (a long run would otherwise keep every frame). */
  forget(beforeMs: number): void {
    const i = this.records.findIndex((r) => r.t >= beforeMs);
    this.records.splice(0, i < 0 ? this.records.length : i);
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    this.#child.stdin?.end();
    const t = setTimeout(() => {
      if (this.#child.pid && this.#child.exitCode === null) process.kill(this.#child.pid, 'SIGKILL');
    }, 2000);
    await this.#exited;
    clearTimeout(t);
  }
}

/** One failover split on the wire; every time is in ms after the last heartbeat out of the frozen node. */
export interface WirePhases {
  /** The freeze command's end (its start is a few ms earlier). */
  freezeEnd: number;
  /** The last successful answer before the freeze (negative: before the last heartbeat). */
  lastAnswer: number;
  /** The new holder's first gratuitous ARP for the VIP: detection + takeover. */
  garp: number | null;
  /** The client's first SYN to the new holder's MAC. */
  synToNew: number | null;
  /** The new holder's first SYN-ACK from the VIP. */
  synack: number | null;
  /** The prober's first answer from the new holder. */
  answer: number;
  /** Intervals between the frozen node's heartbeats in the second before it froze: median, max. */
  pulseMedian: number | null;
  pulseMax: number | null;
}

/**
 * The phases of one failover from the wire trace: `frozen` stopped sending heartbeats (stayup's UDP or
 * VRRP adverts, whichever it sent last), `taker` announced `vip`. Null when the trace missed the freeze.
 */
export function wirePhases(
  w: WireTrace,
  o: { frozen: string; taker: string; vip: string; freezeEnd: number; thawAt: number; lastAnswer: ProbeRecord | undefined; answer: ProbeRecord },
): WirePhases | null {
  const from = (r: WireRecord, node: string): boolean => w.nodeOfPort.get(r.p) === node;
  const beats = w.records.filter((r) => (r.k === 'hb' || r.k === 'vrrp') && from(r, o.frozen) && r.t < o.thawAt);
  const last = beats.at(-1);
  if (!last || last.t > o.answer.t1) return null;
  const h = last.t;
  const rel = (t: number | undefined): number | null => (t === undefined ? null : round1(t - h));
  const after = w.records.filter((r) => r.t > h && r.t < o.thawAt);
  const garp = after.find((r) => r.k === 'arp' && from(r, o.taker) && r.ip === o.vip && r.tip === o.vip);
  const syn = garp ? after.find((r) => r.k === 'syn' && r.ip === o.vip && r.mac === garp.mac && r.t >= garp.t) : undefined;
  const synack = after.find((r) => r.k === 'synack' && r.ip === o.vip && from(r, o.taker));
  const recent = beats.filter((r) => r.t >= h - 1000).map((r) => r.t);
  const gaps = recent.slice(1).map((t, i) => t - recent[i]!).sort((a, b) => a - b);
  return {
    freezeEnd: round1(o.freezeEnd - h),
    lastAnswer: o.lastAnswer ? round1(o.lastAnswer.t1 - h) : Number.NaN,
    garp: rel(garp?.t),
    synToNew: rel(syn?.t),
    synack: rel(synack?.t),
    answer: round1(o.answer.t1 - h),
    pulseMedian: gaps.length ? round1(gaps[Math.floor(gaps.length / 2)]!) : null,
    pulseMax: gaps.length ? round1(gaps.at(-1)!) : null,
  };
}

export function fmtPhases(p: WirePhases): string {
  const v = (x: number | null): string => (x === null ? '-' : `${x}`);
  return `wire (ms after the frozen node's last heartbeat): last answer ${v(p.lastAnswer)}, freeze end ${v(p.freezeEnd)}, GARP ${v(p.garp)}, first SYN to new MAC ${v(p.synToNew)}, SYN-ACK ${v(p.synack)}, answer ${v(p.answer)}; its pulse median ${v(p.pulseMedian)} max ${v(p.pulseMax)}`;
}
