import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.ts';
import { configureCluster, installModule, labSkipReason, firstStartReplicated, rejoinAsSecondary, startDaemons, stayupOn, waitModuleState } from '../../src/lab/stayup-cluster.ts';
import { findPostgresBin, initPostgresData, labPostgresPackage, POSTGRES_LOG, removeOrphanSharedMemory } from '../../src/lab/postgres-module.ts';

// A real database on a replicated directory: PostgreSQL (the Debian package) with its data directory
// replicated by a mirror module, started by start_prim on the primary and reached on the virtual IP. A
// client in the lab's client namespace commits numbered inserts, one transaction each, and records a number
// only once its COMMIT returned. The primary server is killed (every process, link down) several times;
// after each failover the new primary's PostgreSQL recovers from its WAL and every recorded number must be
// in the table. The old primary comes back and is reintegrated before the next round.

const pgBin = findPostgresBin();
const skip = labSkipReason({ replication: true }) || (pgBin ? false : 'PostgreSQL is not installed (scripts/setup.sh installs the postgresql package)');
const password = 'lab-admin-password';
const MODULE = 'pg';
const REPLICATED = '/var/lib/app/pg';
const PORT = 5432;
const KILLS = Number(process.env['STAYUP_PG_KILLS'] ?? 5);

/**
 * The counting client: an endless stream of autocommit INSERTs into psql; psql runs `\echo ok N` only after
 * the INSERT before it returned, i.e. after its COMMIT. Line-buffered (stdbuf), so a kill loses no printed line.
 */
const COUNTER_SH = `#!/bin/sh
# pg-counter.sh PSQL HOST PORT FIRST
awk -v n="$4" 'BEGIN { for (;;) { printf "INSERT INTO counts VALUES (%d);\\n\\\\echo ok %d\\n", n, n; n++ } }' |
  stdbuf -oL "$1" -X -q -v ON_ERROR_STOP=1 -h "$2" -p "$3" -U postgres -d postgres
`;

