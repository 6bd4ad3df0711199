// The peer-side helpers of the native addon: every path is resolved beneath a root descriptor (openat2
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so neither '..' nor a symlink can reach outside it; and each
// helper does what its C namesake does, with the object itself (no follow) where the README says so.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeSync,
  constants as C,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { ensureNativeBuilt, peer, RENAME_EXCHANGE, RENAME_NOREPLACE, type NativeError, type PeerHelpers } from '../../src/replication/fuse/native.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (chown, trusted.* xattrs)' : false;

const base = `/tmp/stayup-peer-${process.pid}`;
const rootDir = join(base, 'root');
const outside = join(base, 'outside');

function throwsErrno(fn: () => unknown, code: string, op?: string): NativeError {
  try {
    fn();
  } catch (e) {
    const err = e as NativeError;
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    assert.equal(typeof err.errno, 'number');
    assert.ok(err.errno > 0);
    if (op) assert.equal(err.syscall, op);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('peer-side helpers', { skip }, () => {
  let p: PeerHelpers;
  let root: number;

  before(() => {
    ensureNativeBuilt();
    p = peer();
    rmSync(base, { recursive: true, force: true });
    mkdirSync(join(rootDir, 'sub'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'secret'), 'secret');
    writeFileSync(join(rootDir, 'f'), 'hello');
    writeFileSync(join(rootDir, 'sub/inner'), 'inner');
    symlinkSync(outside, join(rootDir, 'abs-escape'));
    symlinkSync('../outside', join(rootDir, 'rel-escape'));
    symlinkSync('sub', join(rootDir, 'in'));
    symlinkSync('f', join(rootDir, 'lnk'));
    root = p.openRoot(rootDir);
  });

  after(() => {
    closeSync(root);
    rmSync(base, { recursive: true, force: true });
  });

  it('openRoot: an O_PATH directory descriptor; errors name the op and the path', () => {
    assert.ok(root > 2);
    const e = throwsErrno(() => p.openRoot(join(base, 'missing')), 'ENOENT', 'openRoot');
    assert.equal(e.errno, 2);
    assert.match(e.message, /ENOENT.*openRoot.*missing/);
    throwsErrno(() => p.openRoot(join(rootDir, 'f')), 'ENOTDIR');
  });

  it("confinement: '..', absolute paths and symlinks leading outside are refused", () => {
    throwsErrno(() => p.openAt(root, '../outside/secret', C.O_RDONLY, 0), 'EXDEV', 'openAt');
    throwsErrno(() => p.openAt(root, join(outside, 'secret'), C.O_RDONLY, 0), 'EXDEV');
    throwsErrno(() => p.openAt(root, 'abs-escape/secret', C.O_RDONLY, 0), 'EXDEV');
    throwsErrno(() => p.openAt(root, 'rel-escape/secret', C.O_RDONLY, 0), 'EXDEV');
    throwsErrno(() => p.openAt(root, 'sub/../../outside/secret', C.O_RDONLY, 0), 'EXDEV');
    throwsErrno(() => p.openAt(root, `../${'root'}/f`, C.O_RDONLY, 0), 'EXDEV');
    throwsErrno(() => p.mkdirAt(root, 'abs-escape/new', 0o755), 'EXDEV', 'mkdirAt');
    throwsErrno(() => p.mkdirAt(root, '../new', 0o755), 'EXDEV');
    throwsErrno(() => p.unlinkAt(root, '..', true), 'EXDEV', 'rmdirAt');
    throwsErrno(() => p.unlinkAt(root, 'rel-escape/secret', false), 'EXDEV');
    throwsErrno(() => p.renameAt(root, 'f', '../moved', 0), 'EXDEV', 'renameAt');
    throwsErrno(() => p.linkAt(root, 'f', 'abs-escape/l'), 'EXDEV', 'linkAt');
    throwsErrno(() => p.symlinkAt('x', root, 'rel-escape/l'), 'EXDEV', 'symlinkAt');
    throwsErrno(() => p.chownAt(root, 'abs-escape/secret', 1, 1), 'EXDEV');
    throwsErrno(() => p.chmodAt(root, 'rel-escape/secret', 0o777), 'EXDEV');
    throwsErrno(() => p.truncateAt(root, 'abs-escape/secret', 0), 'EXDEV');
    throwsErrno(() => p.setxattrAt(root, 'abs-escape/secret', 'user.x', Buffer.from('1'), 0), 'EXDEV');
    throwsErrno(() => p.lstatAt(root, 'abs-escape/secret'), 'EXDEV');
    throwsErrno(() => p.readdirAt(root, 'abs-escape/.'), 'EXDEV');
    throwsErrno(() => p.readdirAt(root, 'abs-escape'), 'ENOTDIR'); // a final symlink is not followed
    // magic links (/proc/self/fd/N) are not followed either
    symlinkSync(`/proc/self/fd/${root}`, join(rootDir, 'magic'));
    throwsErrno(() => p.openAt(root, 'magic/f', C.O_RDONLY, 0), 'EXDEV');
    assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), 'secret');
    assert.ok(!existsSync(join(base, 'moved')) && !existsSync(join(base, 'new')));
    // symlinks that stay inside are fine, and the symlinks themselves can be handled
    const fd = p.openAt(root, 'in/inner', C.O_RDONLY, 0);
    assert.equal(readFileSync(fd, 'utf8'), 'inner');
    closeSync(fd);
    assert.equal(p.lstatAt(root, 'abs-escape').type, 'symlink');
    assert.equal(p.readlinkAt(root, 'abs-escape'), outside);
  });

  it('openAt: O_CREAT gives exactly the mode asked for, whatever the umask; O_EXCL and plain opens', () => {
    const old = process.umask(0o077);
    try {
      const fd = p.openAt(root, 'created', C.O_CREAT | C.O_WRONLY, 0o664);
      closeSync(fd);
      assert.equal(lstatSync(join(rootDir, 'created')).mode & 0o7777, 0o664);
      throwsErrno(() => p.openAt(root, 'created', C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600), 'EEXIST');
      const again = p.openAt(root, 'created', C.O_CREAT | C.O_WRONLY, 0o600);
      closeSync(again);
      assert.equal(lstatSync(join(rootDir, 'created')).mode & 0o7777, 0o664, 'an existing file keeps its mode');
      throwsErrno(() => p.openAt(root, 'nope', C.O_RDONLY, 0), 'ENOENT');
      throwsErrno(() => p.openAt(root, 'lnk', C.O_RDONLY | C.O_NOFOLLOW, 0), 'ELOOP');
      const root2 = p.openAt(root, '', C.O_RDONLY | C.O_DIRECTORY, 0);
      closeSync(root2);
    } finally {
      process.umask(old);
    }
  });

  it('mkdirAt (exact mode, set-group-ID included), mknodAt, symlinkAt, linkAt, unlinkAt', () => {
    const old = process.umask(0o022);
    try {
      p.mkdirAt(root, 'd', 0o2775);
      assert.equal(statSync(join(rootDir, 'd')).mode & 0o7777, 0o2775);
      throwsErrno(() => p.mkdirAt(root, 'd', 0o755), 'EEXIST');
      throwsErrno(() => p.mkdirAt(root, 'no/such/dir', 0o755), 'ENOENT');
      p.mknodAt(root, 'd/fifo', C.S_IFIFO | 0o666, 0);
      const st = lstatSync(join(rootDir, 'd/fifo'));
      assert.ok(st.isFIFO());
      assert.equal(st.mode & 0o7777, 0o666);
      p.mknodAt(root, 'd/null', C.S_IFCHR | 0o600, (1 << 8) | 3);
      assert.equal(p.lstatAt(root, 'd/null').rdev, (1 << 8) | 3);
      p.symlinkAt('../f', root, 'd/up');
      assert.equal(readlinkSync(join(rootDir, 'd/up')), '../f');
      throwsErrno(() => p.symlinkAt('x', root, 'd/up'), 'EEXIST');
      p.linkAt(root, 'f', 'd/hard');
      assert.equal(statSync(join(rootDir, 'f')).nlink, 2);
      p.linkAt(root, 'lnk', 'd/lnk2'); // a hard link to the symlink itself
      assert.ok(lstatSync(join(rootDir, 'd/lnk2')).isSymbolicLink());
      throwsErrno(() => p.unlinkAt(root, 'd', false), 'EISDIR', 'unlinkAt');
      throwsErrno(() => p.unlinkAt(root, 'd/hard', true), 'ENOTDIR', 'rmdirAt');
      throwsErrno(() => p.unlinkAt(root, 'd', true), 'ENOTEMPTY');
      throwsErrno(() => p.unlinkAt(root, '', false), 'EINVAL');
      for (const n of ['fifo', 'null', 'up', 'hard', 'lnk2']) p.unlinkAt(root, `d/${n}`, false);
      p.unlinkAt(root, 'd/', true);
      assert.ok(!existsSync(join(rootDir, 'd')));
    } finally {
      process.umask(old);
    }
  });

  it('renameAt with 0, RENAME_NOREPLACE and RENAME_EXCHANGE', () => {
    writeFileSync(join(rootDir, 'ra'), 'A');
    writeFileSync(join(rootDir, 'rb'), 'B');
    throwsErrno(() => p.renameAt(root, 'ra', 'rb', RENAME_NOREPLACE), 'EEXIST');
    p.renameAt(root, 'ra', 'rb', RENAME_EXCHANGE);
    assert.equal(readFileSync(join(rootDir, 'ra'), 'utf8'), 'B');
    assert.equal(readFileSync(join(rootDir, 'rb'), 'utf8'), 'A');
    p.renameAt(root, 'ra', 'sub/rc', 0);
    assert.equal(readFileSync(join(rootDir, 'sub/rc'), 'utf8'), 'B');
    throwsErrno(() => p.renameAt(root, 'ra', 'x', 0), 'ENOENT');
  });

  it('chownAt, chmodAt, utimensAt act on the object itself; chmodAt leaves symlinks alone', () => {
    p.chownAt(root, 'lnk', 1234, 5678);
    assert.equal(lstatSync(join(rootDir, 'lnk')).uid, 1234);
    assert.equal(statSync(join(rootDir, 'f')).uid, 0, 'the target is untouched');
    p.chownAt(root, 'f', -1, 42);
    assert.deepEqual([statSync(join(rootDir, 'f')).uid, statSync(join(rootDir, 'f')).gid], [0, 42]);
    p.chmodAt(root, 'f', 0o4710);
    assert.equal(statSync(join(rootDir, 'f')).mode & 0o7777, 0o4710);
    p.chmodAt(root, 'lnk', 0o600);
    assert.equal(statSync(join(rootDir, 'f')).mode & 0o7777, 0o4710, 'chmodAt of a symlink does not reach its target');
    p.utimensAt(root, 'lnk', 1_000_000_001n, 2_000_000_002n);
    const l = lstatSync(join(rootDir, 'lnk'), { bigint: true });
    assert.deepEqual([l.atimeNs, l.mtimeNs], [1_000_000_001n, 2_000_000_002n]);
    assert.notEqual(statSync(join(rootDir, 'f'), { bigint: true }).mtimeNs, 2_000_000_002n);
    p.utimensAt(root, 'f', null, -1_500_000_000n); // before 1970; atime left alone
    const s = p.lstatAt(root, 'f');
    assert.equal(s.mtimeNs, -1_500_000_000n);
    throwsErrno(() => p.chmodAt(root, 'missing', 0o600), 'ENOENT', 'chmodAt');
  });

  it('truncateAt, lstatAt, readdirAt, readlinkAt', () => {
    writeFileSync(join(rootDir, 't'), '0123456789');
    p.truncateAt(root, 't', 4);
    assert.equal(readFileSync(join(rootDir, 't'), 'utf8'), '0123');
    p.truncateAt(root, 't', 6);
    assert.equal(statSync(join(rootDir, 't')).size, 6);
    throwsErrno(() => p.truncateAt(root, 'sub', 0), 'EISDIR');
    throwsErrno(() => p.truncateAt(root, 'lnk', 0), 'EINVAL');
    const s = p.lstatAt(root, 't');
    const ns = lstatSync(join(rootDir, 't'), { bigint: true });
    assert.deepEqual(
      { ...s },
      {
        type: 'file',
        mode: Number(ns.mode),
        uid: 0,
        gid: 0,
        size: 6,
        nlink: 1,
        ino: Number(ns.ino),
        dev: Number(ns.dev),
        rdev: 0,
        mtimeNs: ns.mtimeNs,
        ctimeNs: ns.ctimeNs,
        atimeNs: ns.atimeNs,
      },
    );
    assert.equal(p.lstatAt(root, '').type, 'dir');
    assert.equal(p.lstatAt(root, 'lnk').type, 'symlink');
    const entries = p.readdirAt(root, '').sort((a, b) => a.name.localeCompare(b.name));
    const byName = Object.fromEntries(entries.map((e) => [e.name, e.type]));
    assert.equal(byName.f, 'file');
    assert.equal(byName.sub, 'dir');
    assert.equal(byName.lnk, 'symlink');
    assert.ok(!('.' in byName) && !('..' in byName));
    assert.deepEqual(p.readdirAt(root, 'sub').map((e) => e.name).sort(), ['inner', 'rc']);
    assert.equal(p.readlinkAt(root, 'lnk'), 'f');
    throwsErrno(() => p.readlinkAt(root, 'f'), 'EINVAL', 'readlinkAt');
    throwsErrno(() => p.readdirAt(root, 'f'), 'ENOTDIR', 'readdirAt');
    throwsErrno(() => p.readdirAt(root, 'in'), 'ENOTDIR', 'readdirAt');
    assert.deepEqual(p.readdirAt(root, 'in/').map((e) => e.name).sort(), ['inner', 'rc']);
  });

  it('xattrs on files and, without following, on symlinks', () => {
    p.setxattrAt(root, 'f', 'user.a', Buffer.from('one'), 0);
    assert.deepEqual(p.getxattrAt(root, 'f', 'user.a'), Buffer.from('one'));
    throwsErrno(() => p.setxattrAt(root, 'f', 'user.a', Buffer.from('x'), 1 /* XATTR_CREATE */), 'EEXIST');
    p.setxattrAt(root, 'f', 'user.big', Buffer.alloc(2000, 7), 0);
    assert.equal(p.getxattrAt(root, 'f', 'user.big').length, 2000);
    p.setxattrAt(root, 'f', 'user.empty', Buffer.alloc(0), 0);
    assert.equal(p.getxattrAt(root, 'f', 'user.empty').length, 0);
    assert.deepEqual(p.listxattrAt(root, 'f').sort(), ['user.a', 'user.big', 'user.empty']);
    p.removexattrAt(root, 'f', 'user.a');
    throwsErrno(() => p.getxattrAt(root, 'f', 'user.a'), 'ENODATA', 'getxattrAt');
    throwsErrno(() => p.removexattrAt(root, 'f', 'user.a'), 'ENODATA', 'removexattrAt');
    // on the symlink itself: user.* is not allowed there, trusted.* is, and the target stays clean
    throwsErrno(() => p.setxattrAt(root, 'lnk', 'user.x', Buffer.from('1'), 0), 'EPERM');
    p.setxattrAt(root, 'lnk', 'trusted.l', Buffer.from('L'), 0);
    assert.deepEqual(p.listxattrAt(root, 'lnk'), ['trusted.l']);
    assert.deepEqual(p.getxattrAt(root, 'lnk', 'trusted.l'), Buffer.from('L'));
    assert.ok(!p.listxattrAt(root, 'f').includes('trusted.l'));
  });

  it('fd helpers: pwrite, fallocate, futimens, fchown, fchmod, fsync', () => {
    const fd = p.openAt(root, 'data', C.O_CREAT | C.O_RDWR, 0o644);
    try {
      const big = Buffer.alloc(3 << 20, 0x61);
      assert.equal(p.pwrite(fd, big, 10), big.length);
      assert.equal(p.pwrite(fd, Buffer.from('head'), 0), 4);
      assert.equal(statSync(join(rootDir, 'data')).size, big.length + 10);
      p.fallocate(fd, 0, 0, 8 << 20);
      assert.equal(statSync(join(rootDir, 'data')).size, 8 << 20);
      p.fallocate(fd, 0x01 | 0x02, 0, 4096); // punch a hole, keep the size
      assert.equal(readFileSync(join(rootDir, 'data')).subarray(0, 4).toString('hex'), '00000000');
      p.futimens(fd, null, 7_000_000_007n);
      assert.equal(statSync(join(rootDir, 'data'), { bigint: true }).mtimeNs, 7_000_000_007n);
      p.fchown(fd, 77, 88);
      p.fchmod(fd, 0o640);
      const st = statSync(join(rootDir, 'data'));
      assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [77, 88, 0o640]);
      p.fsync(fd, true);
      p.fsync(fd, false);
    } finally {
      closeSync(fd);
    }
    throwsErrno(() => p.fsync(fd, false), 'EBADF', 'fsync');
    const ro = openSync(join(rootDir, 'data'), 'r');
    try {
      throwsErrno(() => p.pwrite(ro, Buffer.from('x'), 0), 'EBADF', 'pwrite');
      throwsErrno(() => p.fallocate(ro, 0, 0, 1), 'EBADF', 'fallocate');
    } finally {
      closeSync(ro);
    }
  });

  it('bad arguments are TypeErrors, not errno errors', () => {
    assert.throws(() => (p.openAt as (...a: unknown[]) => number)(root, 42, 0, 0), TypeError);
    assert.throws(() => (p.pwrite as (...a: unknown[]) => number)(root, 'not a buffer', 0), TypeError);
    assert.throws(() => (p.lstatAt as (...a: unknown[]) => unknown)(-1, 'f'), TypeError);
    assert.throws(() => p.lstatAt(root, 'a\0b'), TypeError);
    const usage = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: 'dataRanges(fd, offset, length)' };
    assert.throws(() => p.dataRanges(-1, 0, 1), usage);
    assert.throws(() => p.dataRanges(root, -1, 1), usage);
    assert.throws(() => p.dataRanges(root, 0, -1), usage);
    assert.throws(() => p.dataRanges(root, 2 ** 62, 2 ** 62), usage);
    assert.throws(() => (p.dataRanges as (...a: unknown[]) => unknown)(root, '0', 1), usage);
  });

  it('dataRanges: where a sparse file holds data; past the end none; a closed descriptor is EBADF', () => {
    const fd = p.openAt(root, 'sparse', C.O_CREAT | C.O_RDWR, 0o644);
    try {
      p.pwrite(fd, Buffer.from('x'), 0); // data at the start and 64 MiB on, a hole between
      p.pwrite(fd, Buffer.alloc(4096, 1), 64 << 20);
      const flat = p.dataRanges(fd, 0, 128 << 20);
      assert.equal(flat[0], 128 << 20, 'the whole span was scanned');
      assert.deepEqual(flat.slice(1), [0, 4096, 64 << 20, (64 << 20) + 4096]);
      assert.deepEqual(p.dataRanges(fd, 4096, 1 << 20), [4096 + (1 << 20)], 'a hole: no pair');
      assert.deepEqual(p.dataRanges(fd, 1 << 30, 4096), [(1 << 30) + 4096], 'past the end: no data');
    } finally {
      closeSync(fd);
    }
    throwsErrno(() => p.dataRanges(fd, 0, 1), 'EBADF', 'dataRanges');
  });
});
