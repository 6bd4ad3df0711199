// Module control: the commands of the mirror machine (start, stop, swap, prim…), waiting for a state, and
// the module key. Commands answer once the machine accepted or refused them; `wait` long-polls.
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.ts';
import type { ModuleStateName } from '../module-manager.ts';
import { decodeModuleKey, generateModuleKey } from '../../heartbeat/module-key.ts';
import { StayupError } from '../../errors/stayup-error.ts';
import { MIRROR_COMMANDS, type MirrorCommandName } from '../../mirror/types.ts';
import { moduleParam } from './modules.ts';

const STATES: readonly ModuleStateName[] = ['STOP', 'WAIT', 'ALONE', 'PRIM', 'SECOND', 'UP'];
/** A wait longer than this is refused: clients loop instead of holding a request for hours. */
export const MAX_WAIT_MS = 600_000;

export function registerControlRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  app.post<{ Params: { module: string }; Body: { command: MirrorCommandName; nosync?: boolean; fullsync?: boolean; identity?: string } }>(
    '/api/v1/modules/:module/command',
    {
      config: { role: 'Control', command: 'module command' },
      schema: {
        summary: 'Run a module command (start, stop, restart, stopstart, forcestop, swap, prim, second, primforce)',
        params: moduleParam,
        body: {
          type: 'object',
          required: ['command'],
          additionalProperties: false,
          properties: {
            command: { type: 'string', enum: [...MIRROR_COMMANDS] },
            nosync: { type: 'boolean', description: 'swap only: the old primary becomes secondary without resynchronisation' },
            fullsync: { type: 'boolean', description: 'second only: the reintegration compares and copies everything' },
            identity: { type: 'string', maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', description: 'automated caller (the stop -i of a script): counted by maxloop' },
          },
        },
      },
    },
    async (req) => {
      const { command, nosync, fullsync, identity } = req.body;
      if (nosync && command !== 'swap') throw new StayupError('BAD_ARGUMENT', 'nosync applies to swap only');
      if (fullsync && command !== 'second') throw new StayupError('BAD_ARGUMENT', 'fullsync applies to second only');
      const r = await ctx.modules.command(req.params.module, command, { ...(identity ? { identity } : {}), ...(nosync ? { nosync } : {}), ...(fullsync ? { fullsync } : {}) });
      return { ...ctx.modules.status(req.params.module), command, accepted: true, message: r.message };
    },
  );

  app.get<{ Params: { module: string }; Querystring: { states: string; timeoutMs?: number } }>(
    '/api/v1/modules/:module/wait',
    {
      config: { role: 'Monitor' },
      schema: {
        summary: 'Wait until the module is in one of the states (stable: not Transient), or WAIT_TIMEOUT',
        params: moduleParam,
        querystring: {
          type: 'object',
          required: ['states'],
          properties: { states: { type: 'string', maxLength: 64 }, timeoutMs: { type: 'integer', minimum: 0, maximum: MAX_WAIT_MS } },
        },
      },
    },
    async (req) => {
      const states = req.query.states.split(',').map((x) => x.trim().toUpperCase());
      const bad = states.find((x) => !(STATES as readonly string[]).includes(x));
      if (bad !== undefined) throw new StayupError('BAD_ARGUMENT', `states: "${bad}" is not one of ${STATES.join(', ')}`);
      return ctx.modules.waitState(req.params.module, states as ModuleStateName[], req.query.timeoutMs ?? 60_000);
    },
  );

  app.post<{ Params: { module: string }; Body: { moduleKey?: string } }>(
    '/api/v1/modules/:module/genkey',
    {
      config: { role: 'Admin', command: 'module genkey' },
      schema: {
        summary: 'Replace the module key of a stopped module (given, base64, or a new random one)',
        params: moduleParam,
        body: { type: 'object', additionalProperties: false, properties: { moduleKey: { type: 'string', maxLength: 64 } } },
      },
    },
    async (req) => {
      const key = req.body?.moduleKey === undefined ? generateModuleKey() : decodeModuleKey(req.body.moduleKey, 'body.moduleKey');
      return { module: req.params.module, ...(await ctx.modules.setModuleKey(req.params.module, key)) };
    },
  );
}
