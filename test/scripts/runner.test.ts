import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { runScript, scriptOk, scriptError, describeResult, type RunScriptOptions } from '../../src/scripts/runner.ts';
import { buildScriptEnv } from '../../src/scripts/environment.ts';
import { truncationMarker } from '../../src/scripts/output.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { scriptDirs, writeScript, waitFor, readPid, killPid, isProcessAlive, baseEnv, type ScriptDirs } from './helpers.ts';

function opts(d: ScriptDirs, script: string, extra: Partial<RunScriptOptions> = {}): RunScriptOptions {
  return {
    module: 'm1',
    script,
    binDir: d.bin,
    args: ['ALONE', 'PRIM', 'start'],
    env: baseEnv,
    timeoutMs: 60_000,
    userlogDir: d.log,
    userlogMaxBytes: 64 * 1024,
    killGraceMs: 500,
    ...extra,
  };
}

const ULOG = /^userlog_\d{4}-\d\d-\d\dT\d{6}\.\d{3}(\.\d+)?_start_prim\.ulog$/;

test('the script gets its arguments and exactly the environment it is given', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const env = buildScriptEnv({
    module: 'm1',
    safeDir: join(d.root, 'safe'),
    userBinDir: d.bin,
    userConfDir: join(d.root, 'conf'),
    varDir: join(d.root, 'node'),
    userVarDir: d.log,
    vars: [{ name: 'DB_PORT', value: '5432' }, { name: 'GREETING', value: 'hello  world $HOME "q"' }],
    parentEnv: { PATH: '/usr/bin:/bin', SECRET_TOKEN: 'hunter2', LANG: 'C.UTF-8' },
  });
  const out = join(d.root, 'seen');
  // /proc/$$/environ is the environment the script was exec'd with, untouched by the shell.
  writeScript(d.bin, 'start_prim', `for a in "$@"; do printf '%s\\n' "$a"; done > ${out}.args\ncat /proc/$$/environ > ${out}.env\necho started`);
  const r = await runScript(opts(d, 'start_prim', { env, args: ['force', 'SECOND', 'ALONE', 'stop'] }));
  assert.equal(r.exitCode, 0);
  assert.equal(r.signal, null);
  assert.equal(r.timedOut, false);
  assert.equal(r.missing, false);
  assert.ok(scriptOk(r));
  assert.ok(typeof r.pid === 'number');
  assert.deepEqual(readFileSync(`${out}.args`, 'utf8').split('\n').slice(0, -1), ['force', 'SECOND', 'ALONE', 'stop']);
  const seen = Object.fromEntries(
    readFileSync(`${out}.env`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  assert.deepEqual(seen, env);
  assert.equal(seen.GREETING, 'hello  world $HOME "q"');
  assert.equal(seen.SECRET_TOKEN, undefined);
  assert.equal(readFileSync(r.userlogFile!, 'utf8'), 'started\n');
});

test('exit codes and signals are reported; failures give SCRIPT_FAILED', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'start_prim', 'echo failing >&2\nexit 3');
  const r = await runScript(opts(d, 'start_prim'));
  assert.equal(r.exitCode, 3);
  assert.equal(r.signal, null);
  assert.equal(scriptOk(r), false);
  const err = scriptError('m1', r);
  assert.ok(isStayupError(err) && err.code === 'SCRIPT_FAILED');
  assert.match(err.message, /module m1: script start_prim exit 3/);
  assert.equal(readFileSync(r.userlogFile!, 'utf8'), 'failing\n');

  writeScript(d.bin, 'stop_prim', 'kill -USR1 $$\nsleep 5');
  const k = await runScript(opts(d, 'stop_prim'));
  assert.equal(k.exitCode, null);
  assert.equal(k.signal, 'SIGUSR1');
  assert.match(describeResult(k), /killed by SIGUSR1/);
  assert.equal(scriptOk(k), false);
});

test('a missing script counts as success and leaves no userlog', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const r = await runScript(opts(d, 'start_both'));
  assert.equal(r.missing, true);
  assert.equal(r.userlogFile, null);
  assert.equal(r.exitCode, null);
  assert.ok(scriptOk(r));
  assert.equal(scriptError('m1', r), null);
  assert.deepEqual(readdirSync(d.log), []);
});

test('a script that is not executable fails with 126 without running', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeFileSync(join(d.bin, 'start_prim'), '#!/bin/sh\ntouch ran\n', { mode: 0o644 });
  const r = await runScript(opts(d, 'start_prim'));
  assert.equal(r.exitCode, 126);
  assert.equal(r.missing, false);
  assert.match(r.error ?? '', /not executable/);
  assert.equal(scriptOk(r), false);
});

