// A data-driven harness for the mirror machine (in the manner of etcd raft's testdata): a trace file is a
// prose header, then blocks of `command args` / `----` / expected output, separated by blank lines. The
// harness drives one node's machine, playing the shell (timers) and the peer (heartbeat messages), and
// prints every effect on one line, then `= STATE(Qualifier) reason`. REWRITE=1 rewrites the expected
// outputs from what the machine does, so a behaviour change shows up as a readable diff.
//
// Verbs:
//   init self=n1 peer=n2 [failover=off] [defaultprim=X] [maxloop=3] [loop=MS] [pulse=MS] [timeout=MS]
//        [lans=N] [vip=off] [uptodate=1] [lastprim=1] [gen=N] [interrupted=1] [reintegrating=1]
//        [syncdelta=MINUTES]
//   cmd NAME [identity=X] [nosync] [fullsync]  an operator or automated command
//   synced recent|old                    the shell's syncedCheck (last sync within syncdelta or not)
//   done [fail] [script=NAME]            the running script batch ends
//   hb [lan=NAME] [state=S] [q=Q] [prim=1] [est=1] [up=1] [lastprim=1] [gen=N] [inc=N] [mode=M]
//      [episode=E] [synced=1] [released=E|-] [swapping=1] [swapreq=N] [exiting=1] [interrupted=1]
//                                        a heartbeat from the peer; fields not given keep their last value
//   repl uptodate=0|1 [interrupted=1]    the replication layer's report
//   advance MS [hb=MS]                   run the timers for MS (and repeat the last peer message every hb=MS)
//   show hb=on|off                       print sendHeartbeat effects (off by default; timers never print)
//   state                                print the persisted record and the node's view
import {
  step,
  initialMirrorState,
  EMPTY_PERSISTED,
  formatCall,
  type HeartbeatMessage,
  type MirrorConfig,
  type MirrorEffect,
  type MirrorEvent,
  type MirrorState,
} from '../../src/mirror/index.ts';

/** A heartbeat message from the peer as a fresh, not-yet-mirrored node sends it; tests override fields. */
export function peerMessage(node: string, over: Partial<HeartbeatMessage> = {}): HeartbeatMessage {
  return {
    node,
    incarnation: 1,
    seq: 0,
    state: 'WAIT',
    qualifier: 'Transient',
    primActive: false,
    established: false,
    exiting: false,
    uptodate: false,
    lastPrim: false,
    reintegrationInterrupted: false,
    gen: 0,
    mode: 'auto',
    episode: null,
    synced: false,
    releasedEpisode: null,
    swapping: false,
    swapRequests: 0,
    swapNosync: false,
    ...over,
  };
}

export interface Block {
  command: string;
  expected: string;
  line: number;
}

export function parseTrace(text: string): { header: string; blocks: Block[] } {
  const lines = text.split('\n');
  const header: string[] = [];
  let i = 0;
  while (i < lines.length && (lines[i]!.startsWith('#') || lines[i]!.trim() === '')) header.push(lines[i++]!);
  const blocks: Block[] = [];
  while (i < lines.length) {
    if (lines[i]!.trim() === '' || lines[i]!.startsWith('#')) {
      i++;
      continue;
    }
    const line = i + 1;
    const command = lines[i++]!;
    if (lines[i] !== '----') throw new Error(`line ${i + 1}: expected ---- after "${command}"`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== '') out.push(lines[i++]!);
    blocks.push({ command, expected: out.join('\n'), line });
  }
  return { header: header.join('\n'), blocks };
}

export function formatTrace(header: string, blocks: Array<{ command: string; output: string }>): string {
  const body = blocks.map((b) => `${b.command}\n----\n${b.output}`).join('\n\n');
  return `${header.trimEnd()}\n\n${body}\n`;
}

