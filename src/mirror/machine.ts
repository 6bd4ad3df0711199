// The mirror state machine: step(state, event) -> { state, effects }, a pure function.
//
// No clock, timer, socket, file or randomness here. Time arrives in every event (nowMs, stamped by the
// shell); timers leave as setTimer effects that the shell turns back into tick events; scripts, the
// virtual IP, heartbeats, replication and the disk are effects whose results come back as events.
//
// EFFECT ORDER CONTRACT (the shell must keep it; README.md says more):
//  1. The shell carries out the effects of one step in array order, and finishes each `persist` (written
//     and fsynced) before it starts the next effect. The machine always emits `persist` before the effects
//     that rely on it: the record that says "this node is primary, generation g" precedes vipUp and the
//     runScripts that starts start_prim; the record that says "not up to date" precedes the heartbeat that
//     lets the peer become SECOND(Ready) and the setReplication that starts a reintegration.
//  2. `ready: false` is always the first effect of its step and `ready: true` the last: the health check
//     stops answering 200 before anything is torn down, and answers 200 only once everything is up.
//  3. vipUp comes right before the runScripts whose first call is start_prim; vipDown right after the
//     scriptsDone of the batch whose last call is stop_prim (at once when a split brain is lost).
//  4. runScripts is asynchronous: the shell starts it and goes on with the next effects; its end comes
//     back as scriptsDone {id}. At most one batch runs at a time (cancelScripts only on forcestop).
//  5. sendHeartbeat effects come after everything else that changes what they report.
//
// Structure: step() copies the state, applies the event to what the node knows (lans, peer, commands,
// script results, replication), then settle() runs the current plan (a transition's ordered steps) or,
// when idle, evaluate() decides the next plan from what is known (level-triggered, like a reconciler),
// and finish() emits the derived effects (ready, heartbeats, timer).
import type {
  HeartbeatMessage,
  LanView,
  MirrorConfig,
  MirrorEffect,
  MirrorEvent,
  MirrorPersisted,
  MirrorState,
  MirrorStateName,
  Plan,
  PlanStep,
  QueuedCommand,
  Qualifier,
  ReplicationSync,
  ScriptAction,
  ScriptCall,
  StartMode,
  StepResult,
} from './types.ts';
import { isStartScript, scriptOrder } from './scripts-order.ts';
import { MSG } from './messages.ts';

export const EMPTY_PERSISTED: MirrorPersisted = Object.freeze({
  uptodate: false,
  lastPrim: false,
  reintegrating: false,
  reintegrationInterrupted: false,
  gen: 0,
  incarnation: 0,
  lastSyncMs: null,
});

/** A node after its daemon started: STOP, with what it had persisted (null on a first start). */
export function initialMirrorState(config: MirrorConfig, persisted: MirrorPersisted | null, nowMs: number): MirrorState {
  if (config.heartbeats.length === 0) throw new Error('mirror: at least one heartbeat lan is needed');
  if (config.self === config.peer) throw new Error('mirror: the peer must be another node');
  for (const h of config.heartbeats) {
    if (!(h.pulseMs > 0 && h.timeoutMs > h.pulseMs)) throw new Error(`mirror: heartbeat ${h.lan}: need 0 < pulse < timeout`);
  }
  return {
    config,
    nowMs,
    state: 'STOP',
    qualifier: 'NotReady',
    reason: MSG.stopped,
    persisted: { ...(persisted ?? EMPTY_PERSISTED) },
    mode: 'auto',
    lans: config.heartbeats.map((h) => ({
      lan: h.lan,
      pulseMs: h.pulseMs,
      timeoutMs: h.timeoutMs,
      lastHeardMs: null,
      up: false,
      nextSendMs: nowMs,
    })),
    peer: null,
    peerAlive: false,
    peerGenMax: 0,
    heartbeatSeq: 0,
    lastSentSig: '',
    vip: false,
    primActive: false,
    established: false,
    ready: false,
    plan: null,
    queued: null,
    scriptsSeq: 0,
    loop: { count: 0, sinceMs: nowMs },
    episode: null,
    episodeCounter: 0,
    synced: false,
    secondOf: null,
    releasedEpisode: null,
    swap: null,
    swapRequests: 0,
    swapNosync: false,
    swapRequestsSeen: 0,
    failbackDoneFor: null,
    exiting: false,
    splitBrainLogged: false,
    fullSyncNext: false,
    syncedRecent: false,
    withheldEpisode: null,
    replRole: 'off',
    listenUntilMs: 0,
    failoverOffWait: false,
    timerAtMs: null,
    lastWaitLog: '',
    waitCheckers: [],
  };
}

interface Ctx {
  s: MirrorState;
  fx: MirrorEffect[];
}

/** The machine. Never mutates `state`; the effects are to be carried out in order (see the header). */
export function step(state: MirrorState, event: MirrorEvent): StepResult {
  const s = cloneState(state);
  const x: Ctx = { s, fx: [] };
  const now = Math.max(s.nowMs, event.nowMs);
  noticeStall(x, now);
  s.nowMs = now;
  checkLans(x);
  switch (event.type) {
    case 'tick':
      break;
    case 'command':
      onCommand(x, {
        command: event.command,
        identity: event.identity ?? null,
        requestId: event.requestId ?? null,
        nosync: event.nosync ?? false,
        fullsync: event.fullsync ?? false,
      });
      break;
    case 'heartbeatReceived':
      onHeartbeat(x, event.lan, event.message);
      break;
    case 'checker':
      onChecker(x, event.name, event.up);
      break;
    case 'scriptsDone':
      onScriptsDone(x, event.id, event.ok, event.failedScript);
      break;
    case 'replicationState':
      onReplication(x, event.uptodate, event.reintegrationInterrupted, event.lastSyncMs, event.peerLost ?? false);
      break;
    case 'syncedCheck':
      s.syncedRecent = event.recent;
      break;
  }
  settle(x);
  finish(x);
  return { state: s, effects: x.fx };
}

function cloneState(s: MirrorState): MirrorState {
  return {
    ...s,
    persisted: { ...s.persisted },
    lans: s.lans.map((l) => ({ ...l })),
    loop: { ...s.loop },
    plan: s.plan ? { ...s.plan } : null,
    swap: s.swap ? { ...s.swap } : null,
    waitCheckers: [...s.waitCheckers],
  };
}

// ---------------------------------------------------------------------------------------------- helpers

export function isPrimaryState(st: MirrorStateName): boolean {
  return st === 'ALONE' || st === 'PRIM';
}

