// The pure core of errd: matching, bounds, actions, classes per state and around scripts, and the poll
// sequence (start_after, once per failure episode, re-arm, services, operating errors).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  activeClassesFor,
  applyActiveClasses,
  classesAroundScript,
  countFailure,
  countMatches,
  evaluate,
  matchesProc,
  parseAction,
  scriptClass,
  servicesToCheck,
  INITIAL_MEMORY,
  type ActionRequest,
  type ErrdLog,
  type ModuleState,
  type ProcMemory,
  type ProcVerdict,
  type ServiceCheck,
} from '../../src/errd/evaluate.ts';
import type { Proc } from '../../src/config/userconfig/types.ts';
import type { ProcessInfo } from '../../src/errd/process-table.ts';
import { proc, ps } from './helpers.ts';

describe('matching a process', () => {
  const cases: Array<[string, Partial<Proc>, ProcessInfo, boolean]> = [
    ['exact command name', {}, ps('myapp'), true],
    ['another command name', {}, ps('myapp2'), false],
    ['a prefix is not the name', { name: 'myap' }, ps('myapp'), false],
    ['names are case-sensitive', { name: 'MyApp' }, ps('myapp'), false],
    ['the name, not argv[0]', { name: 'myapp' }, ps('java', 'myapp -jar x'), false],
    ['a zombie never counts', {}, ps('myapp', '', { state: 'Z' }), false],
    ['a dead entry never counts', {}, ps('myapp', '', { state: 'X' }), false],
    ['a stopped process counts', {}, ps('myapp', 'myapp', { state: 'T' }), true],
    ['nameregex searches the name', { name: 'anything', nameregex: 'app' }, ps('myapp'), true],
    ['nameregex replaces the name', { name: 'myapp', nameregex: '^other$' }, ps('myapp'), false],
    ['anchored nameregex', { nameregex: '^my' }, ps('notmyapp'), false],
    ['nameregex matches a truncated long name', { name: 'longapplication', nameregex: '^longapplication' }, ps('longapplicatio'), false],
    ['nameregex for a 15-char comm', { name: 'x', nameregex: '^my_long_daemon_' }, ps('my_long_daemon_'), true],
    ['POSIX class in nameregex', { nameregex: '^worker[[:digit:]]+$' }, ps('worker12'), true],
    ['POSIX class rejects', { nameregex: '^worker[[:digit:]]+$' }, ps('workerAB'), false],
    ['argregex matches the argument string', { name: 'java', argregex: '-jar app\\.jar' }, ps('java', 'java -Xmx1g -jar app.jar'), true],
    ['argregex that does not match', { name: 'java', argregex: 'other\\.jar' }, ps('java', 'java -jar app.jar'), false],
    ['argregex sees argv[0]', { name: 'java', argregex: '^/usr/bin/java ' }, ps('java', '/usr/bin/java -jar a'), true],
    ['argregex is case-sensitive', { name: 'java', argregex: 'APP' }, ps('java', 'java app'), false],
    ['argregex needs the name too', { name: 'java', argregex: 'app' }, ps('python3', 'python3 app'), false],
    ['empty args of a kernel thread', { name: 'kthreadd', argregex: '.' }, ps('kthreadd', ''), false],
  ];
  for (const [what, over, p, expected] of cases) {
    it(what, () => assert.equal(matchesProc(proc(over), p), expected));
  }

  it('counts every matching process', () => {
    const table = [ps('myapp'), ps('myapp'), ps('other'), ps('myapp', '', { state: 'Z' }), ps('myapp')];
    assert.equal(countMatches(proc(), table), 3);
    assert.equal(countMatches(proc({ name: 'nothere' }), table), 0);
  });
});

describe('count bounds', () => {
  const cases: Array<[number, number, number, string | null]> = [
    // atleast, atmax, count, reason
    [1, -1, 1, null],
    [1, -1, 5, null],
    [1, -1, 0, 'Process myapp: 0 running, at least 1 expected'],
    [3, -1, 2, 'Process myapp: 2 running, at least 3 expected'],
    [0, -1, 0, null],
    [-1, -1, 0, null],
    [-1, -1, 99, null],
    [-1, 2, 2, null],
    [-1, 2, 3, 'Process myapp: 3 running, at most 2 expected'],
    [1, 2, 0, 'Process myapp: 0 running, at least 1 expected'],
    [1, 2, 3, 'Process myapp: 3 running, at most 2 expected'],
    [-1, 0, 0, null],
    [-1, 0, 1, 'Process myapp: 1 running, at most 0 expected'],
  ];
  for (const [atleast, atmax, count, reason] of cases) {
    it(`atleast=${atleast} atmax=${atmax} count=${count} → ${reason ?? 'in range'}`, () => {
      assert.equal(countFailure(proc({ atleast, atmax }), count), reason);
    });
  }
  it('services say so, with the systemd state', () => {
    assert.equal(countFailure(proc({ name: 'nginx', service: true }), 0, 'failed'), 'Service nginx: 0 running (failed), at least 1 expected');
  });
});