function fmtEffect(e: MirrorEffect, showHb: boolean): string | null {
  switch (e.type) {
    case 'persist': {
      const r = e.record;
      return `persist uptodate=${+r.uptodate} lastprim=${+r.lastPrim} gen=${r.gen} inc=${r.incarnation} reintegrating=${+r.reintegrating} interrupted=${+r.reintegrationInterrupted}`;
    }
    case 'runScripts':
      return `run#${e.id} ${e.current}->${e.next} ${e.action}: ${e.calls.map(formatCall).join(', ')}`;
    case 'cancelScripts':
      return `cancel#${e.id}`;
    case 'vipUp':
      return 'vipUp';
    case 'vipDown':
      return `vipDown${e.tcpreset ? ' tcpreset' : ''}`;
    case 'ready':
      return `ready ${+e.ready}`;
    case 'setReplication':
      return `replication ${e.role} ${e.sync}`;
    case 'sendHeartbeat': {
      if (!showHb) return null;
      const m = e.message;
      return `hb ${e.lan} #${m.seq} ${m.state}(${m.qualifier}) prim=${+m.primActive} est=${+m.established} up=${+m.uptodate} gen=${m.gen} episode=${m.episode ?? '-'} synced=${+m.synced} released=${m.releasedEpisode ?? '-'} swapping=${+m.swapping}`;
    }
    case 'setTimer':
      return null;
    case 'log':
      return `log ${e.level}: ${e.message}`;
    case 'reply':
      return `reply ${e.command} ${e.ok ? 'ok' : `refused ${e.code}`}: ${e.message}`;
  }
}

function kv(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq < 0) out[a] = '1';
    else out[a.slice(0, eq)] = a.slice(eq + 1);
  }
  return out;
}

const bool = (v: string | undefined, d: boolean): boolean => (v === undefined ? d : v === '1' || v === 'on' || v === 'true');
const num = (v: string | undefined, d: number): number => (v === undefined ? d : Number(v));

export class TraceRunner {
  s: MirrorState | null = null;
  now = 0;
  timerAt: number | null = null;
  showHb = false;
  lastRunId: number | null = null;
  peerMsg: HeartbeatMessage | null = null;
  peerSeq = 0;

  private feed(ev: MirrorEvent, out: string[]): void {
    const r = step(this.s!, ev);
    this.s = r.state;
    for (const e of r.effects) {
      if (e.type === 'setTimer') this.timerAt = e.atMs;
      if (e.type === 'runScripts') this.lastRunId = e.id;
      const line = fmtEffect(e, this.showHb);
      if (line !== null) out.push(line);
    }
  }

  private peerMessage(a: Record<string, string>): HeartbeatMessage {
    const cfg = this.s!.config;
    const p: HeartbeatMessage = this.peerMsg ?? peerMessage(cfg.peer, { seq: 0, state: 'WAIT' });
    const opt = (k: string): string | null | undefined => (a[k] === undefined ? undefined : a[k] === '-' ? null : a[k]);
    const m: HeartbeatMessage = {
      ...p,
      seq: ++this.peerSeq,
      state: (a.state as HeartbeatMessage['state']) ?? p.state,
      qualifier: (a.q as HeartbeatMessage['qualifier']) ?? p.qualifier,
      primActive: bool(a.prim, p.primActive),
      established: bool(a.est, p.established),
      exiting: bool(a.exiting, p.exiting),
      uptodate: bool(a.up, p.uptodate),
      lastPrim: bool(a.lastprim, p.lastPrim),
      reintegrationInterrupted: bool(a.interrupted, p.reintegrationInterrupted),
      gen: num(a.gen, p.gen),
      incarnation: num(a.inc, p.incarnation),
      mode: (a.mode as HeartbeatMessage['mode']) ?? p.mode,
      episode: opt('episode') === undefined ? p.episode : (opt('episode') as string | null),
      synced: bool(a.synced, p.synced),
      releasedEpisode: opt('released') === undefined ? p.releasedEpisode : (opt('released') as string | null),
      swapping: bool(a.swapping, p.swapping),
      swapRequests: num(a.swapreq, p.swapRequests),
      swapNosync: bool(a.nosync, p.swapNosync),
    };
    this.peerMsg = m;
    return m;
  }

