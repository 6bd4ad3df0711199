// The replication's operator tools: rfsverify (on the secondary: which files differ from the primary) and
// rfsdiff (on the primary: what a reintegration of the secondary would send, and how long it would take).
// Both compare the whole replicated data of the two nodes (src/replication/verify.ts), so they may run
// for a long time on big trees; they change nothing.
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.ts';
import { moduleParam } from './modules.ts';

export function registerReplicationRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  for (const [mode, summary] of [
    ['verify', 'rfsverify: run on the secondary, lists the files that differ from the primary'],
    ['diff', 'rfsdiff: run on the primary (ALONE or PRIM), what a reintegration of the secondary would send and how long it would take'],
  ] as const) {
    app.post<{ Params: { module: string } }>(
      `/api/v1/modules/:module/rfs${mode}`,
      { config: { role: 'Control', command: `rfs${mode}` }, schema: { summary, params: moduleParam } },
      async (req) => ({ node: ctx.cluster.load()?.localNode ?? null, ...(await ctx.modules.compareReplicas(req.params.module, mode)) }),
    );
  }
}
