// The scenario driver: from a seed, a random mirror configuration, a random starting point, then a fault
// phase (partitions per lan, packet loss, crashes and reboots, frozen processes, wait checkers down, failing start scripts,
// broken replication, operator and automated commands at random), then a quiet phase (network healed,
// processes resumed, servers rebooted, no new faults) after which the pair must have settled.
import { EMPTY_PERSISTED, type MirrorCommandName, type MirrorPersisted } from '../mirror/index.ts';
import { Prng } from './prng.ts';
import { World, type SimNode, type StepFn } from './world.ts';
import { makeChecker, checkStable } from './invariants.ts';

export interface RunOptions {
  /** A broken machine, to prove the invariants can fail. */
  stepFn?: StepFn;
  /** How long faults are injected (simulated ms). */
  faultMs?: number;
  /** How long the pair has to settle after the faults stop. */
  quietMs?: number;
}

export interface RunStats {
  seed: number;
  steps: number;
  simMs: number;
  /** The stable picture at the end, e.g. "PRIM(Ready)+SECOND(Ready)". */
  picture: string;
}

const WRITE_EVERY_MS = 40;

export function runSeed(seed: number, o: RunOptions = {}): RunStats {
  const faultMs = o.faultMs ?? 12_000;
  const quietMs = o.quietMs ?? 10_000;
  // The configuration comes from its own stream, so changing the driver does not change the configs.
  const cr = new Prng(seed ^ 0x6d697272);
  const lanCount = cr.chance(0.7) ? 2 : 1;
  const names: [string, string] = ['n1', 'n2'];
  const w = new World({
    seed,
    ...(o.stepFn ? { stepFn: o.stepFn } : {}),
    names,
    config: {
      failover: !cr.chance(0.15),
      defaultPrim: cr.weighted([
        [2, 'alone'],
        [1, 'n1'],
        [1, 'lastprim'],
      ] as const),
      maxLoop: 3,
      loopIntervalMs: 4_000,
      heartbeats: Array.from({ length: lanCount }, (_, i) => ({ lan: `lan${i + 1}`, pulseMs: 100, timeoutMs: 500 })),
      vip: { tcpreset: true },
      replicatedData: true,
    },
    delayMinMs: 1,
    delayJitterMs: cr.pick([2, 10, 40]),
    scriptMinMs: 5,
    scriptMaxMs: cr.pick([30, 80, 200]),
  });
  w.hooks = makeChecker();
  const rng = w.rng;
  const [n1, n2] = w.nodes;
  const endMs = faultMs + quietMs;

  // Starting point.
  const start = rng.weighted([
    [3, 'prim-first'],
    [2, 'n1-uptodate'],
    [2, 'fresh'],
    [2, 'resume-pair'],
    [1, 'one-node'],
  ] as const);
  const rec = (p: Partial<MirrorPersisted>): MirrorPersisted => ({ ...EMPTY_PERSISTED, ...p });
  if (start === 'n1-uptodate' || start === 'one-node') n1.persisted = rec({ uptodate: true, lastPrim: true, gen: 1 });
  if (start === 'resume-pair') {
    n1.persisted = rec({ lastPrim: true, gen: 2 });
    n2.persisted = rec({ gen: 1 });
  }
  w.boot(n1);
  w.boot(n2);
  if (start === 'prim-first') {
    w.command(n1, 'prim');
    w.q.after(rng.int(0, 800), () => w.command(n2, 'start'));
  } else if (start === 'one-node') {
    w.command(n1, 'start');
  } else {
    w.command(n1, 'start');
    w.q.after(rng.int(0, 300), () => w.command(n2, 'start'));
  }

  // The application writes wherever it runs as primary.
  const writer = (): void => {
    for (const n of w.nodes) w.write(n);
    if (w.now < endMs) w.q.after(WRITE_EVERY_MS, writer);
  };
  w.q.after(WRITE_EVERY_MS, writer);

  // Faults.
  w.scriptFailP = 0.03;
  const faulting = (): boolean => w.now < faultMs;
  const chaos = (): void => {
    if (!faulting()) return;
    act(w, rng.pick(w.nodes), faulting);
    w.q.after(rng.int(50, 500), chaos);
  };
  w.q.after(rng.int(100, 600), chaos);

  // Quiet: everything heals; stopped modules are started again half of the time.
  w.q.at(faultMs, () => {
    w.scriptFailP = 0;
    for (const lan of w.lans.keys()) w.setLan(lan, true, 0);
    for (const n of w.nodes) {
      w.resume(n);
      w.boot(n);
    }
    if (rng.chance(0.6)) for (const n of w.nodes) if (n.machine?.state === 'STOP') w.command(n, 'start');
  });

  while (w.q.runNext(endMs)) {
    // every step is checked by the hooks
  }
  w.q.nowMs = endMs;
  checkStable(w);
  const pic = (n: SimNode): string => (n.machine ? `${n.machine.state}(${n.machine.qualifier})` : 'down');
  return { seed, steps: w.stepNo, simMs: endMs, picture: `${pic(n1)}+${pic(n2)}` };
}

