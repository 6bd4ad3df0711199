// The secondary's apply worker: applies the primary's stream (BatchApplier) on a thread of its own, so the
// JS thread that reads the link acknowledges frames on receipt (async="second") however long the disk takes
// to create a file or write a block. In order:
//
//   in  (parentPort)    {t: 'frames', gen, frames}  apply them (link generation gen)
//                       {t: 'closeFds'}             the link ended: close the cached descriptors
//                       {t: 'sync', seq}            everything before it is done: flag[0] = seq, notified
//   out (results port)  ApplyResult, in the order they happened (see frame-applier.ts)

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { BatchApplier, FrameApplier, type TargetRoot } from './frame-applier.ts';
import { peer } from './fuse/native.ts';
import { reviveBuffers, type Frame } from './protocol.ts';

const data = workerData as { roots: TargetRoot[]; async: 'second' | 'none'; results: MessagePort; flag: SharedArrayBuffer };
const flag = new Int32Array(data.flag);
const batches = new BatchApplier(new FrameApplier({ fs: peer(), roots: data.roots, async: data.async }), (r) => data.results.postMessage(r));

parentPort!.on('message', (m: { t: 'frames'; gen: number; frames: Frame[] } | { t: 'closeFds' } | { t: 'sync'; seq: number }) => {
  switch (m.t) {
    case 'frames':
      batches.apply(m.gen, m.frames.map(reviveBuffers));
      return;
    case 'closeFds':
      batches.closeFds();
      return;
    case 'sync':
      Atomics.store(flag, 0, m.seq);
      Atomics.notify(flag, 0);
      return;
  }
});
