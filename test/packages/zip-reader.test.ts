import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import yazl from 'yazl';
import { DEFAULT_ZIP_LIMITS, defaultFileMode, openZip, readZip, type OpenZipOptions } from '../../src/packages/zip-reader.ts';
import type { ErrorCode } from '../../src/errors/codes.ts';
import { goodPackage, rawZip, rejectsWith, type RawEntry } from './helpers.ts';

const P = 'module package demo.safe: ';

async function refuses(entries: RawEntry[] | Buffer, code: ErrorCode, message: string, options: OpenZipOptions = {}): Promise<void> {
  const buf = Buffer.isBuffer(entries) ? entries : rawZip(entries);
  await rejectsWith(openZip(buf, { label: 'demo.safe', ...options }), code, P + message);
}

/** Opens and fully extracts a package into a fresh directory; the error must leave no directory behind. */
async function refusesOnExtract(entries: RawEntry[], code: ErrorCode, message: string, options: OpenZipOptions = {}): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'stayup-zip-'));
  try {
    const zip = await openZip(rawZip(entries), { label: 'demo.safe', ...options });
    try {
      await rejectsWith(zip.extractTo(join(base, 'out')), code, P + message);
    } finally {
      zip.close();
    }
    assert.deepEqual(readdirSync(base), [], 'a failed extraction leaves nothing behind');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

describe('zip reader: hostile names', () => {
  test('zip-slip ../', () => refuses([{ name: '../evil.sh', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "../evil.sh" escapes the module directory'));
  test('zip-slip in the middle', () =>
    refuses([{ name: 'bin/../../evil.sh', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "bin/../../evil.sh" escapes the module directory'));
  test('a .. directory entry', () => refuses([{ name: '../', mode: 0o40755 }], 'PACKAGE_HOSTILE', 'entry "../" escapes the module directory'));
  test('absolute path', () => refuses([{ name: '/etc/cron.d/evil', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "/etc/cron.d/evil" is an absolute path'));
  test('drive letter', () => refuses([{ name: 'C:/evil.sh', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "C:/evil.sh" starts with a drive letter'));
  test('backslash traversal', () =>
    refuses([{ name: '..\\evil.sh', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "..\\\\evil.sh" contains a backslash'));
  test('NUL byte', () => refuses([{ name: 'bin/a\u0000.sh', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "bin/a\\u0000.sh" contains a control character'));
  test('newline', () => refuses([{ name: 'bin/a\nb', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "bin/a\\nb" contains a control character'));
  test('invalid UTF-8', () =>
    refuses([{ name: Buffer.from([0x62, 0x69, 0x6e, 0x2f, 0xff, 0xfe]), data: 'x' }], 'PACKAGE_HOSTILE', 'entry "bin/\uFFFD\uFFFD" has a name that is not valid UTF-8'));
  test('empty component', () => refuses([{ name: 'bin//x', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "bin//x" has an empty or "." path component'));
  test('dot component', () => refuses([{ name: './bin/x', data: 'x' }], 'PACKAGE_HOSTILE', 'entry "./bin/x" has an empty or "." path component'));
  test('empty name', () => refuses([{ name: '', data: 'x' }], 'PACKAGE_HOSTILE', 'an entry has an empty name'));
  test('name too long', () => {
    const name = `bin/${'a'.repeat(300)}`;
    return refuses([{ name, data: 'x' }], 'PACKAGE_HOSTILE', `entry ${JSON.stringify(`${name.slice(0, 100)}…`)} has a name of 304 bytes, over the cap of 255`);
  });
  test('component too long (with a raised total cap)', () => {
    const name = `bin/${'a'.repeat(256)}`;
    return refuses([{ name, data: 'x' }], 'PACKAGE_HOSTILE', `entry ${JSON.stringify(`${name.slice(0, 100)}…`)} has a path component over 255 bytes`, {
      limits: { maxNameBytes: 4096 },
    });
  });
});

describe('zip reader: entry types and structure', () => {
  test('symbolic link', () =>
    refuses([{ name: 'bin/link', data: '/etc/shadow', mode: 0o120777, method: 0 }], 'PACKAGE_HOSTILE', 'entry "bin/link" is a symbolic link'));
  test('character device', () => refuses([{ name: 'dev/tty', mode: 0o020644 }], 'PACKAGE_HOSTILE', 'entry "dev/tty" is a character device'));
  test('block device', () => refuses([{ name: 'dev/sda', mode: 0o060644 }], 'PACKAGE_HOSTILE', 'entry "dev/sda" is a block device'));
  test('fifo', () => refuses([{ name: 'bin/pipe', mode: 0o010644 }], 'PACKAGE_HOSTILE', 'entry "bin/pipe" is a named pipe (FIFO)'));
  test('socket', () => refuses([{ name: 'bin/sock', mode: 0o140755 }], 'PACKAGE_HOSTILE', 'entry "bin/sock" is a socket'));
  test('unknown file type', () => refuses([{ name: 'bin/odd', mode: 0o070644 }], 'PACKAGE_HOSTILE', 'entry "bin/odd" has an unknown file type (mode 0o70644)'));
  test('directory mode on a file name', () =>
    refuses([{ name: 'bin/x', mode: 0o40755 }], 'PACKAGE_HOSTILE', 'entry "bin/x" has a directory mode but a file name'));
  test('duplicate names', () =>
    refuses(
      [
        { name: 'bin/start_prim', data: 'a' },
        { name: 'bin/start_prim', data: 'b' },
      ],
      'PACKAGE_HOSTILE',
      'entry "bin/start_prim" appears more than once',
    ));
  test('a file used as a directory', () =>
    refuses(
      [
        { name: 'bin', data: 'a' },
        { name: 'bin/x', data: 'b' },
      ],
      'PACKAGE_HOSTILE',
      'entry "bin/x" is inside "bin", which is a file',
    ));
  test('a directory name reused as a file', () =>
    refuses(
      [
        { name: 'bin/x', data: 'b' },
        { name: 'bin', data: 'a' },
      ],
      'PACKAGE_HOSTILE',
      'entry "bin" is a file but other entries use it as a directory',
    ));
  test('encrypted entry', () =>
    refuses([{ name: 'conf/key', data: 'x', flags: 0x1 }], 'PACKAGE_INVALID', 'entry "conf/key" is encrypted; encrypted entries are not supported'));
  test('unsupported compression method', () =>
    refuses([{ name: 'conf/x', data: 'x', method: 12 }], 'PACKAGE_INVALID', 'entry "conf/x" uses unsupported compression method 12'));
  test('directory entry with data', () =>
    refuses([{ name: 'conf/', data: 'xx', method: 0, mode: 0o40755 }], 'PACKAGE_INVALID', 'directory entry "conf/" holds data'));
  test('overlapping entries (many entries inflating the same bytes)', () =>
    refuses(
      [
        { name: 'a', data: 'x'.repeat(1000) },
        { name: 'b', data: 'x'.repeat(1000), offsetOverride: 0 },
      ],
      'PACKAGE_HOSTILE',
      'entry "b" overlaps the data of entry "a"',
    ));
});

describe('zip reader: not a zip', () => {
  test('random text', () => refuses(Buffer.from('#!/bin/sh\nrm -rf /\n'), 'PACKAGE_INVALID', 'not a zip file'));
  test('empty buffer', () => refuses(Buffer.alloc(0), 'PACKAGE_INVALID', 'not a zip file'));
  test('truncated zip', async () => {
    const good = goodPackage();
    await refuses(good.subarray(0, good.length - 30), 'PACKAGE_INVALID', 'not a zip file');
  });
  test('missing file', async () => {
    await rejectsWith(openZip('/nonexistent/demo.safe'), 'PACKAGE_INVALID', /^module package demo\.safe: cannot be read: ENOENT/);
  });
});

describe('zip reader: sizes, caps and bombs', () => {
  test('too many entries', () =>
    refuses(
      [1, 2, 3, 4].map((i) => ({ name: `f${i}`, data: 'x' })),
      'PACKAGE_TOO_LARGE',
      'the package has 4 entries, over the cap of 3',
      { limits: { maxEntries: 3 } },
    ));
  test('entry over the per-entry cap (declared)', () =>
    refuses([{ name: 'big.bin', data: Buffer.alloc(2000, 7) }], 'PACKAGE_TOO_LARGE', 'entry "big.bin" is 2000 bytes, over the cap of 1000 bytes per entry', {
      limits: { maxEntryBytes: 1000 },
    }));
  test('total over the cap (declared)', () =>
    refuses(
      [1, 2, 3].map((i) => ({ name: `f${i}`, data: Buffer.alloc(600, i) })),
      'PACKAGE_TOO_LARGE',
      'the entries total more than the cap of 1000 bytes uncompressed',
      { limits: { maxTotalBytes: 1000 } },
    ));
  test('zip bomb: highly compressible zeros over the ratio cap', async () => {
    const zeros = Buffer.alloc(20 * 1024 * 1024);
    const compressed = deflateRawSync(zeros).length;
    const ratio = Math.floor(zeros.length / compressed);
    assert.ok(ratio > 200);
    await refuses([{ name: 'zeros.bin', data: zeros }], 'PACKAGE_HOSTILE', `entry "zeros.bin" has a compression ratio of ${ratio}:1, over the cap of 200:1 (zip bomb)`);
  });
  test('small compressible files are not bombs', async () => {
    const zip = await openZip(rawZip([{ name: 'zeros.bin', data: Buffer.alloc(100_000) }]));
    assert.equal((await zip.readFile('zeros.bin')).length, 100_000);
    zip.close();
  });
  test('header lies (too small): a bomb that declares 100 KiB is cut off while inflating', () =>
    refusesOnExtract(
      [
        { name: 'conf/userconfig.xml', data: '<safe/>' },
        { name: 'zeros.bin', data: Buffer.alloc(20 * 1024 * 1024), declaredSize: 100 * 1024 },
      ],
      'PACKAGE_HOSTILE',
      'entry "zeros.bin" inflates to more than the 102400 bytes its header declares',
    ));
  test('header lies (too small) on readFile too', async () => {
    const zip = await openZip(rawZip([{ name: 'x', data: 'hello world', declaredSize: 5 }]), { label: 'demo.safe' });
    await rejectsWith(zip.readFile('x'), 'PACKAGE_HOSTILE', `${P}entry "x" inflates to more than the 5 bytes its header declares`);
    zip.close();
  });
  test('header lies (too large)', () =>
    refusesOnExtract([{ name: 'x', data: 'hello world', declaredSize: 50 }], 'PACKAGE_INVALID', 'entry "x" inflates to 11 bytes, less than the 50 bytes its header declares'));
  test('stored entry whose sizes disagree', () =>
    refuses(
      [{ name: 'x', data: 'hello', method: 0, declaredSize: 500 }],
      'PACKAGE_HOSTILE',
      'entry "x" is stored uncompressed but its header declares 5 bytes compressed and 500 uncompressed',
    ));
  test('CRC mismatch', () => refusesOnExtract([{ name: 'x', data: 'hello', crc: 1234 }], 'PACKAGE_INVALID', 'entry "x" fails its CRC-32 check'));
  test('corrupt deflate data', () =>
    refusesOnExtract(
      // method 8 over bytes that are not deflate data: the inflater fails
      [{ name: 'x', data: 'hello', method: 8, body: Buffer.from([0xff, 0xff, 0xff, 0xff]) }],
      'PACKAGE_INVALID',
      'entry "x" cannot be inflated: invalid block type',
    ));
  test('defaults are the documented caps', () => {
    assert.deepEqual(
      { ...DEFAULT_ZIP_LIMITS },
      {
        maxEntryBytes: 64 * 1024 * 1024,
        maxTotalBytes: 256 * 1024 * 1024,
        maxRatio: 200,
        ratioMinBytes: 1024 * 1024,
        maxEntries: 10_000,
        maxNameBytes: 255,
        maxPackageBytes: 256 * 1024 * 1024,
      },
    );
    assert.ok(Object.isFrozen(DEFAULT_ZIP_LIMITS));
  });
});

describe('zip reader: good packages', () => {
  test('entries, kinds, modes and readFile', async () => {
    const zip = await openZip(goodPackage(), { label: 'demo.safe' });
    try {
      assert.deepEqual(
        zip.entries.map((e) => [e.name, e.kind, e.mode]),
        [
          ['conf', 'directory', 0o755],
          ['conf/userconfig.xml', 'file', 0o644],
          ['bin', 'directory', 0o755],
          ['bin/start_prim', 'file', 0o755],
          ['bin/stop_prim', 'file', 0o644],
        ],
      );
      assert.match((await zip.readFile('conf/userconfig.xml')).toString(), /<service mode="mirror">/);
      assert.equal(zip.entry('nope'), undefined);
    } finally {
      zip.close();
      zip.close(); // idempotent
    }
  });

  test('extractTo writes files with normalised modes and refuses an existing directory', async () => {
    const base = mkdtempSync(join(tmpdir(), 'stayup-zip-'));
    try {
      const zip = await openZip(goodPackage([{ name: 'bin/suid', data: 'x', mode: 0o104777 }]));
      const out = join(base, 'out');
      await zip.extractTo(out);
      assert.equal(statSync(out).mode & 0o7777, 0o755);
      assert.equal(statSync(join(out, 'bin/start_prim')).mode & 0o7777, 0o755);
      assert.equal(statSync(join(out, 'bin/stop_prim')).mode & 0o7777, 0o644);
      assert.equal(statSync(join(out, 'bin/suid')).mode & 0o7777, 0o755, 'setuid is dropped');
      assert.equal(statSync(join(out, 'conf/userconfig.xml')).mode & 0o7777, 0o644);
      assert.match(readFileSync(join(out, 'conf/userconfig.xml'), 'utf8'), /mirror/);
      await rejectsWith(zip.extractTo(out), 'IO', new RegExp(`^module package package: cannot extract into ${out}: EEXIST`));
      assert.ok(existsSync(join(out, 'bin/start_prim')), 'an existing directory is left alone');
      zip.close();
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('implicit parent directories and packages from other zippers (yazl, DOS attributes)', async () => {
    const z = new yazl.ZipFile();
    z.addBuffer(Buffer.from('<safe/>'), 'conf/userconfig.xml');
    z.addBuffer(Buffer.from('#!/bin/sh\n'), 'bin/start_prim', { mode: 0o100755 });
    z.addEmptyDirectory('web');
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    const done = new Promise((r) => z.outputStream.on('end', r));
    z.end();
    await done;
    const files = await readZip(Buffer.concat(chunks));
    assert.deepEqual([...files.keys()], ['conf/userconfig.xml', 'bin/start_prim']);
    // No Unix mode at all (DOS-made zip): kind from the name, mode undefined.
    const zip = await openZip(rawZip([{ name: 'a/b/c.txt', data: 'x' }, { name: 'd/' }]));
    assert.deepEqual(
      zip.entries.map((e) => [e.name, e.kind, e.mode]),
      [
        ['a/b/c.txt', 'file', undefined],
        ['d', 'directory', undefined],
      ],
    );
    assert.equal(defaultFileMode(zip.entries[0]!), 0o644);
    zip.close();
  });

  test('stored (uncompressed) entries', async () => {
    const files = await readZip(rawZip([{ name: 'a.txt', data: 'stored data', method: 0 }, { name: 'empty', method: 0 }]));
    assert.deepEqual([...files].map(([k, v]) => [k, v.toString()]), [
      ['a.txt', 'stored data'],
      ['empty', ''],
    ]);
  });

  test('opens a package from a path, labelled by its base name', async () => {
    const base = mkdtempSync(join(tmpdir(), 'stayup-zip-'));
    try {
      const file = join(base, 'web.safe');
      writeFileSync(file, rawZip([{ name: '../x', data: 'x' }]));
      await rejectsWith(openZip(file), 'PACKAGE_HOSTILE', 'module package web.safe: entry "../x" escapes the module directory');
      writeFileSync(file, goodPackage());
      const zip = await openZip(file);
      assert.equal(zip.label, 'web.safe');
      assert.equal((await zip.readFile('bin/start_prim')).toString(), '#!/bin/sh\necho start\n');
      zip.close();
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('errors carry the package and entry in details', async () => {
    const e = await rejectsWith(openZip(rawZip([{ name: '../evil.sh', data: 'x' }]), { label: 'demo.safe' }), 'PACKAGE_HOSTILE', /escapes/);
    assert.deepEqual(e.details, { package: 'demo.safe', entry: '../evil.sh' });
    assert.equal(e.status, 400);
    assert.equal(e.exitCode, 2);
  });
});