describe('actions', () => {
  const cases: Array<[string, ReturnType<typeof parseAction>]> = [
    ['restart', 'restart'],
    ['stopstart', 'stopstart'],
    ['stop', 'stop'],
    ['noaction', 'noaction'],
    ['', 'stopstart'],
    ['myhandler', { handler: 'myhandler' }],
    ['/opt/app/bin/handler.sh', { handler: '/opt/app/bin/handler.sh' }],
    ['Restart', { handler: 'Restart' }],
  ];
  for (const [text, action] of cases) {
    it(`action="${text}"`, () => assert.deepEqual(parseAction(text), action));
  }
});

describe('classes per module state', () => {
  const stable: Record<ModuleState, string[]> = {
    STOP: [],
    WAIT: ['pre'],
    ALONE: ['both', 'pre', 'prim', 'sec'],
    PRIM: ['both', 'pre', 'prim'],
    SECOND: ['both', 'pre', 'sec', 'second'],
    UP: ['both', 'pre'],
  };
  for (const [state, classes] of Object.entries(stable) as Array<[ModuleState, string[]]>) {
    it(`${state}: ${classes.join(', ') || 'none'}`, () => {
      assert.deepEqual([...activeClassesFor(state, false)].sort(), classes);
    });
  }
  const transition: Record<ModuleState, string[]> = { STOP: [], WAIT: [], ALONE: ['pre'], PRIM: ['pre'], SECOND: ['pre'], UP: ['pre'] };
  for (const [state, classes] of Object.entries(transition) as Array<[ModuleState, string[]]>) {
    it(`${state} while its scripts run: ${classes.join(', ') || 'none'}`, () => {
      assert.deepEqual([...activeClassesFor(state, true)].sort(), classes);
    });
  }
  it('enabled custom classes are monitored in every state but STOP; built-in names are not custom', () => {
    assert.deepEqual([...activeClassesFor('PRIM', false, ['batch', 'second'])].sort(), ['batch', 'both', 'pre', 'prim']);
    assert.deepEqual([...activeClassesFor('WAIT', true, ['batch'])], ['batch']);
    assert.deepEqual([...activeClassesFor('STOP', false, ['batch'])], []);
  });
});

describe('classes around scripts', () => {
  it('start scripts switch on after, stop scripts off before', () => {
    assert.deepEqual(scriptClass('start_prim'), { class: 'prim', on: true });
    assert.deepEqual(scriptClass('stop_sec'), { class: 'sec', on: false });
    assert.deepEqual(scriptClass('prestart'), { class: 'pre', on: true });
    assert.deepEqual(scriptClass('poststop'), { class: 'pre', on: false });
    assert.equal(scriptClass('transition'), undefined);
    assert.equal(scriptClass('start_primary'), undefined);
    const none = new Set<string>();
    assert.deepEqual([...classesAroundScript(none, 'start_prim', 'before')], []);
    assert.deepEqual([...classesAroundScript(none, 'start_prim', 'after')], ['prim']);
    assert.deepEqual([...classesAroundScript(none, 'start_prim', 'after', false)], [], 'a failed start does not arm');
    const prim = new Set(['prim', 'pre']);
    assert.deepEqual([...classesAroundScript(prim, 'stop_prim', 'before')], ['pre']);
    assert.deepEqual([...classesAroundScript(prim, 'transition', 'before')].sort(), ['pre', 'prim']);
  });

  // Walking the script table of the reference (§2.15) through classesAroundScript must land on the
  // stable sets of activeClassesFor: the two views of the mapping agree.
  const table: Array<[ModuleState, ModuleState, string[]]> = [
    ['STOP', 'WAIT', ['transition', 'prestart']],
    ['WAIT', 'ALONE', ['transition', 'start_both', 'start_prim', 'start_sec']],
    ['WAIT', 'PRIM', ['transition', 'start_both', 'start_prim']],
    ['WAIT', 'SECOND', ['transition', 'start_both', 'start_second', 'start_sec']],
    ['ALONE', 'PRIM', ['stop_sec', 'transition']],
    ['PRIM', 'ALONE', ['transition', 'start_sec']],
    ['SECOND', 'ALONE', ['stop_second', 'transition', 'start_prim']],
    ['PRIM', 'SECOND', ['stop_prim', 'transition', 'start_second', 'start_sec']],
    ['SECOND', 'PRIM', ['stop_sec', 'stop_second', 'transition', 'start_prim']],
    ['PRIM', 'WAIT', ['stop_prim', 'stop_both', 'transition']],
    ['ALONE', 'WAIT', ['stop_sec', 'stop_prim', 'stop_both', 'transition']],
    ['SECOND', 'WAIT', ['stop_sec', 'stop_second', 'stop_both', 'transition']],
    ['WAIT', 'STOP', ['stop_sec', 'stop_prim', 'stop_second', 'stop_both', 'poststop', 'transition']],
  ];
  for (const [from, to, scripts] of table) {
    it(`${from} → ${to}`, () => {
      let active: Set<string> = activeClassesFor(from, false);
      for (const s of scripts) {
        active = classesAroundScript(active, s, 'before');
        active = classesAroundScript(active, s, 'after');
      }
      assert.deepEqual([...active].sort(), [...activeClassesFor(to, false)].sort());
    });
  }
});

