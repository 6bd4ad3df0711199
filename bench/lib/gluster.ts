// GlusterFS replica 2 in the lab, the replication bench's baseline (Debian glusterfs-server/-client 10.x).
//
// Preferred placement: one glusterd per lab server, each brick on its own server, as on two real machines.
// glusterd keeps its state in /var/lib/glusterd, logs in /var/log/glusterfs and sockets/pid files in /run;
// a lab server already has a private /run (tmpfs), and this file bind-mounts private copies of the other two
// into the server's mount namespace (lab.exec runs `mount --bind` inside it, so the host never sees them).
// Fallback placement: both bricks on node1 (one glusterd), used only when the per-server setup fails; the
// bench then says so in its output.
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecResult, Lab, SpawnedProcess } from '../../src/lab/lab.ts';
import { nsInode, pidsInNamespaces, procStat, signal } from '../../src/lab/sys.ts';

export type GlusterPlacement = 'per-server' | 'one-server';
export const VOLUME = 'replbench';
/** Where node1 mounts the volume (FUSE client, `mount -t glusterfs`). */
export const GLUSTER_MOUNT = '/srv/glusterfs-mnt';
/** Bricks live under the servers' private /srv (created with `force`: gluster dislikes bricks on /). */
const BRICK_ROOT = '/srv/gluster';
/** The private state directories glusterd needs besides /run. */
const PRIVATE_DIRS = [
  { path: '/var/lib/glusterd', dir: 'lib' },
  { path: '/var/log/glusterfs', dir: 'log' },
] as const;

/** TLS on GlusterFS's I/O path (client to bricks), as stayup's replication stream always is (`--gluster-tls`). */
const TLS_ON = { 'client.ssl': 'on', 'server.ssl': 'on' } as const;

/** Volume options of the configurations measured (the rest stays at the package's defaults). */
export const GLUSTER_CONFIGS = {
  /** As installed: write-behind and flush-behind on (a write() may return before the bricks have it). */
  defaults: {},
  /** write() returns once both bricks answered, the per-write figure comparable to synchronous replication. */
  write_behind_off: { 'performance.write-behind': 'off', 'performance.flush-behind': 'off' },
  /** The same two with the I/O path encrypted (self-signed certificates made by the bench). */
  tls_defaults: { ...TLS_ON },
  tls_write_behind_off: { 'performance.write-behind': 'off', 'performance.flush-behind': 'off', ...TLS_ON },
} as const satisfies Record<string, Record<string, string>>;
export type GlusterConfig = keyof typeof GLUSTER_CONFIGS;
/** The options set or reset by configure(). */
const CONFIGURED_OPTIONS = ['performance.write-behind', 'performance.flush-behind', 'client.ssl', 'server.ssl'];
/** The options reported for each configuration (their values are read back with `volume get`). */
export const REPORTED_OPTIONS = ['performance.write-behind', 'performance.flush-behind', 'performance.client-io-threads', 'performance.io-cache', 'performance.quick-read', 'client.ssl', 'server.ssl'];

export class GlusterVolume {
  private readonly glusterd = new Map<string, SpawnedProcess>();
  private readonly bound: Array<{ node: string; path: string }> = [];
  private created = false;
  private mounted = false;
  /** The bricks run with server.ssl on. */
  private tlsOn = false;

  constructor(
    private readonly lab: Lab,
    readonly placement: GlusterPlacement,
    private readonly log: (line: string) => void,
    /** Make certificates, so that the tls_* configurations can run. */
    private readonly tls = false,
  ) {}

  /** Servers that run a glusterd. */
  get servers(): string[] {
    return this.placement === 'per-server' ? this.lab.servers.slice(0, 2) : [this.lab.servers[0]!];
  }

  get bricks(): string[] {
    const [a, b] = this.lab.servers;
    return this.placement === 'per-server'
      ? [`${this.lab.addr(a!)}:${BRICK_ROOT}/brick`, `${this.lab.addr(b!)}:${BRICK_ROOT}/brick`]
      : [`${this.lab.addr(a!)}:${BRICK_ROOT}/brick1`, `${this.lab.addr(a!)}:${BRICK_ROOT}/brick2`];
  }

