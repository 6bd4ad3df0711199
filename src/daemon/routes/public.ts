import type { FastifyInstance } from 'fastify';
import { StayupError } from '../../errors/stayup-error.ts';
import type { DaemonContext } from '../context.ts';
import { sessionCookie, parseCookies } from '../auth/http-auth.ts';
import { sessionIdleMs } from '../auth/sessions.ts';

/** Routes that need no login: liveness, the load-balancer health check, login itself, the API docs. */
export function registerPublicRoutes(app: FastifyInstance, ctx: DaemonContext, openapi: () => object): void {
  app.get('/healthz', { schema: { summary: 'The daemon is alive' } }, async () => ({ ok: true }));

  // The cloud load-balancer probe of the reference: 200 on the node that should take traffic, 404 elsewhere.
  // Kept allocation-light and free of I/O: it reads the in-memory module state only.
  app.get<{ Params: { module: string } }>(
    '/var/modules/:module/ready.txt',
    { schema: { summary: 'Health check: 200 on PRIM(Ready), ALONE(Ready) or UP(Ready), else 404', params: { type: 'object', properties: { module: { type: 'string' } } } } },
    async (req, reply) => {
      if (ctx.modules.isReady(req.params.module)) return reply.code(200).type('text/plain').send('OK\n');
      return reply.code(404).type('text/plain').send('NOT FOUND\n');
    },
  );

  app.get<{ Querystring: { user?: string } }>(
    '/api/v1/auth/params',
    { schema: { summary: 'Public scrypt parameters to derive a password-sealing key', querystring: { type: 'object', properties: { user: { type: 'string' } } } } },
    async (req) => ctx.users.passwordParams(req.query.user ?? 'admin'),
  );

  app.post<{ Body: Record<string, string> }>(
    '/login',
    { config: { command: 'login' }, schema: { summary: 'Log in (form fields httpd_username, httpd_password; or JSON user, password); sets the session cookie' } },
    async (req, reply) => {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const user = String(body.httpd_username ?? body.user ?? '');
      const password = String(body.httpd_password ?? body.password ?? '');
      const role = user && password ? ctx.users.checkPassword(user, password) : undefined;
      if (!role) {
        req.principal = { user: user || 'anonymous', role: 'Monitor', via: 'password', from: req.ip };
        throw new StayupError('AUTH_FAILED', 'wrong user name or password');
      }
      const sid = ctx.sessions.create(user, role, ctx.nowMs());
      req.principal = { user, role, via: 'session', from: req.ip };
      reply.header('set-cookie', `${sessionCookie}=${sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${sessionIdleMs / 1000}`);
      return { user, role };
    },
  );

  app.post('/logout', { schema: { summary: 'Log out' } }, async (req, reply) => {
    const sid = parseCookies(req.headers.cookie).get(sessionCookie);
    if (sid) ctx.sessions.destroy(sid);
    reply.header('set-cookie', `${sessionCookie}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return { ok: true };
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => openapi());
  app.get('/docs', { schema: { hide: true } }, async (_req, reply) =>
    reply.type('text/html').send(
      '<!doctype html><meta charset="utf-8"><title>stayup API</title><h1>stayup node API</h1>' +
        '<p>The OpenAPI 3.1 description is at <a href="/openapi.json">/openapi.json</a>.</p>',
    ),
  );
}