const COMMANDS: ReadonlyArray<readonly [number, { c: MirrorCommandName; identity?: string; nosync?: boolean }]> = [
  [10, { c: 'start' }],
  [4, { c: 'stop' }],
  [3, { c: 'restart' }],
  [2, { c: 'stopstart' }],
  [2, { c: 'forcestop' }],
  [6, { c: 'swap' }],
  [2, { c: 'swap', nosync: true }],
  [3, { c: 'prim' }],
  [1, { c: 'primforce' }],
  [3, { c: 'second' }],
  [3, { c: 'restart', identity: 'errd' }],
  [2, { c: 'stopstart', identity: 'errd' }],
];

function act(w: World, n: SimNode, faulting: () => boolean): void {
  const rng = w.rng;
  const lans = [...w.lans.keys()];
  const what = rng.weighted([
    [40, 'command'],
    [12, 'lan-down'],
    [5, 'all-down'],
    [5, 'loss'],
    [5, 'crash'],
    [8, 'freeze'],
    [4, 'repl-break'],
    [4, 'checker'],
    [17, 'nothing'],
  ] as const);
  switch (what) {
    case 'command': {
      const c = rng.weighted(COMMANDS);
      w.command(n, c.c, { ...(c.identity ? { identity: c.identity } : {}), ...(c.nosync ? { nosync: true } : {}) });
      return;
    }
    case 'lan-down': {
      const lan = rng.pick(lans);
      w.setLan(lan, false);
      w.q.after(rng.int(200, 3000), () => w.setLan(lan, true));
      return;
    }
    case 'all-down':
      for (const lan of lans) w.setLan(lan, false);
      w.q.after(rng.int(200, 3000), () => {
        for (const lan of lans) w.setLan(lan, true);
      });
      return;
    case 'loss': {
      const lan = rng.pick(lans);
      w.setLan(lan, w.lans.get(lan)!.up, rng.pick([0, 0.05, 0.1, 0.2, 0.3]));
      return;
    }
    case 'crash':
      w.crash(n);
      w.q.after(rng.int(200, 3000), () => {
        w.boot(n);
        if (faulting() && rng.chance(0.7)) w.command(n, 'start');
      });
      return;
    case 'freeze':
      w.freeze(n);
      w.q.after(rng.int(100, 2500), () => w.resume(n));
      return;
    case 'repl-break':
      w.breakReplication(n);
      return;
    case 'checker': {
      // A "wait" checker (interface) goes down for a while: the node must leave its role and wait.
      w.deliver(n, { type: 'checker', nowMs: w.now, name: 'intf.sim', up: false });
      w.q.after(rng.int(200, 3000), () => w.deliver(n, { type: 'checker', nowMs: w.now, name: 'intf.sim', up: true }));
      return;
    }
    case 'nothing':
      return;
  }
}
