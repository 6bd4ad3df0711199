// The script order of every mirror transition, from the reference's automaton table (§2.15, image404).
// The machine builds its plans from this table only, and the simulator checks every node's script calls
// against it, so the table is the one place where the order is written.
import type { MirrorStateName, ScriptCall } from './types.ts';

export type TransitionKey = `${MirrorStateName}->${MirrorStateName}`;

const c = (script: string): ScriptCall => ({ script });
const f = (script: string): ScriptCall => ({ script, forceOnly: true });

/**
 * `X->X` rows are the restart inside a state ("stop_* then start_*"): the stop scripts of the state in
 * reverse order of their start, then its start scripts; the virtual IP stays.
 * WAIT->PRIM is in the reference's table but the machine always goes WAIT->ALONE->PRIM.
 */
export const SCRIPT_ORDER: Readonly<Record<string, readonly ScriptCall[]>> = {
  'STOP->WAIT': [c('transition'), c('prestart')],
  'WAIT->ALONE': [c('transition'), c('start_both'), c('start_prim'), c('start_sec')],
  'WAIT->PRIM': [c('transition'), c('start_both'), c('start_prim')],
  'WAIT->SECOND': [c('transition'), c('start_both'), c('start_second'), c('start_sec')],
  'ALONE->PRIM': [c('stop_sec'), c('transition')],
  'PRIM->ALONE': [c('transition'), c('start_sec')],
  'SECOND->ALONE': [c('stop_second'), c('transition'), c('start_prim')],
  'PRIM->SECOND': [c('stop_prim'), c('transition'), c('start_second'), c('start_sec')],
  'SECOND->PRIM': [c('stop_sec'), c('stop_second'), c('transition'), c('start_prim')],
  'PRIM->WAIT': [c('stop_prim'), c('stop_both'), c('transition')],
  'ALONE->WAIT': [c('stop_sec'), c('stop_prim'), c('stop_both'), c('transition')],
  'SECOND->WAIT': [c('stop_sec'), c('stop_second'), c('stop_both'), c('transition')],
  'WAIT->STOP': [f('stop_sec'), f('stop_prim'), f('stop_second'), f('stop_both'), c('poststop'), c('transition')],
  'PRIM->PRIM': [c('stop_prim'), c('stop_both'), c('start_both'), c('start_prim')],
  'ALONE->ALONE': [c('stop_sec'), c('stop_prim'), c('stop_both'), c('start_both'), c('start_prim'), c('start_sec')],
  'SECOND->SECOND': [c('stop_sec'), c('stop_second'), c('stop_both'), c('start_both'), c('start_second'), c('start_sec')],
};

export function scriptOrder(from: MirrorStateName, to: MirrorStateName): readonly ScriptCall[] {
  const row = SCRIPT_ORDER[`${from}->${to}`];
  if (!row) throw new Error(`mirror: no script order for ${from}->${to}`);
  return row;
}

/** "stop_prim force" for a force-only call, else the script name: the form used in traces and checks. */
export function formatCall(call: ScriptCall): string {
  return call.forceOnly ? `${call.script} force` : call.script;
}

export function isStartScript(script: string): boolean {
  return script.startsWith('start_');
}
