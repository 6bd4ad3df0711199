// ProcessMonitor: real `sleep` processes killed and respawned (waits on conditions, never on times), and
// a fake process list and scheduler for the shell's own rules (polling cadence, activation poll, stop,
// faulty callbacks, reconfiguration).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { ProcessMonitor, type Scheduler } from '../../src/errd/monitor.ts';
import type { ActionRequest, ServiceCheck } from '../../src/errd/evaluate.ts';
import type { ProcessInfo } from '../../src/errd/process-table.ts';
import { systemdIsPid1 } from '../../src/errd/systemd.ts';
import { isStayupError } from '../../src/errors/stayup-error.ts';
import { errd, proc, ps, sleepers, waitFor } from './helpers.ts';

function recorder() {
  const actions: ActionRequest[] = [];
  const logs: string[] = [];
  return {
    actions,
    logs,
    onAction: (r: ActionRequest) => actions.push(r),
    onLog: (level: string, message: string) => logs.push(`${level} ${message}`),
  };
}

/** A manual scheduler: timers run only when the test fires them. */
class ManualScheduler implements Scheduler {
  timers = new Map<number, { fn: () => void; ms: number }>();
  #seq = 0;
  setTimeout(fn: () => void, ms: number): unknown {
    this.timers.set(++this.#seq, { fn, ms });
    return this.#seq;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  get delays(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }
  /** Fires every pending timer, then lets the polls they started finish. */
  async fire(): Promise<void> {
    const due = [...this.timers.entries()];
    this.timers.clear();
    for (const [, t] of due) t.fn();
    for (let i = 0; i < 20; i++) await tick();
  }
}

describe('ProcessMonitor with real processes', () => {
  it('a killed process requests the action once; back in range re-arms; a second kill requests again', async (t) => {
    const s = sleepers();
    t.after(() => s.killAll());
    const a = s.spawn();
    s.spawn();
    const rec = recorder();
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ name: 'sleep', argregex: s.argregex, atleast: 2, action: 'restart' })]), ...rec });
    t.after(() => m.stop());
    m.setActiveClasses(['prim']);
    m.start();
    await waitFor(() => m.status()[0]?.state === 'ok' && m.status()[0]?.count === 2, 'both sleepers counted');
    assert.equal(rec.actions.length, 0);

    s.kill(a);
    await waitFor(() => rec.actions.length > 0, 'an action request');
    assert.deepEqual(rec.actions, [{ proc: 'sleep', index: 0, action: 'restart', reason: 'Process sleep: 1 running, at least 2 expected' }]);
    assert.equal(m.status()[0]!.state, 'failed');
    assert.equal(m.status()[0]!.reason, 'Process sleep: 1 running, at least 2 expected');
    assert.ok(rec.logs.includes('E Process sleep: 1 running, at least 2 expected'));

    // Not every poll: several more polls, still one request.
    const seen = m.polls;
    await waitFor(() => m.polls >= seen + 5, 'five more polls');
    assert.equal(rec.actions.length, 1);

    s.spawn();
    await waitFor(() => m.status()[0]?.state === 'ok', 'back in range');
    assert.ok(rec.logs.includes('I Process sleep: 2 running, back in range'));
    s.kill(s.children[2]!);
    await waitFor(() => rec.actions.length === 2, 'a second request');
    assert.equal(rec.actions[1]!.reason, 'Process sleep: 1 running, at least 2 expected');
  });

  it('atmax: one process too many requests its action', async (t) => {
    const s = sleepers();
    t.after(() => s.killAll());
    s.spawn();
    const rec = recorder();
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ name: 'sleep', argregex: s.argregex, atleast: -1, atmax: 1, action: 'stop', class: 'both' })]),
      ...rec,
    });
    t.after(() => m.stop());
    m.setActiveClasses(['both', 'pre']);
    m.start();
    await waitFor(() => m.status()[0]?.count === 1, 'one sleeper counted');
    s.spawn();
    await waitFor(() => rec.actions.length > 0, 'an action request');
    assert.deepEqual(rec.actions, [{ proc: 'sleep', index: 0, action: 'stop', reason: 'Process sleep: 2 running, at most 1 expected' }]);
  });

  it('a proc of an inactive class is not judged until its class comes on', async (t) => {
    const s = sleepers();
    t.after(() => s.killAll());
    const rec = recorder();
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ name: 'sleep', argregex: s.argregex, class: 'second', action: 'stopstart' })]),
      ...rec,
    });
    t.after(() => m.stop());
    m.setActiveClasses(['prim', 'both', 'pre']);
    m.start();
    await waitFor(() => m.polls >= 5, 'five polls');
    assert.equal(rec.actions.length, 0);
    assert.deepEqual(
      { state: m.status()[0]!.state, count: m.status()[0]!.count, reason: m.status()[0]!.reason },
      { state: 'inactive', count: 0, reason: 'class second not active' },
    );
    m.setActiveClasses(['second', 'both', 'pre']);
    await waitFor(() => rec.actions.length > 0, 'an action request');
    assert.equal(rec.actions[0]!.action, 'stopstart');
    assert.equal(rec.actions[0]!.reason, 'Process sleep: 0 running, at least 1 expected');
  });

  it('a class that comes on is polled at once, not a polltimer later', async (t) => {
    const s = sleepers();
    t.after(() => s.killAll());
    const rec = recorder();
    // One hour between polls: only the activation poll can see the missing process in this test.
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ name: 'sleep', argregex: s.argregex, action: 'custom_handler' })], 3_600_000), ...rec });
    t.after(() => m.stop());
    m.start();
    await waitFor(() => m.polls === 1, 'the first poll at start');
    assert.equal(m.status()[0]!.state, 'inactive');
    m.setActiveClasses(['prim']);
    assert.equal(m.status()[0]!.state, 'arming', 'armed as soon as its class is on');
    await waitFor(() => rec.actions.length > 0, 'the activation poll');
    assert.deepEqual(rec.actions[0]!.action, { handler: 'custom_handler' });
    assert.equal(m.polls, 2);
  });

  it('after stop() nothing is requested even if the process dies', async (t) => {
    const s = sleepers();
    t.after(() => s.killAll());
    const a = s.spawn();
    const rec = recorder();
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ name: 'sleep', argregex: s.argregex })]), ...rec });
    m.setActiveClasses(['prim']);
    m.start();
    await waitFor(() => m.status()[0]?.state === 'ok', 'the sleeper counted');
    m.stop();
    assert.equal(m.running, false);
    assert.equal(m.status()[0]!.state, 'inactive');
    const polls = m.polls;
    s.kill(a);
    await waitFor(() => !s.children.some((c) => c.exitCode === null && c.signalCode === null), 'the sleeper to die');
    // A poll would have happened long ago at 50 ms; let the event loop turn many times.
    for (let i = 0; i < 50; i++) await tick();
    assert.equal(m.polls, polls);
    assert.equal(rec.actions.length, 0);
  });
});

