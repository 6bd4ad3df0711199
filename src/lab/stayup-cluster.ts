import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { installDir } from '../util/paths.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { Lab, type ExecResult } from './lab.ts';
import { findTool } from './sys.ts';
import { nativeAvailable } from '../replication/native-binding.ts';

/**
 * Runs stayup for real inside a lab: a daemon per server, the CLI inside a server, cluster.xml for the
 * lab's addresses. Used by the demo and by the end-to-end tests, so both show the same thing.
 */
export const stayupBin = join(installDir, 'bin', 'stayup');
export const stayupdBin = join(installDir, 'bin', 'stayupd');

export function serverNames(lab: Lab): string[] {
  return lab.servers;
}

/** cluster.xml with one lan holding every server of the lab. */
export function labClusterXml(lab: Lab, lanName = 'default'): string {
  const nodes = serverNames(lab).map((n) => `      <node name="${n}" addr="${lab.addr(n)}"/>`);
  return `<cluster>\n  <lans>\n    <lan name="${lanName}">\n${nodes.join('\n')}\n    </lan>\n  </lans>\n</cluster>\n`;
}

/** Runs `stayup ARGS` inside a server (as root there, like an operator logged in on it). */
export function stayupOn(lab: Lab, node: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ExecResult> {
  return lab.exec(node, [process.execPath, stayupBin, ...args], { env: opts.env, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Writes a file into a server's private view of a path (e.g. /srv/cluster.xml). */
export function writeOnServer(lab: Lab, node: string, serverPath: string, content: string | Uint8Array, mode = 0o644): void {
  const host = lab.hostPath(node, serverPath);
  mkdirSync(dirname(host), { recursive: true });
  writeFileSync(host, content, { mode });
  chmodSync(host, mode);
}

/** Starts stayupd on every server with the same initial admin password, and waits until each answers. */
export async function startDaemons(lab: Lab, opts: { password: string; timeoutMs?: number }): Promise<void> {
  const pwFile = '/var/lib/stayup/private/admin.pw';
  for (const n of serverNames(lab)) {
    writeOnServer(lab, n, pwFile, opts.password + '\n', 0o600);
    await lab.spawn(n, [process.execPath, stayupdBin, '--admin-password-file', pwFile], {
      logFile: join(lab.stateDir, 'logs', `${n}-stayupd.log`),
    });
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (const n of serverNames(lab)) await waitDaemon(lab, n, deadline);
}

/**
 * Starts stayupd on one server (again, after killServer + startServer: its state directory persists like a
 * disk) and waits until it answers. `adminPasswordFile` is only for a first start.
 */
export async function startDaemon(lab: Lab, node: string, opts: { adminPasswordFile?: string; timeoutMs?: number } = {}): Promise<void> {
  const argv = [process.execPath, stayupdBin, ...(opts.adminPasswordFile ? ['--admin-password-file', opts.adminPasswordFile] : [])];
  await lab.spawn(node, argv, { logFile: join(lab.stateDir, 'logs', `${node}-stayupd.log`) });
  await waitDaemon(lab, node, Date.now() + (opts.timeoutMs ?? 60_000));
}

async function waitDaemon(lab: Lab, node: string, deadlineMs: number): Promise<void> {
  for (;;) {
    const r = await stayupOn(lab, node, ['level'], { timeoutMs: 20_000 });
    if (r.code === 0) return;
    if (Date.now() > deadlineMs) throw new StayupError('LAB_COMMAND_FAILED', `stayupd on ${node} did not answer: ${r.stderr.trim()}`);
    await sleep(200);
  }
}

/** Pushes cluster.xml (default: one lan with every server) from node1 to every server, as an operator would. */
export async function configureCluster(lab: Lab, password: string, xml = labClusterXml(lab)): Promise<void> {
  const first = serverNames(lab)[0]!;
  writeOnServer(lab, first, '/srv/cluster.xml', xml);
  const r = await stayupOn(lab, first, ['-H', '*', 'cluster', 'config', '/srv/cluster.xml'], { env: { STAYUP_PASSWORD: password } });
  if (r.code !== 0) throw new StayupError('LAB_COMMAND_FAILED', `cluster config from ${first} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
}

/**
 * A lab with stayupd on every server and cluster.xml applied, and on every server the directories `dirs`
 * and the files `files` (server path -> content). A failure on the way takes the lab down again.
 */
export async function upStayupLab(o: { name: string; password: string; servers?: number; dirs?: string[]; files?: Record<string, string> }): Promise<Lab> {
  const lab = await Lab.up({ name: o.name, servers: o.servers ?? 2 });
  try {
    await startDaemons(lab, { password: o.password });
    await configureCluster(lab, o.password);
    for (const n of serverNames(lab)) {
      for (const d of o.dirs ?? []) await lab.exec(n, ['mkdir', '-p', d], { check: true });
      for (const [path, content] of Object.entries(o.files ?? {})) writeOnServer(lab, n, path, content);
    }
    return lab;
  } catch (e) {
    await Lab.down(o.name).catch(() => {});
    throw e;
  }
}

/** Installs a module package on every server from node1 (`module install -H "*"`, `-r` to replace it). */
export async function installModule(lab: Lab, module: string, pkg: Uint8Array, opts: { replace?: boolean } = {}): Promise<void> {
  const first = serverNames(lab)[0]!;
  writeOnServer(lab, first, `/srv/${module}.safe`, pkg);
  const r = await stayupOn(lab, first, ['-H', '*', 'module', 'install', ...(opts.replace ? ['-r'] : []), '-m', module, `/srv/${module}.safe`]);
  if (r.code !== 0) throw new StayupError('LAB_COMMAND_FAILED', `module install ${module} from ${first} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
}

/** The CLI's HTTP request times out at 60 s, as long as the daemon's long-poll slice: wait in shorter calls. */
const WAIT_SLICE_S = 50;

/**
 * `stayup waitstate STATE -m MODULE` on a server until it holds or `timeoutS` has passed (STATE may list
 * several, `ALONE,PRIM`). On failure the error carries `state -v` and the module log's last lines, which is
 * what one needs to see why.
 */
export async function waitModuleState(lab: Lab, node: string, module: string, state: string, timeoutS = 60): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const slice = Math.max(1, Math.min(WAIT_SLICE_S, Math.ceil((deadline - Date.now()) / 1000)));
    const r = await stayupOn(lab, node, ['waitstate', '-m', module, '-t', String(slice), state], { timeoutMs: (slice + 20) * 1000 });
    if (r.code === 0) return;
    const text = (r.stderr || r.stdout).trim();
    if (/still .* after \d+ ms/.test(text) && Date.now() < deadline) continue;
    const v = await stayupOn(lab, node, ['state', '-m', module, '-v']);
    const log = await moduleLog(lab, node, module, 60, { verbose: false });
    throw new StayupError(/still .* after \d+ ms/.test(text) ? 'WAIT_TIMEOUT' : 'LAB_COMMAND_FAILED', `${node} did not reach ${state} within ${timeoutS} s: ${text}\n${v.stdout}\n${log}`);
  }
}

/** The module log's last `lines` lines on a server (`stayup log`; verbose: every level, `-A`). */
export async function moduleLog(lab: Lab, node: string, module: string, lines = 400, opts: { verbose?: boolean } = {}): Promise<string> {
  return (await stayupOn(lab, node, ['log', ...(opts.verbose === false ? [] : ['-A']), '-m', module, '-s', String(lines)])).stdout;
}

/** One "Reintegration ended (scope): N files, B bytes sent in T ms" line of the primary's verbose log. */
export interface ReintegrationFigures {
  scope: string;
  files: number;
  bytesSent: number;
  durationMs: number;
  /** The line as logged, from "Reintegration ended" on. */
  line: string;
}

/** Every reintegration the replication layer reported in a module log text, oldest first. */
export function reintegrationsIn(logText: string): ReintegrationFigures[] {
  const out: ReintegrationFigures[] = [];
  for (const m of logText.matchAll(/Reintegration ended \((.*)\): (\d+) files, (\d+) bytes sent in (\d+) ms/g)) {
    out.push({ scope: m[1]!, files: Number(m[2]), bytesSent: Number(m[3]), durationMs: Number(m[4]), line: m[0] });
  }
  return out;
}

const REINTEGRATION_LINE = /Reintegration ended \(/;
/** How much of the log nextReintegration reads: two rounds of a test's lab, with room to spare. */
const REINTEGRATION_LOG_LINES = 2000;

/** The node's last "Reintegration ended (...)" log line (with its time stamp), or null: the mark for nextReintegration. */
export async function lastReintegrationLine(lab: Lab, node: string, module: string): Promise<string | null> {
  return (await moduleLog(lab, node, module, REINTEGRATION_LOG_LINES)).split('\n').filter((l) => REINTEGRATION_LINE.test(l)).pop() ?? null;
}

/**
 * The first reintegration the node (a primary) reports after the line `previous` (null: the first one in
 * the log), waited for up to `timeoutMs`: the primary logs it as it sends the end of the reintegration,
 * about when the secondary turns Ready.
 */
export async function nextReintegration(lab: Lab, node: string, module: string, previous: string | null, timeoutMs = 20_000): Promise<ReintegrationFigures> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = (await moduleLog(lab, node, module, REINTEGRATION_LOG_LINES)).split('\n').filter((l) => REINTEGRATION_LINE.test(l));
    const at = previous === null ? 0 : lines.indexOf(previous) + 1;
    if (previous !== null && at === 0 && lines.length > 0) {
      throw new StayupError('LAB_COMMAND_FAILED', `${node}: the previous reintegration line is not in the last ${REINTEGRATION_LOG_LINES} lines of the module log any more`);
    }
    const figures = lines[at] === undefined ? undefined : reintegrationsIn(lines[at]!)[0];
    if (figures) return figures;
    if (Date.now() > deadline) throw new StayupError('WAIT_TIMEOUT', `${node}: no "Reintegration ended" line after ${previous ?? 'the start of the log'} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

async function stayupOk(lab: Lab, node: string, args: string[]): Promise<void> {
  const r = await stayupOn(lab, node, args);
  if (r.code !== 0) throw new StayupError('LAB_COMMAND_FAILED', `stayup ${args.join(' ')} on ${node} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
}

/**
 * The first start of a replicated module on two servers: `start` on both; neither can prove its data is
 * current, so both wait, and the operator names the source with `prim`. Returns the full reintegration
 * that copied `source`'s data to the other server.
 */
export async function firstStartReplicated(lab: Lab, module: string, source: string, timeoutS = 180): Promise<ReintegrationFigures> {
  const other = serverNames(lab).find((n) => n !== source)!;
  await stayupOk(lab, source, ['-H', '*', 'start', '-m', module]);
  await waitModuleState(lab, source, module, 'WAIT', timeoutS);
  await stayupOk(lab, source, ['prim', '-m', module]);
  await waitModuleState(lab, source, module, 'PRIM', timeoutS);
  await waitModuleState(lab, other, module, 'SECOND', timeoutS);
  return nextReintegration(lab, source, module, null);
}

/**
 * A killed server comes back: it boots (startServer), its daemon starts, the module starts on it, and it
 * becomes SECOND through a reintegration by `primary` (which turns PRIM). Returns that reintegration.
 */
export async function rejoinAsSecondary(lab: Lab, node: string, module: string, primary: string, timeoutS = 300): Promise<ReintegrationFigures> {
  const previous = await lastReintegrationLine(lab, primary, module);
  await lab.startServer(node);
  await startDaemon(lab, node);
  await stayupOk(lab, node, ['start', '-m', module]);
  await waitModuleState(lab, node, module, 'SECOND', timeoutS);
  await waitModuleState(lab, primary, module, 'PRIM', 60);
  return nextReintegration(lab, primary, module, previous);
}

/**
 * Why the end-to-end tests cannot run here, or false. `replication`: they also mount FUSE (the native
 * addon, /dev/fuse).
 */
export function labSkipReason(opts: { replication?: boolean } = {}): string | false {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the lab needs root (network and mount namespaces)';
  for (const t of ['ip', 'nft', 'nsenter', 'unshare'] as const) if (!findTool(t)) return `\`${t}\` is missing (run scripts/setup.sh)`;
  if (opts.replication) {
    if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
    const native = nativeAvailable();
    if (native !== true) return native;
  }
  return false;
}