  run(command: string): string {
    const [verb, ...rest] = command.trim().split(/\s+/);
    const a = kv(rest);
    const out: string[] = [];
    switch (verb) {
      case 'init': {
        const pulse = num(a.pulse, 100);
        const timeout = num(a.timeout, 500);
        const nLans = num(a.lans, 1);
        const config: MirrorConfig = {
          self: a.self ?? 'n1',
          peer: a.peer ?? 'n2',
          failover: bool(a.failover, true),
          defaultPrim: a.defaultprim ?? 'alone',
          maxLoop: num(a.maxloop, 3),
          loopIntervalMs: num(a.loop, 86_400_000),
          heartbeats: Array.from({ length: nLans }, (_, i) => ({ lan: `lan${i + 1}`, pulseMs: pulse, timeoutMs: timeout })),
          vip: bool(a.vip, true) ? { tcpreset: true } : null,
          replicatedData: bool(a.data, true),
          ...(a.syncdelta ? { syncDeltaMs: num(a.syncdelta, 0) * 60_000 } : {}),
        };
        this.now = 0;
        this.timerAt = null;
        this.peerMsg = null;
        this.peerSeq = 0;
        this.s = initialMirrorState(
          config,
          {
            ...EMPTY_PERSISTED,
            uptodate: bool(a.uptodate, false),
            lastPrim: bool(a.lastprim, false),
            gen: num(a.gen, 0),
            reintegrationInterrupted: bool(a.interrupted, false),
            reintegrating: bool(a.reintegrating, false),
            incarnation: num(a.incarnation, 0),
          },
          0,
        );
        break;
      }
      case 'cmd': {
        const [name, ...more] = rest;
        const o = kv(more);
        this.feed(
          {
            type: 'command',
            nowMs: this.now,
            command: name as never,
            ...(o.identity ? { identity: o.identity } : {}),
            ...(o.nosync ? { nosync: true } : {}),
            ...(o.fullsync ? { fullsync: true } : {}),
          },
          out,
        );
        break;
      }
      case 'done':
        this.feed(
          {
            type: 'scriptsDone',
            nowMs: this.now,
            id: this.lastRunId ?? -1,
            ok: a.fail === undefined,
            ...(a.script ? { failedScript: a.script } : {}),
          },
          out,
        );
        break;
      case 'hb':
        this.feed({ type: 'heartbeatReceived', nowMs: this.now, lan: a.lan ?? 'lan1', message: this.peerMessage(a) }, out);
        break;
      case 'checker':
        this.feed({ type: 'checker', nowMs: this.now, name: rest[0] ?? 'intf.x', up: rest[1] === 'up' }, out);
        break;
      case 'synced':
        this.feed({ type: 'syncedCheck', nowMs: this.now, recent: rest[0] === 'recent' }, out);
        break;
      case 'repl':
        this.feed(
          {
            type: 'replicationState',
            nowMs: this.now,
            uptodate: bool(a.uptodate, false),
            reintegrationInterrupted: bool(a.interrupted, false),
            lastSyncMs: bool(a.uptodate, false) ? this.now : null,
          },
          out,
        );
        break;
      case 'advance': {
        const target = this.now + num(rest[0], 0);
        const hbEvery = a.hb ? Number(a.hb) : null;
        let nextHb = hbEvery !== null ? this.now + hbEvery : Infinity;
        for (let guard = 0; guard < 100_000; guard++) {
          const tAt = this.timerAt ?? Infinity;
          const t = Math.min(tAt, nextHb);
          if (t > target) break;
          this.now = Math.max(this.now, t);
          if (t === nextHb) {
            nextHb += hbEvery!;
            this.feed({ type: 'heartbeatReceived', nowMs: this.now, lan: 'lan1', message: this.peerMessage({}) }, out);
          } else {
            this.timerAt = null;
            this.feed({ type: 'tick', nowMs: this.now }, out);
          }
        }
        this.now = target;
        break;
      }
      case 'show':
        this.showHb = a.hb === 'on';
        break;
      case 'state': {
        const s = this.s!;
        const p = s.persisted;
        out.push(
          `persisted uptodate=${+p.uptodate} lastprim=${+p.lastPrim} gen=${p.gen} inc=${p.incarnation} reintegrating=${+p.reintegrating} interrupted=${+p.reintegrationInterrupted}`,
        );
        out.push(
          `view peerAlive=${+s.peerAlive} vip=${+s.vip} primActive=${+s.primActive} established=${+s.established} ready=${+s.ready} episode=${s.episode ?? '-'} synced=${+s.synced} released=${s.releasedEpisode ?? '-'} mode=${s.mode} loop=${s.loop.count}`,
        );
        break;
      }
      default:
        throw new Error(`unknown verb ${verb}`);
    }
    const s = this.s!;
    out.push(`= ${s.state}(${s.qualifier}) ${s.reason}${s.plan ? ` [plan ${s.plan.name}]` : ''}`);
    return out.join('\n');
  }
}
