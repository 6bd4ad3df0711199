// Reads module packages (.safe / .zip) and refuses hostile content before anything is written.
//
// Two passes over a package:
//   1. `openZip` walks the central directory and checks every entry's metadata: names (zip-slip, absolute
//      paths, backslashes, drive letters, control characters, length), file types from the Unix mode bits
//      (symlinks, devices, fifos, sockets), duplicates and file/directory clashes, encryption, compression
//      method, declared sizes against the caps, the declared compression ratio, overlapping entry data and
//      the entry count. A package that fails any check is refused before a single byte is inflated.
//   2. `readFile` / `extractTo` inflate entries and count the bytes that really come out. The headers are
//      never trusted: an entry that yields more bytes than its header declares, or that pushes a cap, is
//      aborted at once; an entry that yields fewer bytes or a wrong CRC-32 is refused too.
//
// yauzl is opened with `decodeStrings: false` so that we decode and judge every name ourselves and can
// name the offending entry in each message (yauzl's own name errors carry no entry context), and with
// `validateEntrySizes: false` because we make the same size checks ourselves, with entry names, plus
// CRC-32 and the caps.
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync, fchmodSync, constants as fsc } from 'node:fs';
import { basename, isAbsolute, resolve, sep } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { StayupError } from '../errors/stayup-error.ts';
import type { ErrorCode } from '../errors/codes.ts';
import { fsyncDir } from '../util/atomic-file.ts';

