// The shell of process monitoring: a poll every polltimer reads the process table (and asks systemd about
// service procs), runs the pure evaluate(), keeps its memory, and hands action requests to the engine.
// It executes nothing: restart/stopstart/stop become machine commands with identity "errd" in the
// engine, which also runs handlers.
import type { Errd, Proc } from '../config/userconfig/types.ts';
import type { LogLevel } from '../logs/module-log.ts';
import { StayupError } from '../errors/stayup-error.ts';
import { readProcessTable, type ProcessInfo } from './process-table.ts';
import {
  applyActiveClasses,
  evaluate,
  servicesToCheck,
  type ActionRequest,
  type ProcMemory,
  type ProcVerdict,
  type ServiceCheck,
} from './evaluate.ts';
import { systemdServiceChecker } from './systemd.ts';

import { realScheduler, type Scheduler } from '../util/scheduler.ts';
export { realScheduler, type Scheduler };

/** One proc as status() shows it (what `errd list` prints). */
export type ProcStatus = ProcVerdict;

export interface ProcessMonitorOptions {
  module: string;
  errd: Errd;
  /** Default: readProcessTable() of /proc. */
  listProcesses?: () => ProcessInfo[];
  /** Default: `systemctl is-active`, or an operating error when systemd is not PID 1. */
  checkService?: (unit: string) => Promise<ServiceCheck>;
  /** Called once per failure episode of a proc. Exceptions are logged and ignored. */
  onAction: (req: ActionRequest) => void;
  /** E: failures and operating errors; I: recoveries. Source "errd" is the caller's to add. */
  onLog?: (level: LogLevel, message: string) => void;
  scheduler?: Scheduler;
}

export class ProcessMonitor {
  readonly module: string;
  #procs: readonly Proc[];
  #pollMs: number;
  readonly #list: () => ProcessInfo[];
  readonly #checkService: (unit: string) => Promise<ServiceCheck>;
  readonly #onAction: (req: ActionRequest) => void;
  readonly #onLog: (level: LogLevel, message: string) => void;
  readonly #sched: Scheduler;
  #classes = new Set<string>();
  #memory: ProcMemory[];
  #verdicts: ProcVerdict[];
  #running = false;
  #timer: unknown = undefined;
  /** Bumped by stop(), start() and reconfigure(): a poll begun under an older epoch is discarded. */
  #epoch = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #polls = 0;
  #listError: string | undefined;

  constructor(opts: ProcessMonitorOptions) {
    this.module = opts.module;
    this.#pollMs = checkPollMs(opts.errd.polltimerMs);
    this.#procs = [...opts.errd.procs];
    this.#list = opts.listProcesses ?? (() => readProcessTable());
    this.#checkService = opts.checkService ?? systemdServiceChecker();
    this.#onAction = opts.onAction;
    this.#onLog = opts.onLog ?? (() => {});
    this.#sched = opts.scheduler ?? realScheduler;
    this.#memory = this.#procs.map(() => ({ active: false, polls: 0, failed: false }));
    this.#verdicts = this.#procs.map((p, i) => inactiveVerdict(p, i, `class ${p.class} not active`));
  }

  get running(): boolean {
    return this.#running;
  }

  /** Polls completed (evaluated) since construction. */
  get polls(): number {
    return this.#polls;
  }

  get pollIntervalMs(): number {
    return this.#pollMs;
  }

