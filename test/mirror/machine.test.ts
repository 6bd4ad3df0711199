// Table-driven tests of the mirror machine's rules: the script order table, the choice of the primary,
// the split-brain loser, which command each state accepts, heartbeats per lan, and the data rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SCRIPT_ORDER,
  formatCall,
  chooseWinner,
  losesSplitBrain,
  step,
  initialMirrorState,
  EMPTY_PERSISTED,
  type Candidate,
  type HeartbeatMessage,
  type MirrorConfig,
  type MirrorCommandName,
  type MirrorEffect,
  type MirrorState,
} from '../../src/mirror/index.ts';
import { TraceRunner, peerMessage } from './trace.ts';

test('the script order table is the reference automaton (§2.15)', () => {
  const expected: Record<string, string> = {
    'STOP->WAIT': 'transition, prestart',
    'WAIT->ALONE': 'transition, start_both, start_prim, start_sec',
    'WAIT->PRIM': 'transition, start_both, start_prim',
    'WAIT->SECOND': 'transition, start_both, start_second, start_sec',
    'ALONE->PRIM': 'stop_sec, transition',
    'PRIM->ALONE': 'transition, start_sec',
    'SECOND->ALONE': 'stop_second, transition, start_prim',
    'PRIM->SECOND': 'stop_prim, transition, start_second, start_sec',
    'SECOND->PRIM': 'stop_sec, stop_second, transition, start_prim',
    'PRIM->WAIT': 'stop_prim, stop_both, transition',
    'ALONE->WAIT': 'stop_sec, stop_prim, stop_both, transition',
    'SECOND->WAIT': 'stop_sec, stop_second, stop_both, transition',
    'WAIT->STOP': 'stop_sec force, stop_prim force, stop_second force, stop_both force, poststop, transition',
    'PRIM->PRIM': 'stop_prim, stop_both, start_both, start_prim',
    'ALONE->ALONE': 'stop_sec, stop_prim, stop_both, start_both, start_prim, start_sec',
    'SECOND->SECOND': 'stop_sec, stop_second, stop_both, start_both, start_second, start_sec',
  };
  const actual = Object.fromEntries(Object.entries(SCRIPT_ORDER).map(([k, row]) => [k, row.map(formatCall).join(', ')]));
  assert.deepEqual(actual, expected);
});

test('choice of the primary between two nodes in WAIT', () => {
  const n = (name: string, o: Partial<Candidate> = {}): Candidate => ({
    name,
    mode: 'auto',
    uptodate: false,
    lastPrim: false,
    interrupted: false,
    ...o,
  });
  const cases: Array<[string, Candidate, Candidate, string, string | null]> = [
    ['the up-to-date node wins', n('n1'), n('n2', { uptodate: true }), 'alone', 'n2'],
    ['up to date but interrupted does not count', n('n1', { uptodate: true, interrupted: true }), n('n2'), 'alone', null],
    ['neither can prove its data: nobody', n('n1'), n('n2'), 'alone', null],
    ['both up to date: defaultprim', n('n1', { uptodate: true }), n('n2', { uptodate: true }), 'n2', 'n2'],
    ['both up to date: lastprim', n('n1', { uptodate: true }), n('n2', { uptodate: true, lastPrim: true }), 'alone', 'n2'],
    ['both up to date, same past: the smaller name', n('n2', { uptodate: true }), n('n1', { uptodate: true }), 'alone', 'n1'],
    ['double power loss: the former primary resumes', n('n1', { lastPrim: true }), n('n2'), 'alone', 'n1'],
    ['both former primaries: nobody', n('n1', { lastPrim: true }), n('n2', { lastPrim: true }), 'alone', null],
    ['resume refused after an interrupted reintegration', n('n1', { lastPrim: true, interrupted: true }), n('n2'), 'alone', null],
    ['a node started with second is no candidate', n('n1', { uptodate: true, mode: 'second' }), n('n2'), 'alone', null],
    ['defaultprim does not beat the data rule', n('n1'), n('n2', { uptodate: true }), 'n1', 'n2'],
    ['prim on a node beats the data rule', n('n1', { mode: 'prim' }), n('n2', { uptodate: true }), 'alone', 'n1'],
  ];
  for (const [what, a, b, dp, want] of cases) {
    assert.equal(chooseWinner(a, b, dp), want, what);
    assert.equal(chooseWinner(b, a, dp), want, `${what} (other order)`);
  }
});

const config = (o: Partial<MirrorConfig> = {}): MirrorConfig => ({
  self: 'n1',
  peer: 'n2',
  failover: true,
  defaultPrim: 'alone',
  maxLoop: 3,
  loopIntervalMs: 60_000,
  heartbeats: [
    { lan: 'lan1', pulseMs: 100, timeoutMs: 500 },
    { lan: 'lan2', pulseMs: 200, timeoutMs: 1000 },
  ],
  vip: { tcpreset: true },
  replicatedData: true,
  ...o,
});

