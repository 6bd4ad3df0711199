// The pure core of process monitoring (reference §2.12, `<errd>`/`<proc>`): which processes match a
// <proc>, whether its count is in range, which classes are monitored in which module state, and when an
// action is requested. No clock, timer, file or process here: the shell (monitor.ts) reads /proc, asks
// systemd, and feeds the results in.
//
// Reference facts used:
//   - `atleast=-1` and `atmax=-1` disable the corresponding criterion; `atmax=0` fires on every start.
//   - `start_after=n` delays monitoring by (n−1)×polltimer.
//   - `argregex` and `nameregex` are POSIX ERE, case-sensitive.
//   - action = restart | stopstart | stop | noaction | <handler exe>; default stopstart.
//   - Classes switch monitoring on and off around the matching scripts: prim around start_prim/stop_prim,
//     both around start_both/stop_both, second, sec, and pre (processes started in prestart). Custom
//     classes are toggled with `errd enable|disable "<class>"`.
import type { Proc } from '../config/userconfig/types.ts';
import { compileExtendedRegex } from '../config/schema/value-types.ts';
import { isDeadProcess, type ProcessInfo } from './process-table.ts';

export type ModuleState = 'STOP' | 'WAIT' | 'ALONE' | 'PRIM' | 'SECOND' | 'UP';

/** The classes stayup switches by itself. Any other class name is custom (`errd enable|disable`). */
export const BUILTIN_CLASSES = ['pre', 'prim', 'both', 'second', 'sec'] as const;
export type BuiltinClass = (typeof BUILTIN_CLASSES)[number];

export function isBuiltinClass(c: string): c is BuiltinClass {
  return (BUILTIN_CLASSES as readonly string[]).includes(c);
}

/**
 * Built-in classes monitored in a module state once the state's scripts have run, derived from the
 * script table (reference §2.15): the class of a start_X script is on from the end of start_X to the
 * start of stop_X.
 *   pre    after prestart (STOP→WAIT) until the module stops: WAIT, ALONE, PRIM, SECOND, UP
 *   prim   start_prim runs on entering PRIM/ALONE: ALONE, PRIM
 *   both   start_both runs on UP (farm) and on PRIM, ALONE and SECOND (mirror): ALONE, PRIM, SECOND, UP
 *   second start_second runs on SECOND only: SECOND
 *   sec    start_sec runs on SECOND and ALONE (stop_sec on ALONE→PRIM): ALONE, SECOND
 */
const STABLE_CLASSES: Record<ModuleState, readonly BuiltinClass[]> = {
  STOP: [],
  WAIT: ['pre'],
  ALONE: ['pre', 'prim', 'both', 'sec'],
  PRIM: ['pre', 'prim', 'both'],
  SECOND: ['pre', 'both', 'second', 'sec'],
  UP: ['pre', 'both'],
};

/**
 * The classes to monitor for a module state.
 *
 * `inTransition` is true while a transition's scripts are running (the engine is between the first and
 * the last script of a state change, or of a restart). It is NOT the Transient display qualifier: a
 * SECOND(Transient) that is resynchronising has run its start scripts and is monitored in full. During
 * a transition only `pre` stays on (outside STOP and WAIT): the application classes are being stopped
 * or started by the very scripts that run. WAIT in transition gives nothing, because prestart may not
 * have run yet.
 *
 * `customEnabled`: custom classes switched on with `errd enable "<class>"`; monitored in every state but
 * STOP. Built-in names in it are ignored (they follow the state).
 *
 * For exact switching around each script, use classesAroundScript().
 */
export function activeClassesFor(state: ModuleState, inTransition: boolean, customEnabled: Iterable<string> = []): Set<string> {
  if (state === 'STOP') return new Set();
  const out = new Set<string>();
  if (!inTransition) for (const c of STABLE_CLASSES[state]) out.add(c);
  else if (state !== 'WAIT') out.add('pre');
  for (const c of customEnabled) if (!isBuiltinClass(c)) out.add(c);
  return out;
}

/** The class a module script switches: `start_X` / `stop_X` for prim, both, second, sec; prestart / poststop for pre. */
export function scriptClass(script: string): { class: BuiltinClass; on: boolean } | undefined {
  if (script === 'prestart') return { class: 'pre', on: true };
  if (script === 'poststop') return { class: 'pre', on: false };
  const m = /^(start|stop)_(prim|both|second|sec)$/.exec(script);
  if (!m) return undefined;
  return { class: m[2] as BuiltinClass, on: m[1] === 'start' };
}

/**
 * The active classes around one script call, as the reference switches them: a stop script's class goes
 * off before it runs; a start script's class comes on after it ran (only if it succeeded: `ok`). prestart
 * switches `pre` on after it ran, poststop switches it off before it runs. Other scripts change nothing.
 * The engine calls it with phase 'before' just before running a script and 'after' just after.
 */
