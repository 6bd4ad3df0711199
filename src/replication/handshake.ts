// The connecting side of a link's first exchange: it sends `hello`, the listening side answers `welcome`
// with its state as a JSON object. Used by the primary on the replication link (the state says what the
// secondary needs: rfs-runtime.ts parses it) and by rfsverify/rfsdiff on the verify link (verify.ts).
//
// The hello names this node's highest protocol version and the welcome the version both ends speak from
// then on (protocol.ts says how they agree). A welcome whose version this node does not speak (the two
// ranges do not meet) is refused with REPLICATION_VERSION, naming both ranges and the node to upgrade. A
// peer that answers anything else, or a state that is not a JSON object, is refused with
// REPLICATION_PROTOCOL. Either way nothing is done with the link (the caller closes it). One that does not
// answer in time, or closes first, gives REPLICATION_PEER_UNREACHABLE.

import { StayupError } from '../errors/stayup-error.ts';
import type { FrameLink } from './link.ts';
import { rangeText, SUPPORTED_VERSIONS, type VersionRange } from './protocol.ts';

export interface Hello {
  module: string;
  node: string;
  /** Names this connection in the peer's log (the role epoch, or "verify"). */
  session: string;
}

/** What the welcome said: the peer's state and the protocol version the link speaks from now on. */
export interface Greeting {
  state: Record<string, unknown>;
  version: number;
}

/**
 * Sends hello and resolves with the welcome's state and the agreed version. `peer` names the other side in
 * error messages; `versions` are the ones this node speaks (tests make an older node with it). Frames after
 * the welcome are left to the caller's own onFrame listener.
 */
export function greet(link: FrameLink, hello: Hello, o: { peer: string; timeoutMs: number; versions?: VersionRange }): Promise<Greeting> {
  const own = o.versions ?? SUPPORTED_VERSIONS;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (e: StayupError | null, greeting?: Greeting): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) reject(e);
      else resolve(greeting!);
    };
    const timer = setTimeout(
      () => finish(new StayupError('REPLICATION_PEER_UNREACHABLE', `${o.peer} (${link.remote}): no welcome within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    link.onFrame((f) => {
      if (done) return;
      if (f.type !== 'welcome') return finish(protocolError(o.peer, `answered ${f.type}, expected welcome`));
      let state: unknown;
      try {
        state = JSON.parse(f.state);
      } catch (e) {
        return finish(protocolError(o.peer, `welcome field "state" is not JSON (${(e as Error).message})`));
      }
      if (state === null || typeof state !== 'object' || Array.isArray(state)) return finish(protocolError(o.peer, 'welcome field "state" is not a JSON object'));
      const st = state as Record<string, unknown>;
      if (f.version < own.min || f.version > own.max) return finish(versionError({ self: hello.node, own, peer: o.peer, peerVersions: versionsIn(st), peerVersion: f.version }));
      finish(null, { state: st, version: f.version });
    });
    // Said in details: a node from before version negotiation closes the link so on a hello it does not take.
    link.onClose((e) => finish(new StayupError('REPLICATION_PEER_UNREACHABLE', `${o.peer} (${link.remote}) closed the link before its welcome${e ? `: ${e.message}` : ''}`, { details: { closedBeforeWelcome: true } })));
    link.send({ type: 'hello', version: own.max, module: hello.module, node: hello.node, session: hello.session });
  });
}

export function protocolError(peer: string, what: string): StayupError {
  return new StayupError('REPLICATION_PROTOCOL', `replication: ${peer} ${what}`);
}

/** greet() for a caller that needs only the state (a verify link: every version answers its requests). */
export async function greetPeer(link: FrameLink, hello: Hello, o: { peer: string; timeoutMs: number; versions?: VersionRange }): Promise<Record<string, unknown>> {
  return (await greet(link, hello, o)).state;
}

/** The peer's range from its welcome state (`versions`), if it says it (an older node does not). */
function versionsIn(state: Record<string, unknown>): VersionRange | null {
  const v = state['versions'] as { min?: unknown; max?: unknown } | null | undefined;
  if (!v || !Number.isInteger(v.min) || !Number.isInteger(v.max) || (v.min as number) > (v.max as number)) return null;
  return { min: v.min as number, max: v.max as number };
}

/**
 * No common version. `peerVersion` is the version the peer named: on the primary the welcome's (below this
 * node's lowest: the peer is too old; above its highest: this node is), on the secondary the hello's (the
 * primary's highest, below this node's lowest). Names both ranges and the node to upgrade.
 */
export function versionError(o: { self: string; own: VersionRange; peer: string; peerVersions: VersionRange | null; peerVersion: number }): StayupError {
  const peerTooOld = o.peerVersion < o.own.min;
  const theirs = o.peerVersions ? rangeText(o.peerVersions) : peerTooOld ? `v${o.peerVersion} at most` : `v${o.peerVersion} at least`;
  return new StayupError(
    'REPLICATION_VERSION',
    `replication: no common protocol version: ${o.peer} speaks ${theirs}, ${o.self} (this node) ${rangeText(o.own)}: upgrade ${peerTooOld ? o.peer : o.self}`,
  );
}
