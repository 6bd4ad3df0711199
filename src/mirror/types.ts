// The types of the mirror state machine: its configuration, what it keeps on disk, the events it is
// given, the effects it asks for, and the heartbeat message the two nodes exchange. Everything here is
// plain data (no classes, no functions; one constant list of the command names), so states, events and effects can be logged, compared and
// replayed. See README.md in this folder for the contract between the machine and the daemon shell.
import type { ErrorCode } from '../errors/codes.ts';

/** The module states of a mirror node (reference §3.1). */
export type MirrorStateName = 'STOP' | 'WAIT' | 'ALONE' | 'PRIM' | 'SECOND';
/** NotReady = blocked (red), Transient = passing (orange), Ready = stable (green). */
export type Qualifier = 'NotReady' | 'Transient' | 'Ready';

/** The action argument every module script receives (reference §2.15). */
export type ScriptAction = 'start' | 'stop' | 'stopstart' | 'stopwait';

/**
 * One module script call. Structurally the same as `ScriptCall` of src/scripts/runner.ts (kept separate so
 * the machine imports nothing that touches the system): stop_* calls run graceful then `force`, or only
 * `force` with forceOnly.
 */
export interface ScriptCall {
  script: string;
  forceOnly?: boolean;
}

/** One `<heartbeat>` of the module: a lan of cluster.xml with its timing. */
export interface MirrorHeartbeatConfig {
  lan: string;
  pulseMs: number;
  timeoutMs: number;
}

/** What the machine needs of userconfig.xml and cluster.xml (the daemon builds it from both). */
export interface MirrorConfig {
  /** This node's name in cluster.xml. */
  self: string;
  /** The other node of the mirror. */
  peer: string;
  /** `<service failover>`: off means the SECOND waits ("Failover-off configured") instead of taking over. */
  failover: boolean;
  /** `<service defaultprim>`: "alone", "lastprim" or a node name. */
  defaultPrim: string;
  /** `<service maxloop>`: automated restarts allowed within loopIntervalMs; the next one stops the module. */
  maxLoop: number;
  /** `<service loop_interval>`; 0 disables the counter. */
  loopIntervalMs: number;
  /** One entry per `<heartbeat>`; at least one. */
  heartbeats: MirrorHeartbeatConfig[];
  /** `<vip>`: null when the module has none (no vipUp/vipDown effects then). */
  vip: { tcpreset: boolean } | null;
  /**
   * The module replicates data (`<rfs>`). Without replicated data there is nothing to be stale: the data
   * rule is off (every node may start as primary, and a SECOND may take over whatever its primary did).
   */
  replicatedData: boolean;
  /**
   * `<rfs syncdelta>` in ms (0 or absent: off). A node that cannot prove its data is current may still
   * start as primary with no peer in sight when its last sync is more recent than this (the shell tells,
   * see the syncedCheck event): the operator accepts losing at most that much of the peer's writes.
   */
  syncDeltaMs?: number;
}

/**
 * What survives a crash. The shell writes the whole record atomically when it gets a `persist` effect,
 * and gives it back to initialMirrorState at daemon start.
 */
export interface MirrorPersisted {
  /**
   * This node can prove its data is current without the peer: it was the last primary standing, with no
   * secondary that could have taken over since. False on a SECOND (even a Ready one: the primary goes on
   * writing after it stops) and on a PRIM that has released an up-to-date SECOND.
   */
  uptodate: boolean;
  /** Was primary (ALONE or PRIM) at its last stop or crash: `defaultprim="lastprim"` and role resumption. */
  lastPrim: boolean;
  /** A reintegration (resynchronisation as SECOND) began and has not finished. */
  reintegrating: boolean;
  /** A reintegration was interrupted: `prim` is refused, only `primforce` makes this node primary. */
  reintegrationInterrupted: boolean;
  /** Generation of this node's last primary episode: a takeover takes max(own, peer) + 1. */
  gen: number;
  /** Bumped at each start, so the peer tells a restarted node from delayed packets of the old one. */
  incarnation: number;
  /** When replication last reported the data in sync (replicationState.lastSyncMs). */
  lastSyncMs: number | null;
}

/** How the node was started: `prim`/`primforce` force the primary role, `second` forbids it. */
export type StartMode = 'auto' | 'prim' | 'primforce' | 'second';

/** Operator (or automated) commands, reference §1.3. */
export const MIRROR_COMMANDS = ['start', 'stop', 'restart', 'stopstart', 'forcestop', 'swap', 'prim', 'second', 'primforce'] as const;
export type MirrorCommandName = (typeof MIRROR_COMMANDS)[number];

/**
 * What a node tells its peer every pulse, on every heartbeat lan (the shell seals it with the module key).
 * The same message (same seq) goes out on every lan; the receiver keeps the newest by (incarnation, seq).
 */
