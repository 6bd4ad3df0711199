import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { StayupError } from '../errors/stayup-error.ts';

/**
 * Sealed envelopes: how one node (or the CLI acting for an operator) talks to another node's daemon.
 * The payload is encrypted and authenticated with AES-256-GCM under a key derived from a shared secret:
 * the cluster key, or, before a cluster key exists, the password verifier of an admin user. The header
 * fields (who, when, nonce, direction) are bound as additional data, and a response is bound to the
 * nonce of its request, so neither can be replayed, redirected or spliced.
 */
export interface Envelope {
  v: 1;
  /** "cluster:<keyId>" or "user:<name>". */
  kid: string;
  /** Sender, for the audit log (node name, or "cli@<host>"). */
  from: string;
  /** Sender's clock, ms since epoch. */
  ts: number;
  /** 16 random bytes hex; the response repeats the request's. */
  nonce: string;
  dir: 'request' | 'response';
  iv: string;
  ct: string;
  tag: string;
}

/** How far apart two clocks may be before a sealed request is refused (replay window). */
export const sealClockSkewMs = 120_000;

function deriveKey(secret: Uint8Array, dir: Envelope['dir']): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'stayup-seal-v1', dir, 32));
}

function aad(e: Pick<Envelope, 'v' | 'kid' | 'from' | 'ts' | 'nonce' | 'dir'>): Buffer {
  return Buffer.from(JSON.stringify([e.v, e.kid, e.from, e.ts, e.nonce, e.dir]));
}

export function seal(
  secret: Uint8Array,
  header: { kid: string; from: string; ts: number; nonce?: string; dir: Envelope['dir'] },
  payload: unknown,
): Envelope {
  const nonce = header.nonce ?? randomBytes(16).toString('hex');
  const base = { v: 1 as const, kid: header.kid, from: header.from, ts: header.ts, nonce, dir: header.dir };
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(secret, header.dir), iv);
  cipher.setAAD(aad(base));
  const ct = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
  return { ...base, iv: iv.toString('base64'), ct: ct.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
}

/** Checks an envelope's shape; anything else is a bad packet, refused before any crypto. */
export function parseEnvelope(x: unknown): Envelope {
  const e = x as Partial<Envelope> | null;
  const ok =
    e !== null &&
    typeof e === 'object' &&
    e.v === 1 &&
    typeof e.kid === 'string' &&
    e.kid.length <= 200 &&
    typeof e.from === 'string' &&
    e.from.length <= 200 &&
    typeof e.ts === 'number' &&
    Number.isFinite(e.ts) &&
    typeof e.nonce === 'string' &&
    /^[0-9a-f]{32}$/.test(e.nonce) &&
    (e.dir === 'request' || e.dir === 'response') &&
    typeof e.iv === 'string' &&
    typeof e.ct === 'string' &&
    typeof e.tag === 'string';
  if (!ok) throw new StayupError('BAD_REQUEST', 'sealed envelope: missing or malformed fields');
  return e as Envelope;
}

/** Decrypts and authenticates; a wrong key or any tampering gives CLUSTER_AUTH_FAILED. */
export function unseal(secret: Uint8Array, e: Envelope): unknown {
  try {
    const decipher = createDecipheriv('aes-256-gcm', deriveKey(secret, e.dir), Buffer.from(e.iv, 'base64'));
    decipher.setAAD(aad(e));
    decipher.setAuthTag(Buffer.from(e.tag, 'base64'));
    const pt = Buffer.concat([decipher.update(Buffer.from(e.ct, 'base64')), decipher.final()]);
    return JSON.parse(pt.toString('utf8'));
  } catch {
    throw new StayupError('CLUSTER_AUTH_FAILED', `sealed request from "${e.from}" does not authenticate with key ${e.kid}`);
  }
}

/**
 * Remembers the nonces seen inside the replay window. Bounded: entries older than the window are
 * dropped, and the window itself bounds how many can be live.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  constructor(private readonly windowMs = sealClockSkewMs) {}

  check(e: Envelope, nowMs: number): void {
    if (Math.abs(nowMs - e.ts) > this.windowMs) {
      throw new StayupError(
        'CLUSTER_AUTH_REPLAY',
        `sealed request from "${e.from}" is ${Math.round((nowMs - e.ts) / 1000)} s off this node's clock (limit ${this.windowMs / 1000} s): check NTP`,
      );
    }
    for (const [n, t] of this.seen) {
      if (nowMs - t > 2 * this.windowMs) this.seen.delete(n);
      else break;
    }
    if (this.seen.has(e.nonce)) throw new StayupError('CLUSTER_AUTH_REPLAY', `sealed request from "${e.from}" is a replay`);
    this.seen.set(e.nonce, nowMs);
  }
}
