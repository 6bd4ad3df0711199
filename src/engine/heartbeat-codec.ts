// The mirror's heartbeat message on the wire: JSON inside the sealed heartbeat frame. The frame already
// proves who sent it (module key); this codec still checks every field, because a peer running another
// version, or a bug, must produce a counted rejection and never a machine fed with garbage.
import type { HeartbeatMessage, MirrorStateName, Qualifier, StartMode } from '../mirror/types.ts';

const STATES: ReadonlySet<string> = new Set<MirrorStateName>(['STOP', 'WAIT', 'ALONE', 'PRIM', 'SECOND']);
const QUALIFIERS: ReadonlySet<string> = new Set<Qualifier>(['NotReady', 'Transient', 'Ready']);
const MODES: ReadonlySet<string> = new Set<StartMode>(['auto', 'prim', 'primforce', 'second']);
/** A heartbeat message is a few hundred bytes; anything much larger is not one. */
export const MAX_HEARTBEAT_MESSAGE_BYTES = 4096;

export function encodeHeartbeatMessage(m: HeartbeatMessage): Buffer {
  return Buffer.from(JSON.stringify(m));
}

type Check = (v: unknown) => boolean;
const isBool: Check = (v) => typeof v === 'boolean';
const isCount: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const isName: Check = (v) => typeof v === 'string' && v.length > 0 && v.length <= 256;
const isEpisode: Check = (v) => v === null || (typeof v === 'string' && v.length <= 64);

const FIELDS: Record<keyof HeartbeatMessage, Check> = {
  node: isName,
  incarnation: isCount,
  seq: isCount,
  state: (v) => typeof v === 'string' && STATES.has(v),
  qualifier: (v) => typeof v === 'string' && QUALIFIERS.has(v),
  primActive: isBool,
  established: isBool,
  exiting: isBool,
  uptodate: isBool,
  lastPrim: isBool,
  reintegrationInterrupted: isBool,
  gen: isCount,
  mode: (v) => typeof v === 'string' && MODES.has(v),
  episode: isEpisode,
  synced: isBool,
  releasedEpisode: isEpisode,
  swapping: isBool,
  swapRequests: isCount,
  swapNosync: isBool,
};

/** The message, or the reason it is refused (first bad field). Never throws. */
export function decodeHeartbeatMessage(payload: Uint8Array): { ok: true; message: HeartbeatMessage } | { ok: false; reason: string } {
  if (payload.length > MAX_HEARTBEAT_MESSAGE_BYTES) return { ok: false, reason: `message of ${payload.length} bytes` };
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, reason: 'not an object' };
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, check] of Object.entries(FIELDS)) {
    if (!check(o[k])) return { ok: false, reason: `field ${k}: ${JSON.stringify(o[k]) ?? 'missing'}` };
    out[k] = o[k];
  }
  return { ok: true, message: out as unknown as HeartbeatMessage };
}