  describe(): string {
    return this.placement === 'per-server'
      ? `one glusterd per lab server (${this.servers.join(', ')}), one brick each: ${this.bricks.join(' + ')}`
      : `BOTH BRICKS ON ONE SERVER (${this.servers[0]}, one glusterd, no network between the replicas): ${this.bricks.join(' + ')}`;
  }

  private get client(): string {
    return this.lab.servers[0]!;
  }

  private async sh(node: string, argv: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return this.lab.exec(node, argv, { timeoutMs });
  }

  private async must(node: string, argv: string[], timeoutMs = 60_000): Promise<string> {
    const r = await this.sh(node, argv, timeoutMs);
    if (r.code !== 0) throw new Error(`[${node}] ${argv.join(' ')} exited ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).trim().slice(-600)}`);
    return r.stdout;
  }

  /** The gluster CLI on node (it talks to that server's glusterd over its private /run socket). */
  gluster(node: string, args: string[], timeoutMs = 120_000): Promise<string> {
    return this.must(node, ['gluster', '--mode=script', ...args], timeoutMs);
  }

  /** glusterd per server, the trusted pool, the replica 2 volume created with `force` and started. */
  async setup(): Promise<void> {
    for (const node of this.servers) {
      const base = join(this.lab.stateDir, 'gluster', node);
      for (const d of PRIVATE_DIRS) {
        const host = join(base, d.dir);
        mkdirSync(host, { recursive: true });
        // The package's volume-option groups; no hooks (they would touch the host's Samba/CTDB config).
        if (d.dir === 'lib' && existsSync('/var/lib/glusterd/groups')) cpSync('/var/lib/glusterd/groups', join(host, 'groups'), { recursive: true });
        await this.must(node, ['mkdir', '-p', d.path]);
        await this.must(node, ['mount', '--bind', host, d.path]);
        this.bound.push({ node, path: d.path });
      }
      await this.must(node, ['mkdir', '-p', BRICK_ROOT]);
      if (this.tls) await this.installCertificates(node, base);
      const p = await this.lab.spawn(node, ['glusterd', '-N', '-p', '/run/glusterd.pid', '--log-level=WARNING'], { logFile: join(this.lab.stateDir, 'logs', `${node}-glusterd.log`) });
      this.glusterd.set(node, p);
    }
    for (const node of this.servers) await this.waitGlusterd(node);
    if (this.placement === 'per-server') {
      const [a, b] = this.servers as [string, string];
      await this.gluster(a, ['peer', 'probe', this.lab.addr(b)]);
      await this.until(`${b} in the trusted pool of ${a}`, 30_000, async () => /Peer in Cluster \(Connected\)/.test((await this.sh(a, ['gluster', '--mode=script', 'peer', 'status'])).stdout));
    }
    const first = this.servers[0]!;
    await this.until('volume create', 30_000, async () => {
      const r = await this.sh(first, ['gluster', '--mode=script', 'volume', 'create', VOLUME, 'replica', '2', ...this.bricks, 'force'], 120_000);
      if (r.code === 0) return true;
      // Right after the probe the peer may not accept the brick yet: retried; anything else is fatal.
      if (!/not in 'Peer in Cluster'|not connected|Another transaction/i.test(r.stderr + r.stdout)) throw new Error(`gluster volume create: ${(r.stderr || r.stdout).trim()}`);
      return false;
    });
    this.created = true;
    await this.gluster(first, ['volume', 'start', VOLUME]);
    if (!(await this.bricksOnline(first))) throw new Error(`gluster volume ${VOLUME}: not both bricks online:\n${await this.gluster(first, ['volume', 'status', VOLUME])}`);
  }