describe('ProcessMonitor: services without systemd', () => {
  it('reports an operating error once, status failed with the reason, no action, no crash', { skip: systemdIsPid1() && 'systemd is PID 1 here' }, async (t) => {
    const rec = recorder();
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ name: 'nginx', service: true }), proc({ name: 'sleep', atleast: 0 })]), ...rec });
    t.after(() => m.stop());
    m.setActiveClasses(['prim']);
    m.start();
    await waitFor(() => m.polls >= 4, 'four polls');
    const st = m.status();
    assert.equal(st[0]!.state, 'failed');
    assert.match(st[0]!.reason!, /^Service nginx: cannot be checked: systemd is not PID 1 on this node \(PID 1 is .+\), so service="yes" cannot be monitored$/);
    assert.equal(st[1]!.state, 'ok', 'the other procs are monitored');
    assert.equal(rec.actions.length, 0);
    assert.equal(rec.logs.filter((l) => l.includes('systemd is not PID 1')).length, 1);
    assert.ok(rec.logs[0]!.startsWith('E Service nginx: cannot be checked'));
  });
});

describe('ProcessMonitor: the shell', () => {
  const fakeList = (list: { current: ProcessInfo[] }) => () => list.current;

  it('polls at start, then every polltimer; pollNow works without start()', async () => {
    const sched = new ManualScheduler();
    const list = { current: [ps('myapp')] };
    const rec = recorder();
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ startAfter: 2 })], 10_000), listProcesses: fakeList(list), scheduler: sched, ...rec });
    m.setActiveClasses(['prim']);
    assert.deepEqual(sched.delays, [], 'not started: no timer');
    assert.equal((await m.pollNow())[0]!.state, 'arming');
    assert.equal((await m.pollNow())[0]!.state, 'ok');
    m.start();
    assert.deepEqual(sched.delays, [0]);
    await sched.fire();
    assert.equal(m.polls, 3);
    assert.equal(m.status()[0]!.state, 'arming', 'start() re-arms');
    assert.deepEqual(sched.delays, [10_000]);
    list.current = [];
    await sched.fire();
    assert.deepEqual(rec.actions.map((a) => a.reason), ['Process myapp: 0 running, at least 1 expected']);
    assert.deepEqual(sched.delays, [10_000]);
    m.stop();
    assert.deepEqual(sched.delays, []);
  });

  it('setActiveClasses arms, disarms and re-arms; only a newly armed proc triggers a poll', async () => {
    const sched = new ManualScheduler();
    const rec = recorder();
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ class: 'prim' }), proc({ name: 'b', class: 'second', startAfter: 3 })], 10_000),
      listProcesses: () => [],
      scheduler: sched,
      ...rec,
    });
    m.start();
    await sched.fire();
    assert.deepEqual(sched.delays, [10_000]);
    m.setActiveClasses(['prim']);
    assert.deepEqual(sched.delays, [0]);
    await sched.fire();
    assert.deepEqual(m.status().map((s) => s.state), ['failed', 'inactive']);
    m.setActiveClasses(['prim']);
    assert.deepEqual(sched.delays, [10_000], 'nothing new armed: the regular timer stays');
    m.setActiveClasses(['prim'], { rearm: true });
    assert.deepEqual(m.status().map((s) => s.state), ['arming', 'inactive']);
    await sched.fire();
    assert.equal(rec.actions.length, 2, 're-armed: a new episode');
    m.setActiveClasses(['second']);
    assert.deepEqual(m.status().map((s) => [s.state, s.reason]), [['inactive', 'class prim not active'], ['arming', 'start_after: poll 0 of 3']]);
    assert.deepEqual([...m.activeClasses], ['second']);
  });

  it('a throwing onAction or onLog does not stop monitoring', async () => {
    const logs: string[] = [];
    let calls = 0;
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ name: 'a' }), proc({ name: 'b' })]),
      listProcesses: () => [],
      onAction: () => {
        calls++;
        throw new Error('engine busy');
      },
      onLog: (l, msg) => logs.push(`${l} ${msg}`),
    });
    m.setActiveClasses(['prim']);
    await m.pollNow();
    assert.equal(calls, 2);
    assert.ok(logs.includes('E Process a: the action request failed: engine busy'));
    const bad = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc()]),
      listProcesses: () => [],
      onAction: () => {},
      onLog: () => {
        throw new Error('disk full');
      },
    });
    bad.setActiveClasses(['prim']);
    assert.equal((await bad.pollNow())[0]!.state, 'failed');
  });

  it('a process list that cannot be read skips the poll (never "everything died"), logged once', async () => {
    const rec = recorder();
    let broken = true;
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc()]),
      listProcesses: () => {
        if (broken) throw new Error('EMFILE: too many open files');
        return [ps('myapp')];
      },
      ...rec,
    });
    m.setActiveClasses(['prim']);
    await m.pollNow();
    await m.pollNow();
    assert.equal(rec.actions.length, 0);
    assert.equal(m.polls, 0);
    assert.deepEqual(rec.logs, ['E Process monitoring of module m1: cannot list processes: EMFILE: too many open files']);
    broken = false;
    assert.equal((await m.pollNow())[0]!.state, 'ok');
    assert.equal(rec.logs[1], 'I Process monitoring of module m1: processes can be listed again');
  });

  it('a service check that throws is an operating error; injected checks count', async () => {
    const rec = recorder();
    let answer: 'throw' | 'active' | 'inactive' = 'throw';
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ name: 'web', service: true, action: 'stopstart' })]),
      listProcesses: () => [],
      checkService: async () => {
        if (answer === 'throw') throw new Error('dbus exploded');
        return answer === 'active' ? { kind: 'active' } : { kind: 'inactive', state: 'failed' };
      },
      ...rec,
    });
    m.setActiveClasses(['prim']);
    assert.equal((await m.pollNow())[0]!.reason, 'Service web: cannot be checked: dbus exploded');
    answer = 'active';
    assert.deepEqual((await m.pollNow()).map((s) => [s.state, s.count]), [['ok', 1]]);
    answer = 'inactive';
    await m.pollNow();
    assert.deepEqual(rec.actions, [{ proc: 'web', index: 0, action: 'stopstart', reason: 'Service web: 0 running (failed), at least 1 expected' }]);
  });

  it('a poll in flight when stop() is called is discarded', async () => {
    const sched = new ManualScheduler();
    const rec = recorder();
    let release: (c: ServiceCheck) => void = () => {};
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ name: 'web', service: true })]),
      listProcesses: () => [],
      checkService: () => new Promise<ServiceCheck>((r) => (release = r)),
      scheduler: sched,
      ...rec,
    });
    m.setActiveClasses(['prim']);
    m.start();
    await sched.fire();
    m.stop();
    release({ kind: 'inactive', state: 'failed' });
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(m.polls, 0);
    assert.deepEqual(rec.actions, []);
    assert.equal(m.status()[0]!.state, 'inactive');
    assert.deepEqual(sched.delays, [], 'no timer after stop');
  });

  it('concurrent pollNow calls run one after the other', async () => {
    let inside = 0;
    let overlap = false;
    const m = new ProcessMonitor({
      module: 'm1',
      errd: errd([proc({ service: true })]),
      listProcesses: () => [],
      checkService: async () => {
        inside++;
        if (inside > 1) overlap = true;
        await tick();
        inside--;
        return { kind: 'active' };
      },
      onAction: () => {},
    });
    m.setActiveClasses(['prim']);
    await Promise.all([m.pollNow(), m.pollNow(), m.pollNow()]);
    assert.equal(overlap, false);
    assert.equal(m.polls, 3);
  });

  it('reconfigure keeps unchanged procs and arms new ones', async () => {
    const rec = recorder();
    const m = new ProcessMonitor({ module: 'm1', errd: errd([proc({ name: 'a' })]), listProcesses: () => [], ...rec });
    m.setActiveClasses(['prim']);
    await m.pollNow();
    assert.equal(rec.actions.length, 1);
    m.reconfigure(errd([proc({ name: 'b', startAfter: 2 }), proc({ name: 'a' })], 20));
    assert.equal(m.pollIntervalMs, 20);
    assert.deepEqual(m.status().map((s) => [s.index, s.name, s.state]), [[0, 'b', 'arming'], [1, 'a', 'failed']]);
    await m.pollNow();
    assert.equal(rec.actions.length, 1, 'a is still in the same episode');
    await m.pollNow();
    assert.deepEqual(rec.actions.map((r) => [r.proc, r.index]), [['a', 0], ['b', 0]]);
  });

  it('refuses a non-positive polltimer', () => {
    assert.throws(
      () => new ProcessMonitor({ module: 'm1', errd: errd([], 0), onAction: () => {} }),
      (e: unknown) => isStayupError(e) && e.code === 'BAD_ARGUMENT' && e.message === '<errd> polltimer must be a positive duration, got 0 ms',
    );
  });
});