export interface HeartbeatMessage {
  node: string;
  incarnation: number;
  seq: number;
  state: MirrorStateName;
  qualifier: Qualifier;
  /** The primary's resources may be in use: from just before start_prim to the end of stop_prim. */
  primActive: boolean;
  /** Primary whose start finished (ALONE/PRIM Ready, or restarting after that): wins a split brain. */
  established: boolean;
  /** Leaving after losing a split brain ("Split brain recovery: exiting alone"). */
  exiting: boolean;
  uptodate: boolean;
  lastPrim: boolean;
  reintegrationInterrupted: boolean;
  gen: number;
  mode: StartMode;
  /** SECOND: the id of the current secondary episode, and whether its reintegration finished. */
  episode: string | null;
  synced: boolean;
  /** PRIM: the peer episode it released (it persisted uptodate=false for it): that SECOND may be Ready. */
  releasedEpisode: string | null;
  /** The old primary of a swap, waiting for the peer to take the primary role. */
  swapping: boolean;
  /** SECOND: a counter bumped by `swap` run on the secondary; the PRIM swaps when it sees it grow. */
  swapRequests: number;
  swapNosync: boolean;
}

interface EventBase {
  /** The shell's clock when it hands the event over (monotonic milliseconds). */
  nowMs: number;
}

export type MirrorEvent =
  /** The shell's answer to setTimer, or any periodic wake-up. */
  | (EventBase & { type: 'tick' })
  | (EventBase & {
      type: 'command';
      command: MirrorCommandName;
      /** Set by automated callers (errd, checkers, failover rules): counted by maxloop. */
      identity?: string;
      /** Echoed in the reply effect. */
      requestId?: string;
      /** swap nosync: the old primary becomes SECOND without reintegration. */
      nosync?: boolean;
      /** second fullsync: this node's next reintegration compares and copies everything. */
      fullsync?: boolean;
    })
  | (EventBase & { type: 'heartbeatReceived'; lan: string; message: HeartbeatMessage })
  /**
   * The reference's rfs.synced resource (checker syncedcheck): whether this node's last sync is more
   * recent than syncdelta. Last-sync dates are wall-clock times, which the machine does not have, so the
   * shell compares and sends the answer (at start, and whenever it may have changed).
   */
  | (EventBase & { type: 'syncedCheck'; recent: boolean })
  /**
   * A checker whose action is "wait" (the interface checker intf.*, or a configured one) changed: while
   * any is down the node stays in WAIT(NotReady), leaving ALONE/PRIM/SECOND if it was there.
   */
  | (EventBase & { type: 'checker'; name: string; up: boolean })
  /** The runScripts batch `id` ended; ok=false when a start_* script failed (the batch stopped there). */
  | (EventBase & { type: 'scriptsDone'; id: number; ok: boolean; failedScript?: string })
  /** From the replication layer (rfs): whether this node's replicated data is in sync with the primary. */
  | (EventBase & {
      type: 'replicationState';
      uptodate: boolean;
      reintegrationInterrupted: boolean;
      lastSyncMs: number | null;
      /**
       * Primary: the replication to the secondary broke off (the link was lost, or the secondary stalled
       * past sendtimeout/locktimeout): it no longer has every write, so it must not take over as it is.
       */
      peerLost?: boolean;
    });

export type ReplicationRole = 'prim' | 'second' | 'off';
/** How a SECOND resynchronises: changed zones, everything (after a split brain), or nothing (swap nosync). */
export type ReplicationSync = 'incremental' | 'full' | 'none';

export type MirrorEffect =
  /** Write the record durably (atomically) BEFORE carrying out any later effect of the same batch. */
  | { type: 'persist'; record: MirrorPersisted }
  /** Run the calls in order (src/scripts/runner.ts runTransitionScripts), then send scriptsDone {id}. */
  | { type: 'runScripts'; id: number; current: MirrorStateName; next: MirrorStateName; action: ScriptAction; calls: ScriptCall[] }
  /** Kill the batch `id` (forcestop); its scriptsDone, if any comes, is ignored. */
  | { type: 'cancelScripts'; id: number }
  | { type: 'vipUp' }
  /** Remove the virtual IP; with tcpreset, reset the connections sourced from it first. */
  | { type: 'vipDown'; tcpreset: boolean }
  /** The health check: 200 on ready.txt when true, 404 when false. */
  | { type: 'ready'; ready: boolean }
  | { type: 'setReplication'; role: ReplicationRole; sync: ReplicationSync }
  | { type: 'sendHeartbeat'; lan: string; message: HeartbeatMessage }
  /** Replace the timer `name`: at atMs, hand a tick event back. */
  /**
   * precise: atMs is a loss deadline (a lan, and maybe the peer, is declared lost then); the shell should
   * meet it to a fraction of a millisecond. Other wake-ups (pulses, listening, swaps) may be a millisecond late.
   */
  | { type: 'setTimer'; name: 'tick'; atMs: number; precise: boolean }
  /** A module log line (levels of src/logs/module-log.ts). */
  | { type: 'log'; level: 'I' | 'E'; message: string }
  /** The answer to a command: accepted, or refused with a registry code. */
  | {
      type: 'reply';
      requestId: string | null;
      command: MirrorCommandName;
      ok: boolean;
      code: ErrorCode | null;
      message: string;
    };

