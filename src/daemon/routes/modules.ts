import type { FastifyInstance } from 'fastify';
import { StayupError } from '../../errors/stayup-error.ts';
import { parseUserConfig } from '../../config/userconfig/index.ts';
import type { DaemonContext } from '../context.ts';
import { moduleLog } from '../module-logs.ts';
import { decodeModuleKey } from '../../heartbeat/module-key.ts';

// Names are checked by the package store, which answers MODULE_NAME_INVALID with the rule.
export const moduleParam = { type: 'object', properties: { module: { type: 'string', maxLength: 256 } } } as const;

export function registerModuleRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/api/v1/modules', { config: { role: 'Monitor' }, schema: { summary: 'Installed modules with their ids' } }, async () => ({ modules: ctx.modules.list() }));

  app.post<{ Params: { module: string }; Body: { package: string; id?: number; reinstall?: boolean; moduleKey?: string } }>(
    '/api/v1/modules/:module/install',
    {
      bodyLimit: 96 * 1024 * 1024,
      config: { role: 'Admin', command: 'module install' },
      schema: {
        summary: 'Install a module package (.safe or .zip, base64)',
        params: moduleParam,
        body: {
          type: 'object',
          required: ['package'],
          properties: {
            package: { type: 'string' },
            id: { type: 'integer', minimum: 1, maximum: 32 },
            reinstall: { type: 'boolean' },
            moduleKey: { type: 'string', maxLength: 64, description: 'module key (base64 of 32 bytes), the same on both nodes' },
          },
        },
      },
    },
    async (req) => {
      const pkg = Buffer.from(req.body.package, 'base64');
      const moduleKey = req.body.moduleKey === undefined ? undefined : decodeModuleKey(req.body.moduleKey, 'body.moduleKey');
      return ctx.modules.install(req.params.module, pkg, { id: req.body.id, reinstall: req.body.reinstall, ...(moduleKey ? { moduleKey } : {}) });
    },
  );

  app.delete<{ Params: { module: string } }>(
    '/api/v1/modules/:module',
    { config: { role: 'Admin', command: 'module uninstall' }, schema: { summary: 'Uninstall a stopped module', params: moduleParam } },
    async (req) => {
      await ctx.modules.uninstall(req.params.module);
      return { ok: true };
    },
  );

  app.get<{ Params: { module: string } }>(
    '/api/v1/modules/:module/package',
    { config: { role: 'Admin' }, schema: { summary: 'The module as a package (base64 zip)', params: moduleParam } },
    async (req) => ({ package: (await ctx.modules.package(req.params.module)).toString('base64') }),
  );

  app.get<{ Params: { module: string } }>(
    '/api/v1/modules/:module/ports',
    { config: { role: 'Monitor' }, schema: { summary: 'Ports the module uses (derived from its id)', params: moduleParam } },
    async (req) => ctx.modules.ports(req.params.module),
  );

  app.get<{ Params: { module: string } }>(
    '/api/v1/modules/:module/confcheck',
    { config: { role: 'Monitor' }, schema: { summary: 'Check the installed module configuration', params: moduleParam } },
    async (req) => ctx.modules.confcheck(req.params.module),
  );

  app.post<{ Body: { xml: string; file?: string } }>(
    '/api/v1/confcheck',
    {
      config: { role: 'Monitor' },
      schema: { summary: 'Check a userconfig.xml text against this node\'s cluster', body: { type: 'object', required: ['xml'], properties: { xml: { type: 'string', maxLength: 4_000_000 }, file: { type: 'string', maxLength: 4096 } } } },
    },
    async (req) => {
      const cfg = parseUserConfig(req.body.xml, { file: req.body.file ?? 'userconfig.xml', cluster: ctx.cluster.load()?.config, env: process.env });
      return { ok: true, mode: cfg.service.mode };
    },
  );

  app.get<{ Params: { module: string }; Querystring: { effective?: boolean } }>(
    '/api/v1/modules/:module/confinfo',
    { config: { role: 'Monitor' }, schema: { summary: 'Signature and date of the module configuration; the effective configuration on request', params: moduleParam, querystring: { type: 'object', properties: { effective: { type: 'boolean' } } } } },
    async (req) => ctx.modules.confinfo(req.params.module, req.query.effective === true),
  );

  app.get('/api/v1/state', { config: { role: 'Monitor' }, schema: { summary: 'State of every module on this node' } }, async () => ({
    node: ctx.cluster.load()?.localNode ?? null,
    modules: ctx.modules.statuses(),
  }));

  app.get<{ Params: { module: string } }>(
    '/api/v1/modules/:module/state',
    { config: { role: 'Monitor' }, schema: { summary: 'State of one module', params: moduleParam } },
    async (req) => ({ node: ctx.cluster.load()?.localNode ?? null, ...ctx.modules.status(req.params.module) }),
  );

  app.get<{ Params: { module: string }; Querystring: { count?: number; verbose?: boolean } }>(
    '/api/v1/modules/:module/log',
    {
      config: { role: 'Monitor' },
      schema: { summary: 'The last messages of the module log', params: moduleParam, querystring: { type: 'object', properties: { count: { type: 'integer', minimum: 1, maximum: 100000 }, verbose: { type: 'boolean' } } } },
    },
    async (req) => {
      ctx.modules.status(req.params.module);
      return { records: moduleLog(ctx.paths, req.params.module).tail({ count: req.query.count ?? 300, verbose: req.query.verbose === true }) };
    },
  );

  app.post<{ Params: { module: string }; Body: { level: 'I' | 'E'; message: string } }>(
    '/api/v1/modules/:module/log',
    {
      config: { role: 'Control', command: 'print' },
      schema: {
        summary: 'Write a message into the module log (printi/printe from scripts)',
        params: moduleParam,
        body: { type: 'object', required: ['level', 'message'], properties: { level: { type: 'string', enum: ['I', 'E'] }, message: { type: 'string', maxLength: 4096 } } },
      },
    },
    async (req) => {
      ctx.modules.status(req.params.module);
      if (/[\r\n]/.test(req.body.message)) throw new StayupError('BAD_ARGUMENT', 'a log message is one line');
      moduleLog(ctx.paths, req.params.module).append(req.body.level, 'script', req.body.message);
      return { ok: true };
    },
  );
}