export function classesAroundScript(active: ReadonlySet<string>, script: string, phase: 'before' | 'after', ok = true): Set<string> {
  const out = new Set(active);
  const sw = scriptClass(script);
  if (!sw) return out;
  if (!sw.on && phase === 'before') out.delete(sw.class);
  if (sw.on && phase === 'after' && ok) out.add(sw.class);
  return out;
}

/** What a failing proc asks the engine for. A string that is no keyword is a handler executable. */
export type ErrdAction = 'restart' | 'stopstart' | 'stop' | 'noaction' | { handler: string };

const ACTION_KEYWORDS = ['restart', 'stopstart', 'stop', 'noaction'] as const;

/** `action="..."` → ErrdAction. An empty value is the reference default, stopstart. */
export function parseAction(action: string): ErrdAction {
  const a = action.trim();
  if (a === '') return 'stopstart';
  return (ACTION_KEYWORDS as readonly string[]).includes(a) ? (a as ErrdAction) : { handler: a };
}

export interface ActionRequest {
  /** The <proc> name. */
  proc: string;
  /** Its position in <errd> (names need not be unique). */
  index: number;
  action: ErrdAction;
  /** e.g. "Process myapp: 0 running, at least 1 expected". */
  reason: string;
  /** restart_services of the <proc>: the engine passes them to stop_xx/start_xx for a targeted restart. */
  restartServices?: string[];
}

/** The result of `systemctl is-active` for one unit, or why it could not be asked. */
export type ServiceCheck =
  | { kind: 'active' }
  | { kind: 'inactive'; state: string }
  | { kind: 'error'; message: string };

/** What the core remembers of one <proc> between polls. */
export interface ProcMemory {
  /** Its class is active (monitoring is armed). */
  active: boolean;
  /** Polls since activation, capped at start_after. */
  polls: number;
  /** In a failure episode: its action was requested and the count has not been back in range since. */
  failed: boolean;
  /** The operating error last logged (a service that cannot be checked), so it is logged once. */
  opError?: string;
}

export const INITIAL_MEMORY: ProcMemory = Object.freeze({ active: false, polls: 0, failed: false });

export type ProcCondition = 'ok' | 'failed' | 'inactive' | 'arming';

export interface ProcVerdict {
  index: number;
  name: string;
  class: string;
  service: boolean;
  /** Matching processes (0 or 1 for a service); null when it was not or could not be counted. */
  count: number | null;
  atleast: number;
  atmax: number;
  state: ProcCondition;
  /** Why it is failed, inactive or arming. */
  reason?: string;
}

export interface ErrdLog {
  level: 'E' | 'I';
  index: number;
  message: string;
}

export interface EvaluateInput {
  procs: readonly Proc[];
  activeClasses: ReadonlySet<string>;
  /** Index-aligned with procs; a missing entry is INITIAL_MEMORY. */
  memory: readonly (ProcMemory | undefined)[];
  processes: readonly ProcessInfo[];
  /** systemctl answers by unit name, for the active service procs. */
  services?: ReadonlyMap<string, ServiceCheck>;
}

export interface EvaluateOutput {
  memory: ProcMemory[];
  verdicts: ProcVerdict[];
  /** At most one per proc and failure episode. */
  actions: ActionRequest[];
  /** Failures, recoveries and operating errors, each once. */
  logs: ErrdLog[];
}

const regexCache = new Map<string, RegExp>();

function ere(source: string): RegExp {
  let r = regexCache.get(source);
  if (!r) {
    r = compileExtendedRegex(source);
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(source, r);
  }
  return r;
}

/**
 * Whether a process matches a (non-service) <proc>: its command name equals `name`, or matches
 * `nameregex` when set (a search, like regexec: anchor it with ^…$ to match whole names), and its
 * argument string matches `argregex` when set. Zombies never match. Throws on an invalid regex.
 */
export function matchesProc(proc: Proc, p: ProcessInfo): boolean {
  if (isDeadProcess(p)) return false;
  if (proc.nameregex !== undefined) {
    if (!ere(proc.nameregex).test(p.name)) return false;
  } else if (p.name !== proc.name) return false;
  return proc.argregex === undefined || ere(proc.argregex).test(p.args);
}

/** How many processes of the snapshot match the <proc>. */
export function countMatches(proc: Proc, processes: readonly ProcessInfo[]): number {
  let n = 0;
  for (const p of processes) if (matchesProc(proc, p)) n++;
  return n;
}

/** The failure reason for a count, or null when it is in range (-1 disables a bound). */
export function countFailure(proc: Pick<Proc, 'name' | 'atleast' | 'atmax' | 'service'>, count: number, detail?: string): string | null {
  const what = `${proc.service ? 'Service' : 'Process'} ${proc.name}: ${count} running${detail ? ` (${detail})` : ''}`;
  if (proc.atleast >= 0 && count < proc.atleast) return `${what}, at least ${proc.atleast} expected`;
  if (proc.atmax >= 0 && count > proc.atmax) return `${what}, at most ${proc.atmax} expected`;
  return null;
}

/**
 * Arms and disarms procs for a new set of active classes: a proc whose class went off forgets everything;
 * one whose class came on starts its start_after count and a fresh failure episode. With `rearm`, procs
 * already active are re-armed too (after a restart the engine did not switch classes around). `armed`
 * lists the procs that were (re)armed.
 */