/** The peer's latest message while some lan hears it, else null. */
function alivePeer(s: MirrorState): HeartbeatMessage | null {
  return s.peerAlive && s.peer ? s.peer.message : null;
}

function looksPrimary(m: HeartbeatMessage): boolean {
  return m.primActive || isPrimaryState(m.state);
}

function maxTimeoutMs(s: MirrorState): number {
  return Math.max(...s.lans.map((l) => l.timeoutMs));
}

function log(x: Ctx, level: 'I' | 'E', message: string): void {
  x.fx.push({ type: 'log', level, message });
}

function persist(x: Ctx, patch: Partial<MirrorPersisted>): void {
  const before = x.s.persisted;
  const after = { ...before, ...patch };
  const changed = (Object.keys(patch) as Array<keyof MirrorPersisted>).some((k) => before[k] !== after[k]);
  // Claiming the data alone revokes any release: the peer must not read both at once.
  if (patch.uptodate === true) x.s.releasedEpisode = null;
  if (!changed) return;
  x.s.persisted = after;
  x.fx.push({ type: 'persist', record: { ...after } });
}

function show(x: Ctx, state: MirrorStateName, qualifier: Qualifier, reason: string): void {
  const s = x.s;
  if (s.state === state && s.qualifier === qualifier && s.reason === reason) return;
  if (state !== 'WAIT') {
    s.lastWaitLog = '';
    s.failoverOffWait = false;
  }
  s.state = state;
  s.qualifier = qualifier;
  s.reason = reason;
  if (state === 'STOP') {
    // Everything that belongs to one run of the module ends here.
    s.mode = 'auto';
    s.exiting = false;
    s.episode = null;
    s.synced = false;
    s.secondOf = null;
    s.swap = null;
    s.peer = null;
    s.peerAlive = false;
    s.splitBrainLogged = false;
    for (const l of s.lans) {
      l.up = false;
      l.lastHeardMs = null;
    }
  }
}

function reply(x: Ctx, q: QueuedCommand, ok: boolean, message: string): void {
  x.fx.push({
    type: 'reply',
    requestId: q.requestId,
    command: q.command,
    ok,
    code: ok ? null : 'CONFLICT',
    message,
  });
}

function newEpisode(s: MirrorState): void {
  s.replRole = 'off'; // until the episode's setReplication(second)
  s.episodeCounter += 1;
  s.episode = `${s.persisted.incarnation}.${s.episodeCounter}`;
  s.synced = false;
}

function eligible(p: MirrorPersisted): boolean {
  return p.uptodate && !p.reintegrationInterrupted && !p.reintegrating;
}

/** Whether this node may start as primary by itself: it can prove its data, or there is no data to prove. */
function mayStartAlone(s: MirrorState): boolean {
  return !s.config.replicatedData || eligible(s.persisted);
}

/**
 * The reference's rule rfs_forceuptodate: no heartbeat, no peer, a recent last sync: the node may start as
 * primary although it cannot prove its data is current. Never over an interrupted reintegration, whose
 * data is not a consistent copy of anything (that needs primforce).
 */
function syncDeltaAllows(s: MirrorState): boolean {
  const p = s.persisted;
  return (s.config.syncDeltaMs ?? 0) > 0 && s.syncedRecent && !p.reintegrationInterrupted && !p.reintegrating;
}

// ---------------------------------------------------------------------------------------------- time

/**
 * An event far later than the timer we asked for means this process did not run (SIGSTOP, a long GC, a
 * VM pause). The peer's silence during that time says nothing about the peer, so it gets two more pulses
 * before it is declared lost: the queued heartbeats are usually processed first.
 */
function noticeStall(x: Ctx, now: number): void {
  const s = x.s;
  if (s.state === 'STOP' || s.timerAtMs === null) return;
  const lateMs = now - s.timerAtMs;
  const thresholdMs = Math.min(...s.lans.map((l) => l.timeoutMs)) / 2;
  if (lateMs <= thresholdMs) return;
  for (const l of s.lans) {
    if (l.up && l.lastHeardMs !== null) l.lastHeardMs = Math.max(l.lastHeardMs, Math.min(now, now + 2 * l.pulseMs - l.timeoutMs));
  }
  log(x, 'I', `This server did not run for ${lateMs} ms: the remote server gets two more pulses before it is declared lost`);
}

function checkLans(x: Ctx): void {
  const s = x.s;
  if (s.state === 'STOP') return;
  for (const l of s.lans) {
    if (l.up && l.lastHeardMs !== null && s.nowMs - l.lastHeardMs >= l.timeoutMs) {
      l.up = false;
      log(x, 'I', `Heartbeat ${l.lan}: no heartbeat for ${l.timeoutMs} ms`);
    }
  }
  const alive = s.lans.some((l) => l.up);
  if (s.peerAlive && !alive) log(x, 'I', `Remote server ${s.config.peer} is not heard on any heartbeat lan`);
  s.peerAlive = alive;
}

// ---------------------------------------------------------------------------------------------- inputs

function onHeartbeat(x: Ctx, lanName: string, m: HeartbeatMessage): void {
  const s = x.s;
  if (s.state === 'STOP' || m.node !== s.config.peer) return;
  const lan = s.lans.find((l) => l.lan === lanName);
  if (!lan) return;
  const heardBefore = lan.lastHeardMs !== null;
  lan.lastHeardMs = s.nowMs;
  if (!lan.up) {
    lan.up = true;
    if (s.peerAlive) log(x, 'I', `Heartbeat ${lan.lan}: heard${heardBefore ? ' again' : ''}`);
  }
  if (!s.peerAlive) log(x, 'I', `Remote server ${s.config.peer} heard on heartbeat ${lan.lan}`);
  s.peerAlive = true;
  const prev = s.peer?.message;
  const newer =
    !prev || m.incarnation > prev.incarnation || (m.incarnation === prev.incarnation && m.seq > prev.seq);
  if (!newer) return;
  // Requests made before we knew this incarnation are not ours to act on.
  if (!prev || prev.incarnation !== m.incarnation) s.swapRequestsSeen = m.swapRequests;
  s.peer = { message: m, receivedMs: s.nowMs };
  s.peerGenMax = Math.max(s.peerGenMax, m.gen);
}

