// A PostgreSQL mirror module for the lab: the Debian package's server, its data directory replicated
// (<rfs>), started by start_prim on whichever server is primary and stopped by stop_prim, reached by
// clients on the virtual IP. The end-to-end database test uses it.
//
// Two things every server of a mirror sees that a single-server PostgreSQL never does, and the scripts
// handle:
// - $PGDATA/postmaster.pid is replicated. On a new primary it names the postmaster of the server that ran
//   the database before (the peer, or this server before a crash), none of which runs here: start_prim
//   removes it before starting, and stop_prim never reads it to decide what to stop.
// - What identifies this server's own postmaster is the lock file of its unix socket, in a directory that
//   belongs to the server (not replicated, and gone when the server reboots).
import { appendFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { StayupError } from '../errors/stayup-error.ts';
import type { Lab } from './lab.ts';
import { labMirrorPackage } from './mirror-module.ts';
import { mustRun, run } from './sys.ts';

/** Where the Debian packages put each major version's programs. */
const DEBIAN_PG_LIB = '/usr/lib/postgresql';

/** The newest installed PostgreSQL's bin directory (initdb, pg_ctl, postgres, psql), or null. */
export function findPostgresBin(): string | null {
  if (!existsSync(DEBIAN_PG_LIB)) return null;
  const versions = readdirSync(DEBIAN_PG_LIB)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(DEBIAN_PG_LIB, v, 'bin');
    if (['initdb', 'pg_ctl', 'postgres', 'psql'].every((p) => existsSync(join(bin, p)))) return bin;
  }
  return null;
}

export interface LabPostgresOptions {
  /** The virtual IP clients use. */
  vip: string;
  pulseMs: number;
  timeoutMs: number;
  /** The PostgreSQL bin directory (findPostgresBin()). */
  pgBin: string;
  /** The replicated directory; the data directory is its `data` subdirectory (see postgresDataDir). */
  replicatedDir: string;
  /** TCP port (default 5432). */
  port?: number;
  async?: 'second' | 'none';
}

export const postgresDataDir = (replicatedDir: string): string => join(replicatedDir, 'data');
/** The unix socket's directory: per server (/run is each lab server's own tmpfs), never replicated. */
export const POSTGRES_RUN_DIR = '/run/stayup-pg';
/** The server log: per server, kept across a crash. */
export const POSTGRES_LOG = '/var/log/stayup/postgresql.log';

/** Prints the pid of the postmaster this server started, if it runs (shared by both scripts). */
const OWN_POSTMASTER = `own_postmaster() {
  # The socket lock file's first line is the postmaster's pid. It must be a postgres process of this
  # server (same mount namespace): a pid is only a number, and a stale file may name a reused one.
  lock="$PGRUN/.s.PGSQL.$PGPORT.lock"
  [ -r "$lock" ] || return 1
  pid=$(head -n 1 "$lock")
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = postgres ] || return 1
  [ "$(readlink /proc/"$pid"/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] || return 1
  echo "$pid"
}
`;

const START_PRIM = `#!/bin/sh
# start_prim: starts PostgreSQL on the replicated data directory. After a failover the server finds the
# data as the crashed primary left it and recovers from its WAL before it accepts connections.
set -u
${OWN_POSTMASTER}
if pid=$(own_postmaster); then
  echo "postgres already running (pid $pid)"
  exit 0
fi
mkdir -p "$PGRUN"
chown postgres:postgres "$PGRUN"
touch "$PGLOG"
chown postgres:postgres "$PGLOG"
# Replicated from whichever server ran the database last: it names a postmaster that does not run here.
rm -f "$PGDATA/postmaster.pid"
cd /
runuser -u postgres -- "$PGBIN/pg_ctl" start -D "$PGDATA" -l "$PGLOG" -w -t "$PGSTARTSECONDS" \\
  -o "-p $PGPORT -k $PGRUN" || { echo "pg_ctl start failed; the server log ends with:" >&2; tail -n 20 "$PGLOG" >&2; exit 1; }
echo "postgres started (pid $(own_postmaster))"
`;

