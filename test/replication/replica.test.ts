import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Journal } from '../../src/replication/journal.ts';
import { memoryLinkPair } from '../../src/replication/link.ts';
import { ReplicationFilter } from '../../src/replication/paths.ts';
import { loadRfsNative, nativeAvailable } from '../../src/replication/native-binding.ts';
import type { PeerFs } from '../../src/replication/peer-fs.ts';
import type { RfsMount, RfsNative } from '../../src/replication/rfs-runtime.ts';
import { ReplicationSource, ZONE_SUM_BLOCK_BYTES, type TargetState } from '../../src/replication/source.ts';
import { ReplicationTarget } from '../../src/replication/target.ts';
import { PROTOCOL_VERSION } from '../../src/replication/protocol.ts';

// Two replicas in one process: a real FUSE mount over directory A (the primary's data), the source
// turning its events into frames, an in-memory link, and the target applying them to directory B.
// A child process runs a seeded random sequence of file operations on the mount (the JavaScript thread
// must stay free to answer the mount). After each run A and B must be identical: types, contents, modes,
// owners, sizes, symlink targets and file modification times. The same is checked after a reintegration
// (link cut in the middle, changes journaled, link back) and after an unclean one (no journal).

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'FUSE needs Linux';
  if (process.getuid?.() !== 0) return 'mounting needs root';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  const n = nativeAvailable();
  return n === true ? false : n;
}
const skip = skipReason();

/** The random operations, run in a child: node -e WORKER <mount> <seed> <count>. */
const WORKER = String.raw`
const fs = require('fs'), path = require('path');
const [root, seedText, countText] = process.argv.slice(1);
let seed = Number(seedText) >>> 0;
const rnd = (n) => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed % n; };
const names = ['a', 'b', 'c', 'd', 'e'];
const pick = () => { const depth = rnd(3); const parts = []; for (let i = 0; i <= depth; i++) parts.push(names[rnd(names.length)]); return path.join(root, ...parts); };
const fds = [];
for (let i = 0; i < Number(countText); i++) {
  const p = pick();
  try {
    switch (rnd(14)) {
      case 0: fs.mkdirSync(p, { mode: 0o750 }); break;
      case 1: case 2: { const fd = fs.openSync(p, rnd(2) ? 'a' : 'w', 0o640); fds.push(fd); break; }
      case 3: case 4: { if (!fds.length) break; const fd = fds[rnd(fds.length)]; const b = Buffer.alloc(1 + rnd(300000), 65 + rnd(26)); fs.writeSync(fd, b, 0, b.length, rnd(2) ? null : rnd(500000)); break; }
      case 5: { if (!fds.length) break; const fd = fds.splice(rnd(fds.length), 1)[0]; if (rnd(2)) fs.fsyncSync(fd); fs.closeSync(fd); break; }
      case 6: fs.unlinkSync(p); break;
      case 7: fs.rmdirSync(p); break;
      case 8: fs.renameSync(p, pick()); break;
      case 9: fs.truncateSync(p, rnd(400000)); break;
      case 10: fs.chmodSync(p, 0o600 + rnd(0o100)); break;
      case 11: fs.symlinkSync('target-' + rnd(100), p); break;
      case 12: fs.utimesSync(p, 1000 + rnd(100000), 2000 + rnd(100000)); break;
      case 13: fs.chownSync(p, rnd(3) * 1000, rnd(3) * 1000); break;
    }
  } catch (e) { /* ENOENT, EEXIST, ENOTEMPTY... are part of the game */ }
}
for (const fd of fds) fs.closeSync(fd);
`;

function runOps(mount: string, seed: number, count: number): Promise<void> {
  return inChild(WORKER, mount, String(seed), String(count));
}

/**
 * Runs `script` in a child process (file operations on the mount cannot come from this thread): Node, or
 * Python for extended attributes (Node has no xattr calls).
 */
function inChild(script: string, ...args: string[]): Promise<void> {
  return runChild(process.execPath, script, args);
}

function inPython(script: string, ...args: string[]): Promise<void> {
  return runChild('python3', script, args);
}

