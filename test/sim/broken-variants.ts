// Deliberately broken variants of the mirror machine, each breaking one rule the simulator's invariants
// stand for. They are wrappers around the real step(), so they stay true to the rest of the machine.
import { step, type MirrorEvent, type MirrorState, type StepResult } from '../../src/mirror/index.ts';
import type { StepFn } from '../../src/sim/index.ts';

export interface Variant {
  name: string;
  /** What the simulator must report (a part of the invariant's message). */
  caughtAs: RegExp;
  stepFn: StepFn;
}

export const VARIANTS: Variant[] = [
  {
    name: 'forgets to remove the virtual IP',
    caughtAs: /the virtual IP is on n\d in /,
    stepFn: (s, e) => {
      const r = step(s, e);
      return { ...r, effects: r.effects.filter((x) => x.type !== 'vipDown') };
    },
  },
  {
    name: 'believes its data is always up to date (no data rule)',
    caughtAs: /stale promotion/,
    stepFn: (s, e) => {
      const r = step(s, e);
      const persisted = { ...r.state.persisted, uptodate: true, reintegrationInterrupted: false, reintegrating: false };
      return {
        state: { ...r.state, persisted },
        effects: r.effects.map((x) => (x.type === 'persist' ? { ...x, record: { ...persisted } } : x)),
      };
    },
  },
  {
    name: 'a secondary takes over before its reintegration ended',
    caughtAs: /stale promotion/,
    stepFn: (s, e) => {
      const early = s.state === 'SECOND' && !s.plan && s.episode !== null ? { ...s, synced: true, qualifier: 'Ready' as const } : s;
      return step(early, e);
    },
  },
  {
    name: 'acts on the primary role without persisting it first',
    caughtAs: /vipUp before the primary role was persisted/,
    stepFn: (s, e) => {
      const r = step(s, e);
      return { ...r, effects: r.effects.filter((x) => !(x.type === 'persist' && x.record.lastPrim && !s.persisted.lastPrim)) };
    },
  },
  {
    name: 'never resolves a split brain',
    caughtAs: /two primaries see each other/,
    stepFn: (s: MirrorState, e: MirrorEvent): StepResult => {
      const primary = s.state === 'ALONE' || s.state === 'PRIM';
      if (e.type === 'heartbeatReceived' && primary) return step(s, { ...e, message: { ...e.message, exiting: true } });
      return step(s, e);
    },
  },
];
