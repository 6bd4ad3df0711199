// What must hold in every simulated run, checked after every step (and at the end, for liveness). Each
// check throws a SimFailure naming the invariant, with the seed, the step and the last steps of the run.
//
// 1. The virtual IP is only on a node in PRIM or ALONE; the health check says ready only on PRIM(Ready)
//    or ALONE(Ready).
// 2. No two primaries that see each other: once both nodes hold the virtual IP and each has processed a
//    heartbeat the other sent while both held it, one of them must already have let it go. (Two nodes cut
//    off from each other both going ALONE is the reference's documented split brain; what must not
//    happen is staying so while the heartbeats get through.)
// 3. Stop before start: a node never begins start_prim while it has heard, within the heartbeat timeout,
//    the peer running its application as primary (a swap stops the old primary first).
// 4. Data: a node never begins start_prim lacking writes the peer acknowledged, unless the operator ran
//    prim/primforce on it, or those writes happened while the two were cut off or both primary (the
//    documented split brain), or while the data had diverged by such a case or by prim (World.diverged).
// 5. Scripts run in the order of the reference's table (src/mirror/scripts-order.ts), per node.
// 5b. The effect order contract (persist before acting on it; ready off first, on last).
// 6. Liveness, after the faults stop: every node settles (no Transient, no plan), the pair is in one of
//    the stable pictures, every command got its answer, and a node that can prove its data is primary.
import { isPrimaryState, chooseWinner, type MirrorEffect } from '../mirror/index.ts';
import { formatCall } from '../mirror/index.ts';
import { rowNames, stateOf, type SimNode, type World, type WorldHooks } from './world.ts';
import { missingWrites } from './data.ts';

export function makeChecker(): WorldHooks {
  return {
    afterStep(w: World): void {
      for (const n of w.nodes) {
        const m = n.machine;
        if (!m) continue;
        if (n.vip && !isPrimaryState(m.state)) w.fail(`the virtual IP is on ${n.name} in ${m.state}(${m.qualifier})`);
        if (n.ready && !(isPrimaryState(m.state) && m.qualifier === 'Ready')) {
          w.fail(`the health check of ${n.name} says ready in ${m.state}(${m.qualifier})`);
        }
      }
      const since = w.dualVipSinceMs;
      if (since !== null) {
        const [a, b] = w.nodes;
        if (a.lastPeerHb && b.lastPeerHb && a.lastPeerHb.sentAtMs >= since && b.lastPeerHb.sentAtMs >= since) {
          w.fail(
            `two primaries see each other: ${a.name} and ${b.name} hold the virtual IP since t=${since} and each has heard the other since`,
          );
        }
      }
    },

    onStartPrim(w: World, n: SimNode): void {
      const o = n.other;
      const h = n.lastPeerHb;
      const b = n.batch?.effect;
      if (b && b.current === b.next) return; // a restart of the primary in place is no promotion
      const timeoutMs = Math.min(...n.config.heartbeats.map((x) => x.timeoutMs));
      if (o.machine && o.app && h && h.senderApp && w.now - h.processedAtMs < timeoutMs) {
        w.fail(
          `stop before start: ${n.name} begins start_prim while ${o.name} runs as primary (${stateOf(o)}), heard ${w.now - h.processedAtMs} ms ago`,
        );
      }
      if (n.primRequested) {
        // The operator chose this node's data: what the peer wrote and this node lacks is given up, and
        // what this node writes now forms a lineage the peer may lack until it resynchronises.
        for (const v of missingWrites(n.data, o.data, o.name)) v.exemptForOther = true;
        n.consumePrim();
        w.diverged = true;
        return;
      }
      const missing = missingWrites(n.data, o.data, o.name);
      if (missing.length > 0) {
        const span = `t=${missing[missing.length - 1]!.atMs}..${missing[0]!.atMs}`;
        w.fail(`stale promotion: ${n.name} begins start_prim lacking ${missing.length} write(s) acknowledged by ${o.name} (${span})`);
      }
    },

    onEffect(w: World, n: SimNode, e: MirrorEffect, index: number, all: readonly MirrorEffect[]): void {
      checkEffectOrder(w, n, e, index, all);
    },

    onBatchStart(w: World, n: SimNode, e: Extract<MirrorEffect, { type: 'runScripts' }>): void {
      const key = `${e.current}->${e.next}`;
      const row = rowNames(key);
      if (!row) return w.fail(`${n.name}: scripts for ${key}, a transition the reference's table does not have`);
      const names = e.calls.map(formatCall);
      // A forcestop makes every stop call force-only; only WAIT->STOP has force calls in the table itself.
      const norm = key === 'WAIT->STOP' ? (s: string) => s : (s: string) => s.replace(/ force$/, '');
      const start = n.tx && n.tx.key === key && n.tx.done < row.length ? n.tx.done : 0;
      const expected = row.slice(start, start + names.length);
      if (names.length === 0 || names.map(norm).join(',') !== expected.map(norm).join(',')) {
        w.fail(`${n.name}: scripts [${names.join(', ')}] for ${key}; the documented order is [${row.join(', ')}]`);
      }
      n.tx = { key, done: start + names.length };
    },
  };
}