const STOP_PRIM = `#!/bin/sh
# stop_prim [force] current next action: stops the postmaster this server started: a fast shutdown
# (pg_ctl stop -m fast: transactions rolled back, a checkpoint written), force: immediate (crash-like, the
# next start recovers). A server where none runs (a secondary, whose postmaster.pid is the peer's) does nothing.
set -u
${OWN_POSTMASTER}
mode=fast
[ "\${1:-}" = force ] && mode=immediate
pid=$(own_postmaster) || { echo "postgres not running here"; exit 0; }
cd /
if [ "$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null)" = "$pid" ]; then
  runuser -u postgres -- "$PGBIN/pg_ctl" stop -D "$PGDATA" -m "$mode" -w -t "$PGSTOPSECONDS" || exit 1
else
  # The data directory's pid file is not this postmaster's: signal it directly (SIGINT fast, SIGQUIT immediate).
  if [ "$mode" = fast ]; then kill -INT "$pid"; else kill -QUIT "$pid"; fi
fi
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1))
  [ $i -gt $((PGSTOPSECONDS * 10)) ] && { echo "postgres (pid $pid) still running" >&2; exit 1; }
  sleep 0.1
done
echo "postgres stopped ($mode)"
`;

/** Longest crash recovery start_prim waits for; the module's script limit is above it. */
const START_SECONDS = 100;
const STOP_SECONDS = 60;

/** The module package: userconfig.xml (virtual IP, <rfs> on the replicated directory) and both scripts. */
export function labPostgresPackage(o: LabPostgresOptions): Promise<Buffer> {
  return labMirrorPackage({
    vip: o.vip,
    pulseMs: o.pulseMs,
    timeoutMs: o.timeoutMs,
    startService: false,
    rfs: { dirs: [o.replicatedDir], async: o.async ?? 'second' },
    bin: { start_prim: START_PRIM, stop_prim: STOP_PRIM },
    vars: {
      PGBIN: o.pgBin,
      PGDATA: postgresDataDir(o.replicatedDir),
      PGPORT: String(o.port ?? 5432),
      PGRUN: POSTGRES_RUN_DIR,
      PGLOG: POSTGRES_LOG,
      PGSTARTSECONDS: String(START_SECONDS),
      PGSTOPSECONDS: String(STOP_SECONDS),
    },
    niceStopTimeout: `${START_SECONDS + 20}s`,
    forceStopTimeout: `${STOP_SECONDS + 20}s`,
  });
}

/**
 * A new database cluster in `replicatedDir`/data on one server (initdb as postgres; fsync and
 * synchronous_commit stay on, the defaults), listening on every address of the server, trusting the lab's
 * subnet. Run it before the module's first start: that start copies it to the other server.
 */
export async function initPostgresData(lab: Lab, node: string, o: { pgBin: string; replicatedDir: string; port?: number }): Promise<void> {
  const data = postgresDataDir(o.replicatedDir);
  await lab.exec(node, ['sh', '-c', `mkdir -p '${o.replicatedDir}' && install -d -o postgres -g postgres -m 0700 '${data}'`], { check: true });
  await lab.exec(node, ['runuser', '-u', 'postgres', '--', join(o.pgBin, 'initdb'), '-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C'], {
    check: true,
    cwd: '/',
    timeoutMs: 180_000,
  });
  const conf = [
    '',
    '# stayup lab: clients come over the virtual IP; the unix socket is in a per-server directory (start_prim -k)',
    "listen_addresses = '*'",
    `port = ${o.port ?? 5432}`,
    'shared_buffers = 32MB',
    'max_connections = 20',
    '',
  ].join('\n');
  appendFileSync(lab.hostPath(node, join(data, 'postgresql.conf')), conf);
  appendFileSync(lab.hostPath(node, join(data, 'pg_hba.conf')), `\n# stayup lab: the lab's own subnet\nhost all all ${lab.state.subnet} trust\n`);
}

/**
 * Removes the System V shared memory segments the given postmasters created that nothing is attached to.
 * A postmaster killed with its server leaves its small interlock segment behind; the lab's servers share the
 * host's IPC namespace, so it would outlive the lab. Returns the segment ids removed.
 */
export async function removeOrphanSharedMemory(postmasterPids: ReadonlySet<number>): Promise<number[]> {
  // ipcs -m -p: shmid owner cpid lpid; ipcs -m: key shmid owner perms bytes nattch status.
  const creators = new Map<number, number>();
  for (const l of (await mustRun('ipcs', ['-m', '-p'])).stdout.split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 4 && /^\d+$/.test(f[0]!) && /^\d+$/.test(f[2]!)) creators.set(Number(f[0]), Number(f[2]));
  }
  const removed: number[] = [];
  for (const l of (await mustRun('ipcs', ['-m'])).stdout.split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f.length < 6 || !/^0x/.test(f[0]!)) continue;
    const id = Number(f[1]);
    if (f[5] !== '0' || !postmasterPids.has(creators.get(id) ?? -1)) continue;
    const r = await run('ipcrm', ['-m', String(id)]);
    if (r.code !== 0) throw new StayupError('LAB_COMMAND_FAILED', `ipcrm -m ${id}: ${r.stderr.trim()}`);
    removed.push(id);
  }
  return removed;
}
