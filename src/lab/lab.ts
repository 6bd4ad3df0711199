// The stayup lab: N simulated servers on one Linux machine, built from namespaces.
//
//   switch netns su<k>-sw: bridge su<k>br, one port per node (su<k>n<i>, su<k>c), nft `bridge stayup` table
//   server netns su<k>-node<i>: eth0 = 198.18.k.i/24, plus a persisted mount + UTS namespace in which
//     /var/lib/stayup, /var/lib/app, /srv, /var/log/stayup are that server's own directories and /run, /dev/shm are
//     private tmpfs; hostname = node<i>
//   client netns su<k>-client: eth0 = 198.18.k.250/24 (network only; it shares the host's file system)
//
// Everything is described in <stateDir>/lab.json so later processes can run `exec`, faults, `status`, `down`.
// See docs/lab.md for the full picture.

import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { StayupError } from '../errors/stayup-error.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import {
  CLIENT,
  CLIENT_HOST,
  DEFAULT_BASE_DIR,
  DEFAULT_LAB_NAME,
  FREEZE_TABLE,
  MAX_INDEX,
  MIN_INDEX,
  NIC,
  PREFIX_LEN,
  SERVER_BIND_MOUNTS,
  SERVER_TMPFS,
  SWITCH_TABLE,
  bridgeName,
  endpointNames,
  hostAddr,
  indexOfNetns,
  serverName,
  subnetCidr,
  switchNetns,
  validateLabName,
  validateServerCount,
} from './names.ts';
import { readState, stateDirOf, stateFileOf, writeState, STATE_VERSION, type LabNode, type LabProcess, type LabState } from './state.ts';
import {
  checkPrerequisites,
  isAlive,
  mountTable,
  mountsUnder,
  mustRun,
  nsInode,
  pidsInNamespaces,
  procStat,
  run,
  signal,
  tool,
  toolEnv,
  waitGone,
  withLock,
  type RunResult,
} from './sys.ts';

export type { LabNode, LabProcess, LabState, LabNodeRole } from './state.ts';

/** Host-wide lock and registry, shared by every lab on the machine (whatever its baseDir). */
const HOST_RUN_DIR = '/run/stayup-lab';
const HOST_LOCK = join(HOST_RUN_DIR, 'lock');
const HOST_DIRS_REGISTRY = join(HOST_RUN_DIR, 'host-dirs.json');
const NETNS_DIR = '/run/netns';

export interface LabUpOptions {
  /** Lab name (default `lab`): 1-32 letters, digits, _ or -. */
  name?: string;
  /** Number of servers, node1..nodeN (default 2, at most 99). */
  servers?: number;
  /** Parent of the lab's state dir (default /var/lib/stayup-lab, or $STAYUP_LAB_DIR). */
  baseDir?: string;
}

export interface LabOpenOptions {
  baseDir?: string;
}

export interface LabDownOptions {
  baseDir?: string;
  /** Keep the per-server directories and logs (only lab.json and the ns files go). */
  keepData?: boolean;
}

export interface LabDownReport {
  name: string;
  /** False when there was no such lab (down is idempotent). */
  found: boolean;
  killed: number[];
  unmounted: string[];
  netnsDeleted: string[];
  hostDirsRemoved: string[];
  stateDirRemoved: boolean;
  /** Things that could not be cleaned; empty when down left nothing behind. */
  warnings: string[];
}

export interface LabSummary {
  name: string;
  index: number;
  subnet: string;
  servers: number;
  phase: LabState['phase'];
  /** The lab's switch namespace exists (false after a reboot or a half-done down). */
  running: boolean;
  stateDir: string;
}

export interface ExecOptions {
  /** Data written to the command's stdin (ignored with stdio 'inherit'). */
  input?: string | Uint8Array;
  /** Kill the command after this many ms (default 60000; 0 = no limit). The result then has code 124. */
  timeoutMs?: number;
  /** Added to (and overriding) our environment. */
  env?: Record<string, string>;
  /** Working directory inside the node (default /). */
  cwd?: string;
  /** 'inherit' = use our terminal, capture nothing (default 'pipe'). */
  stdio?: 'pipe' | 'inherit';
  /** Throw LAB_COMMAND_FAILED when the command does not exit 0. */
  check?: boolean;
}

export type ExecResult = RunResult;

export interface SpawnOptions {
  /** Host path that receives stdout and stderr (appended). Default <stateDir>/logs/<node>-<prog>-<time>.log. */
  logFile?: string;
  env?: Record<string, string>;
  /** Working directory inside the node (default /). */
  cwd?: string;
}

export interface SpawnedProcess extends LabProcess {
  /** Settles when the process exits, as long as this process lives (it is the parent). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export type LinkSide = 'switch' | 'node' | 'both';

export interface NodeStatus {
  name: string;
  role: LabNode['role'];
  addr: string;
  netns: string;
  port: string;
  /** The node's namespaces exist. */
  present: boolean;
  /** Both ends of its link are up and it was not killed. */
  up: boolean;
  nicUp: boolean;
  portUp: boolean;
  killed: boolean;
  frozen: boolean;
  isolated: boolean;
  /** Peers it is cut from (cut(a, b)). */
  cutFrom: string[];
  processes: Array<{ pid: number; argv: string[]; state: 'running' | 'stopped' | 'exited'; logFile: string }>;
}

export interface LabStatus {
  name: string;
  index: number;
  subnet: string;
  phase: LabState['phase'];
  stateDir: string;
  switchNetns: string;
  running: boolean;
  nodes: NodeStatus[];
}

function defaultBaseDir(baseDir?: string): string {
  return resolve(baseDir ?? process.env.STAYUP_LAB_DIR ?? DEFAULT_BASE_DIR);
}