export function applyActiveClasses(
  procs: readonly Proc[],
  memory: readonly (ProcMemory | undefined)[],
  activeClasses: ReadonlySet<string>,
  options: { rearm?: boolean } = {},
): { memory: ProcMemory[]; armed: number[] } {
  const armed: number[] = [];
  const out = procs.map((proc, i): ProcMemory => {
    const m = memory[i] ?? INITIAL_MEMORY;
    if (!activeClasses.has(proc.class)) return { ...INITIAL_MEMORY };
    if (m.active && !options.rearm) return { ...m };
    armed.push(i);
    return { active: true, polls: 0, failed: false };
  });
  return { memory: out, armed };
}

/**
 * One poll. For each proc: inactive when its class is off; otherwise the poll is counted, and until
 * start_after polls have been counted since activation the proc is 'arming' (counted, not judged). Then
 * a count out of range starts a failure episode and requests the proc's action once; the episode ends
 * (and the proc is re-armed) when the count is back in range, or on re-activation. A service that cannot
 * be checked is 'failed' with the reason, logged once, and requests nothing: an operating error is not
 * an application failure.
 */
export function evaluate(input: EvaluateInput): EvaluateOutput {
  const { memory: armedMemory } = applyActiveClasses(input.procs, input.memory, input.activeClasses);
  const memory: ProcMemory[] = [];
  const verdicts: ProcVerdict[] = [];
  const actions: ActionRequest[] = [];
  const logs: ErrdLog[] = [];

  input.procs.forEach((proc, index) => {
    const m: ProcMemory = { ...(armedMemory[index] ?? INITIAL_MEMORY) };
    const base = { index, name: proc.name, class: proc.class, service: proc.service, atleast: proc.atleast, atmax: proc.atmax };

    // Count (also for inactive procs, so `errd list` shows the numbers; services only when asked).
    let count: number | null = null;
    let detail: string | undefined;
    let opError: string | undefined;
    let unchecked = false;
    if (proc.service) {
      const s = input.services?.get(proc.name);
      if (!s) unchecked = true;
      else if (s.kind === 'error') opError = `Service ${proc.name}: cannot be checked: ${s.message}`;
      else {
        count = s.kind === 'active' ? 1 : 0;
        detail = s.kind === 'active' ? 'active' : s.state;
      }
    } else {
      try {
        count = countMatches(proc, input.processes);
      } catch (e) {
        opError = `Process ${proc.name}: invalid regular expression: ${(e as Error).message}`;
      }
    }

    if (!m.active) {
      memory.push(m);
      verdicts.push({ ...base, count, state: 'inactive', reason: `class ${proc.class} not active` });
      return;
    }
    if (unchecked) {
      // The shell did not ask systemd about this unit in this poll (its class came on meanwhile): no news.
      memory.push(m);
      verdicts.push({ ...base, count, state: m.failed ? 'failed' : 'arming', reason: `Service ${proc.name}: not checked yet` });
      return;
    }
    m.polls = Math.min(m.polls + 1, proc.startAfter);

    if (opError !== undefined) {
      if (m.opError !== opError) logs.push({ level: 'E', index, message: opError });
      m.opError = opError;
      memory.push(m);
      verdicts.push({ ...base, count, state: 'failed', reason: opError });
      return;
    }
    if (m.opError !== undefined) {
      logs.push({ level: 'I', index, message: `${proc.service ? 'Service' : 'Process'} ${proc.name}: can be checked again` });
      delete m.opError;
    }
    const n = count ?? 0;
    if (m.polls < proc.startAfter) {
      memory.push(m);
      verdicts.push({ ...base, count, state: 'arming', reason: `start_after: poll ${m.polls} of ${proc.startAfter}` });
      return;
    }
    const failure = countFailure(proc, n, proc.service ? detail : undefined);
    if (failure === null) {
      if (m.failed) {
        logs.push({ level: 'I', index, message: `${proc.service ? 'Service' : 'Process'} ${proc.name}: ${n} running, back in range` });
      }
      m.failed = false;
      memory.push(m);
      verdicts.push({ ...base, count, state: 'ok' });
      return;
    }
    if (!m.failed) {
      m.failed = true;
      logs.push({ level: 'E', index, message: failure });
      const req: ActionRequest = { proc: proc.name, index, action: parseAction(proc.action), reason: failure };
      if (proc.restartServices && proc.restartServices.length > 0) req.restartServices = [...proc.restartServices];
      actions.push(req);
    }
    memory.push(m);
    verdicts.push({ ...base, count, state: 'failed', reason: failure });
  });
  return { memory, verdicts, actions, logs };
}

/** The unit names of the service procs that are active (armed) now: the ones the shell must ask systemd about. */
export function servicesToCheck(procs: readonly Proc[], activeClasses: ReadonlySet<string>): string[] {
  return [...new Set(procs.filter((p) => p.service && activeClasses.has(p.class)).map((p) => p.name))];
}