/**
 * The effect order contract of src/mirror/machine.ts, checked against what the disk holds when each
 * effect is carried out: the primary's claim is persisted before its virtual IP goes up, "not up to date"
 * before a reintegration starts or a release is announced; ready:false comes first in its step and
 * ready:true last.
 */
function checkEffectOrder(w: World, n: SimNode, e: MirrorEffect, index: number, all: readonly MirrorEffect[]): void {
  const p = n.persisted;
  switch (e.type) {
    case 'vipUp':
      if (!p || !p.lastPrim || p.gen === 0) w.fail(`${n.name}: vipUp before the primary role was persisted`);
      return;
    case 'setReplication':
      if (e.role === 'second' && (!p || p.uptodate || p.lastPrim || !p.reintegrating)) {
        w.fail(`${n.name}: a reintegration starts before "not up to date, reintegrating" was persisted`);
      }
      return;
    case 'sendHeartbeat':
      if (e.message.releasedEpisode !== null && n.machine && isPrimaryState(n.machine.state) && p?.uptodate) {
        w.fail(`${n.name}: announces the release of ${e.message.releasedEpisode} while it still claims its data alone`);
      }
      return;
    case 'ready':
      if (!e.ready && index !== 0) w.fail(`${n.name}: ready:false is effect ${index} of its step, not the first`);
      if (e.ready && index !== all.length - 1) w.fail(`${n.name}: ready:true is not the last effect of its step`);
      return;
    default:
      return;
  }
}

/** Liveness: called once the faults have stopped and the quiet window has passed. */
export function checkStable(w: World): void {
  for (const n of w.nodes) {
    const m = n.machine;
    if (!m) continue;
    if (n.frozen) w.fail(`${n.name} is still frozen after the quiet window`);
    if (m.plan) w.fail(`not settled: ${n.name} still runs plan ${m.plan.name} in ${m.state}(${m.qualifier})`);
    if (m.qualifier === 'Transient') w.fail(`not settled: ${n.name} is ${m.state}(Transient): ${m.reason}`);
    if (n.pendingRequests.size > 0) w.fail(`${n.name}: commands without an answer: ${[...n.pendingRequests].join(', ')}`);
    if (n.vip !== (isPrimaryState(m.state) && m.qualifier === 'Ready')) {
      w.fail(`${n.name} is ${m.state}(${m.qualifier}) with the virtual IP ${n.vip ? 'up' : 'down'}`);
    }
  }
  const [a, b] = w.nodes;
  const pa = a.machine?.state ?? 'down';
  const pb = b.machine?.state ?? 'down';
  const pic = [pa, pb].sort().join('+');
  const allowed = new Set([
    'PRIM+SECOND',
    'ALONE+STOP',
    'ALONE+down',
    'STOP+WAIT',
    'WAIT+WAIT',
    'WAIT+down',
    'STOP+STOP',
    'STOP+down',
    'down+down',
  ]);
  if (!allowed.has(pic)) w.fail(`not a stable picture after the quiet window: ${a.name} ${stateOf(a)}, ${b.name} ${stateOf(b)}`);
  for (const n of w.nodes) {
    const m = n.machine;
    if (!m || m.state !== 'WAIT') continue;
    const o = n.other.machine;
    const p = m.persisted;
    if (o && o.state === 'WAIT') {
      const op = o.persisted;
      const winner = chooseWinner(
        { name: m.config.self, mode: m.mode, uptodate: p.uptodate, lastPrim: p.lastPrim, interrupted: p.reintegrationInterrupted },
        { name: o.config.self, mode: o.mode, uptodate: op.uptodate, lastPrim: op.lastPrim, interrupted: op.reintegrationInterrupted },
        m.config.defaultPrim,
      );
      if (winner !== null) w.fail(`both nodes wait although ${winner} may start as primary`);
    } else if (p.uptodate && !p.reintegrationInterrupted && m.mode !== 'second' && !m.failoverOffWait) {
      w.fail(`${n.name} waits (${m.reason}) although it can prove its data is up to date and its peer is not running`);
    }
  }
}
