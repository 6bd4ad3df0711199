// The events of the FUSE interception layer: their order and contents, the application's call held until
// reply(), read-only mounts, unmounting under an application, and auto_unmount when the daemon dies.
//
// Applications are python3 child processes: the JS thread of this process answers the mount's requests,
// so it never touches a mount with a synchronous call.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, constants as C, ftruncateSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureNativeBuilt, mount, peer, type FuseMount, type FuseMountOptions, type FuseOp } from '../../src/replication/fuse/native.ts';
import { installDir } from '../../src/util/paths.ts';
import { fuseSkipReason } from './fuse-env.ts';

const run = promisify(execFile);

const skip = fuseSkipReason();

const base = `/tmp/stayup-events-${process.pid}`;
const mounts: FuseMount[] = [];
let seq = 0;

/** A fresh directory with the mount over it; every event lands in `events`, answered by `answer`. */
function fresh(opts: Partial<FuseMountOptions> & { answer?: (op: FuseOp, m: FuseMount) => void } = {}) {
  const dir = join(base, `m${++seq}`);
  mkdirSync(dir, { recursive: true });
  const events: FuseOp[] = [];
  const answer = opts.answer ?? ((op: FuseOp, mm: FuseMount) => op.job && mm.reply(op.job, 0));
  const m: FuseMount = mount({
    name: `ev${seq}`,
    ...opts,
    path: dir,
    onOp: (op) => {
      events.push(op);
      answer(op, m);
    },
  });
  mounts.push(m);
  return { dir, m, events };
}

async function py(cwd: string, code: string): Promise<string> {
  const r = await run('python3', ['-c', `import os, sys, time, ctypes\nos.umask(0o022)\n${code}`], { cwd });
  return r.stdout;
}

