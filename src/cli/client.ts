import { readFileSync, existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { hostname } from 'node:os';
import { StayupError } from '../errors/stayup-error.ts';
import { errorCodes, type ErrorCode } from '../errors/codes.ts';
import { keyId } from '../crypto/cluster-key.ts';
import { seal, unseal, parseEnvelope } from '../crypto/seal.ts';
import { derivePasswordVerifier, type PasswordParams } from '../daemon/auth/user-store.ts';
import type { RelayedRequest, RelayedResponse } from '../daemon/routes/relay.ts';

export const defaultApiPort = 9010;

/** Per call: how long to wait for the answer (a long poll or a long comparison waits longer). */
export interface CallOptions {
  timeoutMs?: number;
}

/** One node's API as the CLI sees it: local (root token) or remote (sealed). */
export interface NodeClient {
  /** Node name for output ("local" when not known). */
  readonly name: string;
  readonly address: string;
  call<T = unknown>(method: RelayedRequest['method'], url: string, body?: unknown, opts?: CallOptions): Promise<T>;
}

/** How long the CLI waits for one node before saying it is unreachable (a call without its own timeout). */
export const requestTimeoutMs = 60_000;

function errorFrom(status: number, body: unknown, where: string): StayupError {
  const b = body as { code?: string; message?: string; diagnostics?: [] } | null;
  if (b && typeof b.code === 'string' && b.code in errorCodes) {
    return new StayupError(b.code as ErrorCode, b.message ?? b.code, { diagnostics: b.diagnostics ?? [] });
  }
  return new StayupError('REMOTE_FAILED', `${where}: HTTP ${status}`);
}

/**
 * One HTTP exchange with a daemon, limited by timeoutMs only. Not fetch: its client gives up when an
 * answer's headers take more than 300 s whatever the signal says, and an rfsverify over a million files
 * answers later than that.
 */
function httpJson(url: string, init: { method: string; headers?: Record<string, string>; body?: string }, where: string, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const unreachable = (e: Error): StayupError => new StayupError('DAEMON_UNREACHABLE', `${where}: cannot reach the stayup daemon (${e.message})`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: init.method, headers: init.headers ?? {}, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => reject(unreachable(e)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text === '' ? null : JSON.parse(text);
        } catch {
          /* plain text answer */
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', (e) => reject(unreachable(e.name === 'AbortError' ? new Error(`no answer within ${timeoutMs} ms`) : e)));
    req.end(init.body);
  });
}

/** The daemon of this machine, through the root-only token it writes at start. */
export class LocalClient implements NodeClient {
  readonly name = 'local';
  readonly address: string;
  constructor(
    private readonly tokenFile: string,
    port = Number(process.env.STAYUP_PORT ?? defaultApiPort),
    private readonly defaultTimeoutMs = requestTimeoutMs,
  ) {
    this.address = `127.0.0.1:${port}`;
  }

  async call<T>(method: RelayedRequest['method'], url: string, body?: unknown, opts: CallOptions = {}): Promise<T> {
    if (!existsSync(this.tokenFile)) {
      throw new StayupError('DAEMON_UNREACHABLE', `the stayup daemon is not running on this node (no ${this.tokenFile}): start stayupd`);
    }
    let token: string;
    try {
      token = readFileSync(this.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new StayupError('AUTH_REQUIRED', `cannot read ${this.tokenFile} (${(e as Error).message}): run stayup as root`);
    }
    const r = await httpJson(
      `http://${this.address}${url}`,
      {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      },
      'local daemon',
      opts.timeoutMs ?? this.defaultTimeoutMs,
    );
    if (r.status >= 400) throw errorFrom(r.status, r.body, 'local daemon');
    return r.body as T;
  }
}

export type Credential = { kind: 'cluster'; key: Buffer } | { kind: 'password'; user: string; password: string };

/**
 * A remote node, through its relay: every call is sealed with the cluster key (or, to bootstrap a node
 * without a key, with a key derived from an admin password), and so is the answer.
 */
export class SealedClient implements NodeClient {
  private passwordKey: Buffer | undefined;
  constructor(
    readonly name: string,
    readonly address: string,
    private readonly credential: Credential,
    private readonly defaultTimeoutMs = requestTimeoutMs,
  ) {}

  private async secret(): Promise<{ kid: string; secret: Buffer }> {
    const c = this.credential;
    if (c.kind === 'cluster') return { kid: `cluster:${keyId(c.key)}`, secret: c.key };
    if (!this.passwordKey) {
      const r = await httpJson(`http://${this.address}/api/v1/auth/params?user=${encodeURIComponent(c.user)}`, { method: 'GET' }, this.name, this.defaultTimeoutMs);
      if (r.status >= 400) throw errorFrom(r.status, r.body, this.name);
      this.passwordKey = derivePasswordVerifier(c.password, r.body as PasswordParams);
    }
    return { kid: `user:${c.user}`, secret: this.passwordKey };
  }

  async call<T>(method: RelayedRequest['method'], url: string, body?: unknown, opts: CallOptions = {}): Promise<T> {
    const { kid, secret } = await this.secret();
    const request: RelayedRequest = { method, url, ...(body === undefined ? {} : { body }) };
    const env = seal(secret, { kid, from: `cli@${hostname()}`, ts: Date.now(), dir: 'request' }, request);
    const r = await httpJson(`http://${this.address}/api/v1/cluster/relay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(env) }, this.name, opts.timeoutMs ?? this.defaultTimeoutMs);
    if (r.status >= 400) throw errorFrom(r.status, r.body, this.name);
    const answerEnv = parseEnvelope(r.body);
    if (answerEnv.dir !== 'response' || answerEnv.nonce !== env.nonce) throw new StayupError('CLUSTER_AUTH_FAILED', `${this.name}: the answer is not bound to our request`);
    const answer = unseal(secret, answerEnv) as RelayedResponse;
    if (answer.status >= 400) throw errorFrom(answer.status, answer.body, this.name);
    return answer.body as T;
  }
}