/** Caps applied to every package. All are explicit so an operator or a test can lower or raise them. */
export interface ZipLimits {
  /** Largest uncompressed size of one entry, in bytes. */
  maxEntryBytes: number;
  /** Largest total uncompressed size of all entries, in bytes. */
  maxTotalBytes: number;
  /** Largest uncompressed : compressed ratio of one entry (zip-bomb guard). */
  maxRatio: number;
  /** Entries smaller than this are exempt from the ratio check (a small file of zeros is no bomb). */
  ratioMinBytes: number;
  /** Largest number of entries (files and directories) in a package. */
  maxEntries: number;
  /** Longest entry name, in UTF-8 bytes, for the whole relative path. */
  maxNameBytes: number;
  /** Largest package file, in bytes (checked by callers that load a package into memory). */
  maxPackageBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_ZIP_LIMITS: Readonly<ZipLimits> = Object.freeze({
  maxEntryBytes: 64 * MiB,
  maxTotalBytes: 256 * MiB,
  maxRatio: 200,
  ratioMinBytes: 1 * MiB,
  maxEntries: 10_000,
  maxNameBytes: 255,
  maxPackageBytes: 256 * MiB,
});

/** Longest single path component Linux accepts (NAME_MAX). */
const MAX_COMPONENT_BYTES = 255;

export type ZipEntryKind = 'file' | 'directory';

export interface ZipEntryInfo {
  /** Relative path with `/` separators and no trailing slash. */
  readonly name: string;
  readonly kind: ZipEntryKind;
  /** Permission bits (0o777) from the Unix mode in the package, or undefined when the package has none. */
  readonly mode: number | undefined;
  /** Uncompressed size the header declares (trusted only as an upper bound, and checked while inflating). */
  readonly size: number;
  readonly compressedSize: number;
}

export interface OpenZipOptions {
  /** How messages name the package, e.g. `demo.safe`. Defaults to the file's base name, or `package`. */
  label?: string;
  limits?: Partial<ZipLimits>;
}

export interface ExtractOptions {
  /** Mode for each extracted file; default `defaultFileMode`. Directories are always 0755. */
  fileMode?: (entry: ZipEntryInfo) => number;
}

/** 0755 if the package marks the file executable for anyone, else 0644. Never setuid, setgid or sticky. */
export function defaultFileMode(entry: ZipEntryInfo): number {
  return entry.mode !== undefined && (entry.mode & 0o111) !== 0 ? 0o755 : 0o644;
}

// File type bits of a Unix st_mode, as stored in the high 16 bits of externalFileAttributes.
const S_IFMT = 0o170000;
const FILE_TYPES: Record<number, string> = {
  0o140000: 'a socket',
  0o120000: 'a symbolic link',
  0o100000: 'file',
  0o060000: 'a block device',
  0o040000: 'directory',
  0o020000: 'a character device',
  0o010000: 'a named pipe (FIFO)',
};

/** Shows a name in a message: JSON-quoted (so control characters are escaped) and cut to 100 characters. */
function q(name: string): string {
  return JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}…` : name);
}

interface InternalEntry extends ZipEntryInfo {
  readonly raw: yauzl.Entry;
  readonly crc: number;
}

/** An opened package whose metadata passed every check. Inflate entries with readFile or extractTo. */
export class SafeZip {
  readonly label: string;
  readonly limits: Readonly<ZipLimits>;
  readonly entries: readonly ZipEntryInfo[];
  private readonly zip: yauzl.ZipFile;
  private readonly byName: Map<string, InternalEntry>;
  private closed = false;

  /** @internal use openZip */
  constructor(label: string, limits: ZipLimits, zip: yauzl.ZipFile, entries: InternalEntry[]) {
    this.label = label;
    this.limits = Object.freeze({ ...limits });
    this.zip = zip;
    this.entries = Object.freeze(entries.map(publicEntry));
    this.byName = new Map(entries.map((e) => [e.name, e]));
  }

  /** The entry of that name (no trailing slash), or undefined. */
  entry(name: string): ZipEntryInfo | undefined {
    const e = this.byName.get(name);
    return e && publicEntry(e);
  }

  /** Inflates one file entry into memory, with every cap enforced on the real byte count. */
  async readFile(name: string): Promise<Buffer> {
    const e = this.byName.get(name);
    if (!e || e.kind !== 'file') throw new Error(`readFile: no file entry ${q(name)} in ${this.label}`);
    const chunks: Buffer[] = [];
    await this.inflate(e, { total: 0 }, (chunk) => {
      chunks.push(chunk);
    });
    return Buffer.concat(chunks);
  }

  /**
   * Extracts every entry into `dir`, which must not exist yet (its parent must). Files are created with
   * O_EXCL|O_NOFOLLOW, written, chmod'ed and fsync'ed; then every directory is fsync'ed, deepest first.
   * On any error `dir` is removed again, so a failed extraction leaves nothing behind.
   */
  async extractTo(dir: string, options: ExtractOptions = {}): Promise<void> {
    const root = resolve(dir);
    const modeFor = options.fileMode ?? defaultFileMode;
    try {
      mkdirSync(root, { mode: 0o700 });
    } catch (err) {
      // Never touch a directory we did not create.
      throw new StayupError('IO', `module package ${this.label}: cannot extract into ${root}: ${(err as Error).message}`, {
        cause: err,
        details: { package: this.label },
      });
    }
    try {
      const dirs = new Set<string>([root]);
      const ensureDir = (abs: string): void => {
        if (dirs.has(abs)) return;
        const parent = resolve(abs, '..');
        ensureDir(parent);
        mkdirSync(abs, { mode: 0o755 });
        dirs.add(abs);
      };
      const counter = { total: 0 };
      for (const e of this.byName.values()) {
        const target = this.targetPath(root, e.name);
        if (e.kind === 'directory') {
          ensureDir(target);
          continue;
        }
        ensureDir(resolve(target, '..'));
        const fd = openSync(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
        try {
          await this.inflate(e, counter, (chunk) => {
            let off = 0;
            while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
          });
          fchmodSync(fd, modeFor(publicEntry(e)) & 0o777);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }
      for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
        if (d !== root) fsyncDir(d);
      }
      // The root keeps 0700 while it is being filled; it gets its final mode once complete.
      const fd = openSync(root, 'r');
      try {
        fchmodSync(fd, 0o755);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      rmSync(root, { recursive: true, force: true });
      if (err instanceof StayupError) throw err;
      throw new StayupError('IO', `module package ${this.label}: extraction failed: ${(err as Error).message}`, {
        cause: err,
        details: { package: this.label },
      });
    }
  }

  /** Releases the file descriptor of a package opened from a path. Safe to call more than once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.zip.close();
  }

  private targetPath(root: string, name: string): string {
    const target = resolve(root, ...name.split('/'));
    // Defence in depth: names were already checked, but never write outside the root whatever happens.
    if (!target.startsWith(root + sep)) {
      throw this.error('PACKAGE_HOSTILE', `entry ${q(name)} escapes the module directory`, name);
    }
    return target;
  }

  private error(code: ErrorCode, message: string, entry?: string): StayupError {
    return new StayupError(code, `module package ${this.label}: ${message}`, {
      details: { package: this.label, ...(entry === undefined ? {} : { entry }) },
    });
  }

  /** Streams one entry through `sink`, counting real bytes and enforcing every cap as they arrive. */
  private async inflate(e: InternalEntry, counter: { total: number }, sink: (chunk: Buffer) => void): Promise<void> {
    const L = this.limits;
    const stream = await new Promise<Readable>((res, rej) => {
      this.zip.openReadStream(e.raw, (err, s) => (err ? rej(this.error('PACKAGE_INVALID', `entry ${q(e.name)} cannot be read: ${err.message}`, e.name)) : res(s)));
    });
    let n = 0;
    let crc = 0;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        n += chunk.length;
        counter.total += chunk.length;
        if (n > e.size) {
          throw this.error('PACKAGE_HOSTILE', `entry ${q(e.name)} inflates to more than the ${e.size} bytes its header declares`, e.name);
        }
        if (n > L.maxEntryBytes) {
          throw this.error('PACKAGE_TOO_LARGE', `entry ${q(e.name)} is over the cap of ${L.maxEntryBytes} bytes per entry`, e.name);
        }
        if (counter.total > L.maxTotalBytes) {
          throw this.error('PACKAGE_TOO_LARGE', `the entries total more than the cap of ${L.maxTotalBytes} bytes uncompressed`, e.name);
        }
        if (n >= L.ratioMinBytes && n / Math.max(1, e.compressedSize) > L.maxRatio) {
          throw this.error('PACKAGE_HOSTILE', ratioMessage(e.name, n, e.compressedSize, L.maxRatio), e.name);
        }
        crc = crc32(chunk, crc);
        sink(chunk);
      }
    } catch (err) {
      stream.destroy();
      if (err instanceof StayupError) throw err;
      throw this.error('PACKAGE_INVALID', `entry ${q(e.name)} cannot be inflated: ${(err as Error).message}`, e.name);
    }
    if (n < e.size) {
      throw this.error('PACKAGE_INVALID', `entry ${q(e.name)} inflates to ${n} bytes, less than the ${e.size} bytes its header declares`, e.name);
    }
    if (crc >>> 0 !== e.crc >>> 0) {
      throw this.error('PACKAGE_INVALID', `entry ${q(e.name)} fails its CRC-32 check`, e.name);
    }
  }
}

function publicEntry(e: InternalEntry): ZipEntryInfo {
  return { name: e.name, kind: e.kind, mode: e.mode, size: e.size, compressedSize: e.compressedSize };
}

function ratioMessage(name: string, out: number, compressed: number, max: number): string {
  const ratio = Math.floor(out / Math.max(1, compressed));
  return `entry ${q(name)} has a compression ratio of ${ratio}:1, over the cap of ${max}:1 (zip bomb)`;
}

/**
 * Opens a package and checks all its metadata (pass 1). Throws a StayupError naming the package and the
 * entry for anything hostile, over a cap, or not a zip. The caller must `close()` the result.
 */
export async function openZip(source: string | Buffer, options: OpenZipOptions = {}): Promise<SafeZip> {
  const limits: ZipLimits = { ...DEFAULT_ZIP_LIMITS, ...options.limits };
  const label = options.label ?? (typeof source === 'string' ? basename(source) : 'package');
  const fail = (code: ErrorCode, message: string, entry?: string): StayupError =>
    new StayupError(code, `module package ${label}: ${message}`, {
      details: { package: label, ...(entry === undefined ? {} : { entry }) },
    });

  const yopts: yauzl.Options = {
    lazyEntries: true,
    autoClose: false,
    decodeStrings: false,
    validateEntrySizes: false,
    strictFileNames: true,
  };
  let zip: yauzl.ZipFile;
  try {
    zip = await new Promise<yauzl.ZipFile>((res, rej) => {
      const cb = (err: Error | null, z: yauzl.ZipFile): void => (err ? rej(err) : res(z));
      if (typeof source === 'string') yauzl.open(source, yopts, cb);
      else yauzl.fromBuffer(source, yopts, cb);
    });
  } catch (err) {
    throw yauzlError(err, fail);
  }

  try {
    if (zip.entryCount > limits.maxEntries) {
      throw fail('PACKAGE_TOO_LARGE', `the package has ${zip.entryCount} entries, over the cap of ${limits.maxEntries}`);
    }
    const raws = await readCentralDirectory(zip).catch((err: unknown) => {
      throw yauzlError(err, fail);
    });
    const entries = checkEntries(raws, limits, fail);
    return new SafeZip(label, limits, zip, entries);
  } catch (err) {
    zip.close();
    throw err;
  }
}

function readCentralDirectory(zip: yauzl.ZipFile): Promise<yauzl.Entry[]> {
  return new Promise((res, rej) => {
    const out: yauzl.Entry[] = [];
    zip.on('entry', (e: yauzl.Entry) => {
      out.push(e);
      zip.readEntry();
    });
    zip.once('end', () => res(out));
    zip.once('error', rej);
    zip.readEntry();
  });
}

function yauzlError(err: unknown, fail: (code: ErrorCode, message: string) => StayupError): StayupError {
  if (err instanceof StayupError) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  if (e?.code && typeof e.code === 'string' && e.syscall) {
    return fail('PACKAGE_INVALID', `cannot be read: ${msg}`);
  }
  if (/end of central directory record signature not found/i.test(msg)) return fail('PACKAGE_INVALID', 'not a zip file');
  if (/strong encryption/i.test(msg)) return fail('PACKAGE_INVALID', 'encrypted entries are not supported');
  return fail('PACKAGE_INVALID', `corrupt zip: ${msg}`);
}

/** Pass 1: every check that needs only the central directory. */
function checkEntries(
  raws: yauzl.Entry[],
  L: ZipLimits,
  fail: (code: ErrorCode, message: string, entry?: string) => StayupError,
): InternalEntry[] {
  if (raws.length > L.maxEntries) {
    throw fail('PACKAGE_TOO_LARGE', `the package has ${raws.length} entries, over the cap of ${L.maxEntries}`);
  }
  const out: InternalEntry[] = [];
  const files = new Set<string>();
  const dirs = new Set<string>();
  const explicit = new Set<string>();
  let total = 0;

  for (const raw of raws) {
    const fullName = yauzl.getFileNameLowLevel(raw.generalPurposeBitFlag, raw.fileNameRaw, raw.extraFields, true);
    const nameBytes = Buffer.byteLength(fullName);
    if (fullName.length === 0) throw fail('PACKAGE_HOSTILE', 'an entry has an empty name');
    if (nameBytes > L.maxNameBytes) {
      throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} has a name of ${nameBytes} bytes, over the cap of ${L.maxNameBytes}`, fullName);
    }
    checkName(fullName, fail);

    const trailingSlash = fullName.endsWith('/');
    const name = trailingSlash ? fullName.slice(0, -1) : fullName;
    const unixMode = raw.externalFileAttributes >>> 16;
    const type = unixMode & S_IFMT;
    let kind: ZipEntryKind;
    if (type === 0) {
      kind = trailingSlash ? 'directory' : 'file';
    } else {
      const what = FILE_TYPES[type];
      if (what === 'file') kind = 'file';
      else if (what === 'directory') kind = 'directory';
      else if (what) throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} is ${what}`, fullName);
      else throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} has an unknown file type (mode 0o${unixMode.toString(8)})`, fullName);
      if ((kind === 'directory') !== trailingSlash) {
        throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} has a ${kind} mode but a ${trailingSlash ? 'directory' : 'file'} name`, fullName);
      }
    }
    const mode = unixMode === 0 ? undefined : unixMode & 0o777;

    if (raw.generalPurposeBitFlag & 0x1) throw fail('PACKAGE_INVALID', `entry ${q(fullName)} is encrypted; encrypted entries are not supported`, fullName);
    if (raw.compressionMethod !== 0 && raw.compressionMethod !== 8) {
      throw fail('PACKAGE_INVALID', `entry ${q(fullName)} uses unsupported compression method ${raw.compressionMethod}`, fullName);
    }

    // Duplicates and file/directory clashes: "a" as a file and "a/b" (or "a/") elsewhere.
    if (explicit.has(name)) throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} appears more than once`, fullName);
    explicit.add(name);
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (files.has(parent)) throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} is inside ${q(parent)}, which is a file`, fullName);
      dirs.add(parent);
    }
    if (kind === 'file') {
      if (dirs.has(name)) throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} is a file but other entries use it as a directory`, fullName);
      files.add(name);
    } else {
      dirs.add(name);
    }

    const size = raw.uncompressedSize;
    const csize = raw.compressedSize;
    if (kind === 'directory') {
      if (size !== 0 || csize !== 0) throw fail('PACKAGE_INVALID', `directory entry ${q(fullName)} holds data`, fullName);
    } else {
      if (size > L.maxEntryBytes) {
        throw fail('PACKAGE_TOO_LARGE', `entry ${q(fullName)} is ${size} bytes, over the cap of ${L.maxEntryBytes} bytes per entry`, fullName);
      }
      total += size;
      if (total > L.maxTotalBytes) {
        throw fail('PACKAGE_TOO_LARGE', `the entries total more than the cap of ${L.maxTotalBytes} bytes uncompressed`, fullName);
      }
      if (raw.compressionMethod === 0 && csize !== size) {
        throw fail('PACKAGE_HOSTILE', `entry ${q(fullName)} is stored uncompressed but its header declares ${csize} bytes compressed and ${size} uncompressed`, fullName);
      }
      if (size >= L.ratioMinBytes && size / Math.max(1, csize) > L.maxRatio) {
        throw fail('PACKAGE_HOSTILE', ratioMessage(fullName, size, csize, L.maxRatio), fullName);
      }
    }
    out.push({ name, kind, mode, size, compressedSize: csize, raw, crc: raw.crc32 });
  }

  // Entries whose data overlap (the "overlapping files" zip bomb, where many entries inflate the same
  // compressed bytes). A local header is at least 30 bytes plus the name, so this lower bound never
  // flags a well-formed package.
  const byOffset = out
    .filter((e) => e.kind === 'file')
    .sort((a, b) => a.raw.relativeOffsetOfLocalHeader - b.raw.relativeOffsetOfLocalHeader);
  for (let i = 1; i < byOffset.length; i++) {
    const a = byOffset[i - 1]!;
    const b = byOffset[i]!;
    const aEnd = a.raw.relativeOffsetOfLocalHeader + 30 + a.raw.fileNameLength + a.compressedSize;
    if (aEnd > b.raw.relativeOffsetOfLocalHeader) {
      throw fail('PACKAGE_HOSTILE', `entry ${q(b.name)} overlaps the data of entry ${q(a.name)}`, b.name);
    }
  }
  return out;
}

