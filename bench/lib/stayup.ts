// stayup's side of the bench: daemons in the lab, cluster.xml, and mirror modules built for the bench
// (a <heart> with the setting's pulse/timeout, a one_side_alias <vip>), driven through the CLI.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, ExecResult } from '../../src/lab/lab.ts';
import { labClusterXml, startDaemons, stayupOn, writeOnServer } from '../../src/lab/stayup-cluster.ts';
import { packDirectory } from '../../src/packages/zip-writer.ts';

const PASSWORD = 'bench-admin-password';
export const SERVICE_SCRIPT = fileURLToPath(new URL('./tcp-service.mjs', import.meta.url));

export type StayupState = 'STOP' | 'WAIT' | 'ALONE' | 'UP' | 'PRIM' | 'SECOND';
export interface NodeState {
  node: string;
  state: StayupState | 'UNKNOWN';
  qualifier: string;
  /** The CLI's answer when it could not be read. */
  error?: string;
}

/** `-lq` exit codes (STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4). */
const LQ: Record<number, StayupState> = { 0: 'STOP', 1: 'WAIT', 2: 'ALONE', 3: 'PRIM', 4: 'SECOND' };

export interface BenchModule {
  name: string;
  vip: string;
  pulseMs: number;
  timeoutMs: number;
  /** 'vip': scripts do nothing (the service runs on both servers); 'service': start_prim/stop_prim start/stop it. */
  kind: 'vip' | 'service';
  /** Port of the service start_prim starts (kind 'service'). */
  servicePort: number;
}

export function userconfigXml(m: BenchModule): string {
  const vars =
    m.kind === 'service'
      ? [
          `    <var name="BENCH_NODE" value="${process.execPath}" />`,
          `    <var name="BENCH_SERVICE" value="${SERVICE_SCRIPT}" />`,
          `    <var name="BENCH_PORT" value="${m.servicePort}" />`,
        ]
      : [];
  return [
    '<!DOCTYPE safe>',
    '<safe>',
    `<!-- failover bench module ${m.name}: ${m.kind === 'vip' ? 'the virtual IP only (the service runs on both servers)' : 'start_prim starts the service, stop_prim stops it'} -->`,
    // maxloop high: a split brain loser leaves ALONE with an automated stopstart after every freeze.
    '<service mode="mirror" defaultprim="alone" failover="on" maxloop="1000" loop_interval="1h">',
    `  <heart pulse="${m.pulseMs}ms" timeout="${m.timeoutMs}ms">`,
    '    <heartbeat name="default" />',
    '  </heart>',
    '  <vip>',
    '    <interface_list>',
    '      <interface check="on">',
    '        <real_interface>',
    `          <virtual_addr addr="${m.vip}" where="one_side_alias" />`,
    '        </real_interface>',
    '      </interface>',
    '    </interface_list>',
    '  </vip>',
    '  <user nicestoptimeout="20s" forcestoptimeout="20s" logging="userlog">',
    ...vars,
    '  </user>',
    '</service>',
    '</safe>',
    '',
  ].join('\n');
}

const NOOP = (name: string): string => `#!/bin/sh\n# ${name} of the failover bench's VIP-only module: the service already runs on both servers.\nexit 0\n`;

/** The scripts of a module. The service's PID file lives in the server's private /run. */
export function moduleScripts(m: BenchModule): Record<string, string> {
  if (m.kind === 'vip') return { prestart: NOOP('prestart'), start_prim: NOOP('start_prim'), stop_prim: NOOP('stop_prim'), poststop: NOOP('poststop') };
  const pid = `/run/stayup-bench-${m.name}.pid`;
  const stop = [
    '#!/bin/sh',
    '# stop_prim: stops the bench service started by start_prim (by the PID it recorded). [force] <current> <next> <action>',
    `pidfile=${pid}`,
    '[ -f "$pidfile" ] || exit 0',
    'pid=$(cat "$pidfile")',
    'if [ -n "$pid" ] && grep -q tcp-service "/proc/$pid/cmdline" 2>/dev/null; then',
    '  kill "$pid" 2>/dev/null',
    '  i=0',
    '  while [ -d "/proc/$pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done',
    '  [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null',
    'fi',
    'rm -f "$pidfile"',
    'exit 0',
    '',
  ].join('\n');
  const start = [
    '#!/bin/sh',
    '# start_prim: starts the bench service (returns once it listens). <current> <next> <action>',
    `exec "$BENCH_NODE" "$BENCH_SERVICE" start "$BENCH_PORT" ${pid}`,
    '',
  ].join('\n');
  const prestart = ['#!/bin/sh', '# prestart: clean up what a previous run left.', `exec "\${SAFEUSERBIN:-$(dirname "$0")}/stop_prim" "$@"`, ''].join('\n');
  return { prestart, start_prim: start, stop_prim: stop, poststop: NOOP('poststop') };
}

export class StayupCluster {
  constructor(private readonly lab: Lab) {}

  async cli(node: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return stayupOn(this.lab, node, args, { timeoutMs });
  }