/** One step of a plan: the ordered work of a transition, run by the machine one step at a time. */
export type PlanStep =
  | { do: 'show'; state: MirrorStateName; qualifier: Qualifier; reason: string }
  | { do: 'persist'; patch: Partial<MirrorPersisted> }
  | { do: 'scripts'; current: MirrorStateName; next: MirrorStateName; action: ScriptAction; calls: ScriptCall[] }
  /** Wait while the peer still looks primary (start_prim never begins before the peer's stop_prim ended). */
  | { do: 'hold' }
  /** vipUp (if configured and not up) and primActive: just before start_prim. */
  | { do: 'acquire' }
  /** vipDown (if up), primActive and established off: just after stop_prim. */
  | { do: 'release' }
  | { do: 'established' }
  | { do: 'replication'; role: ReplicationRole; sync: ReplicationSync }
  | { do: 'log'; level: 'I' | 'E'; message: string }
  /** The end of a split-brain exit. */
  | { do: 'exited' };

/** A transition in progress. */
export interface Plan {
  /** For logs and traces: "start", "stop", "failover", "swap"… */
  name: string;
  steps: readonly PlanStep[];
  /** Index of the next step to run. */
  index: number;
  /** The runScripts id the plan waits for, or null. */
  waitingId: number | null;
  /** The batch that runs has a start_* call: its failure ends the plan. */
  waitingHasStart: boolean;
  /** What to do when the plan ends: re-evaluate, start again (stopstart), or a swap's wait. */
  then: 'evaluate' | 'start';
  /** The mode for then='start'. */
  startMode: StartMode;
  /** Stop or exit plans are not preempted by another stop. */
  leaving: boolean;
}

export interface LanView {
  lan: string;
  pulseMs: number;
  timeoutMs: number;
  lastHeardMs: number | null;
  up: boolean;
  nextSendMs: number;
}

export interface QueuedCommand {
  command: MirrorCommandName;
  identity: string | null;
  requestId: string | null;
  nosync: boolean;
  fullsync: boolean;
}

/**
 * The whole state of one node's machine. Plain data: step() never mutates its argument and returns a new
 * object. The shell reads state/qualifier/reason/ready/persisted; the rest is the machine's own.
 */
export interface MirrorState {
  readonly config: MirrorConfig;
  /** The latest event time seen. */
  nowMs: number;
  state: MirrorStateName;
  qualifier: Qualifier;
  reason: string;
  /** The last record handed over in a persist effect. */
  persisted: MirrorPersisted;
  mode: StartMode;
  lans: LanView[];
  /** The newest heartbeat message of the peer, and when it arrived. */
  peer: { message: HeartbeatMessage; receivedMs: number } | null;
  /** Some lan heard the peer within its timeout. */
  peerAlive: boolean;
  /** Highest generation seen from the peer. */
  peerGenMax: number;
  heartbeatSeq: number;
  /** Signature of the last heartbeat sent, to send at once when something changes. */
  lastSentSig: string;
  vip: boolean;
  primActive: boolean;
  established: boolean;
  /** What the health check answers (the last ready effect). */
  ready: boolean;
  plan: Plan | null;
  queued: QueuedCommand | null;
  scriptsSeq: number;
  loop: { count: number; sinceMs: number };
  /** SECOND episode: id, counter, and whether its reintegration finished. */
  episode: string | null;
  episodeCounter: number;
  synced: boolean;
  /** The peer incarnation this SECOND follows. */
  secondOf: number | null;
  releasedEpisode: string | null;
  /** The old primary of a swap, waiting for the peer to take over. */
  swap: { deadlineMs: number; nosync: boolean } | null;
  swapRequests: number;
  swapNosync: boolean;
  swapRequestsSeen: number;
  failbackDoneFor: string | null;
  exiting: boolean;
  splitBrainLogged: boolean;
  /** The next reintegration copies everything (after losing a split brain, or `second fullsync`). */
  fullSyncNext: boolean;
  /** The last syncedCheck: the last sync is within syncdelta. */
  syncedRecent: boolean;
  /**
   * PRIM: the secondary episode whose replication broke off after it was released (a peerLost report).
   * The primary goes ALONE and neither pairs with it again nor releases it until the secondary starts a
   * new reintegration (its heartbeat shows that episode not synced, or another episode).
   */
  withheldEpisode: string | null;
  /** The role of the last setReplication effect. */
  replRole: ReplicationRole;
  /** WAIT only: do not conclude the peer is absent before this time (it may simply not be heard yet). */
  listenUntilMs: number;
  failoverOffWait: boolean;
  timerAtMs: number | null;
  /** The last "why" line logged in WAIT, so a blocked node logs it once. */
  lastWaitLog: string;
  /** "wait" checkers that are down (sorted): the node may not leave WAIT while one is. */
  waitCheckers: string[];
}

export interface StepResult {
  state: MirrorState;
  effects: MirrorEffect[];
}