  private async bricksOnline(node: string): Promise<boolean> {
    const status = await this.gluster(node, ['volume', 'status', VOLUME]);
    return status.split('\n').filter((l) => /^Brick /.test(l) && /\sY\s+\d+\s*$/.test(l)).length === 2;
  }

  /**
   * GlusterFS reads its TLS files from OpenSSL's directory (glusterfs.pem, .key, .ca; Debian: /usr/lib/ssl). A
   * private copy of that directory with one self-signed certificate (its own CA: every server and the client
   * trust it) is bind-mounted over it in the server's mount namespace: the host's stays untouched.
   */
  private async installCertificates(node: string, base: string): Promise<void> {
    const dir = /OPENSSLDIR: "([^"]+)"/.exec(await this.must(node, ['openssl', 'version', '-d']))?.[1];
    if (!dir) throw new Error('openssl version -d names no OPENSSLDIR');
    const certs = join(this.lab.stateDir, 'gluster', 'tls');
    if (!existsSync(join(certs, 'glusterfs.pem'))) {
      mkdirSync(certs, { recursive: true });
      await this.must(node, ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=stayup-bench', '-keyout', join(certs, 'glusterfs.key'), '-out', join(certs, 'glusterfs.pem')]);
      cpSync(join(certs, 'glusterfs.pem'), join(certs, 'glusterfs.ca'));
    }
    const own = join(base, 'ssl');
    cpSync(dir, own, { recursive: true, verbatimSymlinks: true });
    for (const f of ['glusterfs.pem', 'glusterfs.key', 'glusterfs.ca']) cpSync(join(certs, f), join(own, f));
    await this.must(node, ['mount', '--bind', own, dir]);
    this.bound.push({ node, path: dir });
  }

  private async waitGlusterd(node: string): Promise<void> {
    const p = this.glusterd.get(node)!;
    let exited = false;
    void p.exited.then(() => (exited = true));
    await this.until(`glusterd on ${node}`, 30_000, async () => {
      if (exited) throw new Error(`glusterd on ${node} exited: ${tail(p.logFile)} ${tail(join(this.lab.stateDir, 'gluster', node, 'log', 'glusterd.log'))}`);
      return (await this.sh(node, ['gluster', '--mode=script', 'pool', 'list'], 20_000)).code === 0;
    });
  }

  private async until(what: string, timeoutMs: number, ok: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await ok()) return;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
      await sleep(300);
    }
  }

  /**
   * Applies one configuration: unmounted, options set (or reset to the defaults), mounted again, so the
   * client starts with a fresh graph. Returns the values of REPORTED_OPTIONS as glusterd reports them.
   */
  async configure(config: GlusterConfig): Promise<Record<string, string>> {
    const first = this.servers[0]!;
    await this.umount();
    const wanted: Record<string, string> = GLUSTER_CONFIGS[config];
    const tls = wanted['server.ssl'] === 'on';
    if (tls && !this.tls) throw new Error(`configuration ${config} needs the certificates (GlusterVolume made without tls)`);
    // The bricks read server.ssl when they start: the volume is restarted when it changes.
    const restart = tls !== this.tlsOn;
    if (restart) await this.gluster(first, ['volume', 'stop', VOLUME, 'force']);
    for (const opt of CONFIGURED_OPTIONS) {
      if (wanted[opt] !== undefined) await this.gluster(first, ['volume', 'set', VOLUME, opt, wanted[opt]]);
      else await this.gluster(first, ['volume', 'reset', VOLUME, opt]);
    }
    if (tls) await this.gluster(first, ['volume', 'set', VOLUME, 'auth.ssl-allow', '*']);
    if (restart) {
      await this.gluster(first, ['volume', 'start', VOLUME]);
      this.tlsOn = tls;
      await this.until('both bricks online', 30_000, async () => this.bricksOnline(first));
    }
    const used: Record<string, string> = {};
    for (const opt of REPORTED_OPTIONS) {
      const out = await this.gluster(first, ['volume', 'get', VOLUME, opt]);
      const m = new RegExp(`^${opt.replace(/\./g, '\\.')}\\s+(\\S+)`, 'm').exec(out);
      used[opt] = m ? m[1]! : '?';
    }
    for (const [k, v] of Object.entries(wanted)) {
      if (used[k] !== v) throw new Error(`gluster option ${k}: set to ${v}, glusterd reports ${used[k]}`);
    }
    await this.mount();
    return used;
  }

  async mount(): Promise<void> {
    const c = this.client;
    await this.must(c, ['mkdir', '-p', GLUSTER_MOUNT]);
    await this.must(c, ['mount', '-t', 'glusterfs', `${this.lab.addr(this.servers[0]!)}:/${VOLUME}`, GLUSTER_MOUNT], 120_000);
    this.mounted = true;
    const info = await this.must(c, ['cat', '/proc/self/mountinfo']);
    if (!info.split('\n').some((l) => l.split(' ')[4] === GLUSTER_MOUNT && / - fuse\.glusterfs /.test(l))) throw new Error(`no fuse.glusterfs mount at ${GLUSTER_MOUNT} on ${c} after mount`);
  }

  async umount(): Promise<void> {
    if (!this.mounted) return;
    const c = this.client;
    const r = await this.sh(c, ['umount', GLUSTER_MOUNT]);
    if (r.code !== 0) await this.must(c, ['umount', '-l', GLUSTER_MOUNT]);
    this.mounted = false;
  }

  /** The gluster version the servers run (glusterfs --version). */
  async version(): Promise<string> {
    const out = await this.must(this.servers[0]!, ['glusterfs', '--version']);
    return /glusterfs (\S+)/.exec(out)?.[1] ?? '?';
  }

  /**
   * Removes everything, also after a half-done setup: client unmounted, volume stopped and deleted,
   * each glusterd stopped by its PID (SIGTERM, then SIGKILL), brick and self-heal processes it leaves
   * behind killed by PID, the private bind mounts undone. Returns what could not be cleaned.
   */
  async teardown(): Promise<string[]> {
    const warnings: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        warnings.push(`${what}: ${(e as Error).message.split('\n')[0]}`);
      }
    };
    await attempt('umount', () => this.umount());
    if (this.created) {
      const first = this.servers[0]!;
      await attempt('volume stop', () => this.gluster(first, ['volume', 'stop', VOLUME, 'force']));
      await attempt('volume delete', () => this.gluster(first, ['volume', 'delete', VOLUME]));
      this.created = false;
    }
    for (const [node, p] of this.glusterd) {
      await attempt(`stop glusterd ${p.pid} on ${node}`, async () => {
        if (!(await this.lab.kill(p.pid, 'SIGTERM'))) return;
        const gone = await Promise.race([p.exited.then(() => true), sleep(5000).then(() => false)]);
        if (!gone) await this.lab.kill(p.pid, 'SIGKILL');
      });
      // Bricks (glusterfsd) and the self-heal daemon daemonise away from glusterd's process group.
      const netns = this.lab.node(node).netns;
      const ino = nsInode(`/run/netns/${netns}`);
      if (ino !== undefined) {
        for (const pid of pidsInNamespaces({ net: [ino] })) {
          let comm = '';
          try {
            comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
          } catch {
            continue;
          }
          if (!/^gluster/.test(comm) || procStat(pid)?.state === 'Z') continue;
          signal(pid, 'SIGKILL');
          warnings.push(`${comm} ${pid} on ${node} was still running after glusterd stopped: killed`);
        }
      }
    }
    this.glusterd.clear();
    for (const b of this.bound.reverse()) {
      const r = await this.sh(b.node, ['umount', b.path]);
      if (r.code !== 0) {
        const l = await this.sh(b.node, ['umount', '-l', b.path]);
        if (l.code !== 0) warnings.push(`umount ${b.path} on ${b.node}: ${l.stderr.trim()}`);
      }
    }
    this.bound.length = 0;
    return warnings;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}