describe('PostgreSQL on a replicated data directory: committed transactions survive primary crashes', { skip }, () => {
  const name = `pg${process.pid % 100000}`;
  let lab: Lab;
  let vip = '';
  const report: string[] = [];
  /** Every postmaster the lab's servers started (from their logs): their shared memory is cleaned up at the end. */
  const postmasters = new Set<number>();

  const waitState = (node: string, state: string, timeoutS = 60): Promise<void> => waitModuleState(lab, node, MODULE, state, timeoutS);
  const psql = (sql: string, timeoutMs = 30_000) =>
    lab.exec('client', [join(pgBin!, 'psql'), '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', vip, '-p', String(PORT), '-U', 'postgres', '-d', 'postgres', '-c', sql], {
      env: { PGCONNECT_TIMEOUT: '3' },
      timeoutMs,
    });
  /** Polls the database on the virtual IP until a query answers; returns its output. */
  const queryWhenUp = async (sql: string, timeoutMs = 120_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await psql(sql);
      if (r.code === 0) return r.stdout;
      if (Date.now() > deadline) assert.fail(`the database on ${vip} does not answer: ${r.stderr.trim()}`);
      await sleep(100);
    }
  };
  const pgLog = (node: string): string => {
    const f = lab.hostPath(node, POSTGRES_LOG);
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  };
  const notePostmasters = (): void => {
    for (const n of lab.servers) for (const m of pgLog(n).matchAll(/\[(\d+)\] LOG: {2}starting PostgreSQL/g)) postmasters.add(Number(m[1]));
  };
  const committedIn = (file: string): number[] =>
    readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^ok (\d+)$/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number);

  before(async () => {
    lab = await Lab.up({ name, servers: 2 });
    vip = lab.ip(100);
    await startDaemons(lab, { password });
    await configureCluster(lab, password);
    await lab.exec('node2', ['mkdir', '-p', REPLICATED], { check: true });
    await initPostgresData(lab, 'node1', { pgBin: pgBin!, replicatedDir: REPLICATED, port: PORT });
    await installModule(lab, MODULE, await labPostgresPackage({ vip, pulseMs: 100, timeoutMs: 1000, pgBin: pgBin!, replicatedDir: REPLICATED, port: PORT, async: 'second' }));
    writeFileSync(join(lab.stateDir, 'pg-counter.sh'), COUNTER_SH, { mode: 0o755 });
  });

  after(async () => {
    try {
      if (!lab) return;
      notePostmasters();
      await Lab.down(name);
      // A postmaster killed with its server leaves a System V segment in the host's IPC namespace.
      const removed = await removeOrphanSharedMemory(postmasters);
      report.push(`clean-up: ${postmasters.size} postmasters ran; ${removed.length} shared memory segments of killed ones removed`);
    } finally {
      if (report.length) process.stdout.write(`# postgres figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    }
  });

  it('a first start copies the initdb-made data directory to node2; PostgreSQL runs on node1 and answers on the virtual IP', async () => {
    const full = await firstStartReplicated(lab, MODULE, 'node1');
    assert.equal(await queryWhenUp('SELECT inet_server_addr()'), `${vip}\n`);
    await queryWhenUp('CREATE TABLE counts (n integer PRIMARY KEY)');
    assert.equal(await queryWhenUp("SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit')"), 'on on\n');
    report.push(`first start: ${full.line} (the data directory initdb made on node1)`);
  });

  it(`${KILLS} kills of the primary server while a client commits numbered inserts: every committed number is on the new primary`, async () => {
    let prim = 'node1';
    let next = 1;
    let committedTotal = 0;
    const takeovers: number[] = [];
    for (let round = 1; round <= KILLS; round++) {
      const second = prim === 'node1' ? 'node2' : 'node1';
      const out = join(lab.stateDir, 'logs', `pg-counter-${round}.log`);
      const counter = await lab.spawn('client', ['sh', join(lab.stateDir, 'pg-counter.sh'), join(pgBin!, 'psql'), vip, String(PORT), String(next)], { logFile: out });
      // Let it commit a while (at least 20), then kill at a random moment.
      const started = Date.now();
      while (committedIn(out).length < 20) {
        if (Date.now() - started > 60_000) assert.fail(`round ${round}: the client committed ${committedIn(out).length} inserts in 60 s: ${readFileSync(out, 'utf8').slice(-500)}`);
        await sleep(50);
      }
      await sleep(500 + Math.floor(Math.random() * 2000));
      const logBefore = pgLog(second).length;
      const t0 = Date.now();
      await lab.killServer(prim);
      // Nothing can commit any more; the client would only wait for its connection to time out.
      await lab.kill(counter.pid);
      const committed = committedIn(out);
      assert.ok(committed.length >= 20, `round ${round}: ${committed.length} commits`);
      assert.deepEqual(committed, Array.from({ length: committed.length }, (_, k) => next + k), `round ${round}: the client's numbers`);
      await waitState(second, 'ALONE', 180);
      const aloneMs = Date.now() - t0;
      const rows = (await queryWhenUp('SELECT n FROM counts ORDER BY n')).split('\n').filter(Boolean).map(Number);
      const answerMs = Date.now() - t0;
      const found = new Set(rows);
      const missing = committed.filter((n) => !found.has(n));
      assert.deepEqual(missing.slice(0, 10), [], `round ${round}: ${missing.length} committed numbers missing on ${second} (committed ${committed[0]}..${committed.at(-1)})`);
      committedTotal += committed.length;
      assert.ok(rows.length >= committedTotal, `round ${round}: ${rows.length} rows, ${committedTotal} commits so far`);
      // The new primary's PostgreSQL found the data as the crash left it and replayed its WAL.
      const startLog = pgLog(second).slice(logBefore);
      assert.match(startLog, /database system was (interrupted|not properly shut down)/, `round ${round}: ${second}'s PostgreSQL did not recover from a crash:\n${startLog.slice(-2000)}`);
      const redo = /redo done at \S+/.exec(startLog)?.[0] ?? 'no redo needed';
      takeovers.push(answerMs);
      report.push(
        `round ${round}: ${prim} killed after ${committed.length} commits (${committed[0]}..${committed.at(-1)}); ${second} ALONE after ${aloneMs} ms, ` +
          `the database answered on the virtual IP after ${answerMs} ms (crash recovery: ${redo}); all ${committed.length} found, ${rows.length} rows, max ${rows.at(-1)}`,
      );
      // The old primary comes back and is reintegrated before it can be the next survivor.
      const back = await rejoinAsSecondary(lab, prim, MODULE, second);
      report.push(`round ${round}: ${prim} back as SECOND: ${back.line}`);
      next = (rows.at(-1) ?? 0) + 1;
      prim = second;
    }
    const sorted = [...takeovers].sort((a, b) => a - b);
    report.push(`${KILLS} failovers, kill -> database answering on the virtual IP: min ${sorted[0]} ms, median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms; ${committedTotal} commits, none lost`);
  });

  it('a clean stop of the module stops PostgreSQL on the primary only (the secondary has none to stop)', async () => {
    const prim = (await stayupOn(lab, 'node1', ['state', '-m', MODULE, '-lq'])).stdout.includes('PRIM') ? 'node1' : 'node2';
    const r = await stayupOn(lab, 'node1', ['-H', '*', 'stop', '-m', MODULE], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const n of lab.servers) await waitState(n, 'STOP', 120);
    assert.match(pgLog(prim), /database system is shut down\s*$/);
    // The data directory is a plain directory again; its size, for the record.
    const du = await lab.exec(prim, ['du', '-sb', REPLICATED]);
    report.push(`clean stop: PostgreSQL on ${prim} shut down; replicated data ${du.stdout.split(/\s/)[0]} bytes; log ${statSync(lab.hostPath(prim, POSTGRES_LOG)).size} bytes`);
  });
});