/** Single-quotes a string for sh. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function netnsPath(netns: string): string {
  return join(NETNS_DIR, netns);
}

/** The netns file exists and (if we recorded it) is the namespace we created. */
function ownNetns(netns: string, ino: number | undefined): boolean {
  const cur = nsInode(netnsPath(netns));
  return cur !== undefined && (ino === undefined || cur === ino);
}

/** The nsfs bind mount at `file` exists and (if recorded) is the namespace we created; returns its inode. */
function ownNsFile(file: string | undefined, ino: number | undefined): number | undefined {
  if (!file) return undefined;
  if (!mountTable().some((m) => m.mountPoint === file && m.fsType === 'nsfs')) return undefined;
  const cur = nsInode(file);
  return cur !== undefined && (ino === undefined || cur === ino) ? cur : undefined;
}

export class Lab {
  #s: LabState;

  private constructor(state: LabState) {
    this.#s = state;
  }

  // ------------------------------------------------------------------------------------------ static API

  /** Builds a lab. On failure, whatever was built is torn down again and the error is thrown. */
  static async up(opts: LabUpOptions = {}): Promise<Lab> {
    checkPrerequisites();
    const name = validateLabName(opts.name ?? DEFAULT_LAB_NAME);
    const servers = validateServerCount(opts.servers ?? 2);
    const baseDir = defaultBaseDir(opts.baseDir);
    const stateDir = stateDirOf(baseDir, name);
    let preexisting = false;
    // `ip netns exec` runs us in a throw-away mount namespace (its /sys is a sysfs named after the netns):
    // the server namespaces persisted from there would be invisible to every later process.
    const sys = mountTable().filter((m) => m.mountPoint === '/sys').pop();
    if (sys?.fsType === 'sysfs' && sys.source && !sys.source.includes('/') && existsSync(netnsPath(sys.source))) {
      throw new StayupError('LAB_NEEDS_ROOT', `the lab must be built from the root mount namespace, not under \`ip netns exec ${sys.source}\` (use nsenter --net=${netnsPath(sys.source)} instead)`);
    }

    const lab = await withHostLock(async () => {
      if (existsSync(stateFileOf(stateDir))) {
        throw new StayupError('LAB_EXISTS', `lab ${name} already exists (${stateDir}); run \`stayup lab down --name ${name}\` first`, {
          details: { name, stateDir },
        });
      }
      if (mountsUnder(stateDir).length) {
        throw new StayupError('LAB_EXISTS', `lab ${name} has leftover mounts under ${stateDir}; run \`stayup lab down --name ${name}\``);
      }
      preexisting = existsSync(stateDir);
      const index = allocateIndex(baseDir);
      const state = initialState(name, servers, index, baseDir, stateDir);
      mkdirSync(stateDir, { recursive: true, mode: 0o755 });
      writeState(state);
      const l = new Lab(state);
      try {
        // Creating the switch netns under the host lock is what claims the index machine-wide.
        await l.#addNetns(state.switch.netns, (ino) => (state.switch.netnsIno = ino));
        writeState(state);
      } catch (e) {
        if (existsSync(netnsPath(state.switch.netns)) && state.switch.netnsIno !== undefined) {
          await run(tool('ip'), ['netns', 'del', state.switch.netns]);
        }
        if (preexisting) rmSync(stateFileOf(stateDir), { force: true });
        else rmSync(stateDir, { recursive: true, force: true });
        throw e;
      }
      return l;
    });

    try {
      await lab.#build();
      return lab;
    } catch (e) {
      const report = await Lab.down(name, { baseDir, keepData: preexisting }).catch((de: unknown) => ({ warnings: [String(de)] }));
      if (e instanceof StayupError && report.warnings.length) {
        e.message += ` (cleanup: ${report.warnings.join('; ')})`;
      }
      throw e;
    }
  }

  /** Opens an existing lab from its state file. */
  static open(name: string = DEFAULT_LAB_NAME, opts: LabOpenOptions = {}): Lab {
    validateLabName(name);
    const stateDir = stateDirOf(defaultBaseDir(opts.baseDir), name);
    const s = readState(stateDir);
    if (!s) throw new StayupError('LAB_NOT_FOUND', `no lab named ${name} (no ${stateFileOf(stateDir)}); start one with \`stayup lab up --name ${name}\``, { details: { name, stateDir } });
    return new Lab(s);
  }

  static exists(name: string = DEFAULT_LAB_NAME, opts: LabOpenOptions = {}): boolean {
    return existsSync(stateFileOf(stateDirOf(defaultBaseDir(opts.baseDir), validateLabName(name))));
  }

  /** Labs recorded under baseDir. */
  static list(opts: LabOpenOptions = {}): LabSummary[] {
    const baseDir = defaultBaseDir(opts.baseDir);
    let entries: string[];
    try {
      entries = readdirSync(baseDir);
    } catch {
      return [];
    }
    const out: LabSummary[] = [];
    for (const e of entries.sort()) {
      let s: LabState | undefined;
      try {
        s = readState(join(baseDir, e));
      } catch {
        continue;
      }
      if (!s) continue;
      out.push({
        name: s.name,
        index: s.index,
        subnet: s.subnet,
        servers: s.nodes.filter((n) => n.role === 'server').length,
        phase: s.phase,
        running: ownNetns(s.switch.netns, s.switch.netnsIno),
        stateDir: s.stateDir,
      });
    }
    return out;
  }

