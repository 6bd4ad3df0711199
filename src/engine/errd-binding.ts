// Connects a module's process monitor (src/errd) to its mirror engine: the engine's state switches the
// monitored classes on and off, and the monitor's requests become engine commands with identity "errd"
// (counted by maxloop) or handler scripts.
import { basename, dirname, isAbsolute, join } from 'node:path';
import type { Errd } from '../config/userconfig/types.ts';
import { activeClassesFor, type ActionRequest } from '../errd/evaluate.ts';
import { ProcessMonitor } from '../errd/monitor.ts';
import { runScript } from '../scripts/runner.ts';
import type { EngineLog, MirrorEngine, MirrorStatus } from './mirror-engine.ts';

export interface ErrdBindingOptions {
  module: string;
  errd: Errd;
  engine: MirrorEngine;
  log: EngineLog;
  /** For handler scripts: the module's bin directory, script environment and userlog directory. */
  binDir: string;
  env: Record<string, string>;
  userlogDir: string;
  /** Limit of a handler run. */
  handlerTimeoutMs: number;
  /** Tests: a process list and a scheduler. */
  monitor?: Partial<ConstructorParameters<typeof ProcessMonitor>[0]>;
}

/** Starts monitoring; returns the function that stops it. */
export function bindErrd(o: ErrdBindingOptions): { monitor: ProcessMonitor; stop: () => void } {
  const monitor = new ProcessMonitor({
    module: o.module,
    errd: o.errd,
    onAction: (req) => void act(req),
    onLog: (level, message) => o.log(level === 'E' ? 'E' : 'I', 'errd', message),
    ...o.monitor,
  });
  let last: { state: string; busy: boolean } | null = null;
  const follow = (s: MirrorStatus): void => {
    if (last && last.state === s.state && last.busy === s.busy) return;
    // A batch that ended without a state change (restart in place) re-arms what it restarted.
    const rearm = last !== null && last.busy && !s.busy;
    last = { state: s.state, busy: s.busy };
    monitor.setActiveClasses(activeClassesFor(s.state, s.busy), { rearm });
  };

  async function act(req: ActionRequest): Promise<void> {
    // The monitor has logged the failure itself (E); the machine logs "Action … called by errd".
    const a = req.action;
    if (a === 'noaction') {
      o.log('I', 'errd', `${req.proc}: no action configured`);
      return;
    }
    if (typeof a === 'string') {
      const r = await o.engine.command(a, { identity: 'errd' });
      if (!r.ok) o.log('I', 'errd', `${a} after "${req.reason}" not carried out: ${r.message}`);
      return;
    }
    // A handler: the reference runs it and does a stopstart when it fails.
    const script = isAbsolute(a.handler) ? a.handler : join(o.binDir, a.handler);
    o.log('I', 'errd', `${req.proc}: running handler ${a.handler}`);
    const r = await runScript({
      module: o.module,
      script: basename(script),
      binDir: dirname(script),
      args: [req.proc],
      env: o.env,
      timeoutMs: o.handlerTimeoutMs,
      userlogDir: o.userlogDir,
      userlogMaxBytes: 1024 * 1024,
    });
    if (r.exitCode !== 0) {
      o.log('E', 'errd', `handler ${a.handler} failed (exit ${r.exitCode ?? r.signal}): stopstart`);
      await o.engine.command('stopstart', { identity: 'errd' });
    }
  }

  const unsubscribe = o.engine.onChange(follow);
  follow(o.engine.status());
  monitor.start();
  return {
    monitor,
    stop: () => {
      unsubscribe();
      monitor.stop();
    },
  };
}
