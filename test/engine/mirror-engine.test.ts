import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { MemoryHeartbeatNetwork } from '../../src/heartbeat/memory.ts';
import { generateModuleKey } from '../../src/heartbeat/module-key.ts';
import { MirrorEngine, noReplication, realClock, type EngineClock, type ReplicationPort, type ReplicationReport, type ScriptPort, type VipPort } from '../../src/engine/mirror-engine.ts';
import type { PreciseTimer } from '../../src/util/scheduler.ts';
import type { MirrorRecordStore } from '../../src/engine/mirror-store.ts';
import type { MirrorConfig, MirrorPersisted } from '../../src/mirror/types.ts';
import { decodeHeartbeatMessage, encodeHeartbeatMessage } from '../../src/engine/heartbeat-codec.ts';

// The daemon's shell around the mirror machine, over in-memory twins: a manual clock, the in-memory
// heartbeat network (real frames, real keys), a recording VIP, scripts and store. What is checked is the
// shell's own job: effect order, the timer, faults, and two engines agreeing over the network.

class ManualClock implements EngineClock {
  now = 1000;
  /**
   * Fire timers of 2 ms or more this much before their time, as setTimeout may against performance.now()
   * (its millisecond rounding). Shorter ones fire on time, so a re-arm for the rest always progresses.
   */
  earlyMs = 0;
  /** Fire setTimeout timers this much after their time (setTimeout's lateness on a busy machine). */
  lateMs = 0;
  /** Precise deadlines asked for (setDeadline, present when built with precise = true). */
  deadlines: number[] = [];
  setDeadline?: (fn: () => void, atMs: number) => PreciseTimer;
  /** Work handed to afterIo (present when built with precise = true): run after the timers of a step. */
  afterIo?: (fn: () => void) => void;
  afterIoCalls = 0;
  #afterIo: Array<() => void> = [];
  constructor(precise = false) {
    if (precise) {
      this.afterIo = (fn) => {
        this.afterIoCalls++;
        this.#afterIo.push(fn);
      };
      this.setDeadline = (fn, atMs) => {
        this.deadlines.push(atMs);
        const id = ++this.#seq;
        this.#timers.set(id, { at: atMs, fn });
        return { cancel: () => this.#timers.delete(id) };
      };
    }
  }
  #timers = new Map<number, { at: number; fn: () => void }>();
  #seq = 0;
  /** Resolves when the engines have stepped every queued event. */
  idle: () => Promise<void> = async () => {};
  nowMs(): number {
    return this.now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.now + ms - (ms >= 2 ? this.earlyMs : 0) + this.lateMs, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  /** Moves time forward in 0.5 ms steps, firing due timers and letting promises settle in between. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    // What was started before this call (commands) runs first.
    await settle();
    await this.idle();
    await settle();
    while (this.now < end) {
      this.now += 0.5;
      for (;;) {
        const due = [...this.#timers.entries()].filter(([, t]) => t.at <= this.now).sort((a, b) => a[1].at - b[1].at);
        if (due.length === 0) break;
        for (const [id, t] of due) {
          this.#timers.delete(id);
          t.fn();
        }
        for (const fn of this.#afterIo.splice(0)) fn();
        await settle();
        await this.idle();
        await settle();
      }
    }
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await tick();
}

interface Node {
  name: string;
  engine: MirrorEngine;
  journal: string[];
  vipUp: boolean;
  store: MirrorRecordStore & { record: MirrorPersisted | null; failing: boolean };
}

function config(self: string, peer: string, o: Partial<MirrorConfig> = {}): MirrorConfig {
  return {
    self,
    peer,
    failover: true,
    defaultPrim: 'alone',
    maxLoop: 3,
    loopIntervalMs: 86_400_000,
    heartbeats: [{ lan: 'default', pulseMs: 100, timeoutMs: 1000 }],
    vip: { tcpreset: true },
    replicatedData: false,
    ...o,
  };
}

/**
 * A replication layer that does what it is told and reports when the test says so: a secondary's
 * reintegration ends at finish(); report() sends anything (a primary's peerLost).
 */
class ReplicationTwin implements ReplicationPort {
  role = 'off';
  reports: Array<(r: ReplicationReport) => void> = [];
  constructor(
    private readonly name: string,
    private readonly journal: string[],
  ) {}
  setRole(role: 'prim' | 'second' | 'off', sync: string, report: (r: ReplicationReport) => void): void {
    this.role = role;
    this.reports.push(report);
    this.journal.push(`${this.name} replication ${role} ${sync}`);
  }
  /** syncdelta: when the twin's data was last in sync (wall clock), if the test sets it. */
  lastSyncAtMs: number | null = null;
  lastSyncMs(): number | null {
    return this.lastSyncAtMs;
  }
  report(r: Partial<ReplicationReport>): void {
    this.reports[this.reports.length - 1]!({ uptodate: true, reintegrationInterrupted: false, lastSyncMs: 1, ...r });
  }
}

function makeNode(net: MemoryHeartbeatNetwork, clock: ManualClock, key: Buffer, self: string, peer: string, journal: string[], o: Partial<MirrorConfig> = {}, replication?: ReplicationPort): Node {
  const n = { name: self, journal, vipUp: false } as Node;
  const store = {
    record: null as MirrorPersisted | null,
    failing: false,
    load: () => store.record,
    save(r: MirrorPersisted) {
      if (store.failing) throw new Error('disk full');
      store.record = { ...r };
      journal.push(`${self} persist uptodate=${r.uptodate} lastPrim=${r.lastPrim} gen=${r.gen}`);
    },
  };
  n.store = store;
  const vip: VipPort = {
    async up() {
      journal.push(`${self} vipUp`);
      n.vipUp = true;
    },
    async down() {
      journal.push(`${self} vipDown`);
      n.vipUp = false;
    },
    async announce() {
      journal.push(`${self} vipAnnounce`);
    },
  };
  const scripts: ScriptPort = {
    async run(batch) {
      for (const c of batch.calls) journal.push(`${self} script ${c.script}${c.forceOnly ? ' force' : ''}`);
      return { ok: true };
    },
  };
  const channel = net.transport({ moduleId: 1, moduleKey: key, node: self, peer, lans: ['default'], now: () => clock.now });
  n.engine = new MirrorEngine({ module: 'm', config: config(self, peer, o), channel, vip, scripts, replication: replication ?? noReplication(() => clock.now), store, log: (level, source, message) => journal.push(`${self} log ${level} ${message}`), clock });
  n.engine.start();
  return n;
}

function pair(o: { precise?: boolean; config?: Partial<MirrorConfig>; replication?: [ReplicationPort, ReplicationPort] } = {}): { clock: ManualClock; net: MemoryHeartbeatNetwork; a: Node; b: Node; journal: string[] } {
  const clock = new ManualClock(o.precise ?? false);
  const net = new MemoryHeartbeatNetwork({ now: () => clock.now, wallClock: () => 1_700_000_000_000 + clock.now, schedule: (fn, ms) => void clock.setTimeout(fn, Math.max(1, ms)), delayMs: 1 });
  const key = generateModuleKey();
  const journal: string[] = [];
  const a = makeNode(net, clock, key, 'n1', 'n2', journal, o.config, o.replication?.[0]);
  const b = makeNode(net, clock, key, 'n2', 'n1', journal, o.config, o.replication?.[1]);
  clock.idle = async () => {
    await Promise.all([a.engine.settled(), b.engine.settled()]);
  };
  return { clock, net, journal, a, b };
}

describe('mirror engine (the daemon shell) over in-memory twins', () => {
  it('a global start: n1 primary, n2 secondary; persist before vipUp before start_prim; ready only after start_prim', async () => {
    const { clock, a, b, journal } = pair();
    const ra = a.engine.command('start');
    const rb = b.engine.command('start');
    await clock.advance(10);
    assert.deepEqual(await ra, { ok: true, code: null, message: 'starting' });
    assert.equal((await rb).ok, true);
    await clock.advance(3000);
    assert.equal(a.engine.status().state, 'PRIM');
    assert.equal(b.engine.status().state, 'SECOND');
    assert.equal(a.engine.ready, true);
    assert.equal(b.engine.ready, false);
    const mine = journal.filter((l) => l.startsWith('n1 ') && !l.startsWith('n1 log'));
    const iPersist = mine.findIndex((l) => /persist uptodate=true lastPrim=true/.test(l));
    const iVip = mine.indexOf('n1 vipUp');
    const iStart = mine.indexOf('n1 script start_prim');
    assert.ok(iPersist >= 0 && iPersist < iVip && iVip < iStart, mine.join('\n'));
    assert.equal(a.vipUp, true);
    assert.equal(b.vipUp, false);
    if (process.env.SHOW_JOURNAL) console.log(journal.join('\n'));
  });

  // The timeout runs from the last heartbeat heard, up to one pulse before the cut.
  it('the primary goes silent: the secondary takes over one heartbeat timeout later', async () => {
    const { clock, net, a, b, journal } = pair();
    void a.engine.command('start');
    void b.engine.command('start');
    await clock.advance(3000);
    assert.equal(b.engine.status().state, 'SECOND', journal.join('\n'));
    const cutAt = clock.now;
    net.partition();
    let tookOverAt = 0;
    b.engine.onChange((s) => {
      if (s.state === 'ALONE' && s.ready && !tookOverAt) tookOverAt = clock.now;
    });
    await clock.advance(3000);
    assert.equal(b.engine.status().state, 'ALONE');
    assert.ok(tookOverAt - cutAt >= 1000 - 100 && tookOverAt - cutAt <= 1300, `took over ${tookOverAt - cutAt} ms after the cut`);
    assert.equal(b.vipUp, true);
  });

  /** n1 PRIM with replicated data, n2 SECOND(Ready): released, it may take over. */
  async function mirroredPair(): Promise<{ clock: ManualClock; a: Node; b: Node; journal: string[]; ra: ReplicationTwin; rb: ReplicationTwin }> {
    const journal: string[] = [];
    const ra = new ReplicationTwin('n1', journal);
    const rb = new ReplicationTwin('n2', journal);
    const p = pair({ config: { replicatedData: true }, replication: [ra, rb] });
    p.journal.push = (...l: string[]) => journal.push(...l);
    void p.a.engine.command('prim');
    await p.clock.advance(1500);
    void p.b.engine.command('start');
    await p.clock.advance(2000);
    assert.equal(rb.role, 'second', journal.join('\n'));
    rb.report({ uptodate: true });
    await p.clock.advance(500);
    assert.deepEqual([p.a.engine.status().state, p.b.engine.status().state, p.b.engine.status().qualifier], ['PRIM', 'SECOND', 'Ready'], journal.join('\n'));
    return { clock: p.clock, a: p.a, b: p.b, journal, ra, rb };
  }

  it('the replication to a released secondary breaks off (peerLost): the primary goes ALONE and pairs again only after a new reintegration', async () => {
    const { clock, a, b, journal, ra, rb } = await mirroredPair();
    const from = journal.length;
    ra.report({ peerLost: true });
    await clock.advance(300);
    const after = journal.slice(from);
    // The release is withdrawn: this node can prove its data alone again, and the secondary may not take over.
    assert.ok(after.includes('n1 log I The replication to the secondary broke off: going on alone until it reintegrates'), after.join('\n'));
    assert.ok(after.some((l) => /^n1 persist uptodate=true/.test(l)), after.join('\n'));
    assert.ok(after.some((l) => l.startsWith('n1 log E Local state ALONE Ready')), after.join('\n'));
    // The secondary saw the release go and started a new reintegration; until it ends it is not Ready.
    assert.ok(after.filter((l) => l === 'n2 replication second incremental').length >= 1, after.join('\n'));
    assert.equal(b.engine.status().qualifier, 'Transient');
    assert.equal(a.engine.status().state, 'PRIM', 'paired again with the new episode');
    assert.equal(a.engine.status().persisted.uptodate, true, 'not released before the new reintegration ends');
    rb.report({ uptodate: true });
    await clock.advance(500);
    assert.deepEqual([a.engine.status().state, b.engine.status().state, b.engine.status().qualifier], ['PRIM', 'SECOND', 'Ready'], journal.slice(from).join('\n'));
    assert.equal(a.engine.status().persisted.uptodate, false, 'released again once the secondary reintegrated');
  });

  it('peerLost while the secondary is still reintegrating (not released) leaves the primary PRIM', async () => {
    const journal: string[] = [];
    const ra = new ReplicationTwin('n1', journal);
    const rb = new ReplicationTwin('n2', journal);
    const { clock, a, b } = pair({ config: { replicatedData: true }, replication: [ra, rb] });
    void a.engine.command('prim');
    await clock.advance(1500);
    void b.engine.command('start');
    await clock.advance(2000);
    assert.equal(b.engine.status().qualifier, 'Transient');
    ra.report({ peerLost: true });
    await clock.advance(500);
    assert.equal(a.engine.status().state, 'PRIM', journal.join('\n'));
    assert.ok(!journal.some((l) => l.startsWith('n1 log E Local state ALONE')), journal.join('\n'));
  });

  it('syncdelta: alone, a node that cannot prove its data starts as primary only while its last sync is recent enough', async () => {
    for (const [agoMs, want] of [
      [5 * 60_000, 'ALONE'],
      [15 * 60_000, 'WAIT'],
      [null, 'WAIT'],
    ] as const) {
      const twins: string[] = [];
      const ra = new ReplicationTwin('n1', twins);
      ra.lastSyncAtMs = agoMs === null ? null : Date.now() - agoMs;
      const { clock, a, journal } = pair({ config: { replicatedData: true, syncDeltaMs: 10 * 60_000 }, replication: [ra, new ReplicationTwin('n2', twins)] });
      void a.engine.command('start');
      await clock.advance(3000);
      assert.equal(a.engine.status().state, want, `last sync ${agoMs} ms ago:\n${journal.join('\n')}`);
      if (want === 'ALONE') assert.ok(journal.some((l) => l.includes('syncdelta: this server') && l.includes('less than 10 min old')), journal.join('\n'));
      // Time alone changes the answer: a node still waiting when its last sync becomes recent (clock set
      // back by the operator, say) is told at the next check.
      if (agoMs !== null && want === 'WAIT') {
        ra.lastSyncAtMs = Date.now() - 60_000;
        await clock.advance(6000);
        assert.equal(a.engine.status().state, 'ALONE', journal.join('\n'));
      }
    }
  });

  it('after a split brain the primary that stays announces its virtual IP again', async () => {
    const { clock, net, a, b, journal } = pair();
    void a.engine.command('start');
    void b.engine.command('start');
    await clock.advance(3000);
    net.partition();
    await clock.advance(3000);
    assert.equal(a.engine.status().state, 'ALONE');
    assert.equal(b.engine.status().state, 'ALONE');
    const mark = journal.length;
    net.heal();
    await clock.advance(3000);
    assert.equal(a.engine.status().state, 'PRIM');
    assert.equal(b.engine.status().state, 'SECOND');
    assert.equal(b.vipUp, false);
    assert.ok(journal.slice(mark).includes('n1 vipAnnounce'), journal.slice(mark).join('\n'));
  });

  it('the loss deadline is met exactly (precise timer) while pulse timers run late', async () => {
    // The loss deadline half a pulse away from the pulses, so that it is the loss timer that finds it.
    const { clock, net, a, b, journal } = pair({ precise: true, config: { heartbeats: [{ lan: 'default', pulseMs: 100, timeoutMs: 1050 }] } });
    clock.lateMs = 0.5;
    void a.engine.command('start');
    void b.engine.command('start');
    await clock.advance(3000);
    assert.equal(b.engine.status().state, 'SECOND', journal.join('\n'));
    const mark = journal.length;
    net.partition();
    await clock.advance(3000);
    assert.equal(b.engine.status().state, 'ALONE');
    const times = journal.slice(mark).find((l) => l.startsWith('n2 log D Takeover times'));
    // Declared lost at last heard + 1050 ms to the millisecond's fraction, not half a millisecond later as its pulse timers are.
    assert.match(times ?? '', /deadline 1050\.0, tick due 1050\.0, tick fired 1050\.0, lost \(tick stepped\) 1050\.0, state record written 1050\.0/, times);
    assert.ok(clock.deadlines.length > 0, 'the loss deadline went to setDeadline');
    assert.ok(clock.afterIoCalls > 0, 'pulse ticks are handed over after the sockets were read');
  });

  it('timers that fire a fraction of a millisecond early do not stop the heartbeats', async () => {
    const { clock, net, a, b, journal } = pair();
    clock.earlyMs = 0.5;
    void a.engine.command('start');
    void b.engine.command('start');
    await clock.advance(3000);
    const before = net.stats.sent;
    await clock.advance(2000);
    // 2 nodes x 1 lan x one per 100 ms pulse.
    assert.ok(net.stats.sent - before >= 36, `${net.stats.sent - before} heartbeats in 2 s`);
    assert.equal(b.engine.status().lans[0]!.up, true);
  });

  it('a state record that cannot be written faults the engine before it acts: no VIP, not ready, commands refused', async () => {
    const { clock, net, a, b } = pair();
    void a.engine.command('start');
    void b.engine.command('start');
    await clock.advance(3000);
    assert.equal(b.engine.status().state, 'SECOND');
    // The secondary must record "I am primary now" before it takes the VIP: make that write fail.
    b.store.failing = true;
    net.partition();
    await clock.advance(3000);
    const st = b.engine.status();
    assert.match(st.faulted ?? '', /cannot persist the module state: disk full/);
    assert.equal(b.engine.ready, false);
    assert.equal(b.vipUp, false, 'the VIP never went up on the node that could not record it');
    const r = b.engine.command('start');
    await clock.advance(5);
    assert.deepEqual(await r, { ok: false, code: 'ENGINE_FAULTED', message: st.faulted });
  });

  it('commands refused by the machine answer CONFLICT with its reason', async () => {
    const { clock, a } = pair();
    const r = a.engine.command('swap');
    await clock.advance(5);
    const ans = await r;
    assert.equal(ans.ok, false);
    assert.equal(ans.code, 'CONFLICT');
  });
});

describe('the real clock', () => {
  it('setDeadline fires after its deadline, within a fraction of a millisecond when the machine is not starved; cancel stops it', async () => {
    const late: number[] = [];
    for (let i = 0; i < 15; i++) {
      const at = realClock.nowMs() + 3 + (i % 5) * 0.3;
      late.push(await new Promise<number>((res) => realClock.setDeadline!(() => res(realClock.nowMs() - at), at)));
    }
    assert.ok(late.every((l) => l >= 0), `never early: ${late.map((l) => l.toFixed(3)).join(', ')}`);
    late.sort((x, y) => x - y);
    // setTimeout alone is typically 1 ms late; a loaded test machine may stretch this, hence the margin.
    assert.ok(late[7]! < 1, `median lateness ${late[7]!.toFixed(3)} ms`);
    let fired = false;
    const t = realClock.setDeadline!(() => (fired = true), realClock.nowMs() + 2);
    t.cancel();
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(fired, false);
  });
});

describe('heartbeat message codec', () => {
  const msg = {
    node: 'n1', incarnation: 3, seq: 9, state: 'PRIM', qualifier: 'Ready', primActive: true, established: true, exiting: false,
    uptodate: false, lastPrim: true, reintegrationInterrupted: false, gen: 2, mode: 'auto', episode: null, synced: false,
    releasedEpisode: '3.1', swapping: false, swapRequests: 0, swapNosync: false,
  } as const;
  it('round-trips a message', () => {
    assert.deepEqual(decodeHeartbeatMessage(encodeHeartbeatMessage(msg)), { ok: true, message: msg });
  });
  for (const [what, bytes, reason] of [
    ['not JSON', Buffer.from('{"node":'), 'not JSON'],
    ['an array', Buffer.from('[]'), 'not an object'],
    ['an unknown state', Buffer.from(JSON.stringify({ ...msg, state: 'MASTER' })), 'field state: "MASTER"'],
    ['a negative generation', Buffer.from(JSON.stringify({ ...msg, gen: -1 })), 'field gen: -1'],
    ['a missing field', Buffer.from(JSON.stringify({ ...msg, synced: undefined })), 'field synced: missing'],
    ['an oversized message', Buffer.alloc(5000, 32), 'message of 5000 bytes'],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.deepEqual(decodeHeartbeatMessage(bytes), { ok: false, reason });
    });
  }
});
