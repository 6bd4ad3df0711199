// The checkers the reference generates from <vip>, run for a mirror module: intf.<net> (the interface of
// the virtual IP is up and has its subnet; action wait, from the start of the module) and ip.<addr> (the
// virtual IP is still configured here; action stopstart, on the primary). VipManager does the checking.
import type { GeneratedChecker } from '../vip/manager.ts';
import type { EngineLog, MirrorEngine, MirrorStatus } from './mirror-engine.ts';
import { realScheduler, type Scheduler } from '../util/scheduler.ts';

export interface VipCheckerBindingOptions {
  engine: MirrorEngine;
  checkers: () => Promise<GeneratedChecker[]>;
  log: EngineLog;
  /** How often each checker runs. */
  intervalMs: number;
  scheduler?: Scheduler;
}

function activeFor(c: GeneratedChecker, s: MirrorStatus): boolean {
  if (s.state === 'STOP') return false;
  // ip.*: only while this node should hold the address (primary, stable, VIP put up by the engine).
  if (c.when === 'prim') return (s.state === 'ALONE' || s.state === 'PRIM') && s.vip && !s.busy && s.qualifier === 'Ready';
  return true;
}

/** Starts the periodic checks; returns the function that stops them. */
export function bindVipCheckers(o: VipCheckerBindingOptions): () => void {
  const sched = o.scheduler ?? realScheduler;
  let stopped = false;
  let timer: unknown = null;
  let list: GeneratedChecker[] | null = null;
  /** ip.* checkers that already asked for their stopstart in this failure. */
  const fired = new Set<string>();

  const round = async (): Promise<void> => {
    if (list === null) {
      try {
        list = await o.checkers();
      } catch (e) {
        o.log('E', 'checker', `the virtual IP checkers cannot be set up: ${(e as Error).message}`);
        list = null;
        return;
      }
    }
    for (const c of list) {
      if (stopped) return;
      const s = o.engine.status();
      if (!activeFor(c, s)) {
        fired.delete(c.resource);
        continue;
      }
      let r: { state: 'up' | 'down'; reason: string };
      try {
        r = await c.check();
      } catch (e) {
        r = { state: 'down', reason: (e as Error).message };
      }
      if (stopped) return;
      const up = r.state === 'up';
      o.engine.reportChecker(c.resource, up, r.reason, c.action === 'wait' ? 'wait' : 'other');
      if (c.action === 'stopstart') {
        if (up) fired.delete(c.resource);
        else if (!fired.has(c.resource) && activeFor(c, o.engine.status())) {
          fired.add(c.resource);
          void o.engine.command('stopstart', { identity: c.resource });
        }
      }
    }
  };
  const loop = (): void => {
    if (stopped) return;
    void round().finally(() => {
      if (!stopped) timer = sched.setTimeout(loop, o.intervalMs);
    });
  };
  loop();
  return () => {
    stopped = true;
    if (timer !== null) sched.clearTimeout(timer);
  };
}