/** Runs evaluate over a sequence of polls, threading the memory; returns what each poll produced. */
function polls(
  procs: Proc[],
  steps: Array<{ classes?: string[]; processes?: ProcessInfo[]; services?: Record<string, ServiceCheck> }>,
  start: Array<ProcMemory | undefined> = [],
): Array<{ verdicts: ProcVerdict[]; actions: ActionRequest[]; logs: ErrdLog[]; memory: ProcMemory[] }> {
  let memory = start;
  let classes = ['prim'];
  let processes: ProcessInfo[] = [];
  return steps.map((s) => {
    classes = s.classes ?? classes;
    processes = s.processes ?? processes;
    const out = evaluate({
      procs,
      activeClasses: new Set(classes),
      memory,
      processes,
      ...(s.services ? { services: new Map(Object.entries(s.services)) } : {}),
    });
    memory = out.memory;
    return out;
  });
}

const up = [ps('myapp')];
const down: ProcessInfo[] = [];
const states = (r: ReturnType<typeof polls>, i = 0): string[] => r.map((p) => p.verdicts[i]!.state);
const actionCount = (r: ReturnType<typeof polls>): number[] => r.map((p) => p.actions.length);

describe('evaluate: one poll after another', () => {
  it('requests the action once per failure episode, and again after the count was back in range', () => {
    const r = polls([proc()], [{ processes: up }, { processes: down }, {}, {}, { processes: up }, {}, { processes: down }, {}]);
    assert.deepEqual(states(r), ['ok', 'failed', 'failed', 'failed', 'ok', 'ok', 'failed', 'failed']);
    assert.deepEqual(actionCount(r), [0, 1, 0, 0, 0, 0, 1, 0]);
    assert.deepEqual(r[1]!.actions[0], { proc: 'myapp', index: 0, action: 'restart', reason: 'Process myapp: 0 running, at least 1 expected' });
    assert.deepEqual(r[1]!.logs, [{ level: 'E', index: 0, message: 'Process myapp: 0 running, at least 1 expected' }]);
    assert.deepEqual(r[2]!.logs, []);
    assert.deepEqual(r[4]!.logs, [{ level: 'I', index: 0, message: 'Process myapp: 1 running, back in range' }]);
    assert.equal(r[1]!.verdicts[0]!.reason, 'Process myapp: 0 running, at least 1 expected');
    assert.equal(r[1]!.verdicts[0]!.count, 0);
  });

  it('atmax: too many processes start an episode (atmax=0 fires on any start)', () => {
    const r = polls([proc({ atleast: -1, atmax: 0, action: 'stop' })], [{ processes: down }, { processes: up }, {}, { processes: down }, { processes: [ps('myapp'), ps('myapp')] }]);
    assert.deepEqual(states(r), ['ok', 'failed', 'failed', 'ok', 'failed']);
    assert.deepEqual(actionCount(r), [0, 1, 0, 0, 1]);
    assert.equal(r[4]!.actions[0]!.reason, 'Process myapp: 2 running, at most 0 expected');
    assert.equal(r[4]!.actions[0]!.action, 'stop');
  });

  it('start_after=n: the first n-1 polls after activation count but do not judge', () => {
    const r = polls([proc({ startAfter: 3 })], [{ processes: down }, {}, {}, {}]);
    assert.deepEqual(states(r), ['arming', 'arming', 'failed', 'failed']);
    assert.deepEqual(actionCount(r), [0, 0, 1, 0]);
    assert.equal(r[0]!.verdicts[0]!.reason, 'start_after: poll 1 of 3');
    assert.equal(r[0]!.verdicts[0]!.count, 0, 'counted while arming');
    assert.equal(r[2]!.memory[0]!.polls, 3);
    assert.equal(polls([proc({ startAfter: 3 })], Array.from({ length: 50 }, () => ({ processes: up })))[49]!.memory[0]!.polls, 3, 'capped');
  });

  it('a proc whose class is off is inactive and never fails', () => {
    const r = polls([proc({ class: 'second' })], [{ processes: down }, {}, { classes: ['prim', 'pre'] }]);
    assert.deepEqual(states(r), ['inactive', 'inactive', 'inactive']);
    assert.deepEqual(actionCount(r), [0, 0, 0]);
    assert.equal(r[0]!.verdicts[0]!.reason, 'class second not active');
    assert.equal(r[0]!.verdicts[0]!.count, 0, 'still counted for errd list');
  });

  it('activation arms (start_after counts from it); deactivation ends the episode; re-activation re-arms', () => {
    const p = proc({ class: 'sec', startAfter: 2 });
    const r = polls(
      [p],
      [
        { classes: [], processes: down },
        { classes: ['sec'] },
        {},
        {},
        { classes: [] },
        { classes: ['sec'] },
        {},
      ],
    );
    assert.deepEqual(states(r), ['inactive', 'arming', 'failed', 'failed', 'inactive', 'arming', 'failed']);
    assert.deepEqual(actionCount(r), [0, 0, 1, 0, 0, 0, 1]);
  });

  it('custom classes are classes like the others', () => {
    const r = polls([proc({ class: 'batch' })], [{ classes: ['prim'], processes: down }, { classes: ['prim', 'batch'] }]);
    assert.deepEqual(states(r), ['inactive', 'failed']);
    assert.deepEqual(actionCount(r), [0, 1]);
  });

  it('procs are independent: each its own count, state and episode', () => {
    const procs = [proc({ name: 'a' }), proc({ name: 'b', atleast: 2, action: 'noaction' }), proc({ name: 'c', class: 'second' })];
    const r = polls(procs, [{ processes: [ps('a'), ps('b'), ps('b')] }, { processes: [ps('b')] }, { processes: [ps('a')] }]);
    assert.deepEqual(r.map((x) => x.verdicts.map((v) => `${v.name}:${v.state}:${v.count}`)), [
      ['a:ok:1', 'b:ok:2', 'c:inactive:0'],
      ['a:failed:0', 'b:failed:1', 'c:inactive:0'],
      ['a:ok:1', 'b:failed:0', 'c:inactive:0'],
    ]);
    assert.deepEqual(r[1]!.actions.map((a) => [a.proc, a.action]), [['a', 'restart'], ['b', 'noaction']]);
    assert.deepEqual(r[2]!.actions, []);
  });

  it('handlers and restart_services are passed on', () => {
    const r = polls([proc({ action: 'on_failure.sh', restartServices: ['db', 'web'] })], [{ processes: down }]);
    assert.deepEqual(r[0]!.actions, [
      { proc: 'myapp', index: 0, action: { handler: 'on_failure.sh' }, reason: 'Process myapp: 0 running, at least 1 expected', restartServices: ['db', 'web'] },
    ]);
  });

  it('argregex tells instances of one program apart', () => {
    const procs = [proc({ name: 'java', argregex: 'app1\\.jar' }), proc({ name: 'java', argregex: 'app2\\.jar' })];
    const r = polls(procs, [{ processes: [ps('java', 'java -jar app1.jar'), ps('java', 'java -jar app2.jar')] }, { processes: [ps('java', 'java -jar app2.jar')] }]);
    assert.deepEqual(r.map((x) => x.verdicts.map((v) => v.state)), [['ok', 'ok'], ['failed', 'ok']]);
    assert.deepEqual(r[1]!.actions.map((a) => a.index), [0]);
  });

  it('an invalid regular expression is an operating error, not a crash or an action', () => {
    const r = polls([proc({ nameregex: '(unclosed' })], [{ processes: up }, {}]);
    assert.deepEqual(states(r), ['failed', 'failed']);
    assert.deepEqual(actionCount(r), [0, 0]);
    assert.match(r[0]!.verdicts[0]!.reason!, /^Process myapp: invalid regular expression/);
    assert.equal(r[0]!.logs.length, 1);
    assert.equal(r[1]!.logs.length, 0, 'logged once');
  });

  it('inputs are not modified', () => {
    const procs = Object.freeze([Object.freeze(proc())]) as unknown as Proc[];
    const memory = Object.freeze([Object.freeze({ active: true, polls: 1, failed: false })]);
    const processes = Object.freeze([Object.freeze(ps('other'))]);
    const out = evaluate({ procs, activeClasses: new Set(['prim']), memory, processes });
    assert.equal(out.actions.length, 1);
    assert.deepEqual(memory[0], { active: true, polls: 1, failed: false });
  });
});