test('unsafe script names are refused', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  for (const bad of ['../x', 'a/b', '', '.hidden']) {
    await assert.rejects(runScript(opts(d, bad)), (e) => isStayupError(e) && e.code === 'BAD_ARGUMENT');
  }
});

test('stdout and stderr go into one userlog and to the line callback, with their stream', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'start_prim', 'echo one\necho two >&2\nprintf "three\\r\\nfour-no-newline"');
  const lines: [string, string][] = [];
  const r = await runScript(opts(d, 'start_prim', { onLine: (s, l) => lines.push([s, l]) }));
  assert.equal(r.exitCode, 0);
  assert.match(basename(r.userlogFile!), ULOG);
  assert.equal(statSync(r.userlogFile!).mode & 0o777, 0o640);
  const content = readFileSync(r.userlogFile!, 'utf8');
  for (const s of ['one\n', 'two\n', 'three\r\n', 'four-no-newline']) assert.ok(content.includes(s), s);
  assert.deepEqual(
    lines.filter(([s]) => s === 'stdout'),
    [['stdout', 'one'], ['stdout', 'three'], ['stdout', 'four-no-newline']],
  );
  assert.deepEqual(lines.filter(([s]) => s === 'stderr'), [['stderr', 'two']]);
});

test('the userlog is capped at userlogMaxBytes with a marker, and lines stop at the cap', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  // 2000 lines of 10 bytes = 20000 bytes against a 1000-byte cap.
  writeScript(d.bin, 'start_prim', 'i=0\nwhile [ $i -lt 2000 ]; do echo "line $((i+10000))"; i=$((i+1)); done');
  const lines: string[] = [];
  const r = await runScript(opts(d, 'start_prim', { userlogMaxBytes: 1000, onLine: (_s, l) => lines.push(l) }));
  assert.equal(r.exitCode, 0);
  const full = Array.from({ length: 2000 }, (_, i) => `line ${i + 10000}\n`).join('');
  assert.equal(readFileSync(r.userlogFile!, 'utf8'), full.slice(0, 1000) + truncationMarker(1000));
  // 90 whole lines of 11 bytes, then the first 10 bytes of the next one.
  assert.equal(lines.length, 91);
  assert.equal(lines[89], 'line 10089');
  assert.equal(lines[90], 'line 10090');
});

test('userlogMaxBytes 0 (logging="none") runs the script without a userlog', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'start_prim', 'echo quiet');
  const r = await runScript(opts(d, 'start_prim', { userlogMaxBytes: 0 }));
  assert.equal(r.exitCode, 0);
  assert.equal(r.userlogFile, null);
  assert.deepEqual(readdirSync(d.log), []);
});

test('userlogs are one file per run, unique, and only the newest K per script are kept', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'start_prim', 'echo "run $1"');
  writeScript(d.bin, 'stop_prim', 'echo stop');
  const other = await runScript(opts(d, 'stop_prim'));
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await runScript(opts(d, 'start_prim', { args: [`n${i}`], userlogKeep: 3 }));
    files.push(r.userlogFile!);
  }
  assert.equal(new Set(files).size, 6);
  const left = readdirSync(d.log).filter((n) => n.endsWith('_start_prim.ulog')).sort();
  assert.equal(left.length, 3);
  for (const f of files.slice(3)) assert.ok(existsSync(f), `${f} kept`);
  for (const f of files.slice(0, 3)) assert.ok(!existsSync(f), `${f} pruned`);
  assert.deepEqual(files.slice(3).map((f) => readFileSync(f, 'utf8')), ['run n3\n', 'run n4\n', 'run n5\n']);
  assert.ok(existsSync(other.userlogFile!), 'another script keeps its own userlogs');
});

test('a timeout kills the whole process group, including a child that ignores SIGTERM', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const pidFile = join(d.root, 'child.pid');
  writeScript(
    d.bin,
    'start_prim',
    `sh -c 'trap "" TERM; echo $$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; while :; do sleep 1; done' &\n` +
      `while [ ! -s ${pidFile} ]; do sleep 0.05; done\necho ready\nsleep 1000`,
  );
  let ready = false;
  const r = await runScript(
    opts(d, 'start_prim', { timeoutMs: 3_000, killGraceMs: 300, onLine: (_s, l) => (ready ||= l === 'ready') }),
  );
  assert.ok(ready, 'the script got to start its child before the timeout');
  assert.equal(r.timedOut, true);
  assert.equal(r.exitCode, null);
  assert.equal(r.signal, 'SIGTERM');
  assert.ok(r.durationMs >= 2_900);
  assert.equal(scriptOk(r), false);
  const err = scriptError('m1', r);
  assert.ok(isStayupError(err) && err.code === 'SCRIPT_TIMEOUT');
  const child = readPid(pidFile);
  t.after(() => killPid(child));
  await waitFor(() => !isProcessAlive(child), 'the SIGTERM-ignoring child to be killed');
  assert.match(readFileSync(r.userlogFile!, 'utf8'), /ready\n[\s\S]*timed out after 3000 ms: process group killed/);
});

