import type { FastifyInstance } from 'fastify';
import { StayupError } from '../../errors/stayup-error.ts';
import { decodeKey } from '../../crypto/cluster-key.ts';
import { parseClusterConfig, clusterNodes } from '../../config/cluster.ts';
import type { DaemonContext } from '../context.ts';

const xmlBody = { type: 'object', required: ['xml'], properties: { xml: { type: 'string', maxLength: 1_000_000 } } } as const;

export function registerClusterRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.get('/api/v1/cluster/confinfo', { config: { role: 'Monitor' }, schema: { summary: 'Date and signature of this node\'s cluster configuration' } }, async () => {
    const v = ctx.cluster.load();
    return v
      ? { node: v.localNode ?? null, configured: true, ...v.meta }
      : { node: null, configured: false };
  });

  app.post<{ Body: { xml: string } }>(
    '/api/v1/cluster/confcheck',
    { config: { role: 'Monitor' }, schema: { summary: 'Validate a cluster.xml without applying it', body: xmlBody } },
    async (req) => {
      const cfg = parseClusterConfig(req.body.xml, 'cluster.xml');
      return { ok: true, nodes: clusterNodes(cfg) };
    },
  );

  app.put<{ Body: { xml: string; key: string; lock?: boolean; unlock?: boolean } }>(
    '/api/v1/cluster/config',
    {
      config: { role: 'Admin', command: 'cluster config' },
      schema: {
        summary: 'Apply cluster.xml and the cluster key (both distributed by the CLI to every node)',
        body: { type: 'object', required: ['xml', 'key'], properties: { xml: { type: 'string', maxLength: 1_000_000 }, key: { type: 'string', maxLength: 200 }, lock: { type: 'boolean' }, unlock: { type: 'boolean' } } },
      },
    },
    async (req) => {
      const key = decodeKey(req.body.key, 'key');
      const meta = ctx.cluster.apply(req.body.xml, key, { lock: req.body.lock, unlock: req.body.unlock, now: new Date(ctx.nowMs()) });
      ctx.modules.clusterChanged();
      return { node: ctx.cluster.load()?.localNode ?? null, ...meta };
    },
  );

  app.delete('/api/v1/cluster/config', { config: { role: 'Admin', command: 'cluster deconfig' }, schema: { summary: 'Remove the cluster configuration and key' } }, async () => {
    if (ctx.modules.anyRunning()) throw new StayupError('MODULE_RUNNING', 'stop every module before removing the cluster configuration');
    ctx.cluster.deconfig();
    return { ok: true };
  });

  app.get('/api/v1/cluster/state', { config: { role: 'Monitor' }, schema: { summary: 'Modules of this node: mode, id, configuration date and signature' } }, async () => {
    const v = ctx.cluster.load();
    return { node: v?.localNode ?? null, modules: ctx.modules.clusterState() };
  });
}
