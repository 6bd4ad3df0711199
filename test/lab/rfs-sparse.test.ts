import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from '../../src/lab/lab.ts';
import { firstStartReplicated, installModule, labSkipReason, lastReintegrationLine, nextReintegration, stayupOn, upStayupLab, waitModuleState } from '../../src/lab/stayup-cluster.ts';
import { labMirrorPackage } from '../../src/lab/mirror-module.ts';

// Several TB in one module, with real daemons on two lab servers: an application makes three disk images of
// 1, 1 and 2 TiB (4 TiB in all, sparse: a few MiB of data at offsets past 32 bits, past 2^40 and at their
// ends) through the replicated directory. The lab's disk has tens of GB free, so the TB are holes; what is
// shown is that nothing in the replication grows with a file's size rather than its data: live replication,
// the secondary's copies staying sparse, a reintegration after the secondary was stopped (new data far out,
// a hole punched, an image grown by 1 TiB), a full reintegration (`second fullsync`) and rfsverify, each in
// seconds.

const skip = labSkipReason({ replication: true });
const password = 'lab-admin-password';
const MODULE = 'images';
const DATA = '/var/lib/app/images';
const TiB = 1024 ** 4;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Writes `count` bytes of a repeated text at `offset` of a file (creating it), fsyncs. */
const PUT_PY = `import os, sys
path, offset, count, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
data = (text * (count // len(text) + 1))[:count]
os.pwrite(fd, data, offset)
os.fsync(fd)
os.close(fd)
`;

/** Prints "<size> <allocated bytes> <sha256 of the bytes at each offset:count given>" of a file. */
const LOOK_PY = `import hashlib, os, sys
path = sys.argv[1]
st = os.stat(path)
fd = os.open(path, os.O_RDONLY)
sums = [hashlib.sha256(os.pread(fd, int(c), int(o))).hexdigest()[:16] for o, c in (a.split(':') for a in sys.argv[2:])]
print(st.st_size, st.st_blocks * 512, *sums)
`;