  /**
   * Tears a lab down: kills every process it started or that lives in its namespaces, unmounts its ns files,
   * deletes its namespaces (taking links, bridge and nft tables with them), removes host mount points it
   * created (when no other lab still runs) and its state dir. Idempotent; works on half-built labs.
   */
  static async down(name: string = DEFAULT_LAB_NAME, opts: LabDownOptions = {}): Promise<LabDownReport> {
    checkPrerequisites();
    validateLabName(name);
    const baseDir = defaultBaseDir(opts.baseDir);
    const stateDir = stateDirOf(baseDir, name);
    const report: LabDownReport = { name, found: false, killed: [], unmounted: [], netnsDeleted: [], hostDirsRemoved: [], stateDirRemoved: false, warnings: [] };
    let s: LabState | undefined;
    try {
      s = readState(stateDir);
    } catch (e) {
      report.warnings.push(`${(e as Error).message}: namespaces were not touched`);
    }
    if (!s) {
      // Nothing recorded: at most mounts or an empty directory from an interrupted `up`. A directory with
      // content is data kept by `down --keep-data`: not ours to remove.
      await unmountAll(stateDir, report);
      if (existsSync(stateDir) && !mountsUnder(stateDir).length) {
        rmdirQuiet(stateDir);
        report.stateDirRemoved = !existsSync(stateDir);
      }
      rmdirQuiet(baseDir);
      return report;
    }
    report.found = true;
    const lab = new Lab(s);

    // 1. processes: the recorded ones (if still ours) and anything inside the lab's namespaces.
    report.killed = await lab.#killProcesses(s.nodes, report.warnings);

    // 2. mounts under the state dir (nsfs files, the ns dir).
    await unmountAll(stateDir, report);

    // 3. namespaces, the switch last.
    const ip = tool('ip');
    for (const ns of [...s.nodes.map((n) => ({ netns: n.netns, ino: n.netnsIno })), { netns: s.switch.netns, ino: s.switch.netnsIno }]) {
      if (!existsSync(netnsPath(ns.netns))) continue;
      if (!ownNetns(ns.netns, ns.ino)) {
        report.warnings.push(`netns ${ns.netns} is not the one this lab created (left alone)`);
        continue;
      }
      const r = await run(ip, ['netns', 'del', ns.netns]);
      if (r.code === 0) report.netnsDeleted.push(ns.netns);
      else report.warnings.push(`ip netns del ${ns.netns}: ${r.stderr.trim()}`);
    }

    // 4. host mount points.
    await withHostLock(async () => {
      report.hostDirsRemoved = removeHostDirs(s.hostDirsCreated, report.warnings);
    });
    rmdirQuiet(HOST_RUN_DIR);

    // 5. state.
    const leftMounts = mountsUnder(stateDir);
    if (leftMounts.length) {
      report.warnings.push(`mounts remain under ${stateDir}: ${leftMounts.join(', ')}; state dir kept`);
    } else if (opts.keepData) {
      rmSync(s.nsDir, { recursive: true, force: true });
      rmSync(stateFileOf(stateDir), { force: true });
    } else {
      rmSync(stateDir, { recursive: true, force: true });
      report.stateDirRemoved = true;
      rmdirQuiet(baseDir);
    }
    return report;
  }

  // ------------------------------------------------------------------------------------------ accessors