function onScriptsDone(x: Ctx, id: number, ok: boolean, failedScript: string | undefined): void {
  const s = x.s;
  const p = s.plan;
  if (!p || p.waitingId !== id) return; // a cancelled or unknown batch
  p.waitingId = null;
  if (!ok && p.waitingHasStart) {
    log(x, 'E', `Script ${failedScript ?? 'start'} failed`);
    s.plan = null;
    onCommand(x, { command: 'stopstart', identity: 'scripts', requestId: null, nosync: false, fullsync: false });
  }
  p.waitingHasStart = false;
}

function onReplication(x: Ctx, uptodate: boolean, interrupted: boolean, lastSyncMs: number | null, peerLost: boolean): void {
  const s = x.s;
  if (peerLost) {
    // The released secondary lacks what was written since: withdraw the release (evaluatePrim).
    if (s.state === 'PRIM' && !s.swap && s.releasedEpisode !== null) s.withheldEpisode = s.releasedEpisode;
    return;
  }
  if (interrupted) persist(x, { reintegrationInterrupted: true });
  // Only a report about the reintegration this episode asked for counts.
  if (s.state !== 'SECOND' || s.swap || s.episode === null || s.replRole !== 'second') return;
  if (uptodate && !s.synced) {
    s.synced = true;
    persist(x, { reintegrating: false, reintegrationInterrupted: false, lastSyncMs });
    log(x, 'I', 'Reintegration ended: this secondary is up to date');
  } else if (!uptodate && s.synced) {
    s.synced = false;
    persist(x, { reintegrating: true });
    if (s.qualifier === 'Ready') show(x, 'SECOND', 'Transient', MSG.reintegration);
  } else if (uptodate && lastSyncMs !== null) {
    persist(x, { lastSyncMs });
  }
}

// ---------------------------------------------------------------------------------------------- commands

const PREEMPTS = new Set(['stop', 'stopstart', 'forcestop']);
const PRIORITY: Record<string, number> = { forcestop: 3, stop: 2, stopstart: 1 };

function onCommand(x: Ctx, q0: QueuedCommand): void {
  const s = x.s;
  const cfg = s.config;
  let q = q0;
  if (q.identity === null) {
    s.loop = { count: 0, sinceMs: s.nowMs };
  } else {
    log(x, 'I', `Action ${q.command} called by ${q.identity}`);
    if ((q.command === 'restart' || q.command === 'stopstart') && cfg.loopIntervalMs > 0) {
      if (s.loop.count > 0 && s.nowMs - s.loop.sinceMs >= cfg.loopIntervalMs) s.loop = { count: 0, sinceMs: s.nowMs };
      if (s.loop.count === 0) s.loop.sinceMs = s.nowMs;
      s.loop.count += 1;
      if (s.loop.count > cfg.maxLoop) {
        log(x, 'E', MSG.maxloop);
        s.loop = { count: 0, sinceMs: s.nowMs };
        q = { ...q, command: 'stop' };
      }
    }
  }
  if (s.plan) {
    if (q.command === 'forcestop') {
      if (s.plan.waitingId !== null) x.fx.push({ type: 'cancelScripts', id: s.plan.waitingId });
      s.plan = null;
      if (s.queued) reply(x, s.queued, false, 'superseded by forcestop');
      s.queued = null;
      applyCommand(x, q);
      return;
    }
    const old = s.queued;
    if (old && (PRIORITY[old.command] ?? 0) > (PRIORITY[q.command] ?? 0)) {
      reply(x, q, false, `refused: ${old.command} is pending`);
      return;
    }
    if (old) reply(x, old, false, `superseded by ${q.command}`);
    s.queued = q;
    return;
  }
  applyCommand(x, q);
}

function onChecker(x: Ctx, name: string, up: boolean): void {
  const s = x.s;
  const had = s.waitCheckers.includes(name);
  if (up && had) {
    s.waitCheckers = s.waitCheckers.filter((n) => n !== name);
    log(x, 'E', `Checker ${name} up`);
  } else if (!up && !had) {
    s.waitCheckers = [...s.waitCheckers, name].sort();
    log(x, 'E', `Checker ${name} down`);
  }
}

/** Carries out a command when no plan runs. */
function applyCommand(x: Ctx, q: QueuedCommand): void {
  const s = x.s;
  const st = s.state;
  const m = alivePeer(s);
  switch (q.command) {
    case 'start':
      if (st !== 'STOP') return reply(x, q, false, `already started (${st})`);
      startPlan(x, 'auto', 'start');
      return reply(x, q, true, 'starting');
    case 'prim':
    case 'primforce': {
      if (st !== 'STOP' && st !== 'WAIT') return reply(x, q, false, `prim needs STOP or WAIT, the module is ${st}`);
      const p = s.persisted;
      if (q.command === 'prim' && (p.reintegrationInterrupted || p.reintegrating)) {
        log(x, 'E', MSG.dataInconsistent);
        return reply(x, q, false, MSG.dataInconsistent);
      }
      if (m && looksPrimary(m)) return reply(x, q, false, 'the remote server is primary: use swap');
      if (st === 'STOP') startPlan(x, q.command, 'start');
      else s.mode = q.command;
      log(x, 'I', `Action ${q.command}: this server starts as primary`);
      return reply(x, q, true, 'starting as primary');
    }
    case 'second':
      if (st === 'STOP') startPlan(x, 'second', 'start');
      else if (st === 'WAIT') s.mode = 'second';
      else return reply(x, q, false, `second needs STOP or WAIT, the module is ${st}`);
      if (q.fullsync) {
        s.fullSyncNext = true;
        log(x, 'I', 'Action second fullsync: the reintegration will compare and copy everything');
      }
      return reply(x, q, true, q.fullsync ? 'starting as secondary (full reintegration)' : 'starting as secondary');
    case 'stop':
    case 'forcestop':
      if (st === 'STOP') return reply(x, q, true, 'already stopped');
      leave(x, 'STOP', { action: 'stop', force: q.command === 'forcestop', reason: MSG.stopping });
      return reply(x, q, true, 'stopping');
    case 'stopstart':
      if (st === 'STOP') return reply(x, q, false, 'not started');
      leave(x, 'STOP', { action: 'stopstart', force: false, reason: MSG.stopping, thenStart: true });
      return reply(x, q, true, 'stopping, then starting');
    case 'restart':
      if (st === 'STOP' || st === 'WAIT') return reply(x, q, false, `restart needs ALONE, PRIM or SECOND, the module is ${st}`);
      restartPlan(x);
      return reply(x, q, true, 'restarting');
    case 'swap':
      if (st === 'PRIM' && s.qualifier === 'Ready' && m && m.state === 'SECOND' && m.qualifier === 'Ready') {
        startSwap(x, q.nosync, 'Action swap called by the administrator');
        return reply(x, q, true, 'swapping');
      }
      if (st === 'SECOND' && s.qualifier === 'Ready' && !s.swap && m && m.state === 'PRIM' && m.qualifier === 'Ready') {
        s.swapRequests += 1;
        s.swapNosync = q.nosync;
        return reply(x, q, true, 'swap requested from the primary');
      }
      return reply(x, q, false, `swap needs PRIM(Ready) and SECOND(Ready), the module is ${st}(${s.qualifier})`);
  }
}

