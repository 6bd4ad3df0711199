import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stopScript, runTransitionScripts, scriptKind, type StopScriptOptions, type TransitionOptions } from '../../src/scripts/runner.ts';
import { ModuleLog, tail } from '../../src/logs/module-log.ts';
import { scriptDirs, writeScript, baseEnv, type ScriptDirs } from './helpers.ts';

/** Each script appends "<name> <args>" to a shared calls file, so the order of calls can be checked. */
function recorder(d: ScriptDirs): { file: string; calls: () => string[] } {
  const file = join(d.root, 'calls');
  return { file, calls: () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1) : []) };
}

function stopOpts(d: ScriptDirs, extra: Partial<StopScriptOptions> = {}): StopScriptOptions {
  return {
    module: 'm1',
    script: 'stop_prim',
    binDir: d.bin,
    args: ['PRIM', 'STOP', 'stop'],
    env: baseEnv,
    userlogDir: d.log,
    userlogMaxBytes: 64 * 1024,
    niceStopTimeoutMs: 60_000,
    forceStopTimeoutMs: 60_000,
    killGraceMs: 300,
    ...extra,
  };
}

test('a stop runs gracefully first, then with force as first argument', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  writeScript(d.bin, 'stop_prim', `echo "stop_prim $*" >> ${rec.file}`);
  const r = await stopScript(stopOpts(d));
  assert.deepEqual(rec.calls(), ['stop_prim PRIM STOP stop', 'stop_prim force PRIM STOP stop']);
  assert.equal(r.ok, true);
  assert.equal(r.graceful?.exitCode, 0);
  assert.equal(r.force?.exitCode, 0);
  assert.notEqual(r.graceful?.userlogFile, r.force?.userlogFile, 'one userlog per call');
});

test('a graceful stop that hangs is killed at nicestoptimeout and the force call still runs', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  writeScript(d.bin, 'stop_prim', `echo "stop_prim $*" >> ${rec.file}\n[ "$1" = force ] && exit 0\nsleep 1000`);
  const r = await stopScript(stopOpts(d, { niceStopTimeoutMs: 300 }));
  assert.equal(r.graceful?.timedOut, true);
  assert.equal(r.force?.timedOut, false);
  assert.equal(r.force?.exitCode, 0);
  assert.equal(r.ok, true, 'the force call rescued the stop');
  assert.deepEqual(rec.calls(), ['stop_prim PRIM STOP stop', 'stop_prim force PRIM STOP stop']);
});

test('a failing graceful stop does not prevent the force call; a hanging force call times out too', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  writeScript(d.bin, 'stop_prim', `echo "stop_prim $*" >> ${rec.file}\n[ "$1" = force ] && sleep 1000\nexit 4`);
  const r = await stopScript(stopOpts(d, { forceStopTimeoutMs: 300 }));
  assert.equal(r.graceful?.exitCode, 4);
  assert.equal(r.force?.timedOut, true);
  assert.equal(r.ok, false);
  assert.deepEqual(rec.calls(), ['stop_prim PRIM STOP stop', 'stop_prim force PRIM STOP stop']);
});

test('forceOnly skips the graceful call; a missing stop script is fine', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  writeScript(d.bin, 'stop_prim', `echo "stop_prim $*" >> ${rec.file}`);
  const f = await stopScript(stopOpts(d, { forceOnly: true, args: ['WAIT', 'STOP', 'stop'] }));
  assert.equal(f.graceful, null);
  assert.equal(f.ok, true);
  assert.deepEqual(rec.calls(), ['stop_prim force WAIT STOP stop']);
  const m = await stopScript(stopOpts(d, { script: 'stop_both' }));
  assert.equal(m.graceful?.missing, true);
  assert.equal(m.force, null);
  assert.equal(m.ok, true);
});

function transitionOpts(d: ScriptDirs, log: ModuleLog, extra: Partial<TransitionOptions> = {}): TransitionOptions {
  return {
    module: 'm1',
    binDir: d.bin,
    env: baseEnv,
    userlogDir: d.log,
    userlogMaxBytes: 64 * 1024,
    killGraceMs: 300,
    current: 'WAIT',
    next: 'ALONE',
    action: 'start',
    scriptTimeoutMs: 60_000,
    niceStopTimeoutMs: 60_000,
    forceStopTimeoutMs: 60_000,
    log,
    ...extra,
  };
}

test('scriptKind follows the name unless told', () => {
  assert.equal(scriptKind({ script: 'start_prim' }), 'start');
  assert.equal(scriptKind({ script: 'stop_sec' }), 'stop');
  assert.equal(scriptKind({ script: 'transition' }), 'hook');
  assert.equal(scriptKind({ script: 'prestart', kind: 'start' }), 'start');
});