  get name(): string {
    return this.#s.name;
  }
  get index(): number {
    return this.#s.index;
  }
  /** The lab's network, e.g. 198.18.1.0/24. */
  get subnet(): string {
    return this.#s.subnet;
  }
  get stateDir(): string {
    return this.#s.stateDir;
  }
  get switchNetns(): string {
    return this.#s.switch.netns;
  }
  /** Server names, node1..nodeN. */
  get servers(): string[] {
    return this.#s.nodes.filter((n) => n.role === 'server').map((n) => n.name);
  }
  /** All nodes (servers, then the client), as recorded. */
  get nodes(): LabNode[] {
    return this.#s.nodes.map((n) => ({ ...n }));
  }
  /** A copy of the persisted description. */
  get state(): LabState {
    return structuredClone(this.#s);
  }

  node(name: string): LabNode {
    const n = this.#s.nodes.find((x) => x.name === name);
    if (!n) {
      throw new StayupError('LAB_NODE_UNKNOWN', `lab ${this.name} has no node ${JSON.stringify(name)} (it has ${this.#s.nodes.map((x) => x.name).join(', ')})`, {
        details: { lab: this.name, node: name },
      });
    }
    return n;
  }

  addr(node: string): string {
    return this.node(node).addr;
  }

  /** Any address of the lab's /24 (host part 1..254), e.g. ip(100) for a virtual IP. */
  ip(host: number): string {
    return hostAddr(this.#s.index, host);
  }

  /** Host path behind a server's private path, e.g. hostPath('node1', '/var/lib/app/x'). */
  hostPath(node: string, serverPath: string): string {
    const n = this.#server(node);
    const p = resolve('/', serverPath);
    for (const m of SERVER_BIND_MOUNTS) {
      if (p === m.path || p.startsWith(`${m.path}/`)) return join(n.dataDir ?? '', m.dir, p.slice(m.path.length));
    }
    throw new StayupError('BAD_ARGUMENT', `${serverPath} is not a per-server path (those are ${SERVER_BIND_MOUNTS.map((m) => m.path).join(', ')})`);
  }

  /** The argv that runs `argv` inside the node: nsenter into its net (+ mount + UTS for servers) namespaces. */
  commandFor(node: string, argv: readonly string[], opts: { cwd?: string } = {}): string[] {
    const n = this.node(node);
    if (argv.length === 0) throw new StayupError('BAD_ARGUMENT', 'no command given');
    const ns = [`--net=${netnsPath(n.netns)}`];
    if (n.role === 'server') ns.push(`--mount=${n.mntNs}`, `--uts=${n.utsNs}`);
    // nsenter --wd would resolve the directory before entering the mount namespace: cd inside instead.
    const cmd = opts.cwd ? [tool('sh'), '-c', 'cd "$0" && exec "$@"', opts.cwd, ...argv] : [...argv];
    return [tool('nsenter'), ...ns, '--', ...cmd];
  }

  // ------------------------------------------------------------------------------------------ commands

  /** Runs a command inside a node and waits for it. Does not throw on a non-zero exit unless `check`. */
  async exec(node: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const [cmd, ...args] = this.commandFor(node, argv, opts.cwd === undefined ? {} : { cwd: opts.cwd });
    const r = await run(cmd!, args, {
      ...(opts.input === undefined ? {} : { input: opts.input }),
      timeoutMs: opts.timeoutMs ?? 60_000,
      env: toolEnv(opts.env),
      stdio: opts.stdio ?? 'pipe',
    });
    if (opts.check && r.code !== 0) {
      throw new StayupError('LAB_COMMAND_FAILED', `on ${node}: ${argv.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(-500)}`, {
        details: { node, argv: [...argv], code: r.code, stdout: r.stdout, stderr: r.stderr },
      });
    }
    return r;
  }

  /**
   * Starts a long-running process inside a node, in its own session and process group, with stdout and
   * stderr appended to `logFile`. Its PID is recorded in the lab state, so killServer and down kill it.
   */
  async spawn(node: string, argv: readonly string[], opts: SpawnOptions = {}): Promise<SpawnedProcess> {
    const [cmd, ...args] = this.commandFor(node, argv, opts.cwd === undefined ? {} : { cwd: opts.cwd });
    const logFile = resolve(opts.logFile ?? join(this.stateDir, 'logs', `${node}-${basename(argv[0] ?? 'cmd')}-${Date.now()}.log`));
    mkdirSync(dirname(logFile), { recursive: true });
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawnChild(cmd!, args, { detached: true, stdio: ['ignore', fd, fd], env: toolEnv(opts.env) });
    } finally {
      closeSync(fd);
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once('exit', (code, sig) => res({ code, signal: sig }));
    });
    await new Promise<void>((res, rej) => {
      child.once('spawn', () => res());
      child.once('error', (e) => rej(new StayupError('LAB_COMMAND_FAILED', `cannot start ${argv.join(' ')} on ${node}: ${e.message}`, { cause: e })));
    });
    child.unref();
    const pid = child.pid!;
    const rec: LabProcess = {
      pid,
      startTime: procStat(pid)?.startTime ?? 0,
      node,
      argv: [...argv],
      logFile,
      startedAt: new Date().toISOString(),
    };
    await this.#mutate((s) => {
      s.processes = s.processes.filter((p) => isAlive(p.pid, p.startTime));
      if (rec.startTime) s.processes.push(rec);
    });
    return { ...rec, exited };
  }

  /** Recorded processes (optionally of one node) that are still alive. */
  processes(node?: string): LabProcess[] {
    this.#reload();
    if (node !== undefined) this.node(node);
    return this.#s.processes.filter((p) => (node === undefined || p.node === node) && isAlive(p.pid, p.startTime)).map((p) => ({ ...p, argv: [...p.argv] }));
  }

  /**
   * Signals a process this lab started (its whole process group) and, for SIGKILL, waits until it is gone.
   * Returns false if it had already exited. Throws BAD_ARGUMENT for a PID the lab did not start.
   */
  async kill(pid: number, sig: NodeJS.Signals = 'SIGKILL'): Promise<boolean> {
    this.#reload();
    const p = this.#s.processes.find((x) => x.pid === pid);
    if (!p) throw new StayupError('BAD_ARGUMENT', `process ${pid} was not started by lab ${this.name}`);
    if (!isAlive(p.pid, p.startTime)) {
      await this.#forget([pid]);
      return false;
    }
    signalProcess(p, sig);
    if (sig === 'SIGKILL') {
      await waitGone([p], 3000);
      await this.#forget([pid]);
    }
    return true;
  }

  // ------------------------------------------------------------------------------------------ faults

  /**
   * Crashes a node: SIGKILLs every process the lab started on it and every other process inside its
   * namespaces, then takes its link down on the switch side (the node sees NO-CARRIER). Returns the PIDs killed.
   */
  async killServer(node: string): Promise<number[]> {
    const n = this.node(node);
    await this.#mutate((s) => {
      const x = s.nodes.find((y) => y.name === node);
      if (x) x.killed = true;
    });
    const warnings: string[] = [];
    const killed = await this.#killProcesses([n], warnings);
    await this.linkDown(node, 'switch');
    return killed;
  }

  /**
   * Boots a node after killServer: fresh tmpfs on /run and /dev/shm (a reboot loses them), empty neighbour
   * cache, both link ends up. The per-server directories persist like disks. Processes are the caller's to
   * start again (lab.spawn). Also just brings the link up on a node that was not killed.
   */
  async startServer(node: string): Promise<void> {
    const n = this.node(node);
    if (n.killed) {
      if (n.role === 'server') {
        const lines = ['set -e'];
        for (const t of SERVER_TMPFS) lines.push(`umount -l ${sq(t.path)}`, `mount -t tmpfs -o mode=${t.mode} ${sq(`su${this.index}-${basename(t.path)}`)} ${sq(t.path)}`);
        await mustRun(tool('nsenter'), [`--net=${netnsPath(n.netns)}`, `--mount=${n.mntNs}`, `--uts=${n.utsNs}`, '--', tool('sh'), '-c', lines.join('\n')]);
      }
      await mustRun(tool('ip'), ['-n', n.netns, 'neigh', 'flush', 'all']);
    }
    await this.linkUp(node);
    await this.#mutate((s) => {
      const x = s.nodes.find((y) => y.name === node);
      if (x) delete x.killed;
    });
  }

  /** killServer then startServer. */
  async restartServer(node: string): Promise<number[]> {
    const killed = await this.killServer(node);
    await this.startServer(node);
    return killed;
  }

  /** Drops every frame between nodes a and b on the switch (both directions). Others are unaffected. */
  async cut(a: string, b: string): Promise<void> {
    const [pa, pb] = this.#pair(a, b);
    await this.#switchNft(`add element bridge ${SWITCH_TABLE} cuts { "${pa}" . "${pb}", "${pb}" . "${pa}" }\n`);
  }

  /** Undoes cut(a, b). Idempotent. */
  async restore(a: string, b: string): Promise<void> {
    const [pa, pb] = this.#pair(a, b);
    const el = `{ "${pa}" . "${pb}", "${pb}" . "${pa}" }`;
    await this.#switchNft(`add element bridge ${SWITCH_TABLE} cuts ${el}\ndelete element bridge ${SWITCH_TABLE} cuts ${el}\n`);
  }

  /** Drops every frame to and from a node on the switch. */
  async isolate(node: string): Promise<void> {
    const n = this.node(node);
    await this.#switchNft(`add element bridge ${SWITCH_TABLE} isolated { "${n.port}" }\n`);
  }

  async unisolate(node: string): Promise<void> {
    const n = this.node(node);
    const el = `{ "${n.port}" }`;
    await this.#switchNft(`add element bridge ${SWITCH_TABLE} isolated ${el}\ndelete element bridge ${SWITCH_TABLE} isolated ${el}\n`);
  }

  /**
   * Freezes a node's network as a hard hang would: a netdev ingress + egress drop-all on its NIC, which
   * also stops ARP and packet-socket frames (an inet table would leak those). Processes keep running.
   */
  async freeze(node: string): Promise<void> {
    const n = this.node(node);
    const script = [
      `add table netdev ${FREEZE_TABLE}`,
      `delete table netdev ${FREEZE_TABLE}`,
      `table netdev ${FREEZE_TABLE} {`,
      `  chain in {`,
      `    type filter hook ingress device "${n.nic}" priority -500; policy drop;`,
      `  }`,
      `  chain out {`,
      `    type filter hook egress device "${n.nic}" priority -500; policy drop;`,
      `  }`,
      `}`,
      '',
    ].join('\n');
    await this.#nft(n.netns, script);
  }

  async thaw(node: string): Promise<void> {
    const n = this.node(node);
    await this.#nft(n.netns, `add table netdev ${FREEZE_TABLE}\ndelete table netdev ${FREEZE_TABLE}\n`);
  }

  /** SIGSTOPs the process groups the lab started on a node. Returns the PIDs signalled. */
  async stopProcesses(node: string): Promise<number[]> {
    return this.#signalNode(node, 'SIGSTOP');
  }

  /** SIGCONTs them again. */
  async contProcesses(node: string): Promise<number[]> {
    return this.#signalNode(node, 'SIGCONT');
  }

  /**
   * Takes a node's link down. side 'switch' (default) = the switch port, as a pulled cable: the node sees
   * NO-CARRIER; 'node' = the node's own NIC admin down (its addresses' routes go too); 'both'.
   */
  async linkDown(node: string, side: LinkSide = 'switch'): Promise<void> {
    const n = this.node(node);
    if (side !== 'node') await mustRun(tool('ip'), ['-n', this.switchNetns, 'link', 'set', n.port, 'down']);
    if (side !== 'switch') await mustRun(tool('ip'), ['-n', n.netns, 'link', 'set', n.nic, 'down']);
  }

  /** Brings both ends of a node's link up. */
  async linkUp(node: string): Promise<void> {
    const n = this.node(node);
    await mustRun(tool('ip'), ['-n', n.netns, 'link', 'set', n.nic, 'up']);
    await mustRun(tool('ip'), ['-n', this.switchNetns, 'link', 'set', n.port, 'up']);
  }

  /** Undoes every network fault: restores all cuts and isolations, thaws and links up every node (killed nodes stay down). */
  async heal(): Promise<void> {
    await this.#switchNft(`flush set bridge ${SWITCH_TABLE} cuts\nflush set bridge ${SWITCH_TABLE} isolated\n`);
    for (const n of this.#s.nodes) {
      await this.thaw(n.name);
      if (!n.killed) await this.linkUp(n.name);
    }
  }

  // ------------------------------------------------------------------------------------------ status

  async status(): Promise<LabStatus> {
    this.#reload();
    const s = this.#s;
    const running = ownNetns(s.switch.netns, s.switch.netnsIno);
    const ports = new Map<string, boolean>();
    const cuts: Array<[string, string]> = [];
    const isolated = new Set<string>();
    if (running) {
      const links = await run(tool('ip'), ['-j', '-n', s.switch.netns, 'link', 'show']);
      for (const l of parseJson<Array<{ ifname: string; flags?: string[] }>>(links.stdout, [])) ports.set(l.ifname, (l.flags ?? []).includes('UP'));
      const sets = await run(tool('nsenter'), [`--net=${netnsPath(s.switch.netns)}`, '--', tool('nft'), '-j', 'list', 'table', 'bridge', SWITCH_TABLE]);
      for (const o of parseJson<{ nftables?: Array<{ set?: { name: string; elem?: unknown[] } }> }>(sets.stdout, {}).nftables ?? []) {
        if (o.set?.name === 'cuts') {
          for (const e of o.set.elem ?? []) {
            const c = (e as { concat?: string[] }).concat;
            if (c && c.length === 2) cuts.push([c[0]!, c[1]!]);
          }
        } else if (o.set?.name === 'isolated') {
          for (const e of o.set.elem ?? []) if (typeof e === 'string') isolated.add(e);
        }
      }
    }
    const byPort = new Map(s.nodes.map((n) => [n.port, n.name]));
    const nodes = await Promise.all(
      s.nodes.map(async (n): Promise<NodeStatus> => {
        const present = running && ownNetns(n.netns, n.netnsIno);
        let nicUp = false;
        let frozen = false;
        if (present) {
          const [link, tables] = await Promise.all([
            run(tool('ip'), ['-j', '-n', n.netns, 'link', 'show', 'dev', n.nic]),
            run(tool('nsenter'), [`--net=${netnsPath(n.netns)}`, '--', tool('nft'), '-j', 'list', 'tables', 'netdev']),
          ]);
          nicUp = (parseJson<Array<{ flags?: string[] }>>(link.stdout, [])[0]?.flags ?? []).includes('UP');
          frozen = (parseJson<{ nftables?: Array<{ table?: { name: string } }> }>(tables.stdout, {}).nftables ?? []).some((o) => o.table?.name === FREEZE_TABLE);
        }
        const portUp = ports.get(n.port) ?? false;
        const cutFrom = cuts.filter(([a]) => a === n.port).map(([, b]) => byPort.get(b) ?? b);
        return {
          name: n.name,
          role: n.role,
          addr: n.addr,
          netns: n.netns,
          port: n.port,
          present,
          up: present && nicUp && portUp && !n.killed,
          nicUp,
          portUp,
          killed: Boolean(n.killed),
          frozen,
          isolated: isolated.has(n.port),
          cutFrom: [...new Set(cutFrom)].sort(),
          processes: s.processes
            .filter((p) => p.node === n.name)
            .map((p) => {
              const st = isAlive(p.pid, p.startTime) ? procStat(p.pid) : undefined;
              const state: 'running' | 'stopped' | 'exited' = !st ? 'exited' : st.state === 'T' || st.state === 't' ? 'stopped' : 'running';
              return { pid: p.pid, argv: [...p.argv], state, logFile: p.logFile };
            }),
        };
      }),
    );
    return { name: s.name, index: s.index, subnet: s.subnet, phase: s.phase, stateDir: s.stateDir, switchNetns: s.switch.netns, running, nodes };
  }

  /** Same as Lab.down(this.name, …). */
  down(opts: Omit<LabDownOptions, 'baseDir'> = {}): Promise<LabDownReport> {
    return Lab.down(this.name, { ...opts, baseDir: this.#s.baseDir });
  }

  // ------------------------------------------------------------------------------------------ internals

  #server(node: string): LabNode {
    const n = this.node(node);
    if (n.role !== 'server') throw new StayupError('LAB_NODE_UNKNOWN', `${node} is not a server of lab ${this.name} (servers: ${this.servers.join(', ')})`);
    return n;
  }

  #pair(a: string, b: string): [string, string] {
    const na = this.node(a);
    const nb = this.node(b);
    if (na.name === nb.name) throw new StayupError('BAD_ARGUMENT', `cannot cut ${a} from itself`);
    return [na.port, nb.port];
  }

  #reload(): void {
    const s = readState(this.#s.stateDir);
    if (!s) throw new StayupError('LAB_NOT_FOUND', `lab ${this.name} is gone (no ${stateFileOf(this.#s.stateDir)})`);
    this.#s = s;
  }

  /** Read-modify-write of the state file under the lab's lock (other processes may change it too). */
  async #mutate(fn: (s: LabState) => void): Promise<void> {
    await withLock(join(this.#s.stateDir, '.lock'), async () => {
      this.#reload();
      fn(this.#s);
      writeState(this.#s);
    });
  }

  async #forget(pids: number[]): Promise<void> {
    if (!pids.length) return;
    await this.#mutate((s) => {
      s.processes = s.processes.filter((p) => !pids.includes(p.pid));
    });
  }

  async #nft(netns: string, script: string): Promise<void> {
    await mustRun(tool('nsenter'), [`--net=${netnsPath(netns)}`, '--', tool('nft'), '-f', '-'], { input: script });
  }

  async #switchNft(script: string): Promise<void> {
    await this.#nft(this.switchNetns, script);
  }

  async #signalNode(node: string, sig: NodeJS.Signals): Promise<number[]> {
    const procs = this.processes(node);
    for (const p of procs) signalProcess(p, sig);
    return procs.map((p) => p.pid);
  }

  /** SIGKILLs recorded processes of these nodes and everything inside their namespaces; waits until gone. */
  async #killProcesses(nodes: readonly LabNode[], warnings: string[]): Promise<number[]> {
    try {
      this.#reload();
    } catch {
      /* state gone: use what we have */
    }
    const names = new Set(nodes.map((n) => n.name));
    const recorded = this.#s.processes.filter((p) => names.has(p.node) && isAlive(p.pid, p.startTime));
    for (const p of recorded) signalProcess(p, 'SIGKILL');
    const net: number[] = [];
    const mnt: number[] = [];
    for (const n of nodes) {
      if (ownNetns(n.netns, n.netnsIno)) net.push(nsInode(netnsPath(n.netns))!);
      const m = ownNsFile(n.mntNs, n.mntNsIno);
      if (m !== undefined) mnt.push(m);
    }
    const killed = new Map<number, number | undefined>(recorded.map((p) => [p.pid, p.startTime]));
    // Processes may fork while we kill: a few rounds.
    for (let round = 0; round < 5; round++) {
      const inside = pidsInNamespaces({ net, mnt });
      if (!inside.length) break;
      for (const pid of inside) {
        killed.set(pid, procStat(pid)?.startTime);
        signal(pid, 'SIGKILL');
      }
      await waitGone(inside.map((pid) => ({ pid })), 500);
    }
    const left = await waitGone([...killed].map(([pid, startTime]) => (startTime === undefined ? { pid } : { pid, startTime })), 3000);
    if (left.length) warnings.push(`processes still alive after SIGKILL: ${left.join(', ')}`);
    try {
      await this.#forget(recorded.map((p) => p.pid));
    } catch (e) {
      warnings.push(`cannot update the process list: ${(e as Error).message}`);
    }
    return [...killed.keys()].sort((a, b) => a - b);
  }

  async #addNetns(netns: string, record: (ino: number) => void): Promise<void> {
    await mustRun(tool('ip'), ['netns', 'add', netns]);
    const ino = nsInode(netnsPath(netns));
    if (ino === undefined) throw new StayupError('LAB_COMMAND_FAILED', `ip netns add ${netns} left no ${netnsPath(netns)}`);
    record(ino);
    // IPv6 off before any link exists, so no link-local addresses appear; sysctls under /proc/sys/net
    // belong to the netns of the process that opens them.
    await mustRun(tool('nsenter'), [
      `--net=${netnsPath(netns)}`,
      '--',
      tool('sh'),
      '-c',
      '[ -d /proc/sys/net/ipv6 ] || exit 0; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
    ]);
  }

  async #build(): Promise<void> {
    const s = this.#s;
    const ip = tool('ip');
    // Namespaces.
    for (const n of s.nodes) {
      await this.#addNetns(n.netns, (ino) => (n.netnsIno = ino));
      writeState(s);
    }
    // Switch: bridge, one veth per node (the node end created directly in the node's netns), nft table.
    const sw = ['link set lo up', `link add ${s.switch.bridge} type bridge`, `link set ${s.switch.bridge} up`];
    for (const n of s.nodes) {
      sw.push(`link add ${n.port} type veth peer name ${n.nic} netns ${n.netns}`, `link set ${n.port} master ${s.switch.bridge}`, `link set ${n.port} up`);
    }
    await mustRun(ip, ['-n', s.switch.netns, '-batch', '-'], { input: `${sw.join('\n')}\n` });
    await this.#switchNft(
      [
        `table bridge ${SWITCH_TABLE} {`,
        `  set cuts {`,
        `    type ifname . ifname;`,
        `  }`,
        `  set isolated {`,
        `    type ifname;`,
        `  }`,
        `  chain forward {`,
        `    type filter hook forward priority -100; policy accept;`,
        `    iifname . oifname @cuts drop`,
        `    iifname @isolated drop`,
        `    oifname @isolated drop`,
        `  }`,
        `}`,
        '',
      ].join('\n'),
    );
    for (const n of s.nodes) {
      const cmds = ['link set lo up', `addr add ${n.addr}/${n.prefixLen} dev ${n.nic}`, `link set ${n.nic} up`];
      await mustRun(ip, ['-n', n.netns, '-batch', '-'], { input: `${cmds.join('\n')}\n` });
    }
    // Per-server mount + UTS namespaces (host mount points are shared by all labs: host lock).
    await withHostLock(() => this.#buildMountNamespaces());
    s.phase = 'up';
    writeState(s);
  }

  async #buildMountNamespaces(): Promise<void> {
    const s = this.#s;
    // Mount points on the host (they stay empty there).
    const created = new Set(s.hostDirsCreated);
    for (const m of SERVER_BIND_MOUNTS) {
      const first = mkdirSync(m.path, { recursive: true, mode: 0o755 });
      if (first) {
        // Record every level mkdir created, deepest last.
        for (let d = m.path; d.length >= first.length; d = dirname(d)) created.add(d);
      }
    }
    s.hostDirsCreated = [...created];
    registerHostDirs(s.hostDirsCreated);
    writeState(s);

    // The ns files must live on a private mount, else the nsfs bind would propagate (and fail).
    mkdirSync(s.nsDir, { recursive: true, mode: 0o700 });
    await mustRun(tool('mount'), ['--bind', s.nsDir, s.nsDir]);
    await mustRun(tool('mount'), ['--make-private', s.nsDir]);

    for (const n of s.nodes) {
      if (n.role !== 'server') continue;
      for (const m of SERVER_BIND_MOUNTS) mkdirSync(join(n.dataDir!, m.dir), { recursive: true, mode: 0o755 });
      writeFileSync(n.mntNs!, '');
      writeFileSync(n.utsNs!, '');
      // The new mount namespace starts as a copy of ours, including the nsfs bind mounts of other
      // namespaces (netns files, other servers' ns files). Drop those copies so it pins no other namespace.
      const nsfs = mountTable()
        .filter((m) => m.fsType === 'nsfs')
        .map((m) => m.mountPoint);
      const lines = ['set -e'];
      for (const p of [...new Set(nsfs)].reverse()) lines.push(`umount -l ${sq(p)} 2>/dev/null || true`);
      lines.push(`printf %s ${sq(n.name)} > /proc/sys/kernel/hostname`);
      for (const m of SERVER_BIND_MOUNTS) lines.push(`mount --bind ${sq(join(n.dataDir!, m.dir))} ${sq(m.path)}`);
      // sysfs of this netns (/sys/class/net shows lo and eth0 only).
      lines.push('umount -l /sys', `mount -t sysfs ${sq(`su${s.index}-sys`)} /sys`);
      for (const t of SERVER_TMPFS) lines.push(`mount -t tmpfs -o mode=${t.mode} ${sq(`su${s.index}-${basename(t.path)}`)} ${sq(t.path)}`);
      // Run from our (root) mount namespace: under `ip netns exec` the ns files would be bound in a throw-away namespace.
      await mustRun(tool('nsenter'), [
        `--net=${netnsPath(n.netns)}`,
        '--',
        tool('unshare'),
        `--mount=${n.mntNs}`,
        `--uts=${n.utsNs}`,
        '--propagation',
        'private',
        tool('sh'),
        '-c',
        lines.join('\n'),
      ]);
      const mntIno = ownNsFile(n.mntNs, undefined);
      if (mntIno === undefined || ownNsFile(n.utsNs, undefined) === undefined) {
        throw new StayupError(
          'LAB_COMMAND_FAILED',
          `the mount namespace of ${n.name} was not persisted at ${n.mntNs}: run the lab from the root mount namespace (not under \`ip netns exec\`)`,
        );
      }
      n.mntNsIno = mntIno;
      writeState(s);
    }
  }
}

