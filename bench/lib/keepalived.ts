// keepalived (Debian package) as the baseline: one VRRP v3 instance with unicast peers per server
// namespace, run in the foreground with its own config, pid files and log under the lab's state dir.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, SpawnedProcess } from '../../src/lab/lab.ts';

export const KEEPALIVED = '/usr/sbin/keepalived';
/** Priorities of the original master and of the backup (as in shared/reference/lab.md §3). */
export const PRIORITY: Record<string, number> = { node1: 150, node2: 100 };
const INSTANCE = 'BENCH';
const VRID = 51;

export interface KeepalivedInstance {
  node: string;
  conf: string;
  log: string;
  pidFile: string;
  vrrpPidFile: string;
  proc?: SpawnedProcess;
}

/** A node's instance as keepalived runs it, and the down timer that follows (a backup's, at that priority). */
export interface KeepalivedConfigUsed {
  advertMs: number;
  downTimerAdverts: number;
  priority: number;
  downTimerMs: number;
}

export interface KeepalivedTransition {
  state: string;
  line: number;
}

/** advert_int as keepalived's configuration writes it (seconds), e.g. 1 or 0.01. */
export function advertIntSeconds(pulseMs: number): string {
  return String(pulseMs / 1000);
}

/**
 * The "3-advert down timer": keepalived's down_timer_adverts (its default, set explicitly so the
 * config says what the bench compares).
 */
export const DOWN_TIMER_ADVERTS = 3;

/**
 * VRRP v3 Master_Down_Interval of the backup, as keepalived computes it (vrrp.h VRRP_MS_DOWN_TIMER):
 * down_timer_adverts × advert + skew, skew = (256 − priority) / 256 × advert (RFC 5798 §6.1), with the
 * advert in centiseconds and the skew truncated to the microsecond. In ms, to 0.1.
 */
export function downTimerMs(advertMs: number, backupPriority: number, adverts = DOWN_TIMER_ADVERTS): number {
  const skewUs = Math.floor(((256 - backupPriority) * Math.round(advertMs / 10) * 625) / 16);
  return Math.round((adverts * advertMs * 1000 + skewUs) / 100) / 10;
}