// ---------------------------------------------------------------------------------------------- plans

function makePlan(name: string, steps: PlanStep[], opts: Partial<Plan> = {}): Plan {
  return {
    name,
    steps,
    index: 0,
    waitingId: null,
    waitingHasStart: false,
    then: 'evaluate',
    startMode: 'auto',
    leaving: false,
    ...opts,
  };
}

/**
 * The steps of one table row: script batches, cut before start_prim (to wait for the peer and put the
 * virtual IP up just before it) and after stop_prim (to take the virtual IP down just after it).
 */
function rowSteps(
  from: MirrorStateName,
  to: MirrorStateName,
  action: ScriptAction,
  opts: { force?: boolean; keepResources?: boolean; afterRelease?: PlanStep } = {},
): PlanStep[] {
  const out: PlanStep[] = [];
  let batch: ScriptCall[] = [];
  const flush = (): void => {
    if (batch.length) out.push({ do: 'scripts', current: from, next: to, action, calls: batch });
    batch = [];
  };
  for (const call0 of scriptOrder(from, to)) {
    const call = opts.force && call0.script.startsWith('stop_') ? { ...call0, forceOnly: true } : call0;
    if (call.script === 'start_prim' && !opts.keepResources) {
      flush();
      out.push({ do: 'hold' }, { do: 'acquire' });
    }
    batch.push(call);
    if (call.script === 'stop_prim' && !opts.keepResources) {
      flush();
      out.push({ do: 'release' });
      if (opts.afterRelease) out.push(opts.afterRelease);
    }
  }
  flush();
  return out;
}

function startPlan(x: Ctx, mode: StartMode, action: ScriptAction): void {
  const s = x.s;
  s.mode = mode;
  s.releasedEpisode = null;
  s.peer = null;
  s.peerAlive = false;
  for (const l of s.lans) {
    l.up = false;
    l.lastHeardMs = null;
    l.nextSendMs = s.nowMs;
  }
  s.listenUntilMs = s.nowMs + maxTimeoutMs(s);
  const p = s.persisted;
  persist(x, {
    incarnation: p.incarnation + 1,
    reintegrationInterrupted: p.reintegrationInterrupted || p.reintegrating,
    reintegrating: false,
  });
  s.plan = makePlan('start', [
    { do: 'show', state: 'WAIT', qualifier: 'Transient', reason: MSG.starting },
    ...rowSteps('STOP', 'WAIT', action),
  ]);
}

/** From the current state to WAIT, or on to STOP: the table's X->WAIT row, then WAIT->STOP. */
function leave(
  x: Ctx,
  target: 'WAIT' | 'STOP',
  o: { action: ScriptAction; force: boolean; reason: string; thenStart?: boolean; exit?: boolean },
): void {
  const s = x.s;
  const from = s.state;
  if (from === 'STOP') throw new Error('mirror: leave from STOP');
  if (from === 'SECOND' && s.persisted.reintegrating) persist(x, { reintegrating: false, reintegrationInterrupted: true });
  const waitShow: PlanStep = { do: 'show', state: 'WAIT', qualifier: 'Transient', reason: o.reason };
  const steps: PlanStep[] = [];
  // A secondary stops following first; a primary goes on replicating until its application has stopped.
  if (s.replRole === 'second') steps.push({ do: 'replication', role: 'off', sync: 'none' });
  if (from !== 'WAIT') {
    steps.push(isPrimaryState(from) ? { do: 'show', state: from, qualifier: 'Transient', reason: o.reason } : waitShow);
    steps.push(...rowSteps(from, 'WAIT', o.action, { force: o.force, afterRelease: waitShow }));
  }
  if (s.replRole === 'prim' || isPrimaryState(from)) steps.push({ do: 'replication', role: 'off', sync: 'none' });
  steps.push(waitShow);
  if (o.exit) steps.push({ do: 'exited' });
  if (target === 'STOP') {
    // Only a node still holding the primary's resources (an interrupted start) needs a release here.
    const held = from === 'WAIT' && (s.vip || s.primActive);
    steps.push(...rowSteps('WAIT', 'STOP', o.action, { keepResources: !held }));
    steps.push({ do: 'show', state: 'STOP', qualifier: 'NotReady', reason: MSG.stopped });
  }
  // releasedEpisode stays: the heartbeats of a stopping primary tell its secondary that every write of
  // this run was mirrored to it, which is what lets the secondary take over.
  s.swap = null;
  s.episode = null;
  s.synced = false;
  s.plan = makePlan(o.exit ? 'exit' : target === 'STOP' ? 'stop' : 'wait', steps, {
    leaving: true,
    then: o.thenStart ? 'start' : 'evaluate',
    startMode: 'auto',
  });
}

function restartPlan(x: Ctx): void {
  const s = x.s;
  const st = s.state;
  // A primary is Ready again after its restart; a secondary is Transient until evaluateSecond sees its
  // reintegration finished and released again (it may have broken during the restart).
  const end: PlanStep =
    st === 'SECOND'
      ? { do: 'show', state: st, qualifier: 'Transient', reason: MSG.reintegration }
      : { do: 'show', state: st, qualifier: 'Ready', reason: st === 'PRIM' ? MSG.mirroring : MSG.alone };
  s.plan = makePlan('restart', [
    { do: 'show', state: st, qualifier: 'Transient', reason: MSG.restart },
    ...rowSteps(st, st, 'stopstart', { keepResources: true }),
    end,
  ]);
}

function goAlone(x: Ctx, why: string): void {
  const s = x.s;
  const gen = Math.max(s.persisted.gen, s.peerGenMax) + 1;
  const patch: Partial<MirrorPersisted> = { uptodate: true, lastPrim: true, gen, reintegrating: false };
  if (s.mode === 'primforce') patch.reintegrationInterrupted = false;
  s.mode = 'auto';
  s.failoverOffWait = false;
  s.plan = makePlan('alone', [
    { do: 'log', level: 'I', message: why },
    { do: 'persist', patch },
    { do: 'show', state: 'ALONE', qualifier: 'Transient', reason: why },
    ...rowSteps('WAIT', 'ALONE', 'start'),
    { do: 'replication', role: 'prim', sync: 'none' },
    { do: 'established' },
    { do: 'show', state: 'ALONE', qualifier: 'Ready', reason: MSG.alone },
  ]);
}