test('a script that ignores SIGTERM itself is killed with SIGKILL after the grace', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'stop_prim', 'trap "" TERM\necho waiting\nwhile :; do sleep 1; done');
  const r = await runScript(opts(d, 'stop_prim', { timeoutMs: 500, killGraceMs: 300 }));
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(r.pid !== undefined);
  await waitFor(() => !isProcessAlive(r.pid!), 'the script to be gone');
});

test('an abort kills the group and marks the run aborted', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  writeScript(d.bin, 'start_prim', 'echo go\nsleep 1000');
  const ac = new AbortController();
  const r = await runScript(opts(d, 'start_prim', { signal: ac.signal, onLine: (_s, l) => l === 'go' && ac.abort() }));
  assert.equal(r.aborted, true);
  assert.equal(r.timedOut, false);
  assert.equal(r.signal, 'SIGTERM');
  assert.equal(scriptOk(r), false);
  const pre = await runScript(opts(d, 'start_prim', { signal: AbortSignal.abort() }));
  assert.equal(pre.aborted, true);
  assert.equal(pre.pid, undefined);
});

test('a daemonising script returns when it exits; its background child keeps running and logging', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const bgPid = join(d.root, 'bg.pid');
  const goFile = join(d.root, 'go');
  // The background child inherits stdout and stderr (the pipes) and writes to them after the script exits.
  writeScript(
    d.bin,
    'start_prim',
    `sh -c 'echo $$ > ${bgPid}; while [ ! -e ${goFile} ]; do sleep 0.05; done; echo late-out; echo late-err >&2; exec sleep 1000' &\n` +
      `setsid sleep 1000 &\necho $! > ${bgPid}.setsid\necho started`,
  );
  const r = await runScript(opts(d, 'start_prim', { timeoutMs: 60_000 }));
  const bg = readPid(bgPid);
  const escaped = readPid(`${bgPid}.setsid`);
  t.after(() => {
    killPid(bg);
    killPid(escaped);
  });
  assert.equal(r.exitCode, 0);
  assert.equal(r.timedOut, false);
  assert.ok(r.durationMs < 30_000, 'returned long before the background child ends');
  assert.ok(isProcessAlive(bg), 'the background child is still running');
  assert.ok(isProcessAlive(escaped), 'the setsid child is still running');
  // After the runner returned, the child's output still reaches the userlog (through the relay), and the
  // child does not die of SIGPIPE.
  writeFileSync(goFile, '');
  await waitFor(() => /late-out/.test(readFileSync(r.userlogFile!, 'utf8')) && /late-err/.test(readFileSync(r.userlogFile!, 'utf8')), 'late output in the userlog');
  assert.ok(readFileSync(r.userlogFile!, 'utf8').startsWith('started\n'));
  assert.ok(isProcessAlive(bg), 'the background child survived writing after the script exited');
  killPid(bg);
  killPid(escaped);
  await waitFor(() => !isProcessAlive(bg) && !isProcessAlive(escaped), 'cleanup');
});

test('the relay keeps the userlog cap for output written after the script exits', async (t) => {
  const d = scriptDirs();
  t.after(d.cleanup);
  const donePid = join(d.root, 'bg.done');
  writeScript(
    d.bin,
    'start_prim',
    `(sleep 0.3; i=0; while [ $i -lt 500 ]; do echo "late line $i"; i=$((i+1)); done; echo $$ > ${donePid}) &\necho started`,
  );
  // The relay enforces the cap through RLIMIT_FSIZE, in 512-byte blocks: use a multiple (userlogsize is KB).
  const r = await runScript(opts(d, 'start_prim', { userlogMaxBytes: 1024, drainMs: 50 }));
  assert.equal(r.exitCode, 0);
  await waitFor(() => existsSync(donePid), 'the background writer to finish');
  await waitFor(() => readFileSync(r.userlogFile!, 'utf8').includes('truncated'), 'the relay to finish');
  const content = readFileSync(r.userlogFile!, 'utf8');
  assert.ok(content.startsWith('started\nlate line 0\n'));
  assert.equal(Buffer.byteLength(content), 1024 + truncationMarker(1024).length);
  assert.ok(content.endsWith(truncationMarker(1024)));
  assert.equal(content.split('truncated').length, 2, 'one marker');
});