/** Refuses names that could land outside the module directory or confuse a file system or a log. */
function checkName(name: string, fail: (code: ErrorCode, message: string, entry?: string) => StayupError): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} contains a control character`, name);
  if (name.includes('\uFFFD')) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} has a name that is not valid UTF-8`, name);
  if (name.startsWith('/') || isAbsolute(name)) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} is an absolute path`, name);
  if (/^[A-Za-z]:/.test(name)) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} starts with a drive letter`, name);
  if (name.includes('\\')) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} contains a backslash`, name);
  const parts = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (parts.includes('..')) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} escapes the module directory`, name);
  if (parts.some((p) => p === '' || p === '.')) throw fail('PACKAGE_HOSTILE', `entry ${q(name)} has an empty or "." path component`, name);
  for (const p of parts) {
    if (Buffer.byteLength(p) > MAX_COMPONENT_BYTES) {
      throw fail('PACKAGE_HOSTILE', `entry ${q(name)} has a path component over ${MAX_COMPONENT_BYTES} bytes`, name);
    }
  }
}

/** Convenience: opens, checks and inflates a whole package into memory (name → content; files only). */
export async function readZip(source: string | Buffer, options: OpenZipOptions = {}): Promise<Map<string, Buffer>> {
  const zip = await openZip(source, options);
  try {
    const out = new Map<string, Buffer>();
    let total = 0;
    for (const e of zip.entries) {
      if (e.kind !== 'file') continue;
      const data = await zip.readFile(e.name);
      total += data.length;
      if (total > zip.limits.maxTotalBytes) {
        throw new StayupError('PACKAGE_TOO_LARGE', `module package ${zip.label}: the entries total more than the cap of ${zip.limits.maxTotalBytes} bytes uncompressed`, {
          details: { package: zip.label, entry: e.name },
        });
      }
      out.set(e.name, data);
    }
    return out;
  } finally {
    zip.close();
  }
}