function goSecond(x: Ctx, m: HeartbeatMessage): void {
  const s = x.s;
  const sync: ReplicationSync = s.fullSyncNext ? 'full' : 'incremental';
  s.fullSyncNext = false;
  s.failoverOffWait = false;
  s.mode = 'auto';
  newEpisode(s);
  s.secondOf = m.incarnation;
  s.plan = makePlan('second', [
    { do: 'persist', patch: { uptodate: false, lastPrim: false } },
    { do: 'show', state: 'SECOND', qualifier: 'Transient', reason: MSG.reintegration },
    ...rowSteps('WAIT', 'SECOND', 'start'),
    { do: 'persist', patch: { reintegrating: true } },
    { do: 'replication', role: 'second', sync },
  ]);
}

function takeover(x: Ctx, why: string): void {
  const s = x.s;
  const gen = Math.max(s.persisted.gen, s.peerGenMax) + 1;
  s.episode = null;
  s.synced = false;
  s.secondOf = null;
  s.plan = makePlan('failover', [
    { do: 'log', level: 'I', message: why },
    { do: 'replication', role: 'off', sync: 'none' },
    { do: 'persist', patch: { uptodate: true, lastPrim: true, gen, reintegrating: false } },
    { do: 'show', state: 'ALONE', qualifier: 'Transient', reason: why },
    ...rowSteps('SECOND', 'ALONE', 'start'),
    { do: 'replication', role: 'prim', sync: 'none' },
    { do: 'established' },
    { do: 'show', state: 'ALONE', qualifier: 'Ready', reason: MSG.alone },
  ]);
}

/** The secondary's half of a swap: the old primary has run stop_prim and waits in SECOND. */
function swapTakeover(x: Ctx): void {
  const s = x.s;
  const gen = Math.max(s.persisted.gen, s.peerGenMax) + 1;
  s.episode = null;
  s.synced = false;
  s.secondOf = null;
  s.plan = makePlan('swap-prim', [
    { do: 'log', level: 'I', message: 'swap: this server takes the primary role' },
    { do: 'replication', role: 'off', sync: 'none' },
    { do: 'persist', patch: { uptodate: true, lastPrim: true, gen } },
    { do: 'show', state: 'PRIM', qualifier: 'Transient', reason: 'swap' },
    ...rowSteps('SECOND', 'PRIM', 'start'),
    { do: 'replication', role: 'prim', sync: 'none' },
    { do: 'established' },
    { do: 'show', state: 'PRIM', qualifier: 'Ready', reason: MSG.mirroring },
  ]);
}

/** The primary's half of a swap: stop_prim, then wait as SECOND until the peer is primary. */
function startSwap(x: Ctx, nosync: boolean, why: string): void {
  const s = x.s;
  s.swap = { deadlineMs: 0, nosync };
  s.plan = makePlan('swap-second', [
    { do: 'log', level: 'I', message: why },
    { do: 'show', state: 'PRIM', qualifier: 'Transient', reason: 'swap' },
    ...rowSteps('PRIM', 'SECOND', 'stop', {
      afterRelease: { do: 'show', state: 'SECOND', qualifier: 'Transient', reason: MSG.swapWait },
    }),
  ]);
}

function finishSwap(x: Ctx, m: HeartbeatMessage): void {
  const s = x.s;
  const nosync = s.swap?.nosync ?? false;
  s.swap = null;
  s.releasedEpisode = null;
  newEpisode(s);
  s.secondOf = m.incarnation;
  s.plan = makePlan('swap-done', [
    { do: 'persist', patch: { uptodate: false, lastPrim: false, reintegrating: true } },
    { do: 'replication', role: 'second', sync: nosync ? 'none' : 'incremental' },
    { do: 'show', state: 'SECOND', qualifier: 'Transient', reason: MSG.reintegration },
  ]);
}

function beginExit(x: Ctx): void {
  const s = x.s;
  s.exiting = true;
  s.splitBrainLogged = false;
  s.fullSyncNext = true;
  log(x, 'E', MSG.splitBrainExit);
  persist(x, { uptodate: false, lastPrim: false });
  if (s.vip) {
    x.fx.push({ type: 'vipDown', tcpreset: s.config.vip?.tcpreset ?? true });
    s.vip = false;
  }
  if (!s.plan) startExit(x);
}

function startExit(x: Ctx): void {
  const s = x.s;
  if (s.state === 'STOP' || s.state === 'WAIT') {
    s.exiting = false;
    return;
  }
  leave(x, 'WAIT', { action: 'stopstart', force: false, reason: MSG.splitBrainExit, exit: true });
}

/** The peer still looks primary: start_prim must not begin (stop before start). */
function peerBlocksStart(s: MirrorState): boolean {
  const m = alivePeer(s);
  return m !== null && looksPrimary(m);
}

/** Runs the plan's steps until it waits for scripts, holds, or ends. */
function advancePlan(x: Ctx): void {
  const s = x.s;
  const p = s.plan!;
  if (p.waitingId !== null) return;
  if (!p.leaving) {
    if (s.exiting) {
      s.plan = null;
      startExit(x);
      return;
    }
    if (s.queued && PREEMPTS.has(s.queued.command)) {
      const q = s.queued;
      s.queued = null;
      s.plan = null;
      applyCommand(x, q);
      return;
    }
  }
  while (p.index < p.steps.length) {
    const st = p.steps[p.index]!;
    if (st.do === 'hold' && peerBlocksStart(s)) return;
    p.index += 1;
    switch (st.do) {
      case 'scripts':
        s.scriptsSeq += 1;
        x.fx.push({
          type: 'runScripts',
          id: s.scriptsSeq,
          current: st.current,
          next: st.next,
          action: st.action,
          calls: st.calls.map((c) => ({ ...c })),
        });
        p.waitingId = s.scriptsSeq;
        p.waitingHasStart = st.calls.some((c) => isStartScript(c.script));
        return;
      case 'show':
        show(x, st.state, st.qualifier, st.reason);
        break;
      case 'persist':
        persist(x, st.patch);
        break;
      case 'hold':
        break;
      case 'acquire':
        if (!isPrimaryState(s.state)) throw new Error(`mirror: acquire in ${s.state}`);
        if (s.config.vip && !s.vip) {
          x.fx.push({ type: 'vipUp' });
          s.vip = true;
        }
        s.primActive = true;
        break;
      case 'release':
        if (s.vip) {
          x.fx.push({ type: 'vipDown', tcpreset: s.config.vip?.tcpreset ?? true });
          s.vip = false;
        }
        s.primActive = false;
        s.established = false;
        break;
      case 'established':
        s.established = true;
        break;
      case 'replication':
        x.fx.push({ type: 'setReplication', role: st.role, sync: st.sync });
        s.replRole = st.role;
        break;
      case 'log':
        log(x, st.level, st.message);
        break;
      case 'exited':
        s.exiting = false;
        break;
    }
  }
  s.plan = null;
  if (p.then === 'start') startPlan(x, p.startMode, 'stopstart');
}