test('start scripts run in order with the transition arguments and stop at the first failure', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  const log = new ModuleLog('m1', { dir: join(d.root, 'log'), stderr: false });
  for (const s of ['transition', 'start_prim', 'start_sec']) writeScript(d.bin, s, `echo "${s} $*" >> ${rec.file}`);
  writeScript(d.bin, 'start_both', `echo "start_both $*" >> ${rec.file}\necho "cannot mount" >&2\nexit 2`);
  const lines: string[] = [];
  const r = await runTransitionScripts(transitionOpts(d, log, { onLine: (s, st, l) => lines.push(`${s}/${st}: ${l}`) }), [
    { script: 'transition' },
    { script: 'start_both' },
    { script: 'start_prim' },
    { script: 'start_sec' },
  ]);
  assert.equal(r.ok, false);
  assert.equal(r.aborted, false);
  assert.equal(r.failedStep?.call.script, 'start_both');
  assert.deepEqual(r.failures.map((s) => s.call.script), ['start_both']);
  assert.deepEqual(rec.calls(), ['transition WAIT ALONE start', 'start_both WAIT ALONE start']);
  assert.deepEqual(lines, ['start_both/stderr: cannot mount']);
  const records = tail('m1', { dir: join(d.root, 'log') });
  assert.deepEqual(
    records.map((x) => `${x.level} ${x.message.replace(/userlog_\S+/, 'U').replace(/\(\d+\.\d\d s\)/, '(T)')}`),
    [
      'S Script transition > U',
      'S Script transition ended: exit 0 (T)',
      'S Script start_both > U',
      'E Script start_both failed: exit 2 (T), see U',
    ],
  );
  assert.ok(records.every((x) => x.source === 'script'));
  assert.equal(records[3]!.fields?.exitCode, 2);
});

test('stop scripts all run, each graceful then forced, even when some fail; absent ones are logged verbosely', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  const log = new ModuleLog('m1', { dir: join(d.root, 'log'), stderr: false });
  writeScript(d.bin, 'stop_sec', `echo "stop_sec $*" >> ${rec.file}\n[ "$1" = force ] || sleep 1000\nexit 1`);
  writeScript(d.bin, 'stop_prim', `echo "stop_prim $*" >> ${rec.file}`);
  writeScript(d.bin, 'transition', `echo "transition $*" >> ${rec.file}`);
  const r = await runTransitionScripts(transitionOpts(d, log, { current: 'ALONE', next: 'WAIT', action: 'stopwait', niceStopTimeoutMs: 300 }), [
    { script: 'stop_sec' },
    { script: 'stop_prim' },
    { script: 'stop_both' },
    { script: 'transition' },
  ]);
  assert.deepEqual(rec.calls(), [
    'stop_sec ALONE WAIT stopwait',
    'stop_sec force ALONE WAIT stopwait',
    'stop_prim ALONE WAIT stopwait',
    'stop_prim force ALONE WAIT stopwait',
    'transition ALONE WAIT stopwait',
  ]);
  assert.equal(r.ok, true, 'failed stops do not end the sequence');
  assert.deepEqual(r.failures.map((s) => s.call.script), ['stop_sec']);
  assert.equal(r.steps[0]!.results[0]!.timedOut, true);
  assert.equal(r.steps[0]!.results[1]!.exitCode, 1);
  assert.deepEqual(r.steps[2]!.results.map((x) => x.missing), [true]);
  const normal = tail('m1', { dir: join(d.root, 'log') }).map((x) => x.message);
  assert.ok(normal.some((m) => /^Script stop_sec failed: timed out after/.test(m)));
  assert.ok(normal.some((m) => /^Script stop_sec force failed: exit 1/.test(m)));
  assert.ok(normal.some((m) => /^Script stop_prim force > userlog_/.test(m)));
  assert.ok(!normal.some((m) => m.includes('stop_both')), 'absent scripts are not in the normal log');
  const verbose = tail('m1', { dir: join(d.root, 'log'), verbose: true }).map((x) => `${x.level} ${x.message}`);
  assert.ok(verbose.includes('I Script stop_both absent: skipped'));
});

test('WAIT→STOP: force-only stop calls, then poststop and transition', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  const log = new ModuleLog('m1', { dir: join(d.root, 'log'), stderr: false });
  for (const s of ['stop_sec', 'stop_prim', 'poststop', 'transition']) writeScript(d.bin, s, `echo "${s} $*" >> ${rec.file}`);
  const r = await runTransitionScripts(transitionOpts(d, log, { current: 'WAIT', next: 'STOP', action: 'stop' }), [
    { script: 'stop_sec', forceOnly: true },
    { script: 'stop_prim', forceOnly: true },
    { script: 'poststop' },
    { script: 'transition' },
  ]);
  assert.equal(r.ok, true);
  assert.deepEqual(rec.calls(), [
    'stop_sec force WAIT STOP stop',
    'stop_prim force WAIT STOP stop',
    'poststop WAIT STOP stop',
    'transition WAIT STOP stop',
  ]);
});

test('a cancelled transition stops where it is', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const rec = recorder(d);
  const log = new ModuleLog('m1', { dir: join(d.root, 'log'), stderr: false });
  writeScript(d.bin, 'start_both', `echo "start_both $*" >> ${rec.file}\necho up\nsleep 1000`);
  writeScript(d.bin, 'start_prim', `echo "start_prim $*" >> ${rec.file}`);
  const ac = new AbortController();
  const r = await runTransitionScripts(
    transitionOpts(d, log, { signal: ac.signal, onLine: (_s, _st, l) => l === 'up' && ac.abort() }),
    [{ script: 'start_both' }, { script: 'start_prim' }],
  );
  assert.equal(r.aborted, true);
  assert.equal(r.ok, false);
  assert.deepEqual(rec.calls(), ['start_both WAIT ALONE start']);
});
