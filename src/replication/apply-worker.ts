// The secondary's apply worker: applies the primary's stream (BatchApplier) on a thread of its own, so the
// JS thread that reads the link acknowledges frames on receipt (async="second") however long the disk takes
// to create a file or write a block. In order:
//
//   in  (parentPort)    {t: 'frames', gen, frames}  apply them (link generation gen)
//                       {t: 'closeFds'}             the link ended: close the cached descriptors
//                       {t: 'sync', seq}            everything before it is done: flag[0] = seq, notified
//   out (results port)  ApplyResult, in the order they happened (see frame-applier.ts)

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { BatchApplier, FrameApplier, type ApplyResult, type TargetRoot } from './frame-applier.ts';
import { peer } from './fuse/native.ts';
import { reviveBuffers, type Frame } from './protocol.ts';

const data = workerData as { roots: TargetRoot[]; async: 'second' | 'none'; results: MessagePort; flag: SharedArrayBuffer };
const flag = new Int32Array(data.flag);

/**
 * With async="second" nothing waits for the applied count right away (the acknowledgement went on receipt):
 * it is posted at most every APPLIED_POST_MS, not once per batch, which would wake the JS thread once more per
 * write. Any other result, a sync or the end of a link posts it first (results stay in order).
 */
const APPLIED_POST_MS = 10;
let heldApplied: Extract<ApplyResult, { t: 'applied' }> | null = null;
let heldTimer: NodeJS.Timeout | null = null;
function postHeld(): void {
  if (heldTimer) clearTimeout(heldTimer);
  heldTimer = null;
  if (heldApplied) data.results.postMessage(heldApplied);
  heldApplied = null;
}
function post(r: ApplyResult): void {
  if (r.t === 'applied' && data.async === 'second') {
    // The bytes of every batch count (the receiving side's backlog); the count is the latest.
    if (heldApplied && heldApplied.gen === r.gen) r = { ...r, bytes: r.bytes + heldApplied.bytes };
    else postHeld();
    heldApplied = r;
    heldTimer ??= setTimeout(postHeld, APPLIED_POST_MS);
    return;
  }
  postHeld();
  data.results.postMessage(r);
}
const batches = new BatchApplier(new FrameApplier({ fs: peer(), roots: data.roots, async: data.async }), post);

parentPort!.on('message', (m: { t: 'frames'; gen: number; frames: Frame[] } | { t: 'closeFds' } | { t: 'sync'; seq: number }) => {
  switch (m.t) {
    case 'frames':
      batches.apply(m.gen, m.frames.map(reviveBuffers));
      return;
    case 'closeFds':
      batches.closeFds();
      return;
    case 'sync':
      postHeld();
      Atomics.store(flag, 0, m.seq);
      Atomics.notify(flag, 0);
      return;
  }
});
