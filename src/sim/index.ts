// The seeded deterministic simulator of a mirror module (two machines, fake network, scripts, disk,
// replication and data). See README.md in src/mirror for the machine it drives.
export { Prng } from './prng.ts';
export { EventQueue } from './queue.ts';
export { World, SimNode, SimFailure, stateOf } from './world.ts';
export type { StepFn, WorldOptions, Version, WorldHooks } from './world.ts';
export { makeChecker, checkStable } from './invariants.ts';
export { missingWrites } from './data.ts';
export { runSeed } from './scenario.ts';
export type { RunOptions, RunStats } from './scenario.ts';
