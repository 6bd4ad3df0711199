// The mirror state machine: a pure step(state, event) -> { state, effects }. See README.md.
export { step, initialMirrorState, EMPTY_PERSISTED, isPrimaryState, chooseWinner, losesSplitBrain } from './machine.ts';
export type { Candidate } from './machine.ts';
export { SCRIPT_ORDER, scriptOrder, formatCall, isStartScript } from './scripts-order.ts';
export type { TransitionKey } from './scripts-order.ts';
export { MSG } from './messages.ts';
export type * from './types.ts';
export { MIRROR_COMMANDS } from './types.ts';