// ---------------------------------------------------------------------------------------------- decisions

function settle(x: Ctx): void {
  const s = x.s;
  for (let i = 0; i < 32; i++) {
    checkSplitBrain(x);
    if (s.plan) {
      const p = s.plan;
      advancePlan(x);
      // The same plan waits (scripts, or a hold): done for now. A plan that ended or was replaced: go on.
      if (s.plan === p) return;
      continue;
    }
    evaluate(x);
    if (!s.plan) return;
  }
  throw new Error('mirror: the machine did not settle in 32 rounds');
}

/**
 * Both nodes hold the primary role while they hear each other: the reference sacrifices the former
 * SECOND. Here the loser is the later generation (a takeover takes the peer's generation + 1, so it is
 * the former SECOND), or the greater name when the generations are equal. The generation of a node does
 * not change while it is primary, so both nodes compute the same answer from each other's heartbeats,
 * whichever heartbeat each hears first: never two winners, never two losers.
 */
function checkSplitBrain(x: Ctx): void {
  const s = x.s;
  if (s.state === 'STOP' || s.exiting) return;
  const m = alivePeer(s);
  const me = isPrimaryState(s.state) || s.primActive;
  const them = m !== null && looksPrimary(m) && !m.exiting;
  if (!me || !them) {
    s.splitBrainLogged = false;
    return;
  }
  if (losesSplitBrain(s, m)) beginExit(x);
  else if (!s.splitBrainLogged) {
    s.splitBrainLogged = true;
    log(x, 'E', MSG.splitBrainStay);
  }
}

export function losesSplitBrain(s: MirrorState, m: HeartbeatMessage): boolean {
  if (s.persisted.gen !== m.gen) return s.persisted.gen > m.gen;
  return s.config.self > s.config.peer;
}

function evaluate(x: Ctx): void {
  const s = x.s;
  if (s.plan) return;
  if (s.queued) {
    const q = s.queued;
    s.queued = null;
    applyCommand(x, q);
    if (s.plan) return;
  }
  if (s.waitCheckers.length > 0 && s.state !== 'STOP' && s.state !== 'WAIT') {
    const why = `Action wait from checker ${s.waitCheckers[0]}`;
    log(x, 'E', why);
    return leave(x, 'WAIT', { action: 'stopwait', force: false, reason: why });
  }
  switch (s.state) {
    case 'STOP':
      return;
    case 'WAIT':
      if (s.waitCheckers.length > 0) return waitShow(x, 'NotReady', `waiting for checker ${s.waitCheckers.join(', ')} (down)`);
      return decideWait(x);
    case 'ALONE':
      return evaluateAlone(x);
    case 'PRIM':
      return evaluatePrim(x);
    case 'SECOND':
      return evaluateSecond(x);
  }
}

/** What a node in WAIT tells about itself, for the choice of the primary. */
export interface Candidate {
  name: string;
  mode: StartMode;
  uptodate: boolean;
  lastPrim: boolean;
  interrupted: boolean;
}

/**
 * Two nodes in WAIT that hear each other choose the primary from data (reference §3.3): a node the
 * operator started with prim/primforce; else the node that can prove its data is current; if both can (after a split brain), defaultprim, then lastprim, then the
 * smaller name; if neither can, the former primary when the other was not (both resume their roles after
 * a double power loss). null: neither may start, both wait for `prim`. Both nodes get the same answer.
 */
export function chooseWinner(a: Candidate, b: Candidate, defaultPrim: string): string | null {
  // The operator's prim/primforce is obeyed (it goes primary by itself); the other node waits for it.
  const forced = [a, b].filter((n) => n.mode === 'prim' || n.mode === 'primforce');
  if (forced.length === 1) return forced[0]!.name;
  const cand = [a, b].filter((n) => n.mode !== 'second');
  const up = cand.filter((n) => n.uptodate && !n.interrupted);
  if (up.length === 1) return up[0]!.name;
  if (up.length === 2) {
    if (defaultPrim === a.name || defaultPrim === b.name) return defaultPrim;
    if (a.lastPrim !== b.lastPrim) return a.lastPrim ? a.name : b.name;
    return a.name < b.name ? a.name : b.name;
  }
  const resume = cand.filter((n) => n.lastPrim && !n.interrupted);
  if (resume.length === 1) {
    const other = resume[0] === a ? b : a;
    if (!other.lastPrim) return resume[0]!.name;
  }
  return null;
}

function waitShow(x: Ctx, q: Qualifier, reason: string): void {
  show(x, 'WAIT', q, reason);
}

function blockedOnData(x: Ctx): void {
  const s = x.s;
  const reason = s.persisted.reintegrationInterrupted ? MSG.dataInconsistent : MSG.dataNotUptodate;
  waitShow(x, 'NotReady', reason);
  if (s.lastWaitLog !== reason) {
    s.lastWaitLog = reason;
    log(x, 'E', reason);
    log(x, 'I', MSG.waitRule);
    if (reason === MSG.dataNotUptodate) log(x, 'I', MSG.primHint);
  }
}

