import type { FastifyInstance } from 'fastify';
import { StayupError } from '../../errors/stayup-error.ts';
import { keyId } from '../../crypto/cluster-key.ts';
import { parseEnvelope, seal, unseal, type Envelope } from '../../crypto/seal.ts';
import type { DaemonContext } from '../context.ts';
import { internalSecret } from '../auth/http-auth.ts';
import type { Principal } from '../auth/roles.ts';

/** What a sealed request carries: one API call, run as if made locally by the sealed principal. */
export interface RelayedRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  body?: unknown;
}

export interface RelayedResponse {
  status: number;
  body: unknown;
}

/** Largest sealed request: a module package (64 MiB) in base64 plus room. */
export const relayBodyLimitBytes = 96 * 1024 * 1024;

/**
 * POST /api/v1/cluster/relay: the door for distributed commands (`stayup -H`). The envelope is opened
 * with the cluster key, or with the password verifier of an Admin user (to bootstrap a node that has no
 * cluster key yet), the inner API call runs with that principal, and the answer goes back sealed.
 */
export function registerRelay(app: FastifyInstance, ctx: DaemonContext): void {
  app.post(
    '/api/v1/cluster/relay',
    { bodyLimit: relayBodyLimitBytes, schema: { summary: 'Run one API call sealed with the cluster key (distributed commands)' } },
    async (req, reply) => {
      const env = parseEnvelope(req.body);
      if (env.dir !== 'request') throw new StayupError('BAD_REQUEST', 'sealed envelope: expected a request');
      const { secret, principal } = openWith(ctx, env, req.ip);
      let inner: RelayedRequest;
      try {
        inner = unseal(secret, env) as RelayedRequest;
      } catch (e) {
        // With a password-derived key, failing to authenticate means a wrong password.
        if (principal.via === 'password') throw new StayupError('AUTH_FAILED', `sealed request for user "${principal.user}": wrong user name or password`);
        throw e;
      }
      ctx.replay.check(env, ctx.nowMs());
      if (
        typeof inner?.url !== 'string' ||
        !inner.url.startsWith('/api/v1/') ||
        inner.url.startsWith('/api/v1/cluster/relay') ||
        !['GET', 'POST', 'PUT', 'DELETE'].includes(inner.method)
      ) {
        throw new StayupError('BAD_REQUEST', 'sealed request: only /api/v1/ calls can be relayed');
      }
      const res = await app.inject({
        method: inner.method,
        url: inner.url,
        headers: {
          'x-stayup-internal': internalSecret,
          'x-stayup-principal': JSON.stringify(principal),
          ...(inner.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(inner.body === undefined ? {} : { payload: JSON.stringify(inner.body) }),
      });
      let body: unknown;
      try {
        body = res.body === '' ? null : JSON.parse(res.body);
      } catch {
        body = res.body;
      }
      const answer: RelayedResponse = { status: res.statusCode, body };
      const out = seal(secret, { kid: env.kid, from: ctx.cluster.load()?.localNode ?? 'node', ts: ctx.nowMs(), nonce: env.nonce, dir: 'response' }, answer);
      return reply.code(200).send(out);
    },
  );
}

function openWith(ctx: DaemonContext, env: Envelope, ip: string): { secret: Buffer; principal: Principal } {
  if (env.kid.startsWith('cluster:')) {
    const want = env.kid.slice('cluster:'.length);
    const key = ctx.cluster.acceptedKeys().find((k) => keyId(k) === want);
    if (!key) {
      const mine = ctx.cluster.key();
      throw new StayupError(
        'CLUSTER_AUTH_FAILED',
        mine
          ? `request from "${env.from}" is sealed with cluster key ${want}, this node has ${keyId(mine)}: push the cluster configuration again`
          : `request from "${env.from}" is sealed with a cluster key, but this node has none yet: configure it with an admin password`,
      );
    }
    return { secret: key, principal: { user: `cluster:${env.from}`, role: 'Admin', via: 'cluster', from: `${env.from}@${ip}` } };
  }
  if (env.kid.startsWith('user:')) {
    const name = env.kid.slice('user:'.length);
    const u = ctx.users.verifier(name);
    // An unknown user is refused like a wrong password: the envelope cannot authenticate.
    if (!u) throw new StayupError('AUTH_FAILED', `sealed request for user "${name}": wrong user name or password`);
    return { secret: u.verifier, principal: { user: name, role: u.role, via: 'password', from: `${env.from}@${ip}` } };
  }
  throw new StayupError('BAD_REQUEST', `sealed envelope: unknown key kind "${env.kid}"`);
}