// ---------------------------------------------------------------------------------------------- helpers

function initialState(name: string, servers: number, index: number, baseDir: string, stateDir: string): LabState {
  const nodes: LabNode[] = [];
  for (let i = 1; i <= servers; i++) {
    const nm = serverName(i);
    const e = endpointNames(index, i);
    nodes.push({
      name: nm,
      role: 'server',
      addr: hostAddr(index, i),
      prefixLen: PREFIX_LEN,
      netns: e.netns,
      port: e.port,
      nic: NIC,
      mntNs: join(stateDir, 'ns', `${nm}.mnt`),
      utsNs: join(stateDir, 'ns', `${nm}.uts`),
      dataDir: join(stateDir, 'nodes', nm),
    });
  }
  const c = endpointNames(index, CLIENT);
  nodes.push({ name: CLIENT, role: 'client', addr: hostAddr(index, CLIENT_HOST), prefixLen: PREFIX_LEN, netns: c.netns, port: c.port, nic: NIC });
  return {
    version: STATE_VERSION,
    name,
    index,
    subnet: subnetCidr(index),
    baseDir,
    stateDir,
    createdAt: new Date().toISOString(),
    phase: 'building',
    switch: { netns: switchNetns(index), bridge: bridgeName(index) },
    nodes,
    nsDir: join(stateDir, 'ns'),
    hostDirsCreated: [],
    processes: [],
  };
}