function decideWait(x: Ctx): void {
  const s = x.s;
  const m = alivePeer(s);
  if (m && looksPrimary(m)) {
    if (m.exiting) return waitShow(x, 'Transient', MSG.holdPeerPrimary);
    if (s.mode === 'prim' || s.mode === 'primforce') log(x, 'E', 'prim refused: the remote server is primary');
    return goSecond(x, m);
  }
  // Even prim listens for the peer first: it overrides the data rule, not the check for a live primary.
  if (!m && s.nowMs < s.listenUntilMs) return waitShow(x, 'Transient', MSG.listening);
  if (s.mode === 'prim' || s.mode === 'primforce') return goAlone(x, `Action ${s.mode}: starting as primary`);
  const present = m && m.state !== 'STOP' ? m : null;
  if (!present) {
    if (s.mode === 'second') return waitShow(x, 'NotReady', MSG.waitSecondMode);
    if (s.failoverOffWait) return waitShow(x, 'NotReady', MSG.failoverOff);
    if (mayStartAlone(s)) return goAlone(x, s.config.replicatedData ? 'This server has up-to-date data: starting as primary' : 'No replicated data: starting as primary');
    if (syncDeltaAllows(s)) {
      return goAlone(x, `syncdelta: this server's last sync is less than ${Math.round(s.config.syncDeltaMs! / 60_000)} min old and the remote server is absent: starting as primary`);
    }
    return blockedOnData(x);
  }
  if (present.state === 'SECOND') return waitShow(x, 'Transient', MSG.waitPeerTakeover);
  const p = s.persisted;
  const winner = chooseWinner(
    {
      name: s.config.self,
      mode: s.mode,
      uptodate: p.uptodate || !s.config.replicatedData,
      lastPrim: p.lastPrim,
      interrupted: p.reintegrationInterrupted || p.reintegrating,
    },
    {
      name: s.config.peer,
      mode: present.mode,
      uptodate: present.uptodate || !s.config.replicatedData,
      lastPrim: present.lastPrim,
      interrupted: present.reintegrationInterrupted,
    },
    s.config.defaultPrim,
  );
  if (winner === s.config.self) return goAlone(x, 'This server is chosen as primary: it has the up-to-date data');
  if (winner === s.config.peer) return waitShow(x, 'Transient', MSG.waitPeerPrim);
  if (s.mode === 'second') return waitShow(x, 'NotReady', MSG.waitSecondMode);
  if (s.failoverOffWait) return waitShow(x, 'NotReady', MSG.failoverOff);
  return blockedOnData(x);
}

function evaluateAlone(x: Ctx): void {
  const s = x.s;
  const m = alivePeer(s);
  if (!m || m.state !== 'SECOND' || m.swapping || looksPrimary(m)) return;
  if (s.withheldEpisode !== null) {
    // It still claims the episode whose replication broke off: pair again once it reintegrates.
    if (m.episode === s.withheldEpisode && m.synced) return;
    s.withheldEpisode = null;
  }
  s.plan = makePlan('pair', [
    ...rowSteps('ALONE', 'PRIM', 'stop'),
    { do: 'show', state: 'PRIM', qualifier: 'Ready', reason: MSG.mirroring },
  ]);
}

function evaluatePrim(x: Ctx): void {
  const s = x.s;
  const cfg = s.config;
  const m = alivePeer(s);
  if (m && looksPrimary(m)) return; // a split brain: checkSplitBrain decides
  // A peer that is SECOND and still "swapping" is the old primary of a swap that has not yet heard this
  // node is primary: it is becoming this node's secondary.
  const lost = s.withheldEpisode !== null && s.releasedEpisode === s.withheldEpisode;
  if (!m || m.state !== 'SECOND' || lost) {
    const why = lost ? MSG.replicationLost : m ? `The remote server left the secondary role (${m.state})` : MSG.noHeartbeat;
    s.releasedEpisode = null;
    s.plan = makePlan('unpair', [
      { do: 'log', level: 'I', message: why },
      { do: 'persist', patch: { uptodate: true } },
      ...rowSteps('PRIM', 'ALONE', 'start'),
      { do: 'show', state: 'ALONE', qualifier: 'Ready', reason: MSG.alone },
    ]);
    return;
  }
  if (s.withheldEpisode !== null && (m.episode !== s.withheldEpisode || !m.synced)) s.withheldEpisode = null;
  if (m.episode !== null && m.synced && s.releasedEpisode !== m.episode && m.episode !== s.withheldEpisode) {
    // The secondary finished its reintegration: from now on it may take over, so this node can no
    // longer prove alone that its data is the current one. Persisted before the heartbeat says so.
    persist(x, { uptodate: false });
    s.releasedEpisode = m.episode;
    log(x, 'I', 'The secondary is up to date: it may take over from now on');
  }
  if (s.qualifier !== 'Ready') return;
  if (m.swapRequests > s.swapRequestsSeen) {
    s.swapRequestsSeen = m.swapRequests;
    if (m.qualifier === 'Ready') return startSwap(x, m.swapNosync, 'Action swap requested by the secondary');
    log(x, 'E', 'swap requested by the secondary refused: it is not Ready');
  }
  if (cfg.defaultPrim === cfg.peer && m.qualifier === 'Ready' && m.episode !== null && s.failbackDoneFor !== m.episode) {
    s.failbackDoneFor = m.episode;
    return startSwap(x, false, MSG.failback);
  }
}

