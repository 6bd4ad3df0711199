import Fastify, { type FastifyInstance } from 'fastify';
import { isStayupError, StayupError } from '../errors/stayup-error.ts';
import type { DaemonContext } from './context.ts';
import { registerAuth } from './auth/http-auth.ts';
import { collectOpenApi } from './openapi.ts';
import { registerRelay } from './routes/relay.ts';
import { registerPublicRoutes } from './routes/public.ts';
import { registerClusterRoutes } from './routes/cluster.ts';
import { registerModuleRoutes } from './routes/modules.ts';
import { registerControlRoutes } from './routes/control.ts';
import { registerAdminRoutes } from './routes/admin.ts';
import { registerReplicationRoutes } from './routes/replication.ts';
import { appendAudit } from '../logs/audit-log.ts';

/**
 * The daemon's HTTP API. Every failure leaves as `{code, message, diagnostics?}` with the status of the
 * code in the registry, so the CLI and the console show the same words as the tests assert.
 */
export interface AppOptions {
  logger?: boolean;
  /** Serve over TLS (the HTTPS listener on 9453). */
  https?: { cert: Buffer; key: Buffer };
  /**
   * On the plain HTTP listener while HTTPS is configured: send browsers and API clients to this HTTPS
   * port. The health check, the sealed relay (already encrypted) and loopback callers stay on HTTP.
   */
  redirectToHttpsPort?: number;
}

const httpOnlyPaths = ['/healthz', '/var/modules/', '/api/v1/cluster/relay', '/api/v1/auth/params'];

export async function buildApp(ctx: DaemonContext, opts: AppOptions = {}): Promise<FastifyInstance> {
  const app = opts.https
    ? (Fastify({ logger: opts.logger ?? false, bodyLimit: 1024 * 1024, trustProxy: false, https: { cert: opts.https.cert, key: opts.https.key, minVersion: 'TLSv1.2' } }) as unknown as FastifyInstance)
    : Fastify({ logger: opts.logger ?? false, bodyLimit: 1024 * 1024, trustProxy: false });
  const redirectPort = opts.redirectToHttpsPort;
  if (redirectPort) {
    app.addHook('onRequest', async (req, reply) => {
      const loopback = req.ip === '127.0.0.1' || req.ip === '::1' || req.ip === '::ffff:127.0.0.1';
      if (loopback || httpOnlyPaths.some((p) => req.url.startsWith(p))) return;
      const host = (req.headers.host ?? 'localhost').replace(/:\d+$/, '');
      return reply.code(301).header('location', `https://${host}:${redirectPort}${req.url}`).send();
    });
  }
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });
  app.setErrorHandler((err, req, reply) => {
    if (isStayupError(err)) return reply.code(err.status).send(err.toJSON());
    const e = err as { validation?: Array<{ keyword?: string; params?: { allowedValues?: unknown[] } }>; statusCode?: number; message: string; code?: string };
    if (e.validation || (e.statusCode && e.statusCode >= 400 && e.statusCode < 500)) {
      // An enum refusal names what is allowed, so the caller can fix the request without the docs.
      const allowed = e.validation?.find((v) => v.keyword === 'enum')?.params?.allowedValues;
      const hint = Array.isArray(allowed) ? ` (${allowed.join(', ')})` : '';
      const se = new StayupError('BAD_REQUEST', `${req.method} ${req.url}: ${e.message}${hint}`);
      return reply.code(e.statusCode === 413 ? 413 : 400).send(se.toJSON());
    }
    req.log.error(err);
    return reply.code(500).send(new StayupError('INTERNAL', `internal error: ${e.message}`).toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(new StayupError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`).toJSON());
  });
  // Who did what: every state-changing call, refused or not, once the principal is known (or not).
  app.addHook('onResponse', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.url.startsWith('/api/v1/cluster/relay')) return;
    if (!req.routeOptions.config?.role && !req.url.startsWith('/login')) return;
    const p = req.principal;
    try {
      appendAudit(ctx.paths, {
        user: p?.user ?? 'anonymous',
        role: p?.role ?? 'none',
        remote: p?.from ?? req.ip,
        command: req.routeOptions.config?.command ?? `${req.method} ${req.routeOptions.url ?? req.url}`,
        module: (req.params as { module?: string } | undefined)?.module,
        ok: reply.statusCode < 400,
        status: reply.statusCode,
      });
    } catch (e) {
      req.log.error(e);
    }
  });
  const openapi = collectOpenApi(app, { title: 'stayup node API', version: ctx.version });
  registerAuth(app, ctx);
  registerPublicRoutes(app, ctx, openapi);
  registerRelay(app, ctx);
  registerClusterRoutes(app, ctx);
  registerModuleRoutes(app, ctx);
  registerControlRoutes(app, ctx);
  registerAdminRoutes(app, ctx);
  registerReplicationRoutes(app, ctx);
  await app.ready();
  return app;
}
