// Runs module scripts (reference §2.10, §2.15): one executable per hook in the module's bin directory, run
// without a shell in its own process group, output into one userlog file per run, a timeout that kills the
// whole group (SIGTERM, then SIGKILL after a grace), and the graceful-then-force stop protocol.
//
// Limits (documented, not bugs): a script that escapes its process group (setsid, daemon()) is not killed on
// timeout; without cgroup.kill nothing can find it reliably. Services must be watched by checkers, not by
// their start script. The runner returns when the script itself exits; background children keep running.
import { spawn } from 'node:child_process';
import { statSync, accessSync, constants as fsc } from 'node:fs';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { StayupError } from '../errors/stayup-error.ts';
import { processGroupMembers, signalGroup } from './proc.ts';
import { createUserlog, pruneUserlogs } from './userlog.ts';
import { ScriptOutput, type LineCallback, type OutputStream } from './output.ts';
import type { LogLevel } from '../logs/module-log.ts';

/** Reference defaults [UG §13.8.3]: 300 s for the graceful stop, 300 s for the forced one. */
export const DEFAULT_NICE_STOP_TIMEOUT_MS = 300_000;
export const DEFAULT_FORCE_STOP_TIMEOUT_MS = 300_000;
/** Reference default `userlogsize="2048"` (KB). */
export const DEFAULT_USERLOG_MAX_BYTES = 2048 * 1024;
export const DEFAULT_USERLOG_KEEP = 10;
export const DEFAULT_KILL_GRACE_MS = 5_000;
export const DEFAULT_DRAIN_MS = 250;

/** The action argument every script receives (reference §2.15). */
export type ScriptAction = 'start' | 'stop' | 'stopstart' | 'stopwait';

export interface ScriptResult {
  script: string;
  /** The exit code, or null when the script was killed by a signal, did not run, or is missing. */
  exitCode: number | null;
  /** The signal that ended the script (e.g. 'SIGKILL'), or null. */
  signal: string | null;
  /** The script ran past its timeout and its process group was killed. */
  timedOut: boolean;
  durationMs: number;
  /** Absolute path of this run's output file; null when the script is missing or logging is off. */
  userlogFile: string | null;
  /** No such script in the bin directory: counts as success, like the reference's optional scripts. */
  missing: boolean;
  /** The run was cancelled through `signal` (the group was killed like on a timeout). */
  aborted?: boolean;
  /** Why the script could not be started (exitCode is then 126 or 127, like a shell's), or a userlog problem. */
  error?: string;
  /** PID (= process group id) of the script, when it started. */
  pid?: number;
}

export interface RunScriptOptions {
  module: string;
  /** Script name, e.g. 'start_prim': a file in binDir. */
  script: string;
  binDir: string;
  /** e.g. [current, next, action] or ['force', current, next, action]. */
  args: string[];
  /** The complete environment (see buildScriptEnv); nothing else is inherited. */
  env: Record<string, string>;
  timeoutMs: number;
  /** Directory of the userlog files (the module's var directory). */
  userlogDir: string;
  /** Cap of one userlog file (userlogsize KB × 1024). 0 = logging="none": output is discarded. */
  userlogMaxBytes: number;
  signal?: AbortSignal;
  /** Each output line (without its newline), within the userlog cap. Not called when logging is off. */
  onLine?: LineCallback;
  /** Called once the script is running. */
  onStart?: (info: { pid: number; userlogFile: string | null }) => void;
  /** Userlog files kept per script, this run's included. Default 10. */
  userlogKeep?: number;
  /** Time between SIGTERM and SIGKILL on a timeout or abort. Default 5 s. */
  killGraceMs?: number;
  /** How long to wait, after the script exits, for its pipes to close before handing them to a relay. */
  drainMs?: number;
  /** Working directory. Default: binDir. */
  cwd?: string;
}

const SCRIPT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** True when the run counts as a success: exit 0 without timeout or abort, or an absent script. */
export function scriptOk(r: ScriptResult): boolean {
  return r.missing || (r.exitCode === 0 && !r.timedOut && !r.aborted);
}

/** A short human description of how a run ended, e.g. "exit 3 (1.20 s)". */
export function describeResult(r: ScriptResult): string {
  const secs = `${(r.durationMs / 1000).toFixed(2)} s`;
  if (r.missing) return 'absent';
  if (r.timedOut) return `timed out after ${secs} and was killed${r.signal ? ` (${r.signal})` : ''}`;
  if (r.aborted) return `cancelled after ${secs}${r.signal ? ` (${r.signal})` : ''}`;
  if (r.error && r.exitCode !== null && r.exitCode >= 126 && r.pid === undefined) return `cannot run: ${r.error}`;
  if (r.signal) return `killed by ${r.signal} (${secs})`;
  return `exit ${r.exitCode} (${secs})`;
}

