// POSIX behaviour through the FUSE interception layer: every case runs on a plain directory and on a
// mounted one (a JS onOp that replies 0 at once) and must give identical results: return values, errno
// codes, stat fields (type, mode, uid, gid, size, nlink, rdev), contents and explicitly set times.
//
// The application side of each case is a python3 process (syscalls as the C API has them: O_EXCL,
// renameat2, xattrs, mmap, setuid). It must be another process: the daemon's JS thread answers the
// mount's requests, so the test process never touches the mount with synchronous calls.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { ensureNativeBuilt, mount, type FuseMount } from '../../src/replication/fuse/native.ts';
import { fuseSkipReason } from './fuse-env.ts';

const run = promisify(execFile);

const skip = fuseSkipReason();

const base = `/tmp/stayup-posix-${process.pid}`;
const plainRoot = join(base, 'plain');
const fuseRoot = join(base, 'mnt');
const casesPy = join(base, 'cases.py');

// The cases. Each c_<name>() runs in its own fresh directory and records [label, result] pairs; a result
// is a normalised value or 'E:<errno name>'.
const PY = String.raw`
import os, sys, json, errno, stat, ctypes, mmap, hashlib, time

root, case = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(root, case), 0o755, exist_ok=True)
os.chdir(os.path.join(root, case))
os.umask(0o022)
libc = ctypes.CDLL(None, use_errno=True)
LOG = []

def norm(v):
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v)
        return 'b:' + v.decode('latin1') if len(v) <= 64 else 'sha:' + hashlib.sha256(v).hexdigest()[:16] + ':' + str(len(v))
    if isinstance(v, os.stat_result):
        return stinfo(v)
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v

def r(label, fn):
    try:
        LOG.append([label, norm(fn())])
    except OSError as e:
        LOG.append([label, 'E:' + errno.errorcode.get(e.errno, str(e.errno))])

def kind(m):
    for t, n in ((stat.S_ISREG, 'file'), (stat.S_ISDIR, 'dir'), (stat.S_ISLNK, 'symlink'), (stat.S_ISFIFO, 'fifo'),
                 (stat.S_ISCHR, 'chr'), (stat.S_ISBLK, 'blk'), (stat.S_ISSOCK, 'sock')):
        if t(m): return n
    return '?'

def stinfo(s):
    d = {'type': kind(s.st_mode), 'mode': oct(s.st_mode & 0o7777), 'uid': s.st_uid, 'gid': s.st_gid, 'nlink': s.st_nlink}
    if not stat.S_ISDIR(s.st_mode): d['size'] = s.st_size
    if stat.S_ISCHR(s.st_mode) or stat.S_ISBLK(s.st_mode): d['rdev'] = [os.major(s.st_rdev), os.minor(s.st_rdev)]
    return d

def st(p, follow=False): return stinfo(os.stat(p, follow_symlinks=follow))
def times(p, follow=True):
    s = os.stat(p, follow_symlinks=follow)
    return [s.st_atime_ns, s.st_mtime_ns]
def closed(fd):
    os.close(fd)
    return 'ok'
def wf(p, data, mode=0o644):
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    os.write(fd, data)
    os.close(fd)
def rd(p):
    with open(p, 'rb') as f: return f.read()
def wr(p, data):
    fd = os.open(p, os.O_WRONLY)
    try: return os.write(fd, data)
    finally: os.close(fd)
def ls(p='.'): return sorted(os.listdir(p))
def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), ctypes.c_uint(flags)) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return 0
def fallocate(fd, mode, off, ln):
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(ln)) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return 0

def as_user(uid, gid, steps):
    """runs steps (label, fn) in a child with uid/gid and no supplementary groups; their results join LOG"""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            os.setgroups([]); os.setgid(gid); os.setuid(uid)
            for label, fn in steps: r(label, fn)
            os.write(wfd, json.dumps(LOG).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    data = b''
    while True:
        c = os.read(rfd, 65536)
        if not c: break
        data += c
    os.waitpid(pid, 0)
    LOG[:] = json.loads(data)

def c_create_flags():
    r('excl new', lambda: closed(os.open('f', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))
    r('stat', lambda: st('f'))
    r('excl again', lambda: closed(os.open('f', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))
    r('creat existing', lambda: closed(os.open('f', os.O_CREAT | os.O_WRONLY, 0o600)))
    r('stat unchanged', lambda: st('f'))
    wf('g', b'0123456789')
    r('trunc', lambda: closed(os.open('g', os.O_WRONLY | os.O_TRUNC)))
    r('after trunc', lambda: st('g'))
    wf('h', b'xyz')
    r('rdonly trunc', lambda: closed(os.open('h', os.O_RDONLY | os.O_TRUNC)))
    r('after rdonly trunc', lambda: st('h'))
    r('rdonly creat', lambda: closed(os.open('ro', os.O_RDONLY | os.O_CREAT, 0o640)))
    r('ro stat', lambda: st('ro'))
    os.umask(0)
    r('umask 0', lambda: closed(os.open('u0', os.O_CREAT | os.O_WRONLY, 0o777)))
    r('u0', lambda: st('u0'))
    os.umask(0o077)
    r('umask 077', lambda: closed(os.open('u77', os.O_CREAT | os.O_WRONLY, 0o666)))
    r('u77', lambda: st('u77'))
    os.umask(0o022)
    r('suid create', lambda: closed(os.open('suid', os.O_CREAT | os.O_WRONLY, 0o6755)))
    r('suid', lambda: st('suid'))
    r('enoent', lambda: os.open('missing', os.O_RDONLY))
    os.mkdir('d')
    r('eisdir', lambda: os.open('d', os.O_WRONLY))
    r('enotdir', lambda: os.open('f/x', os.O_RDONLY))
    r('enotdir creat', lambda: os.open('f/x', os.O_CREAT | os.O_WRONLY, 0o644))
    r('trailing slash', lambda: os.open('f/', os.O_RDONLY))
    r('enametoolong', lambda: os.open('n' * 300, os.O_CREAT | os.O_WRONLY, 0o644))
    r('O_DIRECTORY on file', lambda: os.open('f', os.O_RDONLY | os.O_DIRECTORY))
    os.symlink('target', 'dangling')
    r('creat through dangling symlink', lambda: closed(os.open('dangling', os.O_CREAT | os.O_WRONLY, 0o644)))
    r('target', lambda: st('target'))
    r('excl on symlink', lambda: os.open('dangling', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    r('nofollow', lambda: os.open('dangling', os.O_RDONLY | os.O_NOFOLLOW))
    r('ls', ls)

def c_append():
    wf('a', b'abc')
    fd = os.open('a', os.O_WRONLY | os.O_APPEND)
    r('write', lambda: os.write(fd, b'def'))
    r('pwrite at 0 appends (Linux)', lambda: os.pwrite(fd, b'ghi', 0))
    r('offset', lambda: os.lseek(fd, 0, os.SEEK_CUR))
    os.close(fd)
    r('content', lambda: rd('a'))
    fd = os.open('a', os.O_RDWR | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    r('write after seek 0', lambda: os.write(fd, b'Z'))
    r('pread 0', lambda: os.pread(fd, 4, 0))
    os.close(fd)
    f1 = os.open('b', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    f2 = os.open('b', os.O_WRONLY | os.O_APPEND)
    for i in range(5):
        os.write(f1, b'1'); os.write(f2, b'22')
    os.close(f1); os.close(f2)
    r('two appenders', lambda: rd('b'))
    r('stat', lambda: st('b'))

def c_write_read():
    fd = os.open('w', os.O_CREAT | os.O_RDWR, 0o644)
    r('write', lambda: os.write(fd, b'hello'))
    r('pwrite past eof', lambda: os.pwrite(fd, b'end', 10000))
    r('size', lambda: os.fstat(fd).st_size)
    r('read hole', lambda: os.pread(fd, 20, 4998))
    r('read at eof', lambda: os.pread(fd, 10, 20000))
    r('read across eof', lambda: os.pread(fd, 100, 9990))
    os.lseek(fd, 0, os.SEEK_SET)
    r('read', lambda: os.read(fd, 5))
    r('seek end', lambda: os.lseek(fd, 0, os.SEEK_END))
    big = bytes(range(256)) * 12289  # 3 MiB + 256: several 1 MiB requests
    r('big pwrite', lambda: os.pwrite(fd, big, 20000))
    r('big pread', lambda: os.pread(fd, len(big) + 10, 20000))
    r('unaligned', lambda: os.pwrite(fd, b'x' * 5000, 4093))
    r('read unaligned', lambda: os.pread(fd, 5010, 4090))
    os.close(fd)
    fd = os.open('w', os.O_RDONLY)
    r('write on O_RDONLY', lambda: os.write(fd, b'no'))
    os.close(fd)
    fd = os.open('w', os.O_WRONLY)
    r('read on O_WRONLY', lambda: os.read(fd, 1))
    os.close(fd)
    r('stat', lambda: st('w'))
    r('content', lambda: rd('w'))
    r('write closed fd', lambda: os.write(fd, b'x'))

def c_truncate():
    wf('t', b'abcdefghij')
    r('shrink', lambda: os.truncate('t', 4)); r('c1', lambda: rd('t'))
    r('grow', lambda: os.truncate('t', 8)); r('c2', lambda: rd('t'))
    fd = os.open('t', os.O_RDWR)
    r('ftruncate', lambda: os.ftruncate(fd, 2))
    r('fstat size', lambda: os.fstat(fd).st_size)
    r('write at 0', lambda: os.write(fd, b'Q'))
    os.close(fd)
    r('c3', lambda: rd('t'))
    r('truncate dir', lambda: os.truncate('.', 0))
    r('truncate missing', lambda: os.truncate('missing', 0))
    r('truncate negative', lambda: os.truncate('t', -1))
    fd = os.open('t', os.O_RDONLY)
    r('ftruncate read-only fd', lambda: os.ftruncate(fd, 0))
    os.close(fd)
    os.utime('t', ns=(1000000000, 2000000000))
    r('mtime set', lambda: times('t'))
    os.truncate('t', 1)
    r('truncate moves mtime', lambda: os.stat('t').st_mtime_ns != 2000000000)
    r('stat', lambda: st('t'))

def c_fallocate():
    fd = os.open('fa', os.O_CREAT | os.O_RDWR, 0o644)
    r('posix_fallocate', lambda: os.posix_fallocate(fd, 0, 8192))
    r('size', lambda: os.fstat(fd).st_size)
    os.pwrite(fd, b'\x01' * 8192, 0)
    r('punch hole', lambda: fallocate(fd, 3, 4096, 4096))
    r('content', lambda: os.pread(fd, 8192, 0))
    r('keep size', lambda: fallocate(fd, 1, 8192, 4096))
    r('size after keep', lambda: os.fstat(fd).st_size)
    r('zero range', lambda: fallocate(fd, 0x10, 0, 100))
    r('content 2', lambda: os.pread(fd, 8192, 0))
    r('extend', lambda: fallocate(fd, 0, 0, 20000))
    r('size after extend', lambda: os.fstat(fd).st_size)
    r('punch without keep size', lambda: fallocate(fd, 2, 0, 10))
    os.close(fd)
    fd = os.open('fa', os.O_RDONLY)
    r('on read-only fd', lambda: fallocate(fd, 0, 0, 10))
    os.close(fd)
    r('stat', lambda: st('fa'))

def c_dirs():
    r('mkdir', lambda: os.mkdir('d', 0o750)); r('stat', lambda: st('d'))
    r('mkdir again', lambda: os.mkdir('d'))
    r('mkdir sticky', lambda: os.mkdir('s', 0o1777)); r('sticky', lambda: st('s'))
    r('mkdir 2777', lambda: os.mkdir('g', 0o2777)); r('g', lambda: st('g'))
    r('missing parent', lambda: os.mkdir('x/y'))
    wf('file', b'')
    r('under a file', lambda: os.mkdir('file/y'))
    os.mkdir('d/sub'); wf('d/sub/f', b'1')
    r('rmdir non-empty', lambda: os.rmdir('d'))
    r('rmdir a file', lambda: os.rmdir('d/sub/f'))
    r('unlink a dir', lambda: os.unlink('d/sub'))
    r('rmdir missing', lambda: os.rmdir('nope'))
    r('rmdir dot', lambda: os.rmdir('d/.'))
    r('nlink', lambda: st('d'))
    os.unlink('d/sub/f')
    r('rmdir sub', lambda: os.rmdir('d/sub'))
    r('nlink after', lambda: st('d'))
    r('rmdir d', lambda: os.rmdir('d'))
    r('makedirs', lambda: os.makedirs('a/b/c/d/e', 0o700))
    r('deep', lambda: [st('a'), st('a/b/c/d/e')])
    r('ls', ls)

def c_unlink_open():
    fd = os.open('u', os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b'before')
    r('unlink', lambda: os.unlink('u'))
    r('ls', ls)
    r('write after unlink', lambda: os.write(fd, b'-after'))
    r('read back', lambda: os.pread(fd, 100, 0))
    r('fstat', lambda: os.fstat(fd))
    r('ftruncate', lambda: os.ftruncate(fd, 3))
    r('read 2', lambda: os.pread(fd, 100, 0))
    r('fchmod', lambda: os.fchmod(fd, 0o600))
    r('fstat 2', lambda: os.fstat(fd))
    os.close(fd)
    r('stat gone', lambda: os.stat('u'))
    fd = os.open('v', os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b'old')
    os.unlink('v')
    fd2 = os.open('v', os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd2, b'new!')
    r('old handle', lambda: os.pread(fd, 10, 0))
    r('new name', lambda: rd('v'))
    os.close(fd); os.close(fd2)
    r('v', lambda: st('v'))

def c_rename():
    wf('a', b'A'); wf('b', b'B')
    r('over a file', lambda: os.rename('a', 'b')); r('b', lambda: rd('b')); r('ls 1', ls)
    os.mkdir('e1'); os.mkdir('e2')
    r('dir over empty dir', lambda: os.rename('e1', 'e2')); r('ls 2', ls)
    os.mkdir('n1'); os.mkdir('n2'); wf('n2/x', b'x')
    r('dir over non-empty dir', lambda: os.rename('n1', 'n2'))
    r('file over dir', lambda: os.rename('b', 'n1'))
    r('dir over file', lambda: os.rename('n1', 'b'))
    r('to itself', lambda: os.rename('b', 'b'))
    r('missing', lambda: os.rename('zz', 'yy'))
    r('into own subdir', lambda: os.rename('n2', 'n2/x2'))
    r('missing target dir', lambda: os.rename('b', 'nodir/b'))
    wf('c', b'C'); wf('d', b'D')
    r('noreplace existing', lambda: renameat2('c', 'd', 1))
    r('noreplace new', lambda: renameat2('c', 'e', 1))
    r('exchange', lambda: renameat2('e', 'd', 2)); r('e', lambda: rd('e')); r('d', lambda: rd('d'))
    r('exchange missing', lambda: renameat2('e', 'nope', 2))
    r('exchange dir and file', lambda: renameat2('n1', 'd', 2)); r('types', lambda: [st('n1'), st('d')])
    r('noreplace+exchange', lambda: renameat2('e', 'd', 3))
    r('bad flags', lambda: renameat2('e', 'q', 8))
    os.mkdir('p')
    r('across dirs', lambda: os.rename('e', 'p/e2')); r('p/e2', lambda: rd('p/e2'))
    r('dir with content across', lambda: os.rename('n2', 'p/n2')); r('p/n2/x', lambda: rd('p/n2/x'))
    r('ls', ls); r('ls p', lambda: ls('p'))

def c_links():
    wf('f', b'data')
    r('link', lambda: os.link('f', 'g'))
    r('f', lambda: st('f')); r('g', lambda: st('g'))
    r('link onto existing', lambda: os.link('f', 'g'))
    os.mkdir('d')
    r('link a dir', lambda: os.link('d', 'dl'))
    r('link missing', lambda: os.link('zz', 'yy'))
    r('unlink f', lambda: os.unlink('f'))
    r('g after', lambda: st('g')); r('g content', lambda: rd('g'))
    r('symlink', lambda: os.symlink('g', 's'))
    r('readlink', lambda: os.readlink('s'))
    r('lstat', lambda: st('s')); r('stat through', lambda: st('s', True)); r('read through', lambda: rd('s'))
    r('symlink onto existing', lambda: os.symlink('x', 's'))
    os.symlink('nowhere', 'dang')
    r('open dangling', lambda: os.open('dang', os.O_RDONLY))
    os.symlink('loop2', 'loop1'); os.symlink('loop1', 'loop2')
    r('loop', lambda: os.open('loop1', os.O_RDONLY))
    r('readlink a file', lambda: os.readlink('g'))
    r('long target', lambda: os.symlink('x' * 1000, 'lt')); r('readlink long', lambda: len(os.readlink('lt')))
    r('relative up', lambda: os.symlink('../g', 'd/up')); r('read up', lambda: rd('d/up'))
    r('hard link to a symlink', lambda: os.link('s', 's2', follow_symlinks=False)); r('s2', lambda: st('s2'))
    r('link through symlink', lambda: os.link('s', 'g2', follow_symlinks=True)); r('g2', lambda: st('g2'))
    r('d', lambda: st('d'))
    r('ls', ls)

def c_attrs():
    wf('f', b'x')
    r('chmod 4751', lambda: os.chmod('f', 0o4751)); r('s1', lambda: st('f'))
    r('chmod 1600', lambda: os.chmod('f', 0o1600)); r('s2', lambda: st('f'))
    r('chown', lambda: os.chown('f', 1000, 1001)); r('s3', lambda: st('f'))
    r('chmod 6755', lambda: os.chmod('f', 0o6755)); r('s4', lambda: st('f'))
    r('chown clears set-id bits', lambda: os.chown('f', 1000, 1001)); r('s5', lambda: st('f'))
    r('chown gid only', lambda: os.chown('f', -1, 1002)); r('s6', lambda: st('f'))
    r('utime ns', lambda: os.utime('f', ns=(1234567890123456789, 1111111111222222222))); r('t1', lambda: times('f'))
    r('utime before 1970', lambda: os.utime('f', ns=(-1000000001, 5))); r('t2', lambda: times('f'))
    os.symlink('f', 's')
    r('lchown', lambda: os.chown('s', 1003, 1004, follow_symlinks=False)); r('s', lambda: st('s')); r('f', lambda: st('f'))
    r('lutimes', lambda: os.utime('s', ns=(7, 8), follow_symlinks=False))
    r('ts', lambda: times('s', False)); r('tf', lambda: times('f'))
    r('utime through symlink', lambda: os.utime('s', ns=(9, 10))); r('tf2', lambda: times('f'))
    r('chmod missing', lambda: os.chmod('missing', 0o600))
    now = time.time_ns()
    r('utime now', lambda: os.utime('f'))
    r('now resolved', lambda: abs(os.stat('f').st_mtime_ns - now) < 60 * 10**9)
    os.mkdir('d')
    r('chmod dir 2770', lambda: os.chmod('d', 0o2770)); r('d', lambda: st('d'))
    fd = os.open('f', os.O_RDONLY)
    r('fchmod', lambda: os.fchmod(fd, 0o640)); r('fchown', lambda: os.fchown(fd, 5, 6))
    r('futimens', lambda: os.utime(fd, ns=(3, 4)))
    os.close(fd)
    r('after fd ops', lambda: [st('f'), times('f')])

def c_xattrs():
    wf('f', b'x'); os.mkdir('d'); os.symlink('f', 's')
    r('set', lambda: os.setxattr('f', 'user.a', b'1'))
    r('get', lambda: os.getxattr('f', 'user.a'))
    r('create existing', lambda: os.setxattr('f', 'user.a', b'2', os.XATTR_CREATE))
    r('replace missing', lambda: os.setxattr('f', 'user.b', b'2', os.XATTR_REPLACE))
    r('replace', lambda: os.setxattr('f', 'user.a', b'22', os.XATTR_REPLACE)); r('get 2', lambda: os.getxattr('f', 'user.a'))
    r('4000 bytes', lambda: os.setxattr('f', 'user.big', b'v' * 4000)); r('get big', lambda: os.getxattr('f', 'user.big'))
    r('empty value', lambda: os.setxattr('f', 'user.e', b'')); r('get empty', lambda: os.getxattr('f', 'user.e'))
    r('list', lambda: sorted(os.listxattr('f')))
    r('remove', lambda: os.removexattr('f', 'user.a'))
    r('remove missing', lambda: os.removexattr('f', 'user.a'))
    r('get missing', lambda: os.getxattr('f', 'user.a'))
    r('on a dir', lambda: os.setxattr('d', 'user.x', b'dir')); r('get dir', lambda: os.getxattr('d', 'user.x'))
    r('user.* on a symlink', lambda: os.setxattr('s', 'user.y', b'1', follow_symlinks=False))
    r('through symlink', lambda: os.setxattr('s', 'user.z', b'via', follow_symlinks=True)); r('f has z', lambda: os.getxattr('f', 'user.z'))
    r('trusted', lambda: os.setxattr('f', 'trusted.t', b'tt')); r('get trusted', lambda: os.getxattr('f', 'trusted.t'))
    r('trusted on symlink', lambda: os.setxattr('s', 'trusted.l', b'L', follow_symlinks=False))
    r('get trusted on symlink', lambda: os.getxattr('s', 'trusted.l', follow_symlinks=False))
    r('list symlink', lambda: sorted(os.listxattr('s', follow_symlinks=False)))
    r('unknown namespace', lambda: os.setxattr('f', 'foo.bar', b'1'))
    r('too big', lambda: os.setxattr('f', 'user.huge', b'x' * 70000))
    r('name too long', lambda: os.setxattr('f', 'user.' + 'n' * 300, b'1'))
    r('list 2', lambda: sorted(os.listxattr('f')))
    r('missing file', lambda: os.getxattr('nope', 'user.a'))

def c_mmap():
    fd = os.open('m', os.O_CREAT | os.O_RDWR, 0o644)
    os.ftruncate(fd, 8192)
    mm = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    mm[0:5] = b'hello'
    mm[4096:4101] = b'world'
    r('msync', lambda: mm.flush())
    mm.close()
    r('pread', lambda: os.pread(fd, 5, 4096))
    os.close(fd)
    r('content', lambda: rd('m'))
    r('stat', lambda: st('m'))
    wf('n', b'abc' * 1000)
    fd = os.open('n', os.O_RDONLY)
    mm = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
    r('mapped read', lambda: mm[2995:3000])
    mm.close(); os.close(fd)

def c_permissions():
    os.mkdir('closed', 0o755); wf('closed/secret', b's', 0o600)
    os.mkdir('open'); os.chmod('open', 0o777)
    os.mkdir('sgid'); os.chown('sgid', 0, 1234); os.chmod('sgid', 0o2777)
    os.mkdir('sticky'); os.chmod('sticky', 0o1777); wf('sticky/rootfile', b'r'); os.chmod('sticky/rootfile', 0o666)
    wf('pub', b'p', 0o644)
    wf('open/suidfile', b'0123'); os.chmod('open/suidfile', 0o6777)
    def own(p, data):
        wf(p, data, 0o640)
        return st(p)
    as_user(65534, 65534, [
        ('create in a closed dir', lambda: os.open('closed/mine', os.O_CREAT | os.O_WRONLY, 0o644)),
        ('read a 0600 file', lambda: os.open('closed/secret', os.O_RDONLY)),
        ('stat it', lambda: st('closed/secret')),
        ('write a 0644 file', lambda: os.open('pub', os.O_WRONLY)),
        ('truncate it', lambda: os.truncate('pub', 0)),
        ('create in an open dir', lambda: own('open/mine', b'mine')),
        ('mkdir in an open dir', lambda: (os.mkdir('open/md', 0o775), st('open/md'))[1]),
        ('create under set-gid dir', lambda: own('sgid/f', b'f')),
        ('mkdir under set-gid dir', lambda: (os.mkdir('sgid/sub', 0o777), st('sgid/sub'))[1]),
        ('set-gid bit of a non-member', lambda: (closed(os.open('sgid/g', os.O_CREAT | os.O_WRONLY, 0o2755)), st('sgid/g'))[1]),
        ('chmod not mine', lambda: os.chmod('pub', 0o666)),
        ('chown mine to root', lambda: os.chown('open/mine', 0, 0)),
        ('chmod mine', lambda: (os.chmod('open/mine', 0o4700), st('open/mine'))[1]),
        ('unlink in sticky dir', lambda: os.unlink('sticky/rootfile')),
        ('touch now not mine', lambda: os.utime('pub')),
        ('utime explicit not mine', lambda: os.utime('pub', ns=(1, 2))),
        ('rename mine', lambda: os.rename('open/mine', 'open/mine2')),
        ('user xattr not mine', lambda: os.setxattr('pub', 'user.x', b'1')),
        ('user xattr mine', lambda: os.setxattr('open/mine2', 'user.x', b'1')),
        ('trusted xattr', lambda: os.setxattr('open/mine2', 'trusted.x', b'1')),
        ('write to a set-id file clears the bits', lambda: wr('open/suidfile', b'9')),
        ('suidfile', lambda: st('open/suidfile')),
        ('mknod a device', lambda: os.mknod('open/dev', 0o600 | stat.S_IFCHR, os.makedev(1, 3))),
        ('link to a file not mine', lambda: os.link('pub', 'open/publink')),
    ])
    r('as root after', lambda: [st('open/mine2'), st('sgid/f'), st('sgid/sub'), st('open/suidfile')])
    r('ls open', lambda: ls('open'))

def c_readdir():
    names = ['f%03d_%s' % (i, 'x' * (i % 60)) for i in range(400)]
    for n in names: wf(n, b'')
    os.mkdir('sub'); os.symlink('f000_', 'ln'); os.mkfifo('fifo')
    r('listdir', ls)
    r('scandir types', lambda: sorted([e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False)] for e in os.scandir('.')))
    for n in names[::2]: os.unlink(n)
    r('after unlinks', ls)
    r('empty dir', lambda: ls('sub'))
    r('listdir a file', lambda: os.listdir('f001_x'))
    r('listdir missing', lambda: os.listdir('missing'))
    fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    r('listdir by fd', lambda: sorted(os.listdir(fd)))
    os.close(fd)

def c_statfs():
    s = os.statvfs('.')
    r('statvfs', lambda: {'bsize': s.f_bsize, 'frsize': s.f_frsize, 'blocks': s.f_blocks, 'files': s.f_files,
                          'namemax': s.f_namemax, 'rdonly': bool(s.f_flag & os.ST_RDONLY), 'nosuid': bool(s.f_flag & os.ST_NOSUID)})

def c_sync():
    fd = os.open('s', os.O_CREAT | os.O_RDWR | os.O_SYNC, 0o644)
    r('O_SYNC write', lambda: os.write(fd, b'x'))
    r('fsync', lambda: os.fsync(fd)); r('fdatasync', lambda: os.fdatasync(fd))
    os.close(fd)
    fd = os.open('s', os.O_RDONLY)
    r('fsync read-only fd', lambda: os.fsync(fd))
    os.close(fd)
    d = os.open('.', os.O_RDONLY | os.O_DIRECTORY)
    r('fsync dir', lambda: os.fsync(d)); r('fdatasync dir', lambda: os.fdatasync(d))
    os.close(d)
    r('content', lambda: rd('s'))

def c_seek():
    fd = os.open('sp', os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b'a' * 4096, 0); os.pwrite(fd, b'b' * 4096, 1 << 20)
    os.fsync(fd)
    r('data 0', lambda: os.lseek(fd, 0, os.SEEK_DATA))
    r('hole 0', lambda: os.lseek(fd, 0, os.SEEK_HOLE))
    r('data after hole', lambda: os.lseek(fd, 8192, os.SEEK_DATA))
    r('data past eof', lambda: os.lseek(fd, 2 << 20, os.SEEK_DATA))
    r('seek negative', lambda: os.lseek(fd, -5, os.SEEK_SET))
    os.close(fd)

def c_special():
    r('mkfifo', lambda: os.mkfifo('p', 0o640)); r('p', lambda: st('p'))
    r('mknod regular', lambda: os.mknod('r', 0o600 | stat.S_IFREG)); r('r', lambda: st('r'))
    r('mknod char', lambda: os.mknod('c', 0o666 | stat.S_IFCHR, os.makedev(1, 3))); r('c', lambda: st('c'))
    r('mknod socket', lambda: os.mknod('so', 0o600 | stat.S_IFSOCK)); r('so', lambda: st('so'))
    r('mknod existing', lambda: os.mknod('p'))
    r('read the char device', lambda: rd('c'))
    r('ls', ls)

def c_copy():
    wf('src', bytes(range(256)) * 1000)
    fi = os.open('src', os.O_RDONLY); fo = os.open('dst', os.O_CREAT | os.O_WRONLY, 0o644)
    r('copy_file_range', lambda: os.copy_file_range(fi, fo, 256000))
    os.close(fi); os.close(fo)
    r('dst', lambda: rd('dst'))
    fi = os.open('src', os.O_RDONLY); fo = os.open('dst2', os.O_CREAT | os.O_WRONLY, 0o644)
    r('sendfile', lambda: os.sendfile(fo, fi, 100, 5000))
    os.close(fi); os.close(fo)
    r('dst2', lambda: rd('dst2'))

globals()['c_' + case]()
print(json.dumps(LOG))
`;