export function keepalivedConf(o: { node: string; peer: string; src: string; peerAddr: string; vip: string; prefixLen: number; pulseMs: number }): string {
  return [
    'global_defs {',
    `  router_id ${o.node}`,
    '  vrrp_version 3',
    '  script_user root',
    '}',
    `vrrp_instance ${INSTANCE} {`,
    '  state BACKUP',
    '  interface eth0',
    `  virtual_router_id ${VRID}`,
    `  priority ${PRIORITY[o.node] ?? 100}`,
    `  advert_int ${advertIntSeconds(o.pulseMs)}`,
    `  down_timer_adverts ${DOWN_TIMER_ADVERTS}`,
    `  unicast_src_ip ${o.src}`,
    '  unicast_peer {',
    `    ${o.peerAddr}`,
    '  }',
    '  virtual_ipaddress {',
    `    ${o.vip}/${o.prefixLen} dev eth0`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export class KeepalivedPair {
  readonly instances: Map<string, KeepalivedInstance>;
  readonly dir: string;
  /** What `keepalived -t` said about the configuration (warnings such as rounding), per node. */
  readonly configTest = new Map<string, string>();

  constructor(
    private readonly lab: Lab,
    readonly vip: string,
    readonly pulseMs: number,
    tag: string,
  ) {
    this.dir = join(lab.stateDir, 'keepalived', tag);
    mkdirSync(this.dir, { recursive: true });
    const [a, b] = lab.servers as [string, string];
    this.instances = new Map();
    for (const [node, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      const conf = join(this.dir, `${node}.conf`);
      writeFileSync(
        conf,
        keepalivedConf({ node, peer, src: lab.addr(node), peerAddr: lab.addr(peer), vip, prefixLen: lab.node(node).prefixLen, pulseMs }),
      );
      this.instances.set(node, { node, conf, log: join(this.dir, `${node}.log`), pidFile: join(this.dir, `${node}.pid`), vrrpPidFile: join(this.dir, `${node}.vrrp.pid`) });
    }
  }

  /** `keepalived -t` on every node; throws when the configuration is refused. */
  async checkConfig(): Promise<void> {
    for (const inst of this.instances.values()) {
      const r = await this.lab.exec(inst.node, [KEEPALIVED, '-t', '-f', inst.conf], { timeoutMs: 20_000 });
      const said = `${r.stdout}${r.stderr}`.trim();
      this.configTest.set(inst.node, said);
      if (r.code !== 0) throw new Error(`keepalived -t -f ${inst.conf} on ${inst.node} exited ${r.code}: ${said}`);
    }
  }

  /** Starts keepalived on a node: foreground, VRRP only, console log (detailed, config dumped) into its log file. */
  async startNode(node: string): Promise<void> {
    const inst = this.#inst(node);
    if (inst.proc && this.lab.processes(node).some((p) => p.pid === inst.proc!.pid)) throw new Error(`keepalived already runs on ${node}`);
    rmSync(inst.pidFile, { force: true });
    rmSync(inst.vrrpPidFile, { force: true });
    inst.proc = await this.lab.spawn(node, [KEEPALIVED, '-n', '-l', '-D', '-d', '-G', '-P', '-f', inst.conf, '-p', inst.pidFile, '-r', inst.vrrpPidFile], { logFile: inst.log });
  }

  async start(): Promise<void> {
    for (const node of this.instances.keys()) await this.startNode(node);
  }

  /** SIGTERM (keepalived removes its VIP and says goodbye), then SIGKILL by PID after 5 s; removes a VIP left behind. */
  async stopNode(node: string): Promise<void> {
    const inst = this.#inst(node);
    const p = inst.proc;
    if (!p) return;
    inst.proc = undefined;
    if (await this.lab.kill(p.pid, 'SIGTERM')) {
      const gone = await Promise.race([p.exited.then(() => true), sleep(5000).then(() => false)]);
      if (!gone) await this.lab.kill(p.pid, 'SIGKILL');
    }
    if (await this.holdsVip(node)) await this.lab.exec(node, ['ip', 'addr', 'del', `${this.vip}/${this.lab.node(node).prefixLen}`, 'dev', 'eth0']);
  }

  async stop(): Promise<void> {
    for (const node of this.instances.keys()) await this.stopNode(node);
  }

  async holdsVip(node: string): Promise<boolean> {
    const r = await this.lab.exec(node, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'], { timeoutMs: 10_000 });
    const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>;
    return links.some((l) => (l.addr_info ?? []).some((a) => a.local === this.vip));
  }

  /** Nodes holding the VIP now. */
  async holders(): Promise<string[]> {
    const out: string[] = [];
    for (const node of this.instances.keys()) if (await this.holdsVip(node)) out.push(node);
    return out;
  }

  /** The "(BENCH) Entering X STATE" lines of a node's log so far, in order. */
  transitions(node: string): KeepalivedTransition[] {
    let text = '';
    try {
      text = readFileSync(this.#inst(node).log, 'utf8');
    } catch {
      return [];
    }
    const out: KeepalivedTransition[] = [];
    const lines = text.split('\n');
    const re = new RegExp(`\\(${INSTANCE}\\) Entering (\\w+) STATE`);
    lines.forEach((l, i) => {
      const m = re.exec(l);
      if (m) out.push({ state: m[1]!, line: i });
    });
    return out;
  }

  /** Last VRRP state a node's log shows (undefined before its first transition). */
  state(node: string): string | undefined {
    return this.transitions(node).at(-1)?.state;
  }

  /** The node with the highest priority: the master once the pair has settled (preempt is on). */
  get preferred(): string {
    return [...this.instances.keys()].sort((a, b) => (PRIORITY[b] ?? 100) - (PRIORITY[a] ?? 100))[0]!;
  }

  /**
   * What the running keepalived reports in its configuration dump (-d) for the instance: "Advert interval
   * = 10 milli-sec", "Down timer adverts = 3", "Priority = 100" (the last dump, undefined before it).
   */
  configUsed(node: string): KeepalivedConfigUsed | undefined {
    let text = '';
    try {
      text = readFileSync(this.#inst(node).log, 'utf8');
    } catch {
      return undefined;
    }
    const last = (re: RegExp): RegExpMatchArray | undefined => [...text.matchAll(re)].at(-1);
    const advert = last(/Advert interval = ([\d.]+) (milli-sec|sec)/g);
    const adverts = last(/ {4}Down timer adverts = (\d+)/g);
    const priority = last(/ {4}Priority = (\d+)/g);
    if (!advert || !adverts || !priority) return undefined;
    const advertMs = advert[2] === 'sec' ? Number(advert[1]) * 1000 : Number(advert[1]);
    return { advertMs, downTimerAdverts: Number(adverts[1]), priority: Number(priority[1]), downTimerMs: downTimerMs(advertMs, Number(priority[1]), Number(adverts[1])) };
  }

  /** Waits until the node's log shows its configuration dump (keepalived has read the config). */
  async waitConfigDumped(node: string, timeoutMs = 10_000): Promise<KeepalivedConfigUsed> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = this.configUsed(node);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`keepalived on ${node} logged no configuration dump within ${timeoutMs} ms (log ${this.#inst(node).log})`);
      await sleep(50);
    }
  }

  logTail(node: string, lines = 15): string {
    try {
      return readFileSync(this.#inst(node).log, 'utf8')
        .split('\n')
        .filter((l) => !/^\S+ \S+ +\d+ [\d:]+ \d+: {2}/.test(l) && !l.includes('Sending gratuitous ARP on'))
        .slice(-lines)
        .join('\n');
    } catch {
      return '';
    }
  }

  #inst(node: string): KeepalivedInstance {
    const i = this.instances.get(node);
    if (!i) throw new Error(`no keepalived instance for ${node}`);
    return i;
  }
}