/** The registry error for a failed run (SCRIPT_TIMEOUT or SCRIPT_FAILED), or null for a success. */
export function scriptError(module: string, r: ScriptResult): StayupError | null {
  if (scriptOk(r)) return null;
  const details = {
    module,
    script: r.script,
    exitCode: r.exitCode,
    signal: r.signal,
    userlog: r.userlogFile,
  };
  return new StayupError(
    r.timedOut ? 'SCRIPT_TIMEOUT' : 'SCRIPT_FAILED',
    `module ${module}: script ${r.script} ${describeResult(r)}`,
    { details },
  );
}

function ended(r: Readable): Promise<void> {
  if (r.readableEnded || r.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => resolve();
    r.once('end', done);
    r.once('close', done);
    r.once('error', done);
  });
}

/**
 * Runs `binDir/script args…` and resolves when the script itself has exited (or was killed). Never rejects
 * for a script failure: the result says how it ended. Throws BAD_ARGUMENT for an unsafe script name.
 */
export async function runScript(opts: RunScriptOptions): Promise<ScriptResult> {
  if (!SCRIPT_NAME.test(opts.script)) {
    throw new StayupError('BAD_ARGUMENT', `invalid script name ${JSON.stringify(opts.script)}`);
  }
  const path = join(opts.binDir, opts.script);
  const base: ScriptResult = {
    script: opts.script,
    exitCode: null,
    signal: null,
    timedOut: false,
    durationMs: 0,
    userlogFile: null,
    missing: false,
  };

  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ...base, missing: true };
    return { ...base, exitCode: 126, error: `${path}: ${(e as Error).message}` };
  }
  if (!isFile) return { ...base, exitCode: 126, error: `${path} is not a regular file` };
  try {
    accessSync(path, fsc.X_OK);
  } catch {
    return { ...base, exitCode: 126, error: `${path} is not executable` };
  }
  if (opts.signal?.aborted) return { ...base, aborted: true };

  // One userlog per run. If it cannot be created, the script still runs (a stop must not fail because the
  // log directory is broken) and the result says why there is no userlog.
  let output: ScriptOutput | null = null;
  let userlogFile: string | null = null;
  let userlogError: string | undefined;
  if (opts.userlogMaxBytes > 0) {
    try {
      const { fd, path: ulog } = createUserlog(opts.userlogDir, opts.script);
      userlogFile = ulog;
      output = new ScriptOutput(fd, opts.userlogMaxBytes, opts.onLine);
      pruneUserlogs(opts.userlogDir, opts.script, opts.userlogKeep ?? DEFAULT_USERLOG_KEEP);
    } catch (e) {
      userlogError = `cannot create a userlog in ${opts.userlogDir}: ${(e as Error).message}`;
    }
  }

  const started = performance.now();
  const child = spawn(path, opts.args, {
    cwd: opts.cwd ?? opts.binDir,
    env: opts.env,
    detached: true,
    stdio: ['ignore', output ? 'pipe' : 'ignore', output ? 'pipe' : 'ignore'],
    windowsHide: true,
  });

  const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null } | { err: Error }>((resolve) => {
    child.once('exit', (code, sig) => resolve({ code, sig }));
    child.once('error', (err) => resolve({ err }));
  });

  const pid = child.pid;
  if (pid === undefined) {
    const r = await exited;
    const err = 'err' in r ? r.err : new Error('spawn failed');
    const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126;
    output?.note(`stayup: cannot run ${path}: ${err.message}\n`);
    output?.finish({});
    return {
      ...base,
      exitCode: code,
      durationMs: performance.now() - started,
      userlogFile,
      error: err.message,
    };
  }

  if (output) {
    output.attach('stdout', child.stdout!);
    output.attach('stderr', child.stderr!);
  }
  try {
    opts.onStart?.({ pid, userlogFile });
  } catch {
    // A faulty callback must not break the run.
  }

  let leaderGone = false;
  let killReason: 'timeout' | 'abort' | null = null;
  let killing: Promise<void> | null = null;
  const grace = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;

  const killGroup = async (): Promise<void> => {
    signalGroup(pid, 'SIGTERM');
    const deadline = performance.now() + grace;
    for (;;) {
      if (leaderGone && processGroupMembers(pid).length === 0) return;
      const left = deadline - performance.now();
      if (left <= 0) break;
      await sleep(Math.min(50, left));
    }
    signalGroup(pid, 'SIGKILL');
  };
  const startKill = (reason: 'timeout' | 'abort'): void => {
    if (killReason || leaderGone) return;
    killReason = reason;
    killing = killGroup().catch(() => {});
  };

  // setTimeout fires at once for delays above 2^31-1 ms; such a timeout means "practically never".
  const timer = setTimeout(() => startKill('timeout'), Math.min(Math.max(0, opts.timeoutMs), 2 ** 31 - 1));
  const onAbort = (): void => startKill('abort');
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const end = await exited;
  leaderGone = true;
  const durationMs = performance.now() - started;
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  if (killing) await killing;

  if (output) {
    const streams = { stdout: child.stdout!, stderr: child.stderr! } satisfies Record<OutputStream, Readable>;
    const drain = opts.drainMs ?? DEFAULT_DRAIN_MS;
    const ac = new AbortController();
    await Promise.race([
      Promise.all([ended(streams.stdout), ended(streams.stderr)]),
      sleep(drain, undefined, { signal: ac.signal }).catch(() => {}),
    ]);
    ac.abort();
    if (killReason === 'timeout') {
      output.note(`\n[stayup: ${opts.script} timed out after ${opts.timeoutMs} ms: process group killed]\n`);
    }
    output.finish(streams);
    if (output.error) userlogError = `userlog write failed: ${output.error}`;
  }

  const result: ScriptResult = {
    ...base,
    exitCode: 'err' in end ? null : end.code,
    signal: 'err' in end ? null : end.sig,
    timedOut: killReason === 'timeout',
    durationMs,
    userlogFile,
    pid,
  };
  if (killReason === 'abort') result.aborted = true;
  if ('err' in end) result.error = end.err.message;
  else if (userlogError) result.error = userlogError;
  return result;
}