  async cliOk(node: string, args: string[], timeoutMs = 60_000): Promise<string> {
    const r = await this.cli(node, args, timeoutMs);
    if (r.code !== 0) throw new Error(`[${node}] stayup ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
    return r.stdout;
  }

  /** Daemons on every server, cluster.xml pushed from node1 (bootstrapped with the admin password). */
  async setup(): Promise<void> {
    await startDaemons(this.lab, { password: PASSWORD });
    writeOnServer(this.lab, 'node1', '/srv/cluster.xml', labClusterXml(this.lab));
    const r = await stayupOn(this.lab, 'node1', ['-H', '*', 'cluster', 'config', '/srv/cluster.xml'], { env: { STAYUP_PASSWORD: PASSWORD } });
    if (r.code !== 0) throw new Error(`stayup -H "*" cluster config exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  }

  /** Builds the module package on the host and installs it on every server with `-H "*" module install`. */
  async install(m: BenchModule): Promise<string> {
    const dir = join(this.lab.stateDir, 'stayup-modules', m.name);
    mkdirSync(join(dir, 'conf'), { recursive: true });
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'conf', 'userconfig.xml'), userconfigXml(m));
    for (const [name, text] of Object.entries(moduleScripts(m))) {
      const f = join(dir, 'bin', name);
      writeFileSync(f, text);
      chmodSync(f, 0o755);
    }
    const pkg = await packDirectory(dir, { label: `module ${m.name}` });
    writeOnServer(this.lab, 'node1', `/srv/${m.name}.safe`, pkg);
    return (await this.cliOk('node1', ['-H', '*', 'module', 'install', '-m', m.name, `/srv/${m.name}.safe`])).trim();
  }

  async stateOf(node: string, module: string): Promise<NodeState> {
    const r = await this.cli(node, ['state', '-m', module], 30_000);
    const m = /^\s*\S+\s+\S+\s+(STOP|WAIT|ALONE|UP|PRIM|SECOND)\s+(NotReady|Transient|Ready)\b/m.exec(r.stdout);
    if (r.code === 0 && m) return { node, state: m[1] as StayupState, qualifier: m[2]! };
    // Fall back on the exit code of -lq.
    const lq = await this.cli(node, ['state', '-m', module, '-lq'], 30_000);
    const st = lq.code === null ? undefined : LQ[lq.code];
    if (st && new RegExp(`\\b${st}\\b`).test(lq.stdout)) return { node, state: st, qualifier: '?' };
    return { node, state: 'UNKNOWN', qualifier: '?', error: (r.stderr || r.stdout || lq.stderr).trim().slice(-300) };
  }

  async states(module: string): Promise<NodeState[]> {
    return Promise.all(this.lab.servers.map((n) => this.stateOf(n, module)));
  }

  async verbose(node: string, module: string): Promise<string> {
    const r = await this.cli(node, ['state', '-m', module, '-v'], 30_000);
    return `${r.stdout}${r.stderr}`.trim();
  }

  /**
   * One process on node1 that waits (daemon long polls, relayed to node2) until every node is stable in
   * one of `states`. Cheaper for the lab's CPUs than polling `stayup state` (each CLI run is a Node start).
   */
  async waitState(module: string, states: string[], timeoutMs: number): Promise<boolean> {
    const r = await this.cli('node1', ['-H', '*', 'waitstate', states.join(','), '-m', module, '-t', String(Math.max(1, Math.ceil(timeoutMs / 1000)))], timeoutMs + 30_000);
    return r.code === 0;
  }

  /**
   * The module log records of every server after `after` (node -> last seq seen), read from the host side
   * of the servers' /var/lib/stayup: no process runs in the lab for it.
   */
  logRecords(module: string, after: Record<string, number> = {}): Array<{ node: string; seq: number; message: string }> {
    const out: Array<{ node: string; seq: number; message: string }> = [];
    for (const node of this.lab.servers) {
      const base = this.lab.hostPath(node, `/var/lib/stayup/modvar/${module}/log/verbose.jsonl`);
      const from = after[node] ?? 0;
      for (const f of [`${base}.1`, base]) {
        if (!existsSync(f)) continue;
        for (const line of readFileSync(f, 'utf8').split('\n')) {
          if (!line.startsWith('{')) continue;
          try {
            const r = JSON.parse(line) as { seq?: number; message?: string };
            if (typeof r.seq === 'number' && r.seq > from) out.push({ node, seq: r.seq, message: String(r.message ?? '') });
          } catch {
            /* a torn last line */
          }
        }
      }
    }
    return out;
  }

  async start(module: string): Promise<void> {
    await this.cliOk('node1', ['-H', '*', 'start', '-m', module]);
  }

  async stop(module: string): Promise<void> {
    await this.cliOk('node1', ['-H', '*', 'stop', '-m', module], 120_000);
    const deadline = Date.now() + 90_000;
    for (;;) {
      const st = await this.states(module);
      if (st.every((s) => s.state === 'STOP')) return;
      if (Date.now() > deadline) throw new Error(`module ${module} did not stop: ${fmtStates(st)}`);
      await sleep(500);
    }
  }
}

export function fmtStates(st: readonly NodeState[]): string {
  return st.map((s) => `${s.node} ${s.state}(${s.qualifier})${s.error ? ` [${s.error}]` : ''}`).join(', ');
}

/** The pair is ready for a freeze: one node PRIM(Ready), the other SECOND(Ready). Returns the primary. */
export function readyPrimary(st: readonly NodeState[]): string | undefined {
  const prim = st.filter((s) => s.state === 'PRIM' && (s.qualifier === 'Ready' || s.qualifier === '?'));
  const second = st.filter((s) => s.state === 'SECOND' && (s.qualifier === 'Ready' || s.qualifier === '?'));
  return prim.length === 1 && second.length === 1 ? prim[0]!.node : undefined;
}