  get activeClasses(): ReadonlySet<string> {
    return new Set(this.#classes);
  }

  /**
   * The classes monitored from now on (see activeClassesFor / classesAroundScript). A proc whose class
   * goes off is disarmed and forgets its failure; one whose class comes on is armed: its start_after
   * count starts again and a poll runs at once (start_after=n delays monitoring by (n−1)×polltimer).
   * `rearm` re-arms the procs whose class was already on, e.g. after a restart done without switching
   * classes.
   */
  setActiveClasses(classes: Iterable<string>, options: { rearm?: boolean } = {}): void {
    this.#classes = new Set(classes);
    const { memory, armed } = applyActiveClasses(this.#procs, this.#memory, this.#classes, options);
    this.#memory = memory;
    this.#verdicts = this.#procs.map((p, i) => {
      if (!this.#classes.has(p.class)) return inactiveVerdict(p, i, `class ${p.class} not active`);
      if (armed.includes(i)) {
        return { ...(this.#verdicts[i] ?? inactiveVerdict(p, i, '')), state: 'arming', reason: `start_after: poll 0 of ${p.startAfter}` };
      }
      return this.#verdicts[i] ?? inactiveVerdict(p, i, '');
    });
    if (armed.length > 0 && this.#running) this.#schedule(0);
  }

  /** Starts polling: a first poll at once, then one every polltimer. Re-arms every active proc. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#epoch++;
    this.#memory = applyActiveClasses(this.#procs, [], this.#classes).memory;
    this.#schedule(0);
  }

  /** Stops polling. A poll in flight is discarded; no action is requested after stop() returns. */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#epoch++;
    this.#clearTimer();
    this.#memory = this.#procs.map(() => ({ active: false, polls: 0, failed: false }));
    this.#verdicts = this.#procs.map((p, i) => inactiveVerdict(p, i, 'process monitoring stopped'));
  }

  /**
   * Runs one poll now (after any poll in flight) and returns the new status. Works whether or not the
   * monitor is started: it evaluates with the active classes, and requests actions like a timed poll.
   */
  pollNow(): Promise<ProcStatus[]> {
    const run = async (): Promise<ProcStatus[]> => {
      await this.#poll();
      return this.status();
    };
    const p = this.#chain.then(run, run);
    this.#chain = p.catch(() => {});
    return p;
  }

  status(): ProcStatus[] {
    return this.#verdicts.map((v) => ({ ...v }));
  }

  /**
   * Takes a new <errd> (the subtree can change dynamically, reference §2.12). A proc defined exactly as
   * before keeps its state; a new or changed one starts disarmed-then-armed like a fresh activation.
   */
  reconfigure(errd: Errd): void {
    const pollMs = checkPollMs(errd.polltimerMs);
    const old = this.#procs.map((p, i) => ({ key: JSON.stringify(p), memory: this.#memory[i], verdict: this.#verdicts[i], used: false }));
    const procs = [...errd.procs];
    const memory: (ProcMemory | undefined)[] = [];
    const verdicts: ProcVerdict[] = [];
    procs.forEach((p, i) => {
      const key = JSON.stringify(p);
      const same = old.find((o) => !o.used && o.key === key);
      if (same) same.used = true;
      memory.push(same?.memory);
      verdicts.push(same?.verdict ? { ...same.verdict, index: i } : inactiveVerdict(p, i, `class ${p.class} not active`));
    });
    this.#epoch++;
    this.#procs = procs;
    this.#pollMs = pollMs;
    this.#verdicts = verdicts;
    this.#memory = memory.map((m) => m ?? { active: false, polls: 0, failed: false });
    // The new period from now; then arm the new procs of active classes (which polls at once if any).
    if (this.#running) this.#schedule(this.#pollMs);
    this.setActiveClasses(this.#classes);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#sched.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    this.#clearTimer();
    const handle = this.#sched.setTimeout(() => {
      if (this.#timer !== handle) return;
      this.#timer = undefined;
      void this.#tick();
    }, ms);
    this.#timer = handle;
  }

  async #tick(): Promise<void> {
    await this.pollNow();
    // A poll requested meanwhile (activation) has its own timer; otherwise the next regular one.
    if (this.#running && this.#timer === undefined) this.#schedule(this.#pollMs);
  }

  #log(level: LogLevel, message: string): void {
    try {
      this.#onLog(level, message);
    } catch {
      // A broken log sink must not stop monitoring.
    }
  }

  async #poll(): Promise<void> {
    const epoch = this.#epoch;
    const services = new Map<string, ServiceCheck>();
    // Classes may come on while systemctl runs: ask about the newly active units too (bounded).
    for (let round = 0; round < 3; round++) {
      const units = servicesToCheck(this.#procs, this.#classes).filter((u) => !services.has(u));
      if (units.length === 0) break;
      const answers = await Promise.all(
        units.map((u) =>
          this.#checkService(u).catch((e: unknown): ServiceCheck => ({ kind: 'error', message: e instanceof Error ? e.message : String(e) })),
        ),
      );
      units.forEach((u, i) => services.set(u, answers[i]!));
    }
    if (epoch !== this.#epoch) return;

    let processes: ProcessInfo[];
    try {
      processes = this.#list();
    } catch (e) {
      // Without a process list every proc would look dead: skip the poll rather than act on nothing.
      const msg = `Process monitoring of module ${this.module}: cannot list processes: ${e instanceof Error ? e.message : String(e)}`;
      if (msg !== this.#listError) this.#log('E', msg);
      this.#listError = msg;
      return;
    }
    if (this.#listError !== undefined) {
      this.#log('I', `Process monitoring of module ${this.module}: processes can be listed again`);
      this.#listError = undefined;
    }

    const out = evaluate({ procs: this.#procs, activeClasses: this.#classes, memory: this.#memory, processes, services });
    this.#memory = out.memory;
    this.#verdicts = out.verdicts;
    this.#polls++;
    for (const l of out.logs) this.#log(l.level, l.message);
    for (const req of out.actions) {
      try {
        this.#onAction(req);
      } catch (e) {
        this.#log('E', `Process ${req.proc}: the action request failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
}

function checkPollMs(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new StayupError('BAD_ARGUMENT', `<errd> polltimer must be a positive duration, got ${ms} ms`);
  }
  return ms;
}

function inactiveVerdict(p: Proc, index: number, reason: string): ProcVerdict {
  return {
    index,
    name: p.name,
    class: p.class,
    service: p.service,
    count: null,
    atleast: p.atleast,
    atmax: p.atmax,
    state: 'inactive',
    reason,
  };
}
