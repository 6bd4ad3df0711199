import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { StayupError } from '../errors/stayup-error.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

/** HTTPS port of the API when a certificate is configured (the reference's 9453). */
export const httpsPort = 9453;

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

function tlsDir(webDir: string): string {
  return join(webDir, 'tls');
}

/** The configured certificate and key, or undefined when HTTPS is not configured. */
export function loadTls(webDir: string): TlsFiles | undefined {
  const d = tlsDir(webDir);
  const certFile = join(d, 'server.crt');
  const keyFile = join(d, 'server.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) return undefined;
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/**
 * Installs a PEM certificate and key for the API after checking that they parse, belong together and
 * have not expired; takes effect at the next daemon start. Nothing is written when a check fails.
 */
export function installTls(webDir: string, certFile: string, keyFile: string, nowMs: number): { subject: string; validTo: string; fingerprint256: string } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(certFile));
  } catch (e) {
    throw new StayupError('BAD_ARGUMENT', `${certFile}: not a PEM certificate (${(e as Error).message})`);
  }
  let pub: string;
  try {
    pub = createPublicKey(createPrivateKey(readFileSync(keyFile))).export({ type: 'spki', format: 'pem' }).toString();
  } catch (e) {
    throw new StayupError('BAD_ARGUMENT', `${keyFile}: not a PEM private key (${(e as Error).message})`);
  }
  if (cert.publicKey.export({ type: 'spki', format: 'pem' }).toString() !== pub) {
    throw new StayupError('BAD_ARGUMENT', `${keyFile}: this key does not belong to the certificate ${certFile}`);
  }
  if (Date.parse(cert.validTo) < nowMs) throw new StayupError('BAD_ARGUMENT', `${certFile}: the certificate expired on ${cert.validTo}`);
  const d = tlsDir(webDir);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(d, 'server.key'), readFileSync(keyFile), 0o600);
  writeFileAtomic(join(d, 'server.crt'), readFileSync(certFile), 0o644);
  return { subject: cert.subject, validTo: cert.validTo, fingerprint256: cert.fingerprint256 };
}