describe('lab: a module holding 4 TiB of sparse disk images', { skip }, () => {
  const name = `rs${process.pid % 100000}`;
  let lab: Lab;
  const report: string[] = [];
  const stayup = (node: string, args: string[]) => stayupOn(lab, node, args, { timeoutMs: 300_000 });
  const run = async (node: string, argv: string[]): Promise<string> => (await lab.exec(node, argv, { check: true })).stdout.trim();
  const put = (path: string, offset: number, count: number, text: string) => run('node1', ['python3', '/srv/put.py', `${DATA}/${path}`, String(offset), String(count), text]);
  /** What both nodes must agree on, for one image: its size and the bytes at `probes`; and what each occupies. */
  const look = async (node: string, path: string, probes: Array<[number, number]>): Promise<{ size: number; allocated: number; sums: string }> => {
    const [size, allocated, ...sums] = (await run(node, ['python3', '/srv/look.py', `${DATA}/${path}`, ...probes.map(([o, c]) => `${o}:${c}`)])).split(' ');
    return { size: Number(size), allocated: Number(allocated), sums: sums.join(' ') };
  };
  const probes: Record<string, Array<[number, number]>> = {
    'a.img': [[0, MiB], [4 * GiB + 12_345, MiB], [TiB - MiB, MiB]],
    'b.img': [[0, MiB], [TiB / 2, 2 * MiB], [900 * GiB, MiB], [TiB - MiB, MiB]],
    'c.img': [[0, MiB], [1.5 * TiB, MiB], [2 * TiB - MiB, MiB], [3 * TiB - MiB, MiB]],
  };
  const assertSame = async (what: string): Promise<void> => {
    for (const [img, p] of Object.entries(probes)) {
      const [one, two] = await Promise.all([look('node1', img, p), look('node2', img, p)]);
      assert.equal(two.size, one.size, `${what}: ${img} size`);
      assert.equal(two.sums, one.sums, `${what}: ${img} contents at ${JSON.stringify(p)}`);
      assert.ok(two.allocated <= 64 * MiB, `${what}: ${img} occupies ${two.allocated} bytes on node2: not sparse`);
    }
  };
  const verify = async (what: string): Promise<void> => {
    const t0 = Date.now();
    const v = await stayup('node2', ['rfsverify', '-m', MODULE]);
    report.push(`${what}: rfsverify in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${v.stdout.trim()}`);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /: 3 files, 1 directories compared with node1 in .*; 0 paths differ;/);
  };

  before(async () => {
    lab = await upStayupLab({ name, password, dirs: [DATA], files: { '/srv/put.py': PUT_PY, '/srv/look.py': LOOK_PY } });
    await installModule(lab, MODULE, await labMirrorPackage({ vip: lab.ip(100), pulseMs: 100, timeoutMs: 2000, startService: false, rfs: { dirs: [DATA] } }));
    await firstStartReplicated(lab, MODULE, 'node1', 120);
  });

  after(async () => {
    if (report.length) process.stdout.write(`# sparse images figures\n${report.map((l) => `#   ${l}`).join('\n')}\n`);
    if (lab) await Lab.down(name);
  });

  it('three images of 1, 1 and 2 TiB made through the mount are replicated live, sparse on the secondary; rfsverify agrees', async () => {
    const t0 = Date.now();
    await run('node1', ['truncate', '-s', '1T', `${DATA}/a.img`, `${DATA}/b.img`]);
    await run('node1', ['truncate', '-s', '2T', `${DATA}/c.img`]);
    await put('a.img', 0, 100_000, 'boot sector ');
    await put('a.img', 4 * GiB + 12_345, 2 * MiB, 'past 32 bits ');
    await put('a.img', TiB - 3000, 3000, 'the very end ');
    await put('b.img', TiB / 2, 2 * MiB, 'half way ');
    await put('c.img', 1.5 * TiB, 4 * MiB, 'past 2^40 ');
    report.push(`three images, 4 TiB apparent, ${((Date.now() - t0) / 1000).toFixed(1)} s to make through the mount`);
    await assertSame('live');
    await verify('live');
  });

  it('the secondary stops; the primary writes far out, punches a hole and grows an image by 1 TiB; the reintegration sends only the new data', async () => {
    await stayup('node2', ['stop', '-m', MODULE]);
    await waitModuleState(lab, 'node2', MODULE, 'STOP', 60);
    await waitModuleState(lab, 'node1', MODULE, 'ALONE', 60);
    const previous = await lastReintegrationLine(lab, 'node1', MODULE);
    await put('b.img', 900 * GiB, MiB, 'written alone ');
    await run('node1', ['fallocate', '--punch-hole', '--keep-size', '--offset', String(TiB / 2), '--length', String(MiB), `${DATA}/b.img`]);
    await run('node1', ['truncate', '-s', '3T', `${DATA}/c.img`]);
    await put('c.img', 3 * TiB - MiB, MiB, 'the new end ');
    const t0 = Date.now();
    await stayup('node2', ['start', '-m', MODULE]);
    await waitModuleState(lab, 'node2', MODULE, 'SECOND', 300);
    const figures = await nextReintegration(lab, 'node1', MODULE, previous, 60_000);
    report.push(`back as SECOND in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${figures.line}`);
    // The two new MiB (each compared in 64 KiB blocks of its journaled zone), not the TiB of holes.
    assert.ok(figures.bytesSent >= 2 * MiB && figures.bytesSent <= 16 * MiB, figures.line);
    await assertSame('after the reintegration');
    const [b] = await Promise.all([look('node2', 'b.img', [[TiB / 2, MiB]])]);
    const [b1] = await Promise.all([look('node1', 'b.img', [[TiB / 2, MiB]])]);
    assert.equal(b.sums, b1.sums, 'the punched hole reads as zeros on both');
    await verify('after the reintegration');
  });

  it('`second fullsync`: every block of the 5 TiB compared by checksums, the holes without being read; nothing sent', async () => {
    await stayup('node2', ['stop', '-m', MODULE]);
    await waitModuleState(lab, 'node2', MODULE, 'STOP', 60);
    const previous = await lastReintegrationLine(lab, 'node1', MODULE);
    const t0 = Date.now();
    const r = await stayup('node2', ['second', 'fullsync', '-m', MODULE]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await waitModuleState(lab, 'node2', MODULE, 'SECOND', 300);
    const figures = await nextReintegration(lab, 'node1', MODULE, previous, 120_000);
    report.push(`second fullsync: back as SECOND in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${figures.line}`);
    assert.match(figures.scope, /^full/);
    assert.equal(figures.bytesSent, 0, figures.line);
    await assertSame('after the full reintegration');
  });
});