/** Lowest lab index no namespace and no lab state (here or in the default base dir) uses. Host lock held. */
function allocateIndex(baseDir: string): number {
  const used = new Set<number>();
  try {
    for (const ns of readdirSync(NETNS_DIR)) {
      const k = indexOfNetns(ns);
      if (k !== undefined) used.add(k);
    }
  } catch {
    /* no /run/netns yet */
  }
  for (const dir of new Set([baseDir, resolve(DEFAULT_BASE_DIR)])) {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const e of entries) {
      try {
        const s = readState(join(dir, e));
        if (s) used.add(s.index);
      } catch {
        /* unreadable state: ignore */
      }
    }
  }
  for (let k = MIN_INDEX; k <= MAX_INDEX; k++) if (!used.has(k)) return k;
  throw new StayupError('CONFLICT', `all ${MAX_INDEX} lab networks are in use`);
}

function withHostLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(HOST_RUN_DIR, { recursive: true, mode: 0o700 });
  return withLock(HOST_LOCK, fn);
}

function readHostDirs(): string[] {
  try {
    const v = JSON.parse(readFileSync(HOST_DIRS_REGISTRY, 'utf8')) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function registerHostDirs(dirs: readonly string[]): void {
  const all = new Set([...readHostDirs(), ...dirs]);
  if (all.size) writeFileAtomic(HOST_DIRS_REGISTRY, `${JSON.stringify([...all], null, 2)}\n`);
}

/**
 * Removes the host mount points labs created, once no lab runs any more (a server of another lab may
 * still have them as mount points: removing one would detach its mounts). Host lock held; our own
 * namespaces are already gone.
 */
function removeHostDirs(ours: readonly string[], warnings: string[]): string[] {
  const all = [...new Set([...readHostDirs(), ...ours])];
  if (!all.length) return [];
  let others: string[] = [];
  try {
    others = readdirSync(NETNS_DIR).filter((ns) => indexOfNetns(ns) !== undefined && ns.endsWith('-sw'));
  } catch {
    /* none */
  }
  if (others.length) {
    registerHostDirs(all); // the last lab down removes them
    return [];
  }
  const removed: string[] = [];
  const kept: string[] = [];
  const mounted = new Set(mountTable().map((m) => m.mountPoint));
  for (const d of all.sort((a, b) => b.length - a.length)) {
    if (mounted.has(d)) {
      kept.push(d);
      continue;
    }
    try {
      rmdirSync(d);
      removed.push(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') warnings.push(`cannot remove ${d}: ${(e as Error).message}`);
      // Not empty: someone uses it now; it is no longer ours to remove.
    }
  }
  if (kept.length) registerHostDirs(kept);
  else rmSync(HOST_DIRS_REGISTRY, { force: true });
  return removed;
}

/** Lazily unmounts every mount at or below dir, deepest first. */
async function unmountAll(dir: string, report: LabDownReport): Promise<void> {
  const umount = tool('umount');
  for (let round = 0; round < 3; round++) {
    const mps = mountsUnder(dir);
    if (!mps.length) return;
    for (const mp of mps) {
      const r = await run(umount, ['-l', mp]);
      if (r.code === 0) report.unmounted.push(mp);
      else if (round === 2) report.warnings.push(`umount -l ${mp}: ${r.stderr.trim()}`);
    }
  }
}

function signalProcess(p: Pick<LabProcess, 'pid' | 'startTime'>, sig: NodeJS.Signals): void {
  const st = procStat(p.pid);
  if (!st || st.startTime !== p.startTime) return; // gone, or the PID was reused: not ours
  if (st.pgid === p.pid) signal(-p.pid, sig);
  signal(p.pid, sig);
}

function rmdirQuiet(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    /* not empty or gone */
  }
}

function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
