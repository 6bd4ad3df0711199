// Deterministic packer for module directories: the same tree always gives the same bytes, whatever the
// host, the time zone, the file times or the order readdir returns. Entries are sorted by their UTF-8
// bytes, every entry gets the same DOS timestamp (no extended-time extra field), modes are normalised to
// 0755/0644 for files and 0755 for directories, and file data is deflated with a fixed level.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import yazl from 'yazl';
import { StayupError } from '../errors/stayup-error.ts';
import { DEFAULT_ZIP_LIMITS, openZip, type ZipLimits } from './zip-reader.ts';

/**
 * Fixed timestamp of every entry: 1980-01-01 00:00:00, the DOS epoch. It is built from local-time
 * components on purpose, because DOS times are encoded from local-time getters, so every time zone
 * encodes it to the same bytes.
 */
export const PACKAGE_MTIME = (): Date => new Date(1980, 0, 1, 0, 0, 0);

export interface PackOptions {
  /** How messages name what is being packed, e.g. `module demo`. */
  label: string;
  /** Relative paths (with `/`) to leave out; directories are given with no trailing slash. */
  exclude?: (relPath: string) => boolean;
  /** Caps the result must respect so it can be installed again (defaults: DEFAULT_ZIP_LIMITS). */
  limits?: Partial<ZipLimits>;
}

interface Item {
  rel: string;
  kind: 'file' | 'directory';
  exec: boolean;
  size: number;
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function walk(root: string, opts: PackOptions): Item[] {
  const items: Item[] = [];
  const visit = (absDir: string, relDir: string): void => {
    for (const name of readdirSync(absDir)) {
      const rel = relDir ? `${relDir}/${name}` : name;
      if (opts.exclude?.(rel)) continue;
      const abs = join(absDir, name);
      const st = lstatSync(abs);
      if (st.isDirectory()) {
        items.push({ rel, kind: 'directory', exec: true, size: 0 });
        visit(abs, rel);
      } else if (st.isFile()) {
        items.push({ rel, kind: 'file', exec: (st.mode & 0o111) !== 0, size: st.size });
      } else {
        const what = st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file or directory';
        throw new StayupError('PACKAGE_INVALID', `${opts.label}: ${rel} is ${what}; packages hold only regular files and directories`, {
          details: { entry: rel },
        });
      }
    }
  };
  visit(root, '');
  // Sort the full paths so a directory comes just before its contents and the order never depends on
  // readdir or the locale.
  return items.sort((a, b) => byteOrder(a.kind === 'directory' ? `${a.rel}/` : a.rel, b.kind === 'directory' ? `${b.rel}/` : b.rel));
}

/** Zips the tree under `root` deterministically, then re-reads the result with the hostile-package checks. */
export async function packDirectory(root: string, opts: PackOptions): Promise<Buffer> {
  const limits: ZipLimits = { ...DEFAULT_ZIP_LIMITS, ...opts.limits };
  const items = walk(root, opts);
  if (items.length > limits.maxEntries) {
    throw new StayupError('PACKAGE_TOO_LARGE', `${opts.label}: ${items.length} entries, over the cap of ${limits.maxEntries}`);
  }
  let total = 0;
  const zip = new yazl.ZipFile();
  const mtime = PACKAGE_MTIME();
  for (const it of items) {
    if (it.kind === 'directory') {
      zip.addEmptyDirectory(it.rel, { mtime, mode: 0o40755, forceDosTimestamp: true });
      continue;
    }
    if (it.size > limits.maxEntryBytes) {
      throw new StayupError('PACKAGE_TOO_LARGE', `${opts.label}: ${it.rel} is ${it.size} bytes, over the cap of ${limits.maxEntryBytes} bytes per entry`, {
        details: { entry: it.rel },
      });
    }
    const data = readFileSync(join(root, it.rel));
    total += data.length;
    if (total > limits.maxTotalBytes) {
      throw new StayupError('PACKAGE_TOO_LARGE', `${opts.label}: the files total more than the cap of ${limits.maxTotalBytes} bytes`);
    }
    zip.addBuffer(data, it.rel, {
      mtime,
      mode: it.exec ? 0o100755 : 0o100644,
      compressionLevel: 9,
      forceDosTimestamp: true,
    });
  }
  const chunks: Buffer[] = [];
  const done = new Promise<void>((res, rej) => {
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.once('end', () => res());
    zip.outputStream.once('error', rej);
  });
  zip.end();
  await done;
  const out = Buffer.concat(chunks);
  // Never hand out a package we would refuse to install (odd names, ratios, sizes).
  const check = await openZip(out, { label: opts.label, limits });
  check.close();
  return out;
}
