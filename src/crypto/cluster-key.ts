import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { StayupError } from '../errors/stayup-error.ts';

/** Cluster keys are 32 random bytes, stored base64 in a root-only file. */
export const clusterKeyBytes = 32;

export function generateClusterKey(): Buffer {
  return randomBytes(clusterKeyBytes);
}

/** Short public fingerprint of a key: lets two nodes say "our keys differ" without revealing either. */
export function keyId(key: Uint8Array): string {
  return createHash('sha256').update('stayup-key-id').update(key).digest('hex').slice(0, 16);
}

export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString('base64') + '\n';
}

export function decodeKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== clusterKeyBytes || key.toString('base64') !== text.trim()) {
    throw new StayupError('BAD_ARGUMENT', `${where}: a cluster key is ${clusterKeyBytes} bytes in base64`);
  }
  return key;
}

export function readKeyFile(path: string): Buffer | undefined {
  if (!existsSync(path)) return undefined;
  return decodeKey(readFileSync(path, 'utf8'), path);
}
