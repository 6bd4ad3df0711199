import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.ts';
import { readAudit } from '../../logs/audit-log.ts';
import type { Role } from '../auth/roles.ts';

export function registerAdminRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/api/v1/level', { config: { role: 'Monitor' }, schema: { summary: 'Node, host, OS and stayup version' } }, async () => ({
    node: ctx.cluster.load()?.localNode ?? null,
    host: hostname(),
    os: `${process.platform} ${process.arch}`,
    version: ctx.version,
    node_version: process.version,
  }));

  app.get('/api/v1/users', { config: { role: 'Admin' }, schema: { summary: 'Users and their roles' } }, async () => ({ users: ctx.users.listUsers() }));

  app.put<{ Params: { user: string }; Body: { password: string; role?: Role } }>(
    '/api/v1/users/:user',
    {
      config: { role: 'Admin', command: 'webservercfg passwd' },
      schema: {
        summary: 'Create a user or set its password and role',
        params: { type: 'object', properties: { user: { type: 'string' } } },
        body: { type: 'object', required: ['password'], properties: { password: { type: 'string', maxLength: 1024 }, role: { type: 'string', enum: ['Admin', 'Control', 'Monitor'] } } },
      },
    },
    async (req) => {
      ctx.users.setPassword(req.params.user, req.body.password, req.body.role ?? 'Admin');
      return { user: req.params.user, role: req.body.role ?? 'Admin' };
    },
  );

  app.delete<{ Params: { user: string } }>('/api/v1/users/:user', { config: { role: 'Admin', command: 'user delete' }, schema: { summary: 'Delete a user', params: { type: 'object', properties: { user: { type: 'string' } } } } }, async (req) => ({
    deleted: ctx.users.deleteUser(req.params.user),
  }));

  app.post<{ Params: { role: Role; name: string } }>(
    '/api/v1/apikey/:role/:name',
    {
      config: { role: 'Admin', command: 'apikey create' },
      schema: { summary: 'Create an API token with a role (shown once)', params: { type: 'object', properties: { role: { type: 'string', enum: ['Admin', 'Control', 'Monitor'] }, name: { type: 'string' } } } },
    },
    async (req) => ({ name: req.params.name, role: req.params.role, token: ctx.users.createApiKey(req.params.role, req.params.name) }),
  );

  app.delete<{ Params: { name: string } }>('/api/v1/apikey/:name', { config: { role: 'Admin', command: 'apikey delete' }, schema: { summary: 'Revoke an API token', params: { type: 'object', properties: { name: { type: 'string' } } } } }, async (req) => ({
    deleted: ctx.users.deleteApiKey(req.params.name),
  }));

  app.get<{ Querystring: { count?: number } }>(
    '/api/v1/cmdlog',
    { config: { role: 'Monitor' }, schema: { summary: 'The command audit log: who ran what', querystring: { type: 'object', properties: { count: { type: 'integer', minimum: 1, maximum: 100000 } } } } },
    async (req) => ({ records: readAudit(ctx.paths, { count: req.query.count ?? 300 }) }),
  );
}