const CASES = [
  'create_flags',
  'append',
  'write_read',
  'truncate',
  'fallocate',
  'dirs',
  'unlink_open',
  'rename',
  'links',
  'attrs',
  'xattrs',
  'mmap',
  'permissions',
  'readdir',
  'statfs',
  'sync',
  'seek',
  'special',
  'copy',
];

async function pyCase(root: string, name: string): Promise<[string, unknown][]> {
  const r = await run('python3', [casesPy, root, name], { maxBuffer: 16 << 20 });
  return JSON.parse(r.stdout) as [string, unknown][];
}

// The same through Node's own fs (libuv's thread pool), as a Node application would use it.
async function nodeCase(root: string): Promise<unknown[]> {
  const d = join(root, 'node');
  const out: unknown[] = [];
  const rec = async (label: string, fn: () => Promise<unknown>) => {
    try {
      out.push([label, await fn()]);
    } catch (e) {
      out.push([label, `E:${(e as NodeJS.ErrnoException).code}`]);
    }
  };
  const pick = (s: import('node:fs').Stats) => ({ mode: (s.mode & 0o7777).toString(8), size: s.isDirectory() ? 0 : s.size, nlink: s.nlink, uid: s.uid, gid: s.gid });
  await rec('mkdir -p', async () => relative(root, (await fsp.mkdir(join(d, 'a/b'), { recursive: true }))!));
  await rec('writeFile', () => fsp.writeFile(join(d, 'a/b/f.txt'), 'hello node', { mode: 0o640 }));
  await rec('appendFile', () => fsp.appendFile(join(d, 'a/b/f.txt'), ' + more'));
  await rec('readFile', () => fsp.readFile(join(d, 'a/b/f.txt'), 'utf8'));
  await rec('stat', async () => pick(await fsp.stat(join(d, 'a/b/f.txt'))));
  await rec('copyFile', () => fsp.copyFile(join(d, 'a/b/f.txt'), join(d, 'a/copy.txt')));
  await rec('copy', () => fsp.readFile(join(d, 'a/copy.txt'), 'utf8'));
  await rec('copyFile EXCL', () => fsp.copyFile(join(d, 'a/b/f.txt'), join(d, 'a/copy.txt'), 1));
  await rec('utimes', () => fsp.utimes(join(d, 'a/copy.txt'), 1000, 2000.5));
  await rec('mtimeMs', async () => (await fsp.stat(join(d, 'a/copy.txt'))).mtimeMs);
  await rec('cp -r', () => fsp.cp(join(d, 'a'), join(d, 'c'), { recursive: true }));
  await rec('readdir', async () => (await fsp.readdir(d, { recursive: true })).sort());
  await rec('rename', () => fsp.rename(join(d, 'c'), join(d, 'a/c')));
  await rec('rm -r', () => fsp.rm(join(d, 'a/c'), { recursive: true }));
  await rec('open wx existing', () => fsp.open(join(d, 'a/copy.txt'), 'wx'));
  await rec('handle ops', async () => {
    const h = await fsp.open(join(d, 'h'), 'w+', 0o600);
    await h.write(Buffer.alloc(100000, 7), 0, 100000, 5);
    await h.truncate(50000);
    await h.datasync();
    const { bytesRead } = await h.read(Buffer.alloc(10), 0, 10, 49995);
    const st = await h.stat();
    await h.close();
    return [bytesRead, st.size];
  });
  await rec('readdir withFileTypes', async () =>
    (await fsp.readdir(join(d, 'a'), { withFileTypes: true })).map((e) => [e.name, e.isDirectory()]).sort());
  await rec('rmdir non-empty', () => fsp.rmdir(join(d, 'a')));
  return out;
}

