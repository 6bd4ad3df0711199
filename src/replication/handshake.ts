// The connecting side of a link's first exchange: it sends `hello`, the listening side answers `welcome`
// with its state as a JSON object. Used by the primary on the replication link (the state says what the
// secondary needs: rfs-runtime.ts parses it) and by rfsverify/rfsdiff on the verify link (verify.ts).
//
// A peer that answers anything else, another protocol version, or a state that is not a JSON object is
// refused with REPLICATION_PROTOCOL before anything is done with the link (the caller closes it); one that
// does not answer in time, or closes first, with REPLICATION_PEER_UNREACHABLE.

import { StayupError } from '../errors/stayup-error.ts';
import type { FrameLink } from './link.ts';
import { PROTOCOL_VERSION } from './protocol.ts';

export interface Hello {
  module: string;
  node: string;
  /** Names this connection in the peer's log (the role epoch, or "verify"). */
  session: string;
}

/**
 * Sends hello and resolves with the welcome's state. `peer` names the other side in error messages.
 * Frames after the welcome are left to the caller's own onFrame listener.
 */
export function greetPeer(link: FrameLink, hello: Hello, o: { peer: string; timeoutMs: number }): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (e: StayupError | null, state?: Record<string, unknown>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) reject(e);
      else resolve(state!);
    };
    const timer = setTimeout(
      () => finish(new StayupError('REPLICATION_PEER_UNREACHABLE', `${o.peer} (${link.remote}): no welcome within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    link.onFrame((f) => {
      if (done) return;
      if (f.type !== 'welcome') return finish(protocolError(o.peer, `answered ${f.type}, expected welcome`));
      if (f.version !== PROTOCOL_VERSION) return finish(protocolError(o.peer, `speaks replication protocol v${f.version}, this node v${PROTOCOL_VERSION}`));
      let state: unknown;
      try {
        state = JSON.parse(f.state);
      } catch (e) {
        return finish(protocolError(o.peer, `welcome field "state" is not JSON (${(e as Error).message})`));
      }
      if (state === null || typeof state !== 'object' || Array.isArray(state)) return finish(protocolError(o.peer, 'welcome field "state" is not a JSON object'));
      finish(null, state as Record<string, unknown>);
    });
    link.onClose((e) => finish(new StayupError('REPLICATION_PEER_UNREACHABLE', `${o.peer} (${link.remote}) closed the link before its welcome${e ? `: ${e.message}` : ''}`)));
    link.send({ type: 'hello', version: PROTOCOL_VERSION, module: hello.module, node: hello.node, session: hello.session });
  });
}

export function protocolError(peer: string, what: string): StayupError {
  return new StayupError('REPLICATION_PROTOCOL', `replication: ${peer} ${what}`);
}
