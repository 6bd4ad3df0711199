import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../../src/lab/lab.ts';
import { installModule, labSkipReason, firstStartReplicated, rejoinAsSecondary, upStayupLab, waitModuleState } from '../../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../../src/lab/mirror-module.ts';

// Synchronous replication end to end: two lab servers, real daemons, a mirror module replicating
// /var/lib/app/data (each server has its own /var/lib/app). A writer appends numbered records with an fsync
// after each and prints the number once fsync returned; the primary server is killed at a random moment,
// 20 times. After each failover every printed record must be on the new primary. While the old primary is
// down the new one changes the data (more records, a part of a large file rewritten, files created, renamed
// and removed); the old primary then comes back and is reintegrated: the bytes it was sent must be about what
// changed (not the data set), and both copies must then be identical.

const skip = labSkipReason({ replication: true });
const password = 'lab-admin-password';
const MODULE = 'rep';
const DATA = '/var/lib/app/data';
const ROUNDS = Number(process.env['STAYUP_REPL_ROUNDS'] ?? 20);
const STATIC_BYTES = 32 * 1024 * 1024;
/**
 * The journal's zone (ruzone_blocksize), 1 MiB rather than the 8 MiB default: the block size a crashed node's
 * own recent files are compared in, so whichever way a changed range reaches the reintegration (journaled
 * zone, or block comparison) it costs at most the 1 MiB-aligned blocks around it.
 */
const ZONE_BYTES = 1024 * 1024;

/** Appends numbered records (fsync after each) and prints each number once fsync returned; COUNT: then exits. */
const WRITER_PY = `import os, sys
path, n = sys.argv[1], int(sys.argv[2])
end = n + int(sys.argv[3]) if len(sys.argv) > 3 else None
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
while end is None or n < end:
    os.write(fd, b"%010d\\n" % n)
    os.fsync(fd)
    print(n, flush=True)
    n += 1
`;

/**
 * What an application does to the data while the peer is away: rewrites a part of static.bin in place,
 * creates three files under away/, renames one of an earlier round's and removes another. Prints what it
 * changed, as JSON, for the test's bounds.
 */
const CHANGE_PY = `import json, os, random, sys
data, tag = sys.argv[1], sys.argv[2]
rnd = random.Random()
def put(path, blob, offset=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if offset is not None:
            os.lseek(fd, offset, os.SEEK_SET)
        os.write(fd, blob)
        os.fsync(fd)
    finally:
        os.close(fd)
size = os.path.getsize(os.path.join(data, "static.bin"))
length = rnd.randrange(64 * 1024, 512 * 1024)
offset = rnd.randrange(0, size - length)
put(os.path.join(data, "static.bin"), os.urandom(length), offset)
away = os.path.join(data, "away")
os.makedirs(away, exist_ok=True)
older = sorted(os.listdir(away))
created = []
for k in range(3):
    name = "%s-%d.bin" % (tag, k)
    blob = os.urandom(rnd.randrange(4 * 1024, 64 * 1024))
    put(os.path.join(away, name), blob)
    created.append({"name": name, "bytes": len(blob)})
renamed = removed = None
if len(older) >= 2:
    renamed = {"from": older[0], "to": "renamed-" + older[0], "bytes": os.path.getsize(os.path.join(away, older[0]))}
    os.rename(os.path.join(away, older[0]), os.path.join(away, renamed["to"]))
    removed = older[1]
    os.unlink(os.path.join(away, removed))
dfd = os.open(away, os.O_RDONLY)
os.fsync(dfd)
os.close(dfd)
print(json.dumps({"static": {"offset": offset, "length": length}, "created": created, "renamed": renamed, "removed": removed}))
`;

interface Change {
  static: { offset: number; length: number };
  created: { name: string; bytes: number }[];
  renamed: { from: string; to: string; bytes: number } | null;
  removed: string | null;
}

