// Where a mirror node keeps its MirrorPersisted record: <modvar>/<module>/mirror.json, written atomically
// (tmp + fsync + rename + directory fsync), so after a crash it holds the old or the new record, whole.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MirrorPersisted } from '../mirror/types.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { NodePaths } from '../util/paths.ts';

export const MIRROR_RECORD_FILE = 'mirror.json';

export function mirrorRecordPath(paths: NodePaths, module: string): string {
  return join(paths.moduleVarDir(module), MIRROR_RECORD_FILE);
}

export interface MirrorRecordStore {
  /** The record, or null when the node never persisted one (first start). */
  load(): MirrorPersisted | null;
  /** Durable when it returns. */
  save(record: MirrorPersisted): void;
}

const BOOL_FIELDS = ['uptodate', 'lastPrim', 'reintegrating', 'reintegrationInterrupted'] as const;

/** Parses a record; throws STATE_CORRUPT naming the file and the field. */
export function parseMirrorRecord(text: string, file: string): MirrorPersisted {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new StayupError('STATE_CORRUPT', `${file}: not JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null) throw new StayupError('STATE_CORRUPT', `${file}: not an object`);
  const o = v as Record<string, unknown>;
  for (const k of BOOL_FIELDS) {
    if (typeof o[k] !== 'boolean') throw new StayupError('STATE_CORRUPT', `${file}: field ${k} must be true or false`);
  }
  for (const k of ['gen', 'incarnation'] as const) {
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) throw new StayupError('STATE_CORRUPT', `${file}: field ${k} must be a whole number`);
  }
  if (o.lastSyncMs !== null && typeof o.lastSyncMs !== 'number') {
    throw new StayupError('STATE_CORRUPT', `${file}: field lastSyncMs must be a number or null`);
  }
  return {
    uptodate: o.uptodate as boolean,
    lastPrim: o.lastPrim as boolean,
    reintegrating: o.reintegrating as boolean,
    reintegrationInterrupted: o.reintegrationInterrupted as boolean,
    gen: o.gen as number,
    incarnation: o.incarnation as number,
    lastSyncMs: (o.lastSyncMs as number | null) ?? null,
  };
}

export function fileMirrorRecordStore(paths: NodePaths, module: string): MirrorRecordStore {
  const file = mirrorRecordPath(paths, module);
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw new StayupError('IO', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
      }
      return parseMirrorRecord(text, file);
    },
    save(record) {
      try {
        writeFileAtomic(file, `${JSON.stringify(record)}\n`, 0o600);
      } catch (e) {
        throw new StayupError('IO', `cannot write ${file}: ${(e as Error).message}`, { cause: e });
      }
    },
  };
}