test('split brain: the later generation exits, the greater name on a tie; both sides agree', () => {
  const cases: Array<[number, number, string]> = [
    [4, 5, 'n2'],
    [5, 4, 'n1'],
    [6, 6, 'n2'],
  ];
  for (const [g1, g2, loser] of cases) {
    const s1 = initialMirrorState(config(), { ...EMPTY_PERSISTED, gen: g1 }, 0);
    const s2 = initialMirrorState(config({ self: 'n2', peer: 'n1' }), { ...EMPTY_PERSISTED, gen: g2 }, 0);
    const msg = (gen: number): HeartbeatMessage => ({ ...({} as HeartbeatMessage), gen });
    assert.equal(losesSplitBrain(s1, msg(g2)), loser === 'n1', `n1 gen ${g1} vs n2 gen ${g2}`);
    assert.equal(losesSplitBrain(s2, msg(g1)), loser === 'n2', `n2 gen ${g2} vs n1 gen ${g1}`);
  }
});

/** Trace commands that bring n1 to a state. */
const SETUPS: Record<string, string[]> = {
  'STOP(NotReady)': ['init self=n1 peer=n2'],
  'WAIT(NotReady)': ['init self=n1 peer=n2', 'cmd start', 'done', 'advance 600'],
  'ALONE(Ready)': ['init self=n1 peer=n2 uptodate=1 gen=1', 'cmd start', 'done', 'advance 600', 'done', 'done'],
  'PRIM(Ready)': [
    'init self=n1 peer=n2 uptodate=1 gen=1',
    'cmd start',
    'done',
    'advance 600',
    'done',
    'done',
    'hb state=SECOND q=Ready episode=1.1 synced=1',
    'done',
  ],
  'SECOND(Ready)': [
    'init self=n1 peer=n2',
    'cmd start',
    'hb state=PRIM q=Ready prim=1 est=1 gen=3',
    'done',
    'done',
    'repl uptodate=1',
    'hb released=1.1',
  ],
};

test('which commands each state accepts', () => {
  const table: Array<[string, MirrorCommandName, boolean]> = [
    ['STOP(NotReady)', 'start', true],
    ['STOP(NotReady)', 'stop', true],
    ['STOP(NotReady)', 'restart', false],
    ['STOP(NotReady)', 'stopstart', false],
    ['STOP(NotReady)', 'swap', false],
    ['STOP(NotReady)', 'prim', true],
    ['STOP(NotReady)', 'second', true],
    ['WAIT(NotReady)', 'start', false],
    ['WAIT(NotReady)', 'prim', true],
    ['WAIT(NotReady)', 'primforce', true],
    ['WAIT(NotReady)', 'second', true],
    ['WAIT(NotReady)', 'restart', false],
    ['WAIT(NotReady)', 'swap', false],
    ['WAIT(NotReady)', 'stop', true],
    ['ALONE(Ready)', 'start', false],
    ['ALONE(Ready)', 'prim', false],
    ['ALONE(Ready)', 'second', false],
    ['ALONE(Ready)', 'swap', false],
    ['ALONE(Ready)', 'restart', true],
    ['ALONE(Ready)', 'stopstart', true],
    ['ALONE(Ready)', 'forcestop', true],
    ['PRIM(Ready)', 'swap', true],
    ['PRIM(Ready)', 'restart', true],
    ['PRIM(Ready)', 'prim', false],
    ['SECOND(Ready)', 'swap', true],
    ['SECOND(Ready)', 'prim', false],
    ['SECOND(Ready)', 'primforce', false],
    ['SECOND(Ready)', 'restart', true],
    ['SECOND(Ready)', 'stop', true],
  ];
  for (const [state, command, ok] of table) {
    const r = new TraceRunner();
    for (const c of SETUPS[state]!) r.run(c);
    assert.equal(`${r.s!.state}(${r.s!.qualifier})`, state, `setup of ${state}`);
    const out = r.run(`cmd ${command}`);
    const reply = out.split('\n').find((l) => l.startsWith(`reply ${command}`));
    assert.ok(reply, `${state} ${command}: a reply`);
    assert.equal(reply.startsWith(`reply ${command} ok`), ok, `${state} ${command}: ${reply}`);
    if (!ok) assert.match(reply, /refused CONFLICT/);
  }
});

function drive(s: MirrorState, events: Parameters<typeof step>[1][]): { s: MirrorState; fx: MirrorEffect[] } {
  const fx: MirrorEffect[] = [];
  for (const e of events) {
    const r = step(s, e);
    s = r.state;
    fx.push(...r.effects);
  }
  return { s, fx };
}

