import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { StayupError } from '../../errors/stayup-error.ts';
import type { DaemonContext } from '../context.ts';
import { isRole, roleAllows, type Principal } from './roles.ts';

export const sessionCookie = 'stayupSession';
/** Per-process secret that marks requests the relay re-injects after unsealing them. */
export const internalSecret = randomBytes(32).toString('hex');

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), decodeURIComponent(part.slice(i + 1).trim()));
  }
  return out;
}

function isLoopback(ip: string): boolean {
  return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1';
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Who is calling, or undefined; throws on a presented but invalid credential. */
export function resolvePrincipal(ctx: DaemonContext, req: FastifyRequest): Principal | undefined {
  const internal = req.headers['x-stayup-internal'];
  if (typeof internal === 'string' && safeEqual(internal, internalSecret)) {
    const p = JSON.parse(String(req.headers['x-stayup-principal'])) as Principal;
    if (!isRole(p.role)) throw new StayupError('INTERNAL', 'relay principal without a role');
    return p;
  }
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) {
    const token = auth.slice(7).trim();
    if (isLoopback(req.ip) && safeEqual(token, ctx.localToken)) return { user: 'root', role: 'Admin', via: 'local', from: 'localhost' };
    const k = ctx.users.checkApiKey(token);
    if (!k) throw new StayupError('AUTH_TOKEN_INVALID', 'the API token is invalid or was revoked');
    return { user: `apikey:${k.name}`, role: k.role, via: 'token', from: req.ip };
  }
  const sid = parseCookies(req.headers.cookie).get(sessionCookie);
  if (sid) {
    const s = ctx.sessions.touch(sid, ctx.nowMs());
    if (!s) throw new StayupError('AUTH_TOKEN_INVALID', 'the session expired: log in again');
    return { user: s.user, role: s.role, via: 'session', from: req.ip };
  }
  return undefined;
}

/** Every route declares the least role it needs in `config.role`; routes without one are public. */
export function registerAuth(app: FastifyInstance, ctx: DaemonContext): void {
  app.decorateRequest('principal', undefined);
  app.addHook('preHandler', async (req) => {
    const need = req.routeOptions.config?.role;
    if (!need) return;
    const p = resolvePrincipal(ctx, req);
    if (!p) throw new StayupError('AUTH_REQUIRED', 'login required: use a session (POST /login) or an API token');
    // Known before the role check, so the audit log records who was refused.
    req.principal = p;
    if (!roleAllows(p.role, need)) throw new StayupError('AUTH_FORBIDDEN', `user "${p.user}" has role ${p.role}; this needs ${need}`);
  });
}
