// stayup's side of the replication bench: a mirror module whose only resource is a replicated directory
// (<rfs><replicated dir="..."/></rfs>), driven through the CLI exactly as an operator would:
//
//   stayup -H "*" cluster config /srv/cluster.xml              (StayupCluster.setup)
//   stayup -H "*" module install -m replbench /srv/replbench.safe
//   node1: stayup prim -m replbench            node2: stayup second -m replbench
//   node1: stayup waitstate PRIM -m replbench  node2: stayup waitstate SECOND -m replbench
//   both:  stayup state -m replbench           (PRIM (Ready) / SECOND (Ready))
//   resync: node2 stayup stop, waitstate STOP; the data changes on node1; node2 stayup start,
//           waitstate SECOND; stayup state -v (resync figures); module log ("Reintegration ended")
//
// Nothing is measured unless the replicated directory on node1 really is stayup's FUSE mount, and the
// resync is only reported when the secondary's copy is byte-identical to the primary's afterwards.
import { createHash } from 'node:crypto';
import { chmodSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../../src/lab/lab.ts';
import { writeOnServer } from '../../src/lab/stayup-cluster.ts';
import { packDirectory } from '../../src/packages/zip-writer.ts';
import type { StayupCluster } from './stayup.ts';

export const MODULE = 'replbench';
/** The replicated directory: under the servers' private /var/lib/app, so each server has its own copy. */
export const REPL_DIR = '/var/lib/app/replbench';
export type RfsAsync = 'second' | 'none';
/** Longest single `stayup waitstate -t` the driver issues (see waitState). */
const WAIT_SLICE_S = 50;

/** The mirror module: heartbeat lan "default" (also the replication flow), no virtual IP, no scripts. */
/** The bench module's <rfs>: the directory, async, and nbremconn (connections carrying the stream; default 1). */
export interface ReplOptions {
  dir: string;
  async: RfsAsync;
  nbremconn?: number;
}

export function replUserconfig(o: ReplOptions): string {
  return [
    '<!DOCTYPE safe>',
    '<safe>',
    '<!-- replication bench module: the replicated directory only (no virtual IP, no application scripts) -->',
    '<service mode="mirror" defaultprim="alone" failover="on" maxloop="1000" loop_interval="1h">',
    // The template's 30 s timeout, so a 2-CPU machine busy with fio sees no false failover; a 100 ms pulse
    // (the template has 700 ms) so the restarted secondary hears its primary quickly and the resync time
    // is mostly the resync's.
    '  <heart pulse="100ms" timeout="30000ms">',
    '    <heartbeat name="default" ident="flow" />',
    '  </heart>',
    `  <rfs async="${o.async}"${o.nbremconn && o.nbremconn !== 1 ? ` nbremconn="${o.nbremconn}"` : ''}>`,
    `    <replicated dir="${o.dir}" />`,
    '  </rfs>',
    '</service>',
    '</safe>',
    '',
  ].join('\n');
}

export interface ResyncSizes {
  files: number;
  fileMib: number;
  /** Every EVERY-th 1 MiB block of each file is rewritten (10: 13 of 128 blocks, 10.2 %). */
  every: number;
}
export const FULL_RESYNC: ResyncSizes = { files: 8, fileMib: 128, every: 10 };
export const QUICK_RESYNC: ResyncSizes = { files: 4, fileMib: 32, every: 10 };

export interface ResyncResult {
  /** Changed bytes / resync_s, in MiB/s. */
  resync_mib_s: number;
  /** null: this stayup version reports it nowhere (neither `state -v` nor the module log). */
  resync_bytes_sent: number | null;
  /** Where resync_bytes_sent came from. */
  bytes_sent_source: string | null;
  /** What the replication layer itself logged for this resync ("Reintegration ended (scope): ..." fields). */
  reported: { scope?: string; files_copied?: number; duration_ms?: number } | null;
  /** `stayup start` on the secondary issued -> `stayup waitstate SECOND` returned (SECOND Ready). */
  resync_s: number;
  /** The same stop/start cycle with nothing changed: the fixed part of resync_s (CLI starts, heartbeats). */
  empty_resync_s: number;
  /** Module log of the secondary: "SECOND Transient" -> "Reintegration ended" (null: a record is missing). */
  resync_log_s: number | null;
  resync_changed_bytes: number;
  dataset_bytes: number;
}

interface LogRec {
  seq: number;
  ts: string;
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

export class ReplicatedModule {
  constructor(
    private readonly lab: Lab,
    private readonly cluster: StayupCluster,
    private readonly log: (line: string) => void,
    readonly opts: ReplOptions = { dir: REPL_DIR, async: 'second' },
  ) {}

  get primary(): string {
    return this.lab.servers[0]!;
  }
  get secondary(): string {
    return this.lab.servers[1]!;
  }

  async install(): Promise<string> {
    for (const n of this.lab.servers) mkdirSync(this.lab.hostPath(n, this.opts.dir), { recursive: true });
    const dir = join(this.lab.stateDir, 'stayup-modules', MODULE);
    mkdirSync(join(dir, 'conf'), { recursive: true });
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'conf', 'userconfig.xml'), replUserconfig(this.opts));
    chmodSync(join(dir, 'bin'), 0o755);
    const pkg = await packDirectory(dir, { label: `module ${MODULE}` });
    writeOnServer(this.lab, this.primary, `/srv/${MODULE}.safe`, pkg);
    return (await this.cluster.cliOk(this.primary, ['-H', '*', 'module', 'install', '-m', MODULE, `/srv/${MODULE}.safe`])).trim();
  }

  /** A start command was accepted on some node: the module must be stopped on the way out. */
  started = false;

  /**
   * PRIM on node1, SECOND on node2, both Ready; then the mount check. A primary without its secondary is
   * ALONE: node1 becomes PRIM only once node2 is SECOND.
   */
  async start(): Promise<void> {
    await this.cluster.cliOk(this.primary, ['prim', '-m', MODULE]);
    this.started = true;
    await this.waitState(this.primary, 'ALONE,PRIM', 120);
    await this.cluster.cliOk(this.secondary, ['second', '-m', MODULE]);
    // The directory is empty at this point: a first synchronisation takes seconds, not minutes.
    await this.waitState(this.secondary, 'SECOND', 300);
    await this.waitState(this.primary, 'PRIM', 120);
    await this.checkReady();
    await this.checkMounted();
    await this.checkConnections();
  }

  /**
   * The link carries the stream over nbremconn connections (`state -v`: "link up (protocol v3, 3
   * connections)"), else the figures would be those of one connection under another name.
   */
  private async checkConnections(): Promise<void> {
    const want = this.opts.nbremconn ?? 1;
    const line = (await this.cluster.verbose(this.primary, MODULE)).split('\n').find((l) => l.startsWith('replication: ')) ?? '';
    const m = /link up(?: \(protocol v(\d+)(?:, (\d+) connections)?\))?/.exec(line);
    const got = m ? Number(m[2] ?? 1) : 0;
    if (got !== want) throw new Error(`${this.primary}: the replication link has ${got} connection(s), nbremconn is ${want}: ${line || 'no replication line in state -v'}`);
    this.log(`  stayup: ${line.slice(0, line.indexOf(', mounted'))}`);
  }

  async stop(): Promise<void> {
    await this.cluster.cliOk(this.primary, ['-H', '*', 'stop', '-m', MODULE], 300_000);
  }

  /**
   * `stayup waitstate STATE -m M -t S` on node, in calls of at most WAIT_SLICE_S: the CLI's HTTP request
   * timeout (60 s) equals the daemon's long-poll slice, so one wait of 60 s or more fails with "cannot
   * reach the stayup daemon" instead of going on.
   */
  private async waitState(node: string, state: string, timeoutS: number): Promise<void> {
    const deadline = Date.now() + timeoutS * 1000;
    for (;;) {
      const slice = Math.max(1, Math.min(WAIT_SLICE_S, Math.ceil((deadline - Date.now()) / 1000)));
      const r = await this.cluster.cli(node, ['waitstate', state, '-m', MODULE, '-t', String(slice)], (slice + 30) * 1000);
      if (r.code === 0) return;
      const text = (r.stderr || r.stdout).trim();
      if (!/still .* after \d+ ms/.test(text) || Date.now() >= deadline) {
        const v = await this.cluster.verbose(node, MODULE);
        const errs = this.lastErrors();
        throw new Error(`${node}: waitstate ${state} (${timeoutS} s) exited ${r.code}: ${text}${errs ? `; module log errors: ${errs}` : ''}\n${v}`);
      }
    }
  }

  /** waitstate accepts SECOND (NotReady) too: the bench needs both Ready. */
  private async checkReady(): Promise<void> {
    const p = await this.cluster.stateOf(this.primary, MODULE);
    const s = await this.cluster.stateOf(this.secondary, MODULE);
    const ok = (x: typeof p, st: string): boolean => x.state === st && (x.qualifier === 'Ready' || x.qualifier === '?');
    if (!ok(p, 'PRIM') || !ok(s, 'SECOND')) throw new Error(`module ${MODULE} not PRIM(Ready)/SECOND(Ready): ${p.node} ${p.state}(${p.qualifier}), ${s.node} ${s.state}(${s.qualifier})`);
  }

  /** The replicated directory on the primary must be stayup's FUSE mount, else we would time a plain directory. */
  async checkMounted(): Promise<string> {
    const r = await this.lab.exec(this.primary, ['cat', '/proc/self/mountinfo']);
    const line = r.stdout.split('\n').find((l) => l.split(' ')[4] === this.opts.dir);
    const fstype = line?.split(' - ')[1]?.split(' ')[0];
    if (!fstype?.startsWith('fuse')) throw new Error(`${this.opts.dir} on ${this.primary} is not a FUSE mount (${fstype ?? 'not a mount point'}): the module runs but does not intercept the directory`);
    return fstype;
  }

  /**
   * The resync figure: a data set written through replication, the secondary stopped, a defined part of
   * every file rewritten on the primary, the secondary started again and timed until SECOND (Ready). The
   * same stop/start cycle with nothing changed is timed first: its time is the floor of the measurement.
   */
  async resync(helper: string, sizes: ResyncSizes): Promise<ResyncResult> {
    const data = join(this.opts.dir, 'resync');
    const run = async (node: string, argv: string[], timeoutMs = 600_000): Promise<string> => {
      const r = await this.lab.exec(node, argv, { timeoutMs });
      if (r.code !== 0) throw new Error(`[${node}] ${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-500)}`);
      return r.stdout;
    };
    const ds = JSON.parse(await run(this.primary, [helper, 'dataset', data, String(sizes.files), String(sizes.fileMib)])) as { bytes: number; seconds: number };
    this.log(`    resync: data set ${sizes.files} x ${sizes.fileMib} MiB written through replication in ${ds.seconds.toFixed(1)} s`);
    await this.checkReady();
    await this.compare(data, sizes.files, 'after the data set was written');

    const stopSecondary = async (): Promise<void> => {
      await this.cluster.cliOk(this.secondary, ['stop', '-m', MODULE], 300_000);
      await this.waitState(this.secondary, 'STOP', 300);
    };
    /** start on the secondary -> SECOND (Ready): wall seconds and the module log's reintegration time. */
    const startSecondary = async (): Promise<{ wallS: number; logS: number | null; after: Record<string, number> }> => {
      const after = this.lastSeq(this.secondary);
      const afterBy = Object.fromEntries(this.lab.servers.map((n) => [n, this.lastSeq(n)]));
      const t0 = process.hrtime.bigint();
      await this.cluster.cliOk(this.secondary, ['start', '-m', MODULE]);
      await this.waitState(this.secondary, 'SECOND', 3600);
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      await this.waitState(this.primary, 'PRIM', 120);
      await this.checkReady();
      const recs = this.records(this.secondary).filter((r) => r.seq > after);
      const begin = recs.find((r) => /SECOND Transient/.test(r.message));
      const end = recs.find((r) => /Reintegration ended/.test(r.message));
      const logS = begin && end ? (Date.parse(end.ts) - Date.parse(begin.ts)) / 1000 : null;
      return { wallS, logS, after: afterBy };
    };

    await stopSecondary();
    const empty = await startSecondary();
    this.log(`    resync: empty stop/start cycle of ${this.secondary} (nothing changed): SECOND (Ready) after ${empty.wallS.toFixed(3)} s`);

    await stopSecondary();
    const mu = JSON.parse(await run(this.primary, [helper, 'mutate', data, String(sizes.files), String(sizes.every), '1'])) as { bytes_changed: number; blocks: number; seconds: number };
    this.log(`    resync: ${this.secondary} stopped; ${mu.blocks} blocks of 1 MiB (every ${sizes.every}th of each file, ${((mu.bytes_changed / ds.bytes) * 100).toFixed(1)} %) rewritten in place on ${this.primary}`);
    const full = await startSecondary();
    await this.compare(data, sizes.files, 'after the resync');
    const sent = await this.bytesSent(full.after);
    await run(this.primary, ['rm', '-rf', data]);
    const r3 = (x: number): number => Math.round(x * 1000) / 1000;
    return {
      resync_mib_s: Math.round((mu.bytes_changed / (1024 * 1024) / full.wallS) * 10) / 10,
      resync_bytes_sent: sent?.bytes ?? null,
      bytes_sent_source: sent?.source ?? null,
      reported: sent?.reported ?? null,
      resync_s: r3(full.wallS),
      empty_resync_s: r3(empty.wallS),
      resync_log_s: full.logS === null ? null : r3(full.logS),
      resync_changed_bytes: mu.bytes_changed,
      dataset_bytes: ds.bytes,
    };
  }

  /** The module log of a node (every level), read from the host side of its /var/lib/stayup. */
  private records(node: string): LogRec[] {
    const base = this.lab.hostPath(node, `/var/lib/stayup/modvar/${MODULE}/log/verbose.jsonl`);
    const out: LogRec[] = [];
    for (const f of [`${base}.1`, base]) {
      if (!existsSync(f)) continue;
      for (const line of readFileSync(f, 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const r = JSON.parse(line) as { seq?: number; ts?: string; level?: string; message?: string; fields?: Record<string, unknown> };
          if (typeof r.seq === 'number') out.push({ seq: r.seq, ts: String(r.ts ?? ''), level: String(r.level ?? ''), message: String(r.message ?? ''), ...(r.fields ? { fields: r.fields } : {}) });
        } catch {
          /* a torn last line */
        }
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The last distinct error (E) messages of both nodes' module logs, to say why a wait failed. */
  private lastErrors(): string {
    const msgs = this.lab.servers.flatMap((n) => this.records(n).filter((r) => r.level === 'E').slice(-20).map((r) => `${n}: ${r.message}`));
    return [...new Set(msgs)].slice(-3).join(' | ');
  }

  private lastSeq(node: string): number {
    const r = this.records(node);
    return r.length ? r[r.length - 1]!.seq : 0;
  }

  /** sha256 of every data-set file on both servers (read from the host side of their private dirs). */
  private async compare(data: string, files: number, when: string): Promise<void> {
    const names = Array.from({ length: files }, (_, i) => `d${String(i).padStart(3, '0')}`);
    const p = this.lab.hostPath(this.primary, data);
    const s = this.lab.hostPath(this.secondary, data);
    const extra = existsSync(s) ? readdirSync(s).filter((n) => !names.includes(n)) : [];
    if (extra.length) throw new Error(`${when}: the secondary has files the primary never wrote: ${extra.join(', ')}`);
    for (const n of names) {
      const [a, b] = await Promise.all([sha256(join(p, n)), sha256(join(s, n))]);
      if (a === undefined) throw new Error(`${when}: ${data}/${n} is missing on ${this.primary}`);
      if (a !== b) throw new Error(`${when}: ${data}/${n} differs between ${this.primary} (${a.slice(0, 12)}) and ${this.secondary} (${b?.slice(0, 12) ?? 'missing'})`);
    }
  }

  /**
   * Bytes the resync sent, from what this stayup version exposes: a `bytesSent` (data.resync.bytesSent)
   * line of `stayup state -v` (secondary first, then primary), else the replication layer's "Reintegration
   * ended (scope): N files, B bytes sent in D ms" module log record (fields bytesSent, filesCopied,
   * durationMs; the primary, which sends, logs it) written after `after` (node -> last seq before the start).
   * undefined when none carries one.
   */
  private async bytesSent(after: Record<string, number>): Promise<{ bytes: number; source: string; reported?: ResyncResult['reported'] } | undefined> {
    for (const node of [this.secondary, this.primary]) {
      const v = await this.cluster.verbose(node, MODULE);
      const m = /bytesSent\D{0,3}(\d+)/i.exec(v) ?? /resync[^\n]*?(\d+)\s*bytes\s+sent/i.exec(v);
      if (m) return { bytes: Number(m[1]), source: `stayup state -v -m ${MODULE} on ${node}` };
    }
    for (const node of [this.primary, this.secondary]) {
      const recs = this.records(node).filter((r) => r.seq > (after[node] ?? 0) && /Reintegration ended/.test(r.message));
      for (const r of recs.reverse()) {
        const f = r.fields ?? {};
        const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
        const reported = { ...(typeof f.scope === 'string' ? { scope: f.scope } : {}), ...(num(f.filesCopied) !== undefined ? { files_copied: num(f.filesCopied) } : {}), ...(num(f.durationMs) !== undefined ? { duration_ms: Math.round(num(f.durationMs)!) } : {}) };
        if (num(f.bytesSent) !== undefined) return { bytes: num(f.bytesSent)!, source: `module log on ${node}: "${r.message}" (field bytesSent)`, reported };
        const m = /(\d+)\s*bytes\s+sent/i.exec(r.message);
        if (m) return { bytes: Number(m[1]), source: `module log on ${node}: "${r.message}"`, reported };
      }
    }
    return undefined;
  }
}

async function sha256(file: string): Promise<string | undefined> {
  if (!existsSync(file)) return undefined;
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}