/** A python child that prints lines; waitFor(re) resolves once a complete line matches re. */
function pyChild(cwd: string, code: string) {
  const child: ChildProcess = spawn('python3', ['-u', '-c', `import os, sys, time\n${code}`], { cwd, stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const lines = () => out.slice(0, out.lastIndexOf('\n') + 1).split('\n');
  const matches = (re: RegExp) => lines().some((l) => re.test(l));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) if (matches(w.re)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  return {
    child,
    out: () => out,
    exited,
    waitFor: (re: RegExp) => new Promise<void>((resolve) => (matches(re) ? resolve() : waiters.push({ re, resolve }))),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting');
    await sleep(5);
  }
}
const mountedAt = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);

/** The fields of an event a test compares (no job ids, no times unless set explicitly). */
function shape(op: FuseOp): Record<string, unknown> {
  const o: Record<string, unknown> = { ...op };
  delete o.job;
  if (op.op !== 'setattr') delete o.mtimeNs;
  if ('data' in op) o.data = op.data.toString();
  if ('value' in op) o.value = op.value.toString();
  if (op.op === 'setattr' && op.size !== undefined) delete o.mtimeNs; // a truncation's mtime is "now"
  return o;
}

describe('FUSE interception events', { skip }, () => {
  before(() => {
    ensureNativeBuilt();
    rmSync(base, { recursive: true, force: true });
    mkdirSync(base, { recursive: true });
  });
  after(() => {
    for (const m of mounts) m.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  it('a sequence of mutations gives the expected events in order, with paths after renames and links', async () => {
    const { dir, m, events } = fresh();
    await py(
      dir,
      `
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir('a', 0o755)
fd = os.open('a/f', os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'hello'); os.close(fd)
os.mkdir('a/sub', 0o700)
os.rename('a', 'b')
fd = os.open('b/f', os.O_WRONLY | os.O_APPEND); os.write(fd, b' world'); os.fsync(fd); os.fdatasync(fd); os.close(fd)
os.chmod('b/f', 0o600)
os.chown('b/f', 12, 34)
os.link('b/f', 'b/g')
os.unlink('b/f')
os.symlink('g', 'b/s')
os.setxattr('b/g', 'user.k', b'v')
os.removexattr('b/g', 'user.k')
os.truncate('b/g', 3)
os.utime('b/g', ns=(1000000000123, 2000000000456))
os.rmdir('b/sub')
assert libc.renameat2(-100, b'b/g', -100, b'b/h', 1) == 0
os.mkfifo('b/p', 0o640)
fd = os.open('b/h', os.O_RDWR); os.posix_fallocate(fd, 0, 8192); os.close(fd)
d = os.open('b', os.O_RDONLY | os.O_DIRECTORY); os.fsync(d); os.close(d)
fd = os.open('b/h', os.O_WRONLY | os.O_TRUNC); os.close(fd)
`,
    );
    // releases are sent by the kernel asynchronously after close(): checked apart from the strict order
    await until(() => events.filter((e) => e.op === 'release').length === 4);
    const strict = events.filter((e) => e.op !== 'release').map(shape);
    const F_SIFO = 0o010000;
    assert.deepEqual(strict, [
      { op: 'mkdir', path: 'a', mode: 0o755, uid: 0, gid: 0 },
      { op: 'create', handle: 1, path: 'a/f', flags: 1, mode: 0o644, uid: 0, gid: 0 },
      { op: 'write', handle: 1, offset: 0, data: 'hello' },
      { op: 'mkdir', path: 'a/sub', mode: 0o700, uid: 0, gid: 0 },
      { op: 'rename', path: 'a', newPath: 'b', flags: 0 },
      { op: 'open', handle: 2, path: 'b/f', flags: 1 },
      { op: 'write', handle: 2, offset: 5, data: ' world' },
      { op: 'fsync', handle: 2, datasync: false },
      { op: 'fsync', handle: 2, datasync: true },
      { op: 'setattr', path: 'b/f', mode: 0o600 },
      { op: 'setattr', path: 'b/f', uid: 12, gid: 34 },
      { op: 'link', path: 'b/f', newPath: 'b/g' },
      { op: 'unlink', path: 'b/f' },
      { op: 'symlink', path: 'b/s', target: 'g', uid: 0, gid: 0 },
      { op: 'setxattr', path: 'b/g', name: 'user.k', value: 'v', flags: 0 },
      { op: 'removexattr', path: 'b/g', name: 'user.k' },
      { op: 'setattr', path: 'b/g', size: 3 },
      { op: 'setattr', path: 'b/g', atimeNs: 1000000000123n, mtimeNs: 2000000000456n },
      { op: 'rmdir', path: 'b/sub' },
      { op: 'rename', path: 'b/g', newPath: 'b/h', flags: 1 },
      { op: 'mknod', path: 'b/p', mode: F_SIFO | 0o640, rdev: 0, uid: 0, gid: 0 },
      { op: 'open', handle: 3, path: 'b/h', flags: 2 },
      { op: 'fallocate', handle: 3, mode: 0, offset: 0, length: 8192 },
      { op: 'fsyncdir', path: 'b', datasync: false },
      { op: 'open', handle: 4, path: 'b/h', flags: 0o1001 },
    ]);
    // every handle is released once, after its last event
    for (const h of [1, 2, 3, 4]) {
      const rel = events.findIndex((e) => e.op === 'release' && e.handle === h);
      const last = events.map((e) => e.op !== 'release' && 'handle' in e && e.handle === h).lastIndexOf(true);
      assert.ok(rel > last, `release of handle ${h} after its last event`);
      assert.equal(events[rel]!.job, 0);
    }
    // times: bigint ns and what the file got; the write's mtime is the file's mtime after the write
    const wr = events.find((e) => e.op === 'write' && e.handle === 2);
    assert.equal(typeof (wr as { mtimeNs: bigint }).mtimeNs, 'bigint');
    const trunc = events.find((e) => e.op === 'open' && e.handle === 4) as { mtimeNs?: bigint };
    const st = statSync(join(m.underPath, 'b/h'), { bigint: true });
    assert.equal(trunc.mtimeNs, st.mtimeNs, 'O_TRUNC open carries the mtime the truncation gave');
    assert.ok(Buffer.isBuffer((events.find((e) => e.op === 'write') as { data: Buffer }).data));
  });

  it('paths follow a rename of an ancestor while a file is open, and unlinked files go by handle or null', async () => {
    const { dir, events } = fresh();
    await py(
      dir,
      `
os.makedirs('x/y')
fd = os.open('x/y/f', os.O_CREAT | os.O_RDWR, 0o644)
os.rename('x', 'z')
os.write(fd, b'1')
os.fchmod(fd, 0o640)
os.ftruncate(fd, 10)
os.chmod('z/y/f', 0o600)
os.unlink('z/y/f')
os.fchmod(fd, 0o644)
fd2 = os.open('/proc/self/fd/%d' % fd, os.O_WRONLY)
os.write(fd2, b'2')
os.close(fd2); os.close(fd)
`,
    );
    await until(() => events.filter((e) => e.op === 'release').length === 2);
    const s = events.filter((e) => e.op !== 'release' && e.op !== 'mkdir').map(shape);
    assert.deepEqual(s, [
      { op: 'create', handle: 1, path: 'x/y/f', flags: 2, mode: 0o644, uid: 0, gid: 0 },
      { op: 'rename', path: 'x', newPath: 'z', flags: 0 },
      { op: 'write', handle: 1, offset: 0, data: '1' },
      { op: 'setattr', path: 'z/y/f', mode: 0o640 },
      { op: 'setattr', handle: 1, size: 10 },
      { op: 'setattr', path: 'z/y/f', mode: 0o600 },
      { op: 'unlink', path: 'z/y/f' },
      { op: 'setattr', handle: 1, mode: 0o644 }, // no name left, a handle is open
      { op: 'open', handle: 2, path: null, flags: 1 }, // opened through /proc: no name to replicate
      { op: 'write', handle: 2, offset: 0, data: '2' },
    ]);
  });

  it('a hard-linked file is named by one of its existing names, whichever name went away', async () => {
    const { dir, events } = fresh({ entryTimeoutMs: 60_000, attrTimeoutMs: 60_000 });
    await py(
      dir,
      `
fd = os.open('n1', os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd)
os.link('n1', 'n2')
os.link('n1', 'n3')
os.unlink('n1')          # the name the daemon first knew
os.unlink('n3')          # the last name it was given
os.chmod('n2', 0o600)    # the kernel still knows n2: no lookup, the daemon has to find it
fd = os.open('n2', os.O_WRONLY); os.write(fd, b'x'); os.close(fd)
os.link('n2', 'n4'); os.unlink('n2')
os.chmod('n4', 0o640)
`,
    );
    const named = events.filter((e) => e.op === 'setattr' || e.op === 'open').map((e) => [e.op, (e as { path?: string }).path]);
    assert.deepEqual(named, [
      ['setattr', 'n2'],
      ['open', 'n2'],
      ['setattr', 'n4'],
    ]);
  });

  it('new objects belong to the caller, with the group of a set-group-ID parent and the exact mode', async () => {
    const { dir, events } = fresh();
    await py(dir, `os.mkdir('g'); os.chown('g', 0, 4321); os.chmod('g', 0o2777); os.mkdir('o'); os.chmod('o', 0o777)`);
    await py(
      dir,
      `
os.setgroups([]); os.setgid(2000); os.setuid(1000)
os.umask(0o027)
fd = os.open('o/f', os.O_CREAT | os.O_WRONLY, 0o666); os.close(fd)
os.mkdir('g/d', 0o777)
os.symlink('x', 'g/l')
os.mknod('o/p', 0o666 | 0o010000)
`,
    );
    const created = events.filter((e) => ['create', 'mkdir', 'symlink', 'mknod'].includes(e.op) && (e as { uid: number }).uid === 1000).map(shape);
    assert.deepEqual(created, [
      { op: 'create', handle: 1, path: 'o/f', flags: 1, mode: 0o640, uid: 1000, gid: 2000 },
      { op: 'mkdir', path: 'g/d', mode: 0o2750, uid: 1000, gid: 4321 },
      { op: 'symlink', path: 'g/l', target: 'x', uid: 1000, gid: 4321 },
      { op: 'mknod', path: 'o/p', mode: 0o010640, rdev: 0, uid: 1000, gid: 2000 },
    ]);
  });

  it("holds the application's write() until reply(), with the data already applied underneath", async () => {
    const held: FuseOp[] = [];
    const { dir, m } = fresh({ answer: (op, mm) => (op.op === 'write' ? held.push(op) : op.job && mm.reply(op.job, 0)) });
    const app = pyChild(
      dir,
      `
fd = os.open('w', os.O_CREAT | os.O_WRONLY, 0o644)
print('opened')
t = time.monotonic(); n = os.write(fd, b'x' * 4096); print('written', n, time.monotonic() - t)
try:
    os.write(fd, b'y')
except OSError as e:
    print('second write failed', e.errno)
os.close(fd)
`,
    );
    await until(() => held.length === 1);
    assert.equal(statSync(join(m.underPath, 'w')).size, 4096, 'applied locally before JavaScript answered');
    await sleep(300);
    assert.ok(!app.out().includes('written'), 'write() has not returned before reply()');
    assert.equal(m.stats().pendingJobs, 1);
    assert.equal(m.reply(held[0]!.job, 0), true);
    assert.equal(m.reply(held[0]!.job, 0), false, 'a job is answered once');
    await app.waitFor(/^written 4096 [\d.]+$/);
    const secs = Number(/written 4096 ([\d.]+)/.exec(app.out())![1]);
    assert.ok(secs >= 0.29, `write() took ${secs}s, at least the 300 ms before reply()`);
    // an errno from JavaScript is what the application gets
    await until(() => held.length === 2);
    m.reply(held[1]!.job, 28);
    await app.exited;
    assert.match(app.out(), /second write failed 28/);
  });

  it('holdMetadata false: name and attribute changes return at once, in order; data changes and fsync still wait', async () => {
    const held: FuseOp[] = [];
    const { dir, m, events } = fresh({ holdMetadata: false, answer: (op) => op.job && held.push(op) });
    const app = pyChild(
      dir,
      `
os.mkdir('d', 0o755)
fd = os.open('d/f', os.O_CREAT | os.O_WRONLY, 0o644)
os.chmod('d/f', 0o600)
os.rename('d/f', 'd/g')
os.symlink('g', 'd/s')
print('metadata done')
os.write(fd, b'abc'); print('written')
os.ftruncate(fd, 1); print('truncated')
os.fsync(fd); print('synced')
os.close(fd)
`,
    );
    await app.waitFor(/^metadata done$/);
    assert.deepEqual(
      events.slice(0, 5).map((e) => [e.op, e.job]),
      [['mkdir', 0], ['create', 0], ['setattr', 0], ['rename', 0], ['symlink', 0]],
      'answered by C: nothing for JavaScript to reply to',
    );
    for (const [op, line] of [['write', 'written'], ['setattr', 'truncated'], ['fsync', 'synced']] as const) {
      await until(() => held.length === 1);
      assert.equal(held[0]!.op, op);
      await sleep(100);
      assert.ok(!app.out().includes(line), `${op} returned before reply()`);
      m.reply(held.shift()!.job, 0);
      await app.waitFor(new RegExp(`^${line}$`));
    }
    assert.equal(await app.exited, 0);
  });

  it('fsync: the event comes while the local sync runs, and the call returns once both are done', async () => {
    const held: FuseOp[] = [];
    const { dir, m } = fresh({ answer: (op, mm) => (op.op === 'fsync' ? held.push(op) : op.job && mm.reply(op.job, 0)) });
    const app = pyChild(
      dir,
      `fd = os.open('f', os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'x' * 8192)
os.fsync(fd); print('synced')
try:
    os.fsync(fd)
except OSError as e:
    print('second fsync failed', e.errno)`,
    );
    await until(() => held.length === 1);
    await sleep(200);
    assert.ok(!app.out().includes('synced'), 'fsync returned before reply()');
    assert.equal(m.stats().pendingJobs, 1);
    m.reply(held[0]!.job, 0);
    await app.waitFor(/^synced$/);
    // an errno from JavaScript reaches the application though the local sync succeeded
    await until(() => held.length === 2);
    m.reply(held[1]!.job, 5);
    await app.exited;
    assert.match(app.out(), /second fsync failed 5/);
  });

  it('while writable the kernel caches names and attributes; turning read-only drops what it cached', async () => {
    const { dir, m } = fresh({ attrTimeoutMs: 60_000, entryTimeoutMs: 60_000 });
    await py(dir, `open('f', 'w').write('1')`);
    // stat(1), not python: its imports list the working directory, and readdirplus refreshes what it lists
    const look = async (): Promise<string> => (await run('sh', ['-c', 'for n in f x; do stat -c "%n %s" $n 2>/dev/null || echo "$n none"; done'], { cwd: dir })).stdout;
    assert.equal(await look(), 'f 1\nx none\n');
    // changed underneath, as the secondary's stream does
    appendFileSync(join(m.underPath, 'f'), '12345\n');
    writeFileSync(join(m.underPath, 'x'), 'new\n');
    assert.equal(await look(), 'f 1\nx none\n', 'writable: the cached name and size stand');
    assert.equal(m.setReadOnly(true), 0);
    assert.equal(await look(), 'f 7\nx 4\n', 'read-only: nothing cached');
  });

  it('a read-only mount answers EROFS; the switch works both ways', async () => {
    const seed = join(base, `m${seq + 1}`);
    mkdirSync(seed, { recursive: true });
    await run('sh', ['-c', `echo data > ${seed}/f`]);
    const { dir, m, events } = fresh({ readOnly: true });
    const probe = (n: number) => `
def t(label, fn):
    try:
        fn(); print(label, 'ok')
    except OSError as e:
        print(label, e.errno)
t('read', lambda: open('f').read())
t('write', lambda: os.open('f', os.O_WRONLY))
t('create', lambda: os.open('g${n}', os.O_CREAT | os.O_WRONLY, 0o644))
t('mkdir', lambda: os.mkdir('d${n}'))
t('chmod', lambda: os.chmod('f', 0o600))
t('setxattr', lambda: os.setxattr('f', 'user.a', b'1'))
`;
    const refused = 'read ok\nwrite 30\ncreate 30\nmkdir 30\nchmod 30\nsetxattr 30\n';
    assert.equal(await py(dir, probe(1)), refused);
    assert.match(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir)!, / ro[, ]/);
    assert.equal(m.stats().readOnly, true);
    assert.equal(events.length, 0);
    assert.equal(m.setReadOnly(false), 0);
    assert.equal(await py(dir, probe(2)), 'read ok\nwrite ok\ncreate ok\nmkdir ok\nchmod ok\nsetxattr ok\n');
    assert.ok(events.some((e) => e.op === 'mkdir'));
    // switching to read-only while a file is open for writing: the kernel refuses its flag (EBUSY), C
    // answers EROFS all the same, to that file and to everything else
    const app = pyChild(dir, `fd = os.open('f', os.O_WRONLY)\nprint('open')\nsys.stdin.readline()\ntry:\n    os.write(fd, b'z'); print('wrote')\nexcept OSError as e:\n    print('err', e.errno)\n`);
    await app.waitFor(/^open$/);
    assert.equal(m.setReadOnly(true), 16);
    app.child.stdin!.write('\n');
    await app.exited;
    assert.match(app.out(), /err 30/);
    assert.equal(await py(dir, probe(3)), refused);
    assert.equal(m.setReadOnly(true), 0, 'with no writer left the kernel takes the flag');
    assert.equal(await py(dir, probe(4)), refused);
  });

  it('unmount() answers pending calls EIO, cuts off open files and is idempotent', async () => {
    const held: FuseOp[] = [];
    const { dir, m } = fresh({ answer: (op, mm) => (op.op === 'write' ? held.push(op) : op.job && mm.reply(op.job, 0)) });
    const app = pyChild(
      dir,
      `
fd = os.open('f', os.O_CREAT | os.O_RDWR, 0o644)
print('opened')
try:
    os.write(fd, b'x'); print('wrote')
except OSError as e:
    print('write', e.errno)
sys.stdin.readline()
try:
    os.pread(fd, 1, 0); print('read ok')
except OSError as e:
    print('read', e.errno)
`,
    );
    await until(() => held.length === 1);
    const t0 = Date.now();
    m.unmount();
    assert.ok(Date.now() - t0 < 2000, 'unmount does not wait for the application');
    await app.waitFor(/^(wrote|write \d+)$/);
    assert.match(app.out(), /write 5\b/, 'the held write got EIO');
    assert.equal(m.reply(held[0]!.job, 0), false);
    assert.ok(!mountedAt(dir));
    app.child.stdin!.write('\n');
    await app.exited;
    assert.match(app.out(), /read 107\b/, 'ENOTCONN on a file opened through the old mount');
    m.unmount();
    assert.equal(m.stats().mounted, false);
  });

  it('onExit is called when the file system is unmounted from outside', async () => {
    let reason: string | undefined;
    const { dir } = fresh({ onExit: (r) => (reason = r) });
    await py(dir, `os.mkdir('d')`);
    await run('umount', ['-l', dir]);
    await until(() => reason !== undefined);
    assert.match(reason!, /unmounted from outside/);
    assert.ok(!mountedAt(dir));
  });

  it('several mounts in one process deliver to their own handler; a second mount over one is refused', async () => {
    const a = fresh();
    const b = fresh();
    assert.throws(() => mount({ path: a.dir, name: 'twice', onOp: () => {} }), { code: 'EBUSY' });
    await Promise.all([py(a.dir, `os.mkdir('only-a')`), py(b.dir, `os.mkdir('only-b')`)]);
    assert.deepEqual(a.events.map((e) => (e as { path: string }).path), ['only-a']);
    assert.deepEqual(b.events.map((e) => (e as { path: string }).path), ['only-b']);
  });

  it('xattrs: false refuses extended attributes (EOPNOTSUPP) and sends no xattr events', async () => {
    const { dir, events } = fresh({ xattrs: false });
    const out = await py(
      dir,
      `
fd = os.open('f', os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'x'); os.close(fd)
for fn in (lambda: os.setxattr('f', 'user.a', b'1'), lambda: os.getxattr('f', 'user.a'), lambda: os.listxattr('f')):
    try:
        fn(); print('ok')
    except OSError as e:
        print(e.errno)
`,
    );
    assert.equal(out, '95\n95\n95\n');
    assert.ok(!events.some((e) => e.op === 'setxattr'));
    assert.ok(events.some((e) => e.op === 'write'));
  });

  it('1 MiB requests: a large write() arrives in 1 MiB events', async () => {
    const { dir, events } = fresh();
    await py(dir, `fd = os.open('big', os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'q' * (3 << 20)); os.close(fd)`);
    const sizes = events.filter((e) => e.op === 'write').map((e) => (e as { data: Buffer }).data.length);
    assert.deepEqual(sizes, [1 << 20, 1 << 20, 1 << 20]);
  });

  it('replaying the events with the peer helpers rebuilds the same tree (concurrent writers, random operations)', async () => {
    const replicaDir = join(base, 'replica');
    mkdirSync(replicaDir, { recursive: true });
    const p = peer();
    const replica = p.openRoot(replicaDir);
    const fds = new Map<number, number>();
    const errors: string[] = [];
    const apply = (op: FuseOp) => {
      try {
        switch (op.op) {
          case 'create': {
            const fd = p.openAt(replica, op.path, C.O_CREAT | C.O_EXCL | C.O_RDWR, op.mode);
            p.fchown(fd, op.uid, op.gid);
            p.futimens(fd, null, op.mtimeNs);
            fds.set(op.handle, fd);
            break;
          }
          case 'open':
            if (op.path !== null) {
              const fd = p.openAt(replica, op.path, (op.flags & C.O_TRUNC) | C.O_RDWR, 0);
              if (op.mtimeNs !== undefined) p.futimens(fd, null, op.mtimeNs);
              fds.set(op.handle, fd);
            }
            break;
          case 'write': {
            const fd = fds.get(op.handle);
            if (fd !== undefined) {
              p.pwrite(fd, op.data, op.offset);
              p.futimens(fd, null, op.mtimeNs);
            }
            break;
          }
          case 'release': {
            const fd = fds.get(op.handle);
            if (fd !== undefined) closeSync(fd);
            fds.delete(op.handle);
            break;
          }
          case 'mkdir':
            p.mkdirAt(replica, op.path, op.mode);
            p.chownAt(replica, op.path, op.uid, op.gid);
            break;
          case 'mknod':
            p.mknodAt(replica, op.path, op.mode, op.rdev);
            p.chownAt(replica, op.path, op.uid, op.gid);
            break;
          case 'symlink':
            p.symlinkAt(op.target, replica, op.path);
            p.chownAt(replica, op.path, op.uid, op.gid);
            break;
          case 'link':
            p.linkAt(replica, op.path, op.newPath);
            break;
          case 'unlink':
          case 'rmdir':
            p.unlinkAt(replica, op.path, op.op === 'rmdir');
            break;
          case 'rename':
            p.renameAt(replica, op.path, op.newPath, op.flags);
            break;
          case 'setattr': {
            const fd = op.handle !== undefined ? fds.get(op.handle) : undefined;
            if (op.handle === undefined && op.path === null) break;
            const rel = op.path!;
            if (op.uid !== undefined || op.gid !== undefined) {
              if (fd !== undefined) p.fchown(fd, op.uid ?? -1, op.gid ?? -1);
              else if (op.handle === undefined) p.chownAt(replica, rel, op.uid ?? -1, op.gid ?? -1);
            }
            if (op.mode !== undefined) {
              if (fd !== undefined) p.fchmod(fd, op.mode);
              else if (op.handle === undefined) p.chmodAt(replica, rel, op.mode);
            }
            if (op.size !== undefined) {
              if (fd !== undefined) ftruncateSync(fd, op.size);
              else if (op.handle === undefined) p.truncateAt(replica, rel, op.size);
            }
            if (op.atimeNs !== undefined || op.mtimeNs !== undefined) {
              if (fd !== undefined) p.futimens(fd, op.atimeNs ?? null, op.mtimeNs ?? null);
              else if (op.handle === undefined) p.utimensAt(replica, rel, op.atimeNs ?? null, op.mtimeNs ?? null);
            }
            break;
          }
          case 'fallocate': {
            const fd = fds.get(op.handle);
            if (fd !== undefined) {
              p.fallocate(fd, op.mode, op.offset, op.length);
              p.futimens(fd, null, op.mtimeNs);
            }
            break;
          }
          case 'setxattr':
            if (op.path !== null) p.setxattrAt(replica, op.path, op.name, op.value, op.flags);
            break;
          case 'removexattr':
            if (op.path !== null) p.removexattrAt(replica, op.path, op.name);
            break;
        }
      } catch (e) {
        errors.push(`${op.op} ${JSON.stringify(op, (_k, v) => (typeof v === 'bigint' ? String(v) : Buffer.isBuffer(v) ? v.length : v))}: ${(e as Error).message}`);
      }
    };
    // replies come late and out of order, so several application calls are pending at once
    const { dir, m } = fresh({
      answer: (op, mm) => {
        apply(op);
        if (op.job) setTimeout(() => mm.reply(op.job, 0), Math.random() < 0.5 ? 0 : 1);
      },
    });
    const worker = (seed: number) => `
import random, errno
random.seed(${seed})
libc = ctypes.CDLL(None, use_errno=True)
def names(): return ['w%d/%s' % (random.randrange(3), random.choice('abcdefg'))] + ['shared/' + random.choice('xyz')]
os.makedirs('shared', exist_ok=True)
os.makedirs('w${seed}', exist_ok=True)
for i in range(400):
    a, b = random.choice(names()), random.choice(names())
    k = random.randrange(16)
    try:
        if k < 3:
            fd = os.open(a, os.O_CREAT | os.O_WRONLY | random.choice([0, os.O_TRUNC, os.O_APPEND]), 0o640)
            os.pwrite(fd, os.urandom(random.randrange(1, 9000)), random.randrange(0, 20000))
            if random.random() < 0.3: os.ftruncate(fd, random.randrange(0, 30000))
            if random.random() < 0.2: os.posix_fallocate(fd, 0, random.randrange(1, 40000))
            os.close(fd)
        elif k == 3: os.rename(a, b)
        elif k == 4: os.unlink(a)
        elif k == 5: os.mkdir(a, random.choice([0o755, 0o700, 0o2775]))
        elif k == 6: os.rmdir(a)
        elif k == 7: os.link(a, b)
        elif k == 8: os.symlink(random.choice(['x', '../y']), a)
        elif k == 9: os.chmod(a, random.choice([0o600, 0o644, 0o4755]))
        elif k == 10: os.chown(a, random.randrange(0, 3000), random.randrange(0, 3000), follow_symlinks=False)
        elif k == 11: os.utime(a, ns=(random.randrange(1, 10**18), random.randrange(1, 10**18)), follow_symlinks=False)
        elif k == 12: os.setxattr(a, 'user.k%d' % random.randrange(3), os.urandom(random.randrange(0, 100)), follow_symlinks=False)
        elif k == 13: os.removexattr(a, 'user.k%d' % random.randrange(3), follow_symlinks=False)
        elif k == 14: libc.renameat2(-100, a.encode(), -100, b.encode(), random.choice([1, 2]))
        else:
            fd = os.open(a, os.O_RDWR)
            os.unlink(a) if random.random() < 0.5 else None
            os.write(fd, b'after')
            os.fchmod(fd, 0o600)
            os.close(fd)
    except OSError:
        pass
`;
    await Promise.all([0, 1, 2].map((i) => py(dir, worker(i))));
    await until(() => m.stats().pendingJobs === 0 && fds.size === 0, 10_000);
    assert.deepEqual(errors, []);
    const tree = (root: string) => {
      const out: Record<string, unknown> = {};
      const walk = (rel: string) => {
        for (const name of readdirSync(join(root, rel)).sort()) {
          const r = rel ? `${rel}/${name}` : name;
          const st = lstatSync(join(root, r), { bigint: true });
          const e: Record<string, unknown> = { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink) };
          if (st.isFile()) {
            e.size = Number(st.size);
            e.data = createHash('sha256').update(readFileSync(join(root, r))).digest('hex').slice(0, 16);
            e.mtimeNs = String(st.mtimeNs);
          }
          if (st.isSymbolicLink()) e.target = readlinkSync(join(root, r));
          else e.xattrs = p.listxattrAt(rootFdOf(root), r).sort().map((n) => `${n}=${p.getxattrAt(rootFdOf(root), r, n).toString('hex')}`);
          out[r] = e;
          if (st.isDirectory()) walk(r);
        }
      };
      walk('');
      return out;
    };
    const rootFds = new Map<string, number>([[m.underPath, m.rootFd], [replicaDir, replica]]);
    const rootFdOf = (root: string) => rootFds.get(root)!;
    const source = tree(m.underPath);
    assert.ok(Object.keys(source).length > 5, 'the workers left something behind');
    assert.deepEqual(tree(replicaDir), source);
    closeSync(replica);
  });

  it('auto_unmount: the mount goes away within 2 s when the process that owns it is SIGKILLed', async () => {
    const dir = join(base, 'killed');
    mkdirSync(dir, { recursive: true });
    const nativeTs = join(installDir, 'src/replication/fuse/native.ts');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e',
        `const n = await import(${JSON.stringify(nativeTs)}); n.mount({ path: ${JSON.stringify(dir)}, name: 'killed', onOp: () => {} }); console.log('ready'); setInterval(() => {}, 1000);`],
      { cwd: installDir, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res, rej) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && res());
      child.on('exit', (c) => rej(new Error(`mounting child exited ${c}`)));
    });
    assert.ok(mountedAt(dir));
    child.kill('SIGKILL');
    const t0 = Date.now();
    try {
      await until(() => !mountedAt(dir), 2000);
      assert.ok(Date.now() - t0 < 2000);
      await py(dir, `os.mkdir('usable-again')`);
    } finally {
      // A failure must not leave the dead mount behind (the next runs would trip over it).
      if (mountedAt(dir)) await run('umount', ['-l', dir]).catch(() => {});
    }
  });
});