export interface StopScriptOptions extends Omit<RunScriptOptions, 'args' | 'timeoutMs'> {
  /** [current, next, action]; the force call gets ['force', ...args]. */
  args: string[];
  niceStopTimeoutMs: number;
  forceStopTimeoutMs: number;
  /** Skip the graceful call and run only `stop_xx force …` (the reference's WAIT→STOP). */
  forceOnly?: boolean;
}

export interface StopScriptResult {
  /** The graceful call; null with forceOnly. */
  graceful: ScriptResult | null;
  /** The force call; null when the script is missing or the run was cancelled before it. */
  force: ScriptResult | null;
  /** The last call that ran succeeded (a failed graceful stop rescued by the force call is ok). */
  ok: boolean;
}

/**
 * The reference's stop protocol: `stop_xx cur next action` within nicestoptimeout, then
 * `stop_xx force cur next action` within forcestoptimeout. A failed or timed-out graceful call never
 * prevents the force call; a timeout kills the process group.
 */
export async function stopScript(opts: StopScriptOptions): Promise<StopScriptResult> {
  const { niceStopTimeoutMs, forceStopTimeoutMs, forceOnly, args, ...common } = opts;
  let graceful: ScriptResult | null = null;
  if (!forceOnly) {
    graceful = await runScript({ ...common, args, timeoutMs: niceStopTimeoutMs });
    if (graceful.missing) return { graceful, force: null, ok: true };
    if (graceful.aborted || opts.signal?.aborted) return { graceful, force: null, ok: false };
  }
  const force = await runScript({ ...common, args: ['force', ...args], timeoutMs: forceStopTimeoutMs });
  return { graceful, force, ok: scriptOk(force) };
}

/** The part of a module log the transition runner writes to (ModuleLog satisfies it). */
export interface ScriptLogSink {
  append(level: LogLevel, source: string, message: string, fields?: Record<string, unknown>): unknown;
}

/** One entry of a transition's script list (the order tables of reference §2.15). */
export interface ScriptCall {
  script: string;
  /**
   * 'start': one call, a failure ends the sequence. 'stop': the stop protocol (graceful then force), a
   * failure is logged and the sequence goes on. 'hook': one call, a failure is logged and the sequence goes
   * on. Default from the name: start_* → start, stop_* → stop, anything else (transition, prestart,
   * poststop…) → hook.
   */
  kind?: 'start' | 'stop' | 'hook';
  /** Stop calls only: run only `stop_xx force …` (WAIT→STOP). */
  forceOnly?: boolean;
  /** Overrides whether a failure of this call ends the sequence. */
  stopOnFailure?: boolean;
}

export interface TransitionOptions {
  module: string;
  binDir: string;
  env: Record<string, string>;
  userlogDir: string;
  userlogMaxBytes: number;
  userlogKeep?: number;
  killGraceMs?: number;
  drainMs?: number;
  signal?: AbortSignal;
  /** The state the node leaves, the one it goes to, and the action (the three script arguments). */
  current: string;
  next: string;
  action: ScriptAction;
  /** Timeout of start scripts and hooks. */
  scriptTimeoutMs: number;
  niceStopTimeoutMs: number;
  forceStopTimeoutMs: number;
  /** Module log: S records for each call's start and end, E for failures, I for absent scripts. */
  log?: ScriptLogSink;
  onLine?: (script: string, stream: OutputStream, line: string) => void;
}