describe('replication: no acknowledged write lost across 20 primary crashes; resync copies only what changed', { skip }, () => {
  const name = `rp${process.pid % 100000}`;
  let lab: Lab;
  const report: string[] = [];

  const waitState = (node: string, state: string, timeoutS = 60): Promise<void> => waitModuleState(lab, node, MODULE, state, timeoutS);
  const records = async (node: string): Promise<number[]> => {
    const r = await lab.exec(node, ['sh', '-c', `cat ${DATA}/records.txt 2>/dev/null || true`]);
    return r.stdout.split('\n').filter(Boolean).map(Number);
  };
  /**
   * Every object of the data (type, path, mode, owner; for files size, mtime and md5), read through the
   * node's own view of DATA (the secondary's read-only mount included).
   */
  const manifest = async (node: string): Promise<{ lines: string[]; files: number; bytes: number }> => {
    const list = `find . -type f -printf 'f %p %m %u:%g %s %T@\\n' -o -printf '%y %p %m %u:%g\\n' | sort`;
    const sums = 'find . -type f -print0 | sort -z | xargs -0 md5sum';
    const r = await lab.exec(node, ['sh', '-c', `cd ${DATA} && ${list} && ${sums}`], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${node}: manifest of ${DATA}: ${r.stderr}`);
    const lines = r.stdout.split('\n').filter(Boolean);
    const files = lines.filter((l) => l.startsWith('f '));
    return { lines, files: files.length, bytes: files.reduce((sum, l) => sum + Number(l.split(' ')[4]), 0) };
  };
  const identical = async (a: string, b: string, when: string): Promise<{ files: number; bytes: number }> => {
    // Both reads at rest: nothing writes between them.
    const [ma, mb] = [await manifest(a), await manifest(b)];
    assert.deepEqual(mb.lines, ma.lines, `${when}: ${b}'s copy differs from ${a}'s`);
    return { files: ma.files, bytes: ma.bytes };
  };
  before(async () => {
    lab = await upStayupLab({ name, password, dirs: [DATA], files: { '/srv/writer.py': WRITER_PY, '/srv/change.py': CHANGE_PY } });
    // Some data that does not change, so a resync has something it must not copy.
    await lab.exec('node1', ['sh', '-c', `head -c ${STATIC_BYTES} /dev/urandom > ${DATA}/static.bin`], { check: true });
    await installModule(lab, MODULE, await labMirrorPackage({ vip: lab.ip(100), pulseMs: 100, timeoutMs: 1000, startService: false, rfs: { dirs: [DATA], async: 'second', zoneBytes: ZONE_BYTES } }));
  });

  after(async () => {
    if (report.length) process.stdout.write(`# replication figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    if (lab) await Lab.down(name);
  });

  it('a first start copies the data to the secondary (full reintegration), which then is a byte-identical copy', async () => {
    const figures = await firstStartReplicated(lab, MODULE, 'node1');
    const same = await identical('node1', 'node2', 'first start');
    // The secondary's copy is read-only to applications.
    const w = await lab.exec('node2', ['sh', '-c', `echo x > ${DATA}/nope.txt`]);
    assert.notEqual(w.code, 0);
    assert.match(w.stderr, /Read-only/i);
    assert.ok(figures.bytesSent >= STATIC_BYTES, `a first start copies the data: ${figures.line}`);
    report.push(`first start: ${figures.line}; data ${same.bytes} bytes in ${same.files} files, identical on node2`);
  });

  it(`${ROUNDS} crashes of the primary while it writes and fsyncs records: every acknowledged record survives; the returning node gets only what changed`, async () => {
    let prim = 'node1';
    let next = 1;
    const sentPerChanged: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const second = prim === 'node1' ? 'node2' : 'node1';
      const out = join(lab.stateDir, 'logs', `writer-${round}.log`);
      await lab.spawn(prim, ['python3', '/srv/writer.py', `${DATA}/records.txt`, String(next)], { logFile: out });
      await sleep(300 + Math.floor(Math.random() * 1200));
      await lab.killServer(prim);
      // Numbers only: a write cut by the crash (the daemon may die before the writer) ends in a traceback.
      const printed = readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => /^\d+$/.test(l))
        .map(Number);
      assert.deepEqual(printed, Array.from({ length: printed.length }, (_, k) => next + k), `round ${round}: the writer's numbers`);
      const acked = printed.length ? printed[printed.length - 1]! : next - 1;
      await waitState(second, 'ALONE', 60);
      const have = await records(second);
      const missing: number[] = [];
      const present = new Set(have);
      for (let k = 1; k <= acked; k++) if (!present.has(k)) missing.push(k);
      assert.deepEqual(missing.slice(0, 10), [], `round ${round}: records acknowledged on ${prim} but missing on ${second} (acked up to ${acked})`);
      // Contiguous: no hole before the last record either.
      const last = have.length ? have[have.length - 1]! : 0;
      assert.deepEqual(have, Array.from({ length: have.length }, (_, k) => k + 1), `round ${round}: records not contiguous`);

      // The survivor serves alone and the data changes while its peer is down.
      const added = 50 + Math.floor(Math.random() * 150);
      const w = await lab.exec(second, ['python3', '/srv/writer.py', `${DATA}/records.txt`, String(last + 1), String(added)], { timeoutMs: 120_000 });
      assert.equal(w.code, 0, `round ${round}: writer on ${second}: ${w.stderr}`);
      const c = await lab.exec(second, ['python3', '/srv/change.py', DATA, `r${round}`], { timeoutMs: 120_000 });
      assert.equal(c.code, 0, `round ${round}: changes on ${second}: ${c.stderr}`);
      const change = JSON.parse(c.stdout) as Change;
      const recordsBytes = (last + added) * 11;

      // The old primary returns and is reintegrated.
      const figures = await rejoinAsSecondary(lab, prim, MODULE, second);
      const same = await identical(second, prim, `round ${round}`);

      // What the peer lacked for certain: the rewritten part of static.bin and the new files (random bytes).
      // Records it may partly have: the crashed primary wrote some that were never acknowledged, and the
      // survivor wrote the same numbers at the same offsets.
      const created = change.created.reduce((sum, f) => sum + f.bytes, 0);
      const changedAtLeast = change.static.length + created;
      // The most it may be sent: the zones the rewrite touched, the new and renamed files whole, and the
      // records file whole (the crashed primary's own recent file is compared block by block).
      const zones = Math.floor((change.static.offset + change.static.length - 1) / ZONE_BYTES) - Math.floor(change.static.offset / ZONE_BYTES) + 1;
      const sentAtMost = zones * ZONE_BYTES + created + (change.renamed?.bytes ?? 0) + Math.ceil(recordsBytes / ZONE_BYTES) * ZONE_BYTES;
      const fact =
        `round ${round}: ${prim} killed after record ${acked} (${last} on ${second}); while it was down ${second} wrote records ${last + 1}..${last + added}, ` +
        `rewrote ${change.static.length} bytes of static.bin, created ${change.created.length} files (${created} bytes)` +
        `${change.renamed ? ', renamed 1, removed 1' : ''}; back as SECOND: ${figures.line}; ` +
        `sent ${figures.bytesSent} of ${same.bytes} data bytes (${((figures.bytesSent / same.bytes) * 100).toFixed(1)} %), changed at least ${changedAtLeast}; both copies identical (${same.files} files)`;
      report.push(fact);
      assert.ok(figures.bytesSent >= changedAtLeast, `the reintegration sent less than what changed: ${fact}`);
      assert.ok(figures.bytesSent <= sentAtMost, `the reintegration sent more than the changed zones (at most ${sentAtMost}): ${fact}`);
      assert.ok(figures.bytesSent < same.bytes / 4, `the reintegration sent a large part of the data: ${fact}`);
      sentPerChanged.push(figures.bytesSent / changedAtLeast);
      next = last + added + 1;
      prim = second;
    }
    const sorted = [...sentPerChanged].sort((a, b) => a - b);
    report.push(`bytes sent / bytes changed over ${ROUNDS} reintegrations: min ${sorted[0]!.toFixed(2)}, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)} (zone ${ZONE_BYTES} bytes)`);
  });
});