function evaluateSecond(x: Ctx): void {
  const s = x.s;
  const m = alivePeer(s);
  if (s.swap) {
    if (m && isPrimaryState(m.state) && !m.exiting) return finishSwap(x, m);
    if (s.swap.deadlineMs === 0) s.swap.deadlineMs = s.nowMs + 2 * maxTimeoutMs(s);
    if (!m || m.state === 'STOP' || m.state === 'WAIT' || s.nowMs >= s.swap.deadlineMs) {
      log(x, 'E', MSG.swapFailed);
      return leave(x, 'WAIT', { action: 'stopwait', force: false, reason: MSG.swapFailed });
    }
    return;
  }
  if (m && looksPrimary(m)) {
    if (s.secondOf !== null && m.incarnation !== s.secondOf) {
      // Another run of the primary: what was synchronised from the previous one proves nothing.
      newEpisode(s);
      s.secondOf = m.incarnation;
      s.plan = makePlan('resync', [
        { do: 'persist', patch: { reintegrating: true } },
        { do: 'show', state: 'SECOND', qualifier: 'Transient', reason: MSG.reintegration },
        { do: 'replication', role: 'second', sync: 'incremental' },
      ]);
      return;
    }
    if (s.qualifier === 'Transient' && s.synced && m.releasedEpisode === s.episode) {
      show(x, 'SECOND', 'Ready', MSG.uptodate);
    } else if (s.qualifier === 'Ready' && m.releasedEpisode !== s.episode) {
      // The primary went on alone (it lost this secondary for a while): its later writes are not here.
      newEpisode(s);
      s.plan = makePlan('resync', [
        { do: 'log', level: 'I', message: 'The primary continued without this secondary: reintegration' },
        { do: 'persist', patch: { reintegrating: true } },
        { do: 'show', state: 'SECOND', qualifier: 'Transient', reason: MSG.reintegration },
        { do: 'replication', role: 'second', sync: 'incremental' },
      ]);
    }
    return;
  }
  // The primary is gone, or leaving it. Its heartbeats, if any still come, must show that it mirrored
  // every write of its run to this secondary (it released this episode and never went on alone), or
  // that it restarted since without claiming the data (a crash of a released primary).
  const mirrored =
    !s.config.replicatedData || !m || m.releasedEpisode === s.episode || (m.incarnation !== s.secondOf && !m.uptodate);
  if (m && m.state === 'SECOND' && m.swapping && s.qualifier === 'Ready' && mirrored) return swapTakeover(x);
  if (s.qualifier === 'Ready' && !mirrored) {
    log(x, 'E', MSG.primaryWentAlone);
    return leave(x, 'WAIT', { action: 'stopwait', force: false, reason: MSG.primaryWentAlone });
  }
  // Without replicated data there is nothing a secondary could lack: it takes over even while Transient.
  if (s.qualifier === 'Ready' || !s.config.replicatedData) {
    if (!s.config.failover) {
      log(x, 'E', MSG.failoverOff);
      leave(x, 'WAIT', { action: 'stopwait', force: false, reason: MSG.failoverOff });
      s.failoverOffWait = true;
      return;
    }
    return takeover(x, m ? MSG.peerStopped : MSG.noHeartbeat);
  }
  log(x, 'E', MSG.secondNotReady);
  leave(x, 'WAIT', { action: 'stopwait', force: false, reason: MSG.secondNotReady });
}

// ---------------------------------------------------------------------------------------------- outputs

function heartbeatMessage(s: MirrorState, seq: number): HeartbeatMessage {
  const p = s.persisted;
  return {
    node: s.config.self,
    incarnation: p.incarnation,
    seq,
    state: s.state,
    qualifier: s.qualifier,
    primActive: s.primActive,
    established: s.established,
    exiting: s.exiting,
    uptodate: p.uptodate,
    lastPrim: p.lastPrim,
    reintegrationInterrupted: p.reintegrationInterrupted,
    gen: p.gen,
    mode: s.mode,
    episode: s.episode,
    synced: s.synced,
    releasedEpisode: s.releasedEpisode,
    swapping: s.swap !== null,
    swapRequests: s.swapRequests,
    swapNosync: s.swapNosync,
  };
}

function signature(m: HeartbeatMessage): string {
  return [
    m.incarnation,
    m.state,
    m.qualifier,
    m.primActive,
    m.established,
    m.exiting,
    m.uptodate,
    m.lastPrim,
    m.reintegrationInterrupted,
    m.gen,
    m.mode,
    m.episode,
    m.synced,
    m.releasedEpisode,
    m.swapping,
    m.swapRequests,
    m.swapNosync,
  ].join('|');
}

function computeReady(s: MirrorState): boolean {
  return isPrimaryState(s.state) && s.qualifier === 'Ready' && s.primActive && (s.config.vip ? s.vip : true);
}

function nextWakeMs(s: MirrorState): number | null {
  if (s.state === 'STOP') return null;
  let t = Infinity;
  for (const l of s.lans) {
    t = Math.min(t, l.nextSendMs);
    const lost = lossDeadlineMs(l);
    if (lost !== null) t = Math.min(t, lost);
  }
  if (s.state === 'WAIT' && s.listenUntilMs > s.nowMs) t = Math.min(t, s.listenUntilMs);
  if (s.swap && s.swap.deadlineMs > s.nowMs) t = Math.min(t, s.swap.deadlineMs);
  return t;
}

/** When a lan that is up will be declared lost if nothing arrives on it, or null. */
function lossDeadlineMs(l: LanView): number | null {
  return l.up && l.lastHeardMs !== null ? l.lastHeardMs + l.timeoutMs : null;
}

/**
 * When a lan sends next, after a send at `nowMs`. A heartbeat that was due stays on its grid (due +
 * pulse): the tick that sends it always runs a little late, and measuring the next pulse from that late
 * moment would stretch every pulse by the lateness (at 10 ms, a millisecond of timer lateness is a 10 %
 * slower heartbeat, eating into the peer's timeout). A send later than a whole pulse (this process did
 * not run) starts a new grid rather than sending the missed ones in a burst; so does a send made early
 * because what the heartbeat says changed.
 */
function nextPulseMs(l: LanView, nowMs: number): number {
  const onGrid = l.nextSendMs + l.pulseMs;
  return nowMs >= l.nextSendMs && onGrid > nowMs ? onGrid : nowMs + l.pulseMs;
}

function finish(x: Ctx): void {
  const s = x.s;
  const ready = computeReady(s);
  let readyLast = false;
  if (ready !== s.ready) {
    s.ready = ready;
    if (ready) readyLast = true;
    else x.fx.unshift({ type: 'ready', ready: false });
  }
  // Heartbeats: at once when what they say changed (a last one on entering STOP), else at each pulse.
  const draft = heartbeatMessage(s, 0);
  const sig = signature(draft);
  // A stopped node sends nothing, except one last message when it has just stopped.
  const wasRunning = s.lastSentSig !== '' && s.lastSentSig.split('|')[1] !== 'STOP';
  const changed = sig !== s.lastSentSig && (s.state !== 'STOP' || wasRunning);
  const due = s.state === 'STOP' ? [] : s.lans.filter((l) => s.nowMs >= l.nextSendMs);
  const lans = changed ? s.lans : due;
  if (lans.length > 0) {
    s.heartbeatSeq += 1;
    const message = { ...draft, seq: s.heartbeatSeq };
    for (const l of lans) {
      x.fx.push({ type: 'sendHeartbeat', lan: l.lan, message });
      l.nextSendMs = nextPulseMs(l, s.nowMs);
    }
    s.lastSentSig = sig;
  }
  const at = nextWakeMs(s);
  if (at !== s.timerAtMs) {
    // At a loss deadline a takeover may start: the shell meets it to a fraction of a millisecond.
    if (at !== null) x.fx.push({ type: 'setTimer', name: 'tick', atMs: at, precise: s.lans.some((l) => lossDeadlineMs(l) === at) });
    s.timerAtMs = at;
  }
  if (readyLast) x.fx.push({ type: 'ready', ready: true });
}