test('a heartbeat on every lan at its own pulse, carrying the state; timers ask for the next one', () => {
  let s = initialMirrorState(config(), null, 0);
  ({ s } = drive(s, [{ type: 'command', nowMs: 0, command: 'start' }]));
  const fx: MirrorEffect[] = [];
  let t = 0;
  for (let i = 0; i < 100 && t < 1000; i++) {
    const timer = [...fx].reverse().find((e) => e.type === 'setTimer');
    t = timer && timer.type === 'setTimer' ? timer.atMs : t + 100;
    if (t >= 1000) break;
    const r = step(s, { type: 'tick', nowMs: t });
    s = r.state;
    fx.push(...r.effects);
  }
  const sends = fx.filter((e): e is Extract<MirrorEffect, { type: 'sendHeartbeat' }> => e.type === 'sendHeartbeat');
  const lan1 = sends.filter((e) => e.lan === 'lan1').length;
  const lan2 = sends.filter((e) => e.lan === 'lan2').length;
  assert.ok(lan1 >= 9 && lan1 <= 10, `lan1 (100 ms pulse): ${lan1} heartbeats in 1 s`);
  assert.ok(lan2 >= 4 && lan2 <= 5, `lan2 (200 ms pulse): ${lan2} heartbeats in 1 s`);
  assert.ok(sends.every((e) => e.message.node === 'n1' && e.message.state === 'WAIT'));
});

test('heartbeats keep their pulse when every tick runs late; a tick later than a pulse starts a new grid', () => {
  let s = initialMirrorState(config({ heartbeats: [{ lan: 'lan1', pulseMs: 10, timeoutMs: 40 }] }), null, 0);
  ({ s } = drive(s, [{ type: 'command', nowMs: 0, command: 'start' }]));
  const sentAt: number[] = [];
  for (let i = 0; i < 101; i++) {
    // Every wake-up 1.5 ms after the time asked for (setTimeout's lateness on a busy machine).
    const t = s.timerAtMs! + 1.5;
    const r = step(s, { type: 'tick', nowMs: t });
    s = r.state;
    if (r.effects.some((e) => e.type === 'sendHeartbeat')) sentAt.push(t);
  }
  // 100 pulses take 1000 ms, not 1150: the lateness does not add up.
  const span = sentAt.at(-1)! - sentAt[0]!;
  assert.ok(Math.abs(span - 10 * (sentAt.length - 1)) < 0.001, `${sentAt.length} heartbeats over ${span} ms`);
  assert.equal(s.lans[0]!.nextSendMs, sentAt.at(-1)! - 1.5 + 10);
  // 35 ms without running: one heartbeat now, the next a pulse later (no burst for the missed ones).
  const late = sentAt.at(-1)! + 35;
  const r = step(s, { type: 'tick', nowMs: late });
  assert.equal(r.effects.filter((e) => e.type === 'sendHeartbeat').length, 1);
  assert.equal(r.state.lans[0]!.nextSendMs, late + 10);
});

test('the peer is lost only when every lan is lost', () => {
  const peer = (seq: number): HeartbeatMessage => peerMessage('n2', { seq, state: 'SECOND' });
  let s = initialMirrorState(config(), null, 0);
  ({ s } = drive(s, [
    { type: 'command', nowMs: 0, command: 'start' },
    { type: 'heartbeatReceived', nowMs: 10, lan: 'lan1', message: peer(1) },
    { type: 'heartbeatReceived', nowMs: 10, lan: 'lan2', message: peer(1) },
  ]));
  // Only lan2 keeps delivering: lan1 (timeout 500 ms) is lost, the peer is not.
  for (let t = 200; t <= 2000; t += 200) ({ s } = drive(s, [{ type: 'heartbeatReceived', nowMs: t, lan: 'lan2', message: peer(t) }]));
  assert.equal(s.lans[0]!.up, false);
  assert.equal(s.lans[1]!.up, true);
  assert.equal(s.peerAlive, true);
  // Ticks on time (a late one would be read as this process having stalled, which defers the loss).
  for (let t = 2100; t <= 3000; t += 100) ({ s } = drive(s, [{ type: 'tick', nowMs: t }]));
  assert.equal(s.peerAlive, false);
});

test('after a stall of this process the peer gets two more pulses before it is declared lost', () => {
  let s = initialMirrorState(config({ heartbeats: [{ lan: 'lan1', pulseMs: 100, timeoutMs: 500 }] }), null, 0);
  const hb = (seq: number): HeartbeatMessage => ({
    ...({} as HeartbeatMessage),
    node: 'n2',
    incarnation: 1,
    seq,
    state: 'WAIT',
    qualifier: 'Transient',
    mode: 'auto',
    episode: null,
    releasedEpisode: null,
  });
  ({ s } = drive(s, [
    { type: 'command', nowMs: 0, command: 'start' },
    { type: 'heartbeatReceived', nowMs: 50, lan: 'lan1', message: hb(1) },
  ]));
  // The next tick was due at 100 ms; it comes 2 s late.
  const r = drive(s, [{ type: 'tick', nowMs: 2100 }]);
  assert.equal(r.s.peerAlive, true);
  assert.ok(r.fx.some((e) => e.type === 'log' && /did not run for/.test(e.message)));
  const later = drive(r.s, [{ type: 'tick', nowMs: 2300 }]);
  assert.equal(later.s.peerAlive, false);
});