describe('POSIX behaviour through the FUSE interception layer', { skip }, () => {
  let m: FuseMount | undefined;
  let events = 0;

  before(() => {
    ensureNativeBuilt();
    rmSync(base, { recursive: true, force: true });
    mkdirSync(plainRoot, { recursive: true, mode: 0o755 });
    mkdirSync(fuseRoot, { recursive: true, mode: 0o755 });
    writeFileSync(casesPy, PY);
    m = mount({
      path: fuseRoot,
      name: `posix${process.pid}`,
      onOp: (op) => {
        events++;
        if (op.job) m!.reply(op.job, 0);
      },
    });
  });

  after(() => {
    m?.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  for (const name of CASES) {
    it(name, async () => {
      const plain = await pyCase(plainRoot, name);
      const before = events;
      const fused = await pyCase(fuseRoot, name);
      assert.deepEqual(fused, plain);
      if (name !== 'statfs' && name !== 'seek') assert.ok(events > before, 'the case went through the mount');
    });
  }

  it('node fs (libuv thread pool)', async () => {
    const plain = await nodeCase(plainRoot);
    const fused = await nodeCase(fuseRoot);
    assert.deepEqual(fused, plain);
  });

  it('the data lies in the real directory underneath', async () => {
    assert.equal(await fsp.readFile(join(m!.underPath, 'node/a/b/f.txt'), 'utf8'), 'hello node + more');
    assert.deepEqual((await fsp.readdir(join(m!.underPath, 'links'))).sort(), (await fsp.readdir(join(plainRoot, 'links'))).sort());
  });
});