describe('evaluate: services', () => {
  const svc = proc({ name: 'nginx', service: true, action: 'stopstart' });
  const active: ServiceCheck = { kind: 'active' };
  const failed: ServiceCheck = { kind: 'inactive', state: 'failed' };
  const noSystemd: ServiceCheck = { kind: 'error', message: 'systemd is not PID 1 on this node' };

  it('counts 1 when active, 0 otherwise, and fails like a process', () => {
    const r = polls([svc], [{ services: { nginx: active } }, { services: { nginx: failed } }, { services: { nginx: failed } }, { services: { nginx: active } }]);
    assert.deepEqual(states(r), ['ok', 'failed', 'failed', 'ok']);
    assert.deepEqual(actionCount(r), [0, 1, 0, 0]);
    assert.equal(r[1]!.actions[0]!.reason, 'Service nginx: 0 running (failed), at least 1 expected');
    assert.equal(r[0]!.verdicts[0]!.count, 1);
  });

  it('the process table does not count for a service', () => {
    const r = polls([svc], [{ processes: [ps('nginx')], services: { nginx: failed } }]);
    assert.equal(r[0]!.verdicts[0]!.count, 0);
  });

  it('an operating error fails the proc with its reason, is logged once, and requests nothing', () => {
    const r = polls([svc], [{ services: { nginx: noSystemd } }, { services: { nginx: noSystemd } }, { services: { nginx: noSystemd } }, { services: { nginx: active } }]);
    assert.deepEqual(states(r), ['failed', 'failed', 'failed', 'ok']);
    assert.deepEqual(actionCount(r), [0, 0, 0, 0]);
    assert.equal(r[0]!.verdicts[0]!.reason, 'Service nginx: cannot be checked: systemd is not PID 1 on this node');
    assert.deepEqual(r.map((x) => x.logs.map((l) => l.level)), [['E'], [], [], ['I']]);
  });

  it('a unit not checked in a poll gives no news', () => {
    const r = polls([svc], [{ services: {} }, { services: { nginx: failed } }]);
    assert.deepEqual(states(r), ['arming', 'failed']);
    assert.deepEqual(actionCount(r), [0, 1]);
  });

  it('only active service procs are to be checked, each unit once', () => {
    const procs = [svc, proc({ name: 'nginx', service: true, class: 'both' }), proc({ name: 'db', service: true, class: 'second' }), proc()];
    assert.deepEqual(servicesToCheck(procs, new Set(['prim', 'both'])), ['nginx']);
    assert.deepEqual(servicesToCheck(procs, new Set(['second'])), ['db']);
    assert.deepEqual(servicesToCheck(procs, new Set()), []);
  });
});

describe('applyActiveClasses', () => {
  const procs = [proc({ class: 'prim' }), proc({ class: 'second' })];
  it('arms newly active procs, disarms the others, keeps the ones that stay on', () => {
    const failedPrim: ProcMemory = { active: true, polls: 1, failed: true };
    const a = applyActiveClasses(procs, [failedPrim, undefined], new Set(['prim', 'second']));
    assert.deepEqual(a.memory, [failedPrim, { active: true, polls: 0, failed: false }]);
    assert.deepEqual(a.armed, [1]);
    const b = applyActiveClasses(procs, a.memory, new Set(['second']));
    assert.deepEqual(b.memory, [INITIAL_MEMORY, { active: true, polls: 0, failed: false }]);
    assert.deepEqual(b.armed, []);
  });
  it('rearm re-arms the procs that stay on', () => {
    const r = applyActiveClasses(procs, [{ active: true, polls: 1, failed: true }, undefined], new Set(['prim']), { rearm: true });
    assert.deepEqual(r.memory[0], { active: true, polls: 0, failed: false });
    assert.deepEqual(r.armed, [0]);
  });
});