function runChild(program: string, script: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(program, [program === 'python3' ? '-c' : '-e', script, ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${program} exit ${code}: ${err}`))));
  });
}

/** A replica's root for the comparison: its path, and a descriptor to read extended attributes beneath. */
interface Replica {
  dir: string;
  rootFd: number;
  fs: PeerFs;
}

function xattrText(r: Replica, rel: string): string {
  const names = r.fs.listxattrAt(r.rootFd, rel).sort();
  return names.map((n) => `${n}=${r.fs.getxattrAt(r.rootFd, rel, n).toString('hex')}`).join(',');
}

/** Everything a replica must agree on, path by path. */
function snapshot(r: Replica): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (abs: string, rel: string): void => {
    for (const name of readdirSync(abs).sort()) {
      const a = join(abs, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const st = lstatSync(a, { bigint: true });
      const common = `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} xattrs=${xattrText(r, relPath)}`;
      if (st.isDirectory()) {
        out.set(relPath, `dir ${common}`);
        walk(a, relPath);
      } else if (st.isSymbolicLink()) out.set(relPath, `symlink ${readlinkSync(a)} uid=${st.uid} gid=${st.gid} xattrs=${xattrText(r, relPath)}`);
      else out.set(relPath, `file ${common} size=${st.size} mtime=${st.mtimeNs} md5=${createHash('md5').update(readFileSync(a)).digest('hex')}`);
    }
  };
  walk(r.dir, '');
  return out;
}

function assertSame(a: Replica, b: Replica, what: string): void {
  const x = snapshot(a);
  const y = snapshot(b);
  const diff: string[] = [];
  for (const k of new Set([...x.keys(), ...y.keys()])) if (x.get(k) !== y.get(k)) diff.push(`${k}: primary ${x.get(k) ?? '(none)'} / secondary ${y.get(k) ?? '(none)'}`);
  assert.deepEqual(diff.slice(0, 10), [], `${what}: ${diff.length} differences`);
  assert.ok(x.size > 0, `${what}: the random run left nothing to compare`);
}

describe('two replicas over a real mount: random operation sequences leave identical trees', { skip }, () => {
  const base = `/tmp/stayup-replica-${process.pid}`;
  const A = join(base, 'a');
  const B = join(base, 'b');
  let native: RfsNative;
  let mount: RfsMount;
  let source: ReplicationSource;
  let target: ReplicationTarget;
  let journal: Journal;
  let rootB: number;
  const lost: string[] = [];
  const primary = (): Replica => ({ dir: mount.underPath, rootFd: mount.rootFd, fs: native.fs });
  const secondary = (): Replica => ({ dir: B, rootFd: rootB, fs: native.fs });

  const attach = async (state: Partial<TargetState>): Promise<void> => {
    const [s, t] = memoryLinkPair();
    target.attach(t, {});
    // The hello/welcome exchange is the runtime's; here the source is attached directly.
    const synced = new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const check = setInterval(() => {
        if (source.inSync || lost.length || Date.now() - t0 > 60_000) {
          clearInterval(check);
          if (source.inSync) resolve();
          else reject(new Error(`no reintegration: ${lost.join('; ') || 'timeout'}`));
        }
      }, 5);
    });
    const welcomed = new Promise<void>((resolve) => {
      let first = true;
      s.onFrame(() => {
        if (first) resolve();
        first = false;
      });
    });
    s.send({ type: 'hello', version: PROTOCOL_VERSION, module: 'm', node: 'n1', session: '1' });
    await welcomed;
    source.attach(s, { sync: 'incremental', syncId: journal.syncId, clean: true, lastSyncMs: Date.now(), hints: [], hintsOverflow: false, ...state }, { peerTakesXattrs: true });
    await synced;
  };
  /**
   * The primary crashed while the peer was away: its journal is not trusted, the secondary's last sync is a
   * minute old, so what changed since (by change time) is compared; then both trees must be the same.
   */
  const reintegrateAfterPrimaryCrash = async (what: string): Promise<void> => {
    journal.dirty.clear();
    journal.reset(null, Date.now());
    await attach({ syncId: 'an-older-sync-point', clean: false, lastSyncMs: Date.now() - 60_000 });
    await settle();
    assert.deepEqual(lost, []);
    assertSame(primary(), secondary(), what);
  };
  /** The link cut: the peer is away from now on. */
  const cut = (): void => {
    source.detach('test cut');
    lost.length = 0;
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 500 && (source.status().unacked > 0 || source.status().resyncing); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
  };

  before(async () => {
    rmSync(base, { recursive: true, force: true });
    mkdirSync(A, { recursive: true });
    mkdirSync(B, { recursive: true });
    native = loadRfsNative();
    rootB = native.openRoot(B);
    journal = new Journal(join(base, 'journal.jsonl'), 1024 * 1024);
    journal.reset('s0', Date.now());
    mount = native.mount({ mountPoint: A, fsName: 'test', onOp: (ev) => source.onOp(0, ev), onExit: () => {} });
    mount.setReadOnly(false);
    source = new ReplicationSource({
      dirs: [{ underPath: mount.underPath, rootFd: mount.rootFd, filter: new ReplicationFilter([]), reply: (job, errno) => mount.reply(job, errno) }],
      journal,
      blockBytes: 64 * 1024,
      nbrei: 4,
      reiBytesPerS: 0,
      uncleanGraceMs: 0,
      lastSyncMs: () => Date.now() - 60_000,
      nativeFs: native.fs,
      nowMs: () => performance.now(),
      events: { log: () => {}, inSync: () => {}, lost: (r) => lost.push(r) },
    });
    target = new ReplicationTarget({
      fs: native.fs,
      roots: [{ rootFd: rootB }],
      async: 'none',
      node: 'n2',
      events: { synced: () => {}, mark: () => {}, syncBegan: () => {}, diverged: (r) => lost.push(`diverged: ${r}`), log: () => {} },
    });
    await attach({});
  });

  after(async () => {
    await mount?.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: live replication`, async () => {
      await runOps(A, seed, 400);
      await settle();
      assert.deepEqual(lost, []);
      assertSame(primary(), secondary(), `seed ${seed}`);
    });
  }

  it('link cut during a run: the changes are journaled and the reintegration copies them', async () => {
    const run = runOps(A, 101, 600);
    await new Promise((r) => setTimeout(r, 50));
    cut();
    await run;
    await runOps(A, 102, 300);
    assert.ok(journal.dirty.size > 0, 'nothing was journaled while the peer was away');
    await attach({});
    await runOps(A, 103, 200);
    await settle();
    assert.deepEqual(lost, []);
    assertSame(primary(), secondary(), 'after the reintegration');
  });

  it('unclean reintegration (no common sync point): the trees are compared and repaired', async () => {
    cut();
    await runOps(A, 201, 300);
    // Damage the secondary behind the replication's back, as a crash would.
    const junk = join(B, 'junk');
    mkdirSync(junk, { recursive: true });
    journal.dirty.clear();
    journal.reset(null, Date.now());
    await attach({ syncId: null, lastSyncMs: null, sync: 'incremental' });
    await settle();
    assert.deepEqual(lost, []);
    assertSame(primary(), secondary(), 'after the unclean reintegration');
  });

  it('a secondary that did not stop cleanly is compared since its last sync, not trusted to the journal', async () => {
    cut();
    await runOps(A, 301, 100);
    await attach({});
    await settle();
    cut();
    // What a power loss does to a secondary that acknowledged on receipt (async="second"): writes it had
    // acknowledged never reached its disk. Same sync point as the primary's journal, which is empty.
    const victim = readdirSync(B, { recursive: true, withFileTypes: true }).find((e) => e.isFile() && statSync(join(e.parentPath, e.name)).size > 0)!;
    const victimPath = join(victim.parentPath, victim.name);
    const before = readFileSync(victimPath);
    writeFileSync(victimPath, Buffer.alloc(before.length, 0xee));
    assert.equal(journal.dirty.size, 0);
    await attach({ syncId: journal.syncId, clean: false });
    await settle();
    assert.deepEqual(lost, []);
    assertSame(primary(), secondary(), 'after the reintegration of an unclean secondary');
  });

  it('a crash of the primary: files changed since the last sync are compared by change time, not only mtime', async () => {
    cut();
    await inChild(String.raw`
      const fs = require('fs'), path = require('path');
      const old = path.join(process.argv[1], 'old-file');
      fs.writeFileSync(old, 'old');
      fs.utimesSync(old, 2000, 2000);
    `, A);
    await attach({});
    await settle();
    cut();
    // While the peer is away: a file written and given back an old modification time (what tar -x, cp -p
    // and rsync -t do), and an existing file whose mode alone changes. Both keep an mtime far before the
    // last sync point; only their change time (ctime) says they changed.
    // Through the mount from a child process: this thread answers the mount.
    await inChild(String.raw`
      const fs = require('fs'), path = require('path');
      const [root] = process.argv.slice(1);
      const restored = path.join(root, 'restored-by-tar');
      fs.writeFileSync(restored, 'contents the secondary has never seen');
      fs.utimesSync(restored, 1000, 1000);
      fs.chmodSync(path.join(root, 'old-file'), 0o604);
    `, A);
    await reintegrateAfterPrimaryCrash('after an unclean reintegration with back-dated changes');
  });

  it('extended attributes: replicated live, and a reintegration brings over what changed while the peer was away', async () => {
    cut();
    await attach({});
    await settle();
    await inPython(String.raw`
import os, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, 'xa'), exist_ok=True)
f = os.path.join(root, 'xa', 'file')
open(f, 'w').write('x')
os.setxattr(f, 'user.kept', b'same')
os.setxattr(f, 'user.changed', b'before')
os.setxattr(f, 'user.removed', b'gone soon')
# A symlink holds trusted.* and security.* attributes (user.* is for files and directories).
l = os.path.join(root, 'xa', 'link')
os.symlink('file', l)
os.setxattr(l, 'trusted.label', b'on the link', follow_symlinks=False)
os.setxattr(l, 'trusted.removed', b'gone soon', follow_symlinks=False)
`, A);
    await settle();
    assertSame(primary(), secondary(), 'extended attributes replicated live');
    cut();
    await inPython(String.raw`
import os, sys
root = sys.argv[1]
f = os.path.join(root, 'xa', 'file')
os.setxattr(f, 'user.changed', b'after, and longer than before')
os.removexattr(f, 'user.removed')
os.setxattr(os.path.join(root, 'xa'), 'user.on-a-directory', b'd')
n = os.path.join(root, 'xa', 'new')
open(n, 'w').write('new')
os.setxattr(n, 'user.new', bytes(range(256)))
l = os.path.join(root, 'xa', 'link')
os.setxattr(l, 'trusted.label', b'changed while the peer was away', follow_symlinks=False)
os.removexattr(l, 'trusted.removed', follow_symlinks=False)
os.symlink('new', os.path.join(root, 'xa', 'new-link'))
os.setxattr(os.path.join(root, 'xa', 'new-link'), 'trusted.label', b'new link', follow_symlinks=False)
`, A);
    await attach({});
    await settle();
    assert.deepEqual(lost, []);
    assert.equal(xattrText(secondary(), 'xa/file'), xattrText(primary(), 'xa/file'));
    assert.equal(xattrText(secondary(), 'xa/link'), `trusted.label=${Buffer.from('changed while the peer was away').toString('hex')}`);
    assertSame(primary(), secondary(), 'after the reintegration of extended attribute changes');
    // The same after a crash of the primary (no trusted journal): an xattr change moves only the ctime.
    cut();
    await inPython(String.raw`
import os, sys
f = os.path.join(sys.argv[1], 'xa', 'file')
os.setxattr(f, 'user.changed', b'third')
os.removexattr(f, 'user.kept')
os.setxattr(os.path.join(sys.argv[1], 'xa', 'link'), 'trusted.label', b'third', follow_symlinks=False)
`, A);
    await reintegrateAfterPrimaryCrash('after an unclean reintegration of extended attribute changes');
  });

  it('full reintegration copies only the blocks that differ', async () => {
    cut();
    const big = 4 * 1024 * 1024;
    await new Promise<void>((resolve, reject) => {
      const c = spawn(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(join(A, 'big.bin'))}, require('crypto').randomBytes(${big}))`]);
      c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
    });
    let stats = { bytesSent: -1 };
    (source as unknown as { o: { events: { inSync: (id: string, s: { bytesSent: number }) => void } } }).o.events.inSync = (_id, s) => (stats = s);
    await attach({ sync: 'full' });
    await settle();
    assertSame(primary(), secondary(), 'after the first full reintegration');
    const firstBytes = stats.bytesSent;
    cut();
    await attach({ sync: 'full' });
    await settle();
    assertSame(primary(), secondary(), 'after the second full reintegration');
    assert.ok(firstBytes >= big, `first full copy sent ${firstBytes} bytes`);
    assert.equal(stats.bytesSent, 0, 'nothing differs: a full reintegration sends no data');
  });

  it('a journaled reintegration compares the marked zones block by block and sends only the changed blocks', async () => {
    cut();
    // Three 4 KiB writes, each inside one 64 KiB comparison block and in its own 1 MiB zone of big.bin
    // (written by the test above), made while the peer is away.
    const offsets = [100_000, 1_500_000, 3_000_000];
    await new Promise<void>((resolve, reject) => {
      const code = `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(join(A, 'big.bin'))}, 'r+'); for (const o of ${JSON.stringify(offsets)}) fs.writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, o); fs.closeSync(fd);`;
      const c = spawn(process.execPath, ['-e', code]);
      c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
    });
    assert.deepEqual([...(journal.dirty.get('0/big.bin')?.zones ?? [])].sort(), [0, 1, 2], 'the journal marks the three 1 MiB zones');
    let stats = { bytesSent: -1, filesCopied: -1 };
    (source as unknown as { o: { events: { inSync: (id: string, s: { bytesSent: number; filesCopied: number }) => void } } }).o.events.inSync = (_id, s) => (stats = s);
    await attach({});
    await settle();
    assertSame(primary(), secondary(), 'after the journaled reintegration');
    assert.equal(stats.filesCopied, 1);
    assert.equal(stats.bytesSent, offsets.length * ZONE_SUM_BLOCK_BYTES, 'one 64 KiB block per change, not the 3 MiB of marked zones');
  });
});
