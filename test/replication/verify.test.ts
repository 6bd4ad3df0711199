import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { greetPeer } from '../../src/replication/handshake.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { loadRfsNative } from '../../src/replication/native-binding.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import type { RfsNative } from '../../src/replication/rfs-runtime.ts';
import { answerVerifyLink, COMPARE_BLOCK_BYTES, isoNs, type ComparisonResult } from '../../src/replication/verify.ts';
import { compareTrees, fullReintegration, treePairSkip } from './tree-pair.ts';

// rfsverify/rfsdiff's comparison over the in-memory link twin: this node's data read directly, the peer's
// through the verify link, answered by a ReplicationTarget (listings, checksums) and statReq. The figures
// are checked against the real thing: a full reintegration of the same trees sends exactly the bytes the
// comparison announced, and afterwards the comparison finds nothing.

const skip = treePairSkip();
const MiB = COMPARE_BLOCK_BYTES;

describe('rfsverify/rfsdiff comparison (a dry run of the full reintegration)', { skip }, () => {
  let base: string;
  let A: string; // the source's data (n1, the primary)
  let B: string; // the copy's (n2, the secondary)
  let native: RfsNative;
  const dirs = [{ dir: '/data', filter: new ReplicationFilter([{ path: 'excluded' }]) }];
  const logs: string[] = [];

  before(() => {
    native = loadRfsNative();
    base = mkdtempSync(join(tmpdir(), 'stayup-verify-'));
    A = join(base, 'a');
    B = join(base, 'b');
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  /** Compares the local tree with `remote` answered over a verify link; 2 MiB windows: big.bin (3 MiB) is asked in two, grown.bin (1.5 MiB) in one. */
  const compare = (o: { source: 'local' | 'remote'; local: string; remote: string }): Promise<ComparisonResult> =>
    compareTrees({ native, ...o, dirs, windowBytes: 2 * MiB, log: (l, m) => logs.push(`${l} ${m}`) });

  /** The two trees: B is A copied, then changed in every way a comparison must notice. */
  function build(): void {
    rmSync(A, { recursive: true, force: true });
    rmSync(B, { recursive: true, force: true });
    mkdirSync(A, { mode: 0o755 });
    writeFileSync(join(A, 'same.txt'), 'hello');
    writeFileSync(join(A, 'big.bin'), randomBytes(3 * MiB));
    writeFileSync(join(A, 'grown.bin'), randomBytes(MiB + MiB / 2));
    writeFileSync(join(A, 'mode.txt'), 'mode');
    writeFileSync(join(A, 'owner.txt'), 'owner');
    writeFileSync(join(A, 'mtime.txt'), 'mtime');
    writeFileSync(join(A, 'typed'), '12345');
    symlinkSync('target-a', join(A, 'link'));
    mkdirSync(join(A, 'dirmode'), { mode: 0o755 });
    mkdirSync(join(A, 'excluded'));
    writeFileSync(join(A, 'excluded', 'ignored.txt'), 'on the source');
    writeFileSync(join(A, 'xattr.txt'), 'extended attributes');
    setXattrs(join(A, 'xattr.txt'), { 'user.same': 's', 'user.changed': 'on the source' });
    // A symlink holds trusted.* and security.* attributes (not user.*).
    symlinkSync('same.txt', join(A, 'xlink'));
    setXattrs(join(A, 'xlink'), { 'trusted.same': 's' });
    execFileSync('cp', ['-a', A, B]);
    // Now what only the source has, and the copy's differences.
    writeFileSync(join(A, 'only-a.txt'), '0123456789');
    mkdirSync(join(A, 'dir-a', 'sub'), { recursive: true });
    writeFileSync(join(A, 'dir-a', 'x'), 'abc');
    writeFileSync(join(A, 'dir-a', 'sub', 'y'), 'defg');
    writeFileSync(join(B, 'only-b.txt'), 'extra');
    const fd = openSync(join(B, 'big.bin'), 'r+');
    writeSync(fd, Buffer.from('changed'), 0, 7, MiB + 100);
    closeSync(fd);
    execFileSync('touch', ['-r', join(A, 'big.bin'), join(B, 'big.bin')]);
    writeFileSync(join(B, 'grown.bin'), readFileSync(join(A, 'grown.bin')).subarray(0, MiB));
    execFileSync('touch', ['-r', join(A, 'grown.bin'), join(B, 'grown.bin')]);
    chmodSync(join(B, 'mode.txt'), 0o600);
    chownSync(join(B, 'owner.txt'), 1000, 1000);
    utimesSync(join(B, 'mtime.txt'), 1_000_000, 1_000_000);
    rmSync(join(B, 'typed'));
    mkdirSync(join(B, 'typed'));
    rmSync(join(B, 'link'));
    symlinkSync('target-b', join(B, 'link'));
    chmodSync(join(B, 'dirmode'), 0o700);
    writeFileSync(join(B, 'excluded', 'ignored.txt'), 'different on the copy, not replicated');
    setXattrs(join(A, 'xattr.txt'), { 'user.only-a': 'y' });
    setXattrs(join(B, 'xattr.txt'), { 'user.changed': 'on the copy', 'user.only-b': 'x' });
    setXattrs(join(A, 'xlink'), { 'trusted.label': 'on the source' });
    // cp -a kept the times: setting extended attributes changes only the ctime.
  }

  /** Sets extended attributes of the object itself, a symlink included (Node has no call: Python's os.setxattr). */
  function setXattrs(path: string, attrs: Record<string, string>): void {
    const script = 'import os, sys, json\nfor k, v in json.loads(sys.argv[2]).items(): os.setxattr(sys.argv[1], k, v.encode(), follow_symlinks=False)';
    execFileSync('python3', ['-c', script, path, JSON.stringify(attrs)]);
  }

  const mtimeOf = (p: string): string => isoNs(lstatSync(p, { bigint: true }).mtimeNs);

  it('identical trees: nothing differs, every object is compared', async () => {
    build();
    const r = await compare({ source: 'local', local: A, remote: A });
    assert.deepEqual(r.differences, []);
    assert.equal(r.differing, 0);
    assert.equal(r.bytesToSend, 0);
    // same, big, grown, mode, owner, mtime, typed, xattr, only-a, x, y; root, dirmode, dir-a, sub; the links.
    assert.deepEqual(r.compared, { files: 11, directories: 4, other: 2 });
  });

  it('rfsdiff (source local): every kind of difference with its reason, and the bytes a reintegration would send', async () => {
    build();
    const r = await compare({ source: 'local', local: A, remote: B });
    assert.deepEqual(
      r.differences.map((d) => `${d.path}: ${d.reasons.join('; ')} [${d.bytes}]`),
      [
        `/data/big.bin: content: 1 of 3 blocks differ [${MiB}]`,
        '/data/dir-a: missing on n2 (2 files, 7 bytes under it) [7]',
        '/data/dirmode: mode: 0755 on n1, 0700 on n2 [0]',
        `/data/grown.bin: size: ${MiB + MiB / 2} on n1, ${MiB} on n2; content: 1 of 2 blocks differ [${MiB / 2}]`,
        '/data/link: symlink target: "target-a" on n1, "target-b" on n2 [0]',
        '/data/mode.txt: mode: 0644 on n1, 0600 on n2 [0]',
        `/data/mtime.txt: mtime: ${mtimeOf(join(A, 'mtime.txt'))} on n1, 1970-01-12T13:46:40.000000000Z on n2 [0]`,
        '/data/only-a.txt: missing on n2 [10]',
        '/data/only-b.txt: only on n2: a reintegration removes it [0]',
        '/data/owner.txt: owner: 0:0 on n1, 1000:1000 on n2 [0]',
        '/data/typed: type: file on n1, directory on n2 [5]',
        '/data/xattr.txt: extended attributes: user.changed (differs), user.only-a (missing on n2), user.only-b (only on n2) [0]',
        '/data/xlink: extended attributes: trusted.label (missing on n2) [0]',
      ],
    );
    assert.equal(r.differing, 13);
    assert.equal(r.truncated, false);
    assert.equal(r.bytesToSend, MiB + 7 + MiB / 2 + 10 + 5);
    assert.deepEqual([r.source, r.copy], ['n1', 'n2']);
  });

  it('rfsverify (copy local, source remote): the same differences, named from the same side', async () => {
    build();
    const diff = await compare({ source: 'local', local: A, remote: B });
    const verify = await compare({ source: 'remote', local: B, remote: A });
    assert.deepEqual(verify.differences, diff.differences);
    assert.equal(verify.bytesToSend, diff.bytesToSend);
  });

  it('the figures are the full reintegration\'s: it sends exactly bytesToSend, then nothing differs', async () => {
    build();
    const before = await compare({ source: 'local', local: A, remote: B });
    const { stats } = await fullReintegration({ native, source: A, copy: B, filter: dirs[0]!.filter, work: base });
    assert.equal(stats.bytesSent, before.bytesToSend);
    const after = await compare({ source: 'local', local: A, remote: B });
    assert.deepEqual(after.differences, []);
    assert.equal(readFileSync(join(B, 'excluded', 'ignored.txt'), 'utf8'), 'different on the copy, not replicated');
  });

  it('a verify link answers only listings, checksums and attributes: a file operation closes it unapplied', async () => {
    build();
    const [mine, theirs] = memoryLinkPair();
    const rootFd = native.openRoot(B);
    let closed = false;
    answerVerifyLink(theirs, {
      fs: native.fs,
      roots: [{ rootFd }],
      node: 'n2',
      welcome: {},
      log: (l, m) => logs.push(`${l} ${m}`),
      onEnd: () => {
        closed = true;
        closeSync(rootFd);
      },
    });
    await greetPeer(mine, { module: 'm', node: 'n1', session: 'verify' }, { peer: 'n2', timeoutMs: 5000 });
    mine.send({ type: 'unlink', path: '0/same.txt' });
    const t0 = Date.now();
    while (!closed && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(closed, true);
    assert.ok(existsSync(join(B, 'same.txt')), 'the verify link applied a file operation');
    assert.ok(logs.some((l) => l.startsWith('E verify link from memory-b: frame unlink refused')), logs.join('\n'));
  });
});