export interface TransitionStep {
  call: ScriptCall;
  kind: 'start' | 'stop' | 'hook';
  /** Every call made for this entry: one, or two for a stop (graceful, force). */
  results: ScriptResult[];
  ok: boolean;
}

export interface TransitionResult {
  /** No step that ends the sequence failed, and nothing was cancelled. */
  ok: boolean;
  steps: TransitionStep[];
  /** The step that ended the sequence early, if any. */
  failedStep: TransitionStep | null;
  /** Every step that failed, including stops and hooks that did not end the sequence. */
  failures: TransitionStep[];
  aborted: boolean;
}

export function scriptKind(call: ScriptCall): 'start' | 'stop' | 'hook' {
  if (call.kind) return call.kind;
  if (call.script.startsWith('start_')) return 'start';
  if (call.script.startsWith('stop_')) return 'stop';
  return 'hook';
}

/**
 * Runs the script calls of one transition in order. A failed start call ends the sequence; failed stop
 * calls and hooks are logged and the sequence goes on (a failed stop must not prevent the force call or
 * the later stops). Each call's start and end go into the module log.
 */
export async function runTransitionScripts(
  opts: TransitionOptions,
  calls: readonly ScriptCall[],
): Promise<TransitionResult> {
  const baseArgs = [opts.current, opts.next, opts.action];
  const steps: TransitionStep[] = [];
  const log = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    try {
      opts.log?.append(level, 'script', message, fields);
    } catch {
      // Logging problems must not stop a transition.
    }
  };
  const common = (script: string): Omit<RunScriptOptions, 'args' | 'timeoutMs'> => ({
    module: opts.module,
    script,
    binDir: opts.binDir,
    env: opts.env,
    userlogDir: opts.userlogDir,
    userlogMaxBytes: opts.userlogMaxBytes,
    ...(opts.userlogKeep !== undefined ? { userlogKeep: opts.userlogKeep } : {}),
    ...(opts.killGraceMs !== undefined ? { killGraceMs: opts.killGraceMs } : {}),
    ...(opts.drainMs !== undefined ? { drainMs: opts.drainMs } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onLine ? { onLine: (s: OutputStream, l: string) => opts.onLine!(script, s, l) } : {}),
  });

  const once = async (script: string, args: string[], timeoutMs: number): Promise<ScriptResult> => {
    const label = args[0] === 'force' ? `${script} force` : script;
    const r = await runScript({
      ...common(script),
      args,
      timeoutMs,
      onStart: ({ pid, userlogFile }) =>
        log('S', `Script ${label}${userlogFile ? ` > ${basename(userlogFile)}` : ''}`, {
          script,
          args,
          pid,
          userlog: userlogFile,
        }),
    });
    const fields = {
      script,
      args,
      exitCode: r.exitCode,
      signal: r.signal,
      timedOut: r.timedOut,
      durationMs: Math.round(r.durationMs),
      userlog: r.userlogFile,
    };
    if (r.missing) log('I', `Script ${label} absent: skipped`, { script, args });
    else if (scriptOk(r)) log('S', `Script ${label} ended: ${describeResult(r)}`, fields);
    else {
      const see = r.userlogFile ? `, see ${basename(r.userlogFile)}` : '';
      log('E', `Script ${label} failed: ${describeResult(r)}${see}`, fields);
    }
    return r;
  };

  const done = (ok: boolean, failedStep: TransitionStep | null, aborted: boolean): TransitionResult => ({
    ok,
    steps,
    failedStep,
    failures: steps.filter((s) => !s.ok),
    aborted,
  });

  for (const call of calls) {
    if (opts.signal?.aborted) return done(false, null, true);
    const kind = scriptKind(call);
    let results: ScriptResult[];
    let ok: boolean;
    if (kind === 'stop') {
      results = [];
      let graceful: ScriptResult | null = null;
      if (!call.forceOnly) {
        graceful = await once(call.script, baseArgs, opts.niceStopTimeoutMs);
        results.push(graceful);
      }
      if (graceful?.missing) ok = true;
      else if (opts.signal?.aborted) ok = false;
      else {
        const force = await once(call.script, ['force', ...baseArgs], opts.forceStopTimeoutMs);
        results.push(force);
        ok = scriptOk(force);
      }
    } else {
      const r = await once(call.script, baseArgs, opts.scriptTimeoutMs);
      results = [r];
      ok = scriptOk(r);
    }
    const step: TransitionStep = { call, kind, results, ok };
    steps.push(step);
    if (results.some((r) => r.aborted)) return done(false, null, true);
    if (!ok && (call.stopOnFailure ?? kind === 'start')) return done(false, step, false);
  }
  return done(true, null, false);
}
