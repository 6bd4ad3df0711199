// Two real replication runtimes on loopback (TLS between 127.0.0.1 and 127.0.0.2): node1 primary with its
// data mounted through FUSE and writable, node2 secondary applying into its plain directory. The
// application's writes come from other processes (sh), as the mount's own thread must stay free.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Rfs } from '../../src/config/userconfig/types.ts';
import type { ReplicationReport } from '../../src/engine/mirror-engine.ts';
import { nativeAvailable } from '../../src/replication/native-binding.ts';
import type { Server } from 'node:tls';
import { listenLinks, type FrameLink } from '../../src/replication/link.ts';
import type { Frame, VersionRange } from '../../src/replication/protocol.ts';
import { freePorts, loopbackRuntime, rfsConfig } from '../daemon/rfs-harness.ts';
import { fuseSkipReason } from './fuse-env.ts';

export function runtimeSkip(): string | false {
  if (process.platform !== 'linux') return 'the replication runtime needs Linux';
  const n = nativeAvailable();
  return fuseSkipReason() || (n === true ? false : n);
}

export const sh = promisify(execFile);

const KEY = Buffer.alloc(32, 9);

export interface NodeOptions {
  versions?: VersionRange;
  rfs?: Partial<Rfs>;
}

/** node1 primary (mounted, writable) and node2 secondary under `base`/`name`-*, started. */
export async function runtimePair(base: string, name: string, o: { primary?: NodeOptions; secondary?: NodeOptions } = {}) {
  const port = await freePorts('127.0.0.1');
  const d1 = join(base, `${name}-n1`);
  const d2 = join(base, `${name}-n2`);
  mkdirSync(d1);
  mkdirSync(d2);
  const logs1: string[] = [];
  const logs2: string[] = [];
  const reports2: ReplicationReport[] = [];
  const node = (n: NodeOptions | undefined, dir: string) => ({ rfs: rfsConfig(dir, n?.rfs), ...(n?.versions ? { protocolVersions: n.versions } : {}) });
  const rt1 = loopbackRuntime({ ...node(o.primary, d1), port, stateDir: join(base, `${name}-s1`), logs: logs1, moduleKey: KEY });
  const rt2 = loopbackRuntime({ ...node(o.secondary, d2), port, stateDir: join(base, `${name}-s2`), logs: logs2, moduleKey: KEY, self: 'n2' });
  const second = (): void => rt2.setRole('second', 'incremental', (r) => reports2.push(r));
  second();
  await rt1.beforeScripts({ type: 'runScripts', id: 1, current: 'WAIT', next: 'ALONE', action: 'prim', calls: [{ script: 'start_prim' }] } as never);
  rt1.setRole('prim', 'none', () => {});
  const close = async (): Promise<void> => {
    await rt1.afterScripts({ type: 'runScripts', id: 2, current: 'ALONE', next: 'STOP', action: 'stop', calls: [{ script: 'stop_prim' }] } as never);
    await rt1.close();
    await rt2.close();
  };
  return { rt1, rt2, d1, d2, logs1, logs2, reports2, second, close };
}

/** Every path under `dir` with, for a file, a digest of its content: two copies are equal when these are. */
export function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => {
      const p = join(e.parentPath, e.name);
      return `${p.slice(dir.length)}${e.isFile() ? `=${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}` : '/'}`;
    })
    .sort();
}

/**
 * A "secondary" listening on 127.0.0.2:`port` where node1 (127.0.0.1) connects: it answers the first frame
 * with `welcome(hello)` (null: it closes the link instead), then hands the later frames to `then`.
 */
export async function scriptedSecondary(port: number, moduleKey: Uint8Array, welcome: (hello: Frame) => Frame | null, then: (link: FrameLink, f: Frame) => void = () => {}): Promise<{ server: Server; links: FrameLink[] }> {
  const links: FrameLink[] = [];
  const server = await listenLinks({
    host: '127.0.0.2',
    port,
    moduleKey,
    module: 'm',
    peerNode: 'n1',
    onReject: () => {},
    onLink: (link) => {
      links.push(link);
      let first = true;
      link.onFrame((f) => {
        if (!first) return then(link, f);
        first = false;
        const w = welcome(f);
        if (w) link.send(w);
        else link.close();
      });
    },
  });
  return { server, links };
}
